"""Worker metrics in Redis: each worker writes its own hash, the control plane reads them all.

Per worker, ``keys.job_worker_metrics(job, worker)`` is a hash of the last report
and ``keys.job_workers(job)`` scores the worker by the report time (unix ms), so
the control plane finds live workers with one ZRANGEBYSCORE. A report is one
pipelined MULTI (hash + zset) so a reader never sees one without the other.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

from orca.queue import keys
from orca.queue.connection import RedisConnection
from orca.settings import QueueSettings, get_settings


@dataclass(frozen=True)
class WorkerMetrics:
    """One worker's report. Rates are over the period since its previous report."""

    worker_id: str
    pool: str
    state: str                 # starting | running | draining | stopped
    engine: str                # engine kind
    requests_total: int        # requests finished since the worker started (any outcome)
    errors_total: int          # of which ended as error lines
    chunks_done: int           # chunks this worker completed
    in_flight: int             # requests in flight at report time
    requests_per_s: float
    tokens_per_s: float        # completion tokens/s (from response usage)
    prompt_tokens_per_s: float
    busy_fraction: float       # share of the period with >= 1 request in flight
    requests_uncommitted: int = 0  # requests answered in chunks it holds and has not committed yet
    requests_salvaged: int = 0  # answered requests it kept with partial commits when it had to let chunks go
    notice: str = ""           # the cloud's preemption notice, once it saw one (the reason it stops)
    reported_at_ms: int = 0    # set by the writer (unix ms)


_INT_FIELDS = {f.name for f in fields(WorkerMetrics) if f.type in ("int", int)}
_FLOAT_FIELDS = {f.name for f in fields(WorkerMetrics) if f.type in ("float", float)}


def _decode(raw: dict[str, str]) -> WorkerMetrics:
    values: dict[str, object] = {}
    for f in fields(WorkerMetrics):
        v = raw.get(f.name, "")
        values[f.name] = int(v or 0) if f.name in _INT_FIELDS else float(v or 0) if f.name in _FLOAT_FIELDS else v
    return WorkerMetrics(**values)  # type: ignore[arg-type]


class WorkerMetricsStore:
    """Read and write the worker metrics of one job."""

    def __init__(self, redis_url: str, job_id: str, settings: QueueSettings | None = None) -> None:
        self.job_id = job_id
        self._conn = RedisConnection(redis_url, settings or get_settings().queue)

    def close(self) -> None:
        self._conn.close()

    def report(self, metrics: WorkerMetrics) -> WorkerMetrics:
        """Store a worker's report stamped with the current time; returns what was stored."""
        now_ms = time.time_ns() // 1_000_000
        record = WorkerMetrics(**{**asdict(metrics), "reported_at_ms": now_ms})
        mapping = {k: str(v) for k, v in asdict(record).items()}
        hash_key = keys.job_worker_metrics(self.job_id, metrics.worker_id)
        zset_key = keys.job_workers(self.job_id)

        def write() -> None:
            pipe = self._conn.client.pipeline(transaction=True)
            pipe.hset(hash_key, mapping=mapping)
            pipe.zadd(zset_key, {metrics.worker_id: now_ms})
            pipe.execute()

        self._conn.call(write)
        return record

    def read(self, max_age_s: float | None = None) -> list[WorkerMetrics]:
        """Reports of every worker (only those reported within ``max_age_s``), by worker id."""
        zset_key = keys.job_workers(self.job_id)
        low = "-inf" if max_age_s is None else time.time_ns() // 1_000_000 - int(max_age_s * 1000)
        ids = sorted(self._conn.call(lambda: self._conn.client.zrangebyscore(zset_key, low, "+inf")))
        if not ids:
            return []

        def fetch() -> list[dict[str, str]]:
            pipe = self._conn.client.pipeline(transaction=False)
            for worker_id in ids:
                pipe.hgetall(keys.job_worker_metrics(self.job_id, worker_id))
            return pipe.execute()

        return [_decode(raw) for raw in self._conn.call(fetch) if raw]
