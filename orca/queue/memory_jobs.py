"""In-memory twin of ``JobRegistry`` for the simulated cloud and unit tests (a fake: no Redis).

It holds the part of the registry the control loop uses -- job records (``create_job``, ``get``,
``find``, ``job_ids``, ``statuses``, ``update``, ``transition``), the per-job controller ``lock``,
batch locks (``lock_and_read``), controller heartbeats, replicas, events and worker metrics, and no files -- with the same semantics and errors; the
contract tests of ``tests/integration/test_jobs_registry.py`` (fixture ``any_reg``) run against
both, so the twin cannot drift. Job fields are stored as JSON values (each read is a fresh copy),
so a caller never shares mutable state with the store. Differences on purpose: time comes from an
injected clock (``orca.clock``), and the lock never expires (one process, one controller).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic_core import to_jsonable_python

from orca.clock import SYSTEM_CLOCK, Clock
from orca.errors import JobNotFoundError, JobStateError
from orca.fleet import Replica
from orca.models import JobStatus
from orca.queue.jobs import JobRecord, JobSnapshot
from orca.settings import Settings, get_settings


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    """Field values as Redis would hand them back: JSON values (models dumped), copied."""
    return json.loads(json.dumps(to_jsonable_python(fields)))


def _copy(replica: Replica) -> Replica:
    """A copy (every field of a Replica is immutable, so a shallow one is a full one)."""
    out = object.__new__(Replica)
    out.__dict__.update(replica.__dict__)
    return out


class MemoryJobRegistry:
    """Job, replica, event and worker-metrics records of one simulated control plane."""

    redis_url = "memory://"

    def __init__(self, settings: Settings | None = None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings or get_settings()
        self.clock = clock
        self._jobs: dict[str, dict[str, Any]] = {}
        self._locks: set[str] = set()
        self._replicas: dict[str, dict[str, Replica]] = {}
        self._events: dict[str, list[dict]] = {}
        self._metrics: dict[str, dict[str, dict[str, str]]] = {}
        self._seen: dict[str, dict[str, float]] = {}
        self._controllers: dict[str, float] = {}

    def close(self) -> None:
        """Nothing to close; present for API parity."""

    # -- jobs -----------------------------------------------------------
    def create_job(self, record: JobRecord) -> JobRecord:
        self._jobs[record.id] = record.model_dump(mode="json")
        return record

    def get(self, job_id: str) -> JobRecord:
        raw = self._jobs.get(job_id)
        if raw is None:
            raise JobNotFoundError(job_id=job_id)
        return JobRecord.model_validate_json(json.dumps(raw))

    def find(self, job_id: str) -> JobRecord | None:
        try:
            return self.get(job_id)
        except JobNotFoundError:
            return None

    def job_ids(self) -> list[str]:
        return sorted(self._jobs)

    def statuses(self) -> dict[str, JobStatus]:
        return {job_id: JobStatus(raw["status"]) for job_id, raw in sorted(self._jobs.items())}

    def update(self, job_id: str, **fields: Any) -> None:
        if "status" in fields:
            raise ValueError("status changes go through transition()")
        if not fields:
            return
        if job_id not in self._jobs:
            raise JobNotFoundError(job_id=job_id)
        self._jobs[job_id].update(_plain(fields))

    def transition(self, job_id: str, target: JobStatus, allowed: Callable[[JobStatus, JobStatus], bool],
                   stamp: str | None = None, now: float | None = None, event: tuple[str, str] | None = None,
                   **fields: Any) -> JobRecord:
        raw = self._jobs.get(job_id)
        if raw is None:
            raise JobNotFoundError(job_id=job_id)
        current = JobStatus(raw["status"])
        if not allowed(current, target):
            raise JobStateError(f"a {current.value} job cannot become {target.value}", status=current.value)
        when = self.clock.time() if now is None else now
        extra = dict(fields)
        if stamp:
            extra[stamp] = when
        raw.update(_plain({"status": target.value, **extra}))
        if event is not None:
            self._push_event(job_id, event[0], event[1], when)
        return self.get(job_id)

    @contextmanager
    def lock(self, job_id: str, ttl_s: float | None = None) -> Iterator[bool]:
        """The job's controller lock for one tick; yields False while another holder has it."""
        if job_id in self._locks:
            yield False
            return
        self._locks.add(job_id)
        try:
            yield True
        finally:
            self._locks.discard(job_id)

    def lock_and_read(self, job_ids: list[str], ttl_s: float | None = None) -> tuple[dict[str, str], dict[str, JobSnapshot]]:
        """``JobRegistry.lock_and_read``: the locks taken and the snapshots of those jobs (no chunk
        counts here: the twin holds no queue, so the controller reads them from its queue)."""
        taken: dict[str, str] = {}
        snapshots: dict[str, JobSnapshot] = {}
        for job_id in job_ids:
            if job_id in self._locks:
                continue
            self._locks.add(job_id)
            taken[job_id] = job_id
            if job_id in self._jobs:
                snapshots[job_id] = JobSnapshot(record=self.get(job_id), replicas=self.replicas(job_id), counts=None)
        return taken, snapshots

    def relock_many(self, tokens: dict[str, str], ttl_s: float | None = None) -> set[str]:
        return {job_id for job_id in tokens if job_id in self._locks}

    def unlock_many(self, tokens: dict[str, str]) -> None:
        for job_id in tokens:
            self._locks.discard(job_id)

    def server_run_id(self) -> str:
        """The twin's "server" never restarts (``JobRegistry.server_run_id`` changes when Redis does)."""
        return "memory"

    # -- controllers ------------------------------------------------------
    def heartbeat(self, controller_id: str, now: float | None = None) -> None:
        self._controllers[controller_id] = self.clock.time() if now is None else now

    def controllers(self, since: float) -> set[str]:
        return {c for c, t in self._controllers.items() if t >= since}

    # -- replicas -------------------------------------------------------
    def put_replica(self, replica: Replica) -> None:
        self._replicas.setdefault(replica.job_id, {})[replica.replica_id] = _copy(replica)

    def put_replicas(self, replicas: list[Replica]) -> None:
        for replica in replicas:
            self.put_replica(replica)

    def replicas(self, job_id: str) -> list[Replica]:
        reps = [_copy(r) for r in self._replicas.get(job_id, {}).values()]
        return sorted(reps, key=lambda r: (r.created_at, r.replica_id))

    # -- workers ----------------------------------------------------------
    def report_worker(self, job_id: str, worker_id: str, metrics: dict[str, str], at: float | None = None) -> None:
        """What ``WorkerMetricsStore.write`` does for a real worker: its last report and when it came."""
        self._metrics.setdefault(job_id, {}).setdefault(worker_id, {}).update(metrics)
        self._seen.setdefault(job_id, {})[worker_id] = self.clock.time() if at is None else at

    def worker_last_seen(self, job_id: str) -> dict[str, float]:
        return dict(self._seen.get(job_id, {}))

    def worker_metrics(self, job_id: str, worker_id: str) -> dict[str, str]:
        return dict(self._metrics.get(job_id, {}).get(worker_id, {}))

    def workers_metrics(self, job_id: str, worker_ids: list[str]) -> list[dict[str, str]]:
        return [self.worker_metrics(job_id, w) for w in worker_ids]

    # -- events ---------------------------------------------------------
    def add_events(self, job_id: str, events: list[tuple[str, str]]) -> None:
        for kind, message in events:
            self.add_event(job_id, kind, message)

    def add_event(self, job_id: str, kind: str, message: str, **data: Any) -> None:
        self._push_event(job_id, kind, message, self.clock.time(), **data)

    def _push_event(self, job_id: str, kind: str, message: str, when: float, **data: Any) -> None:
        events = self._events.setdefault(job_id, [])
        events.append(json.loads(json.dumps({"t": when, "kind": kind, "message": message, **data}, default=str)))
        del events[: max(0, len(events) - self.settings.control.max_events)]

    def events(self, job_id: str) -> list[dict]:
        return [dict(e) for e in self._events.get(job_id, [])]

    # -- files ------------------------------------------------------------
    def expired_file_ids(self, now: float, limit: int) -> list[str]:
        """The twin holds no files (the simulated control plane never uploads any)."""
        return []
