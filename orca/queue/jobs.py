"""The job registry: the only place job, replica, event, token and file records touch Redis.

Redis is the control plane's source of truth, so a restarted server reads back every job
from here. A job is one hash (``keys.job_meta``) with one JSON-encoded field per attribute:
writers that touch different attributes (the controller's progress, a user's cancel) never
overwrite each other, and a status change is a WATCH/MULTI transaction checked against the
lifecycle table passed in by the caller.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from orca.errors import JobNotFoundError, JobStateError
from orca.fleet import Pool, Replica
from orca.models import JobStatus
from orca.queue import keys
from orca.queue.connection import RedisConnection
from orca.queue.types import COUNT_FIELDS, QueueCounts
from orca.queue.users import UserStore, hash_token, new_token
from orca.settings import Settings, get_settings


class JobRecord(BaseModel):
    """Everything the control plane knows about a job (extra fields survive round trips)."""

    model_config = ConfigDict(extra="allow")

    id: str
    user: str
    status: JobStatus
    created_at: float
    deadline_at: float
    spec: dict = Field(default_factory=dict)
    model: str | None = None
    endpoint: str | None = None
    launcher: str | None = None
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: float | None = None
    finalizing_at: float | None = None
    completed_at: float | None = None
    failed_at: float | None = None
    cancelling_at: float | None = None
    cancelled_at: float | None = None
    expired_at: float | None = None
    n_requests: int = 0
    est_output_tokens: int = 0
    stats: dict | None = None
    settled: bool = False
    chunks_total: int = 0
    plan: dict | None = None
    options: list[dict] = Field(default_factory=list)
    pools: list[Pool] = Field(default_factory=list)
    swaps: list[dict] = Field(default_factory=list)   # orca.control.swap.SwapState records, oldest first
    validation_errors: list[dict] = Field(default_factory=list)
    validation_error_count: int = 0
    output_available: bool = False
    final_counts: dict | None = None
    quote: dict | None = None      # the deadline quote at planning (orca.sim.quote): expected cost, P(deadline met), runs
    final_usage: dict | None = None  # orca.usage.TokenUsage.to_dict() of the assembled job
    message: str = ""
    rate_t0: float | None = None
    rate_done0: int | None = None
    replica_failures: int = 0
    tick_failures: int = 0       # controller ticks in a row that raised on this job
    metadata: dict[str, str] = Field(default_factory=dict)
    output_expires_after_s: int | None = None  # expiry of the output/error files, from their creation
    data_purged: bool = False  # retention deleted the stored data of a job that ended without result files


@dataclass
class JobSnapshot:
    """A job as the controller reads it under its lock: record, replicas and chunk counts."""

    record: JobRecord
    replicas: list[Replica]
    counts: QueueCounts | None   # None: read them from the job's queue (the in-memory twin has none)


class FileRecord(BaseModel):
    """An object the user uploaded or a job produced, addressed like OpenAI's /v1/files."""

    id: str
    user: str
    bytes: int
    created_at: float
    filename: str
    purpose: str
    store_key: str
    job_id: str | None = None
    expires_at: float | None = None  # the retention step deletes the file (record and object) after this
    lines: int | None = None  # lines of an uploaded file, counted as it streamed in (quotas need them before ingest)


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    return {name: json.dumps(to_jsonable_python(value)) for name, value in fields.items()}


def _decode(raw: dict[str, str]) -> dict[str, Any]:
    return {name: json.loads(value) for name, value in raw.items()}


class JobRegistry:
    """Job, replica, event, token and file records of one control plane, in the Redis at ``redis_url``."""

    def __init__(self, redis_url: str, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.redis_url = redis_url
        self._conn = RedisConnection(redis_url, self.settings.queue)
        self._r = self._conn.client
        self.users = UserStore(self._conn)

    def close(self) -> None:
        self._conn.close()

    def ping(self) -> bool:
        return bool(self._conn.call(self._r.ping))

    def server_run_id(self) -> str:
        """The Redis server's run id: it changes when the server restarts (then lease expiries may have passed unseen)."""
        return str(self._conn.call(lambda: self._r.info("server")["run_id"]))

    # -- tokens ---------------------------------------------------------
    def create_token(self, user: str) -> str:
        """A new bearer token for ``user``; only its SHA-256 is stored."""
        token = new_token()
        self._conn.call(lambda: self._r.hset(keys.TOKENS, hash_token(token), user))
        return token

    def user_for_token(self, token: str) -> str | None:
        return self._conn.call(lambda: self._r.hget(keys.TOKENS, hash_token(token)))

    def revoke_token(self, token: str) -> None:
        self._conn.call(lambda: self._r.hdel(keys.TOKENS, hash_token(token)))

    # -- jobs -----------------------------------------------------------
    def create_job(self, record: JobRecord) -> JobRecord:
        fields = _encode(record.model_dump(mode="json"))

        def write() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(keys.job_meta(record.id), mapping=fields)
            pipe.sadd(keys.JOBS, record.id)
            pipe.zadd(keys.user_jobs(record.user), {record.id: record.created_at})
            pipe.execute()

        self._conn.call(write)
        return record

    def get(self, job_id: str) -> JobRecord:
        raw = self._conn.call(lambda: self._r.hgetall(keys.job_meta(job_id)))
        if not raw:
            raise JobNotFoundError(job_id=job_id)
        return JobRecord.model_validate(_decode(raw))

    def find(self, job_id: str) -> JobRecord | None:
        try:
            return self.get(job_id)
        except JobNotFoundError:
            return None

    def job_ids(self) -> list[str]:
        """Every job the control plane knows, in no particular order."""
        return sorted(self._conn.call(lambda: self._r.smembers(keys.JOBS)))

    def user_job_ids(self, user: str) -> list[str]:
        """One user's jobs, newest first."""
        return list(self._conn.call(lambda: self._r.zrevrange(keys.user_jobs(user), 0, -1)))

    def statuses(self) -> dict[str, JobStatus]:
        """job id -> status of every job, in one round trip (for metrics and the controller)."""
        ids = self.job_ids()

        def read() -> list:
            pipe = self._r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(keys.job_meta(job_id), "status")
            return pipe.execute()

        values = self._conn.call(read) if ids else []
        return {job_id: JobStatus(json.loads(v)) for job_id, v in zip(ids, values) if v}

    def update(self, job_id: str, **fields: Any) -> None:
        """Set some attributes of an existing job (never its status: use ``transition``)."""
        if "status" in fields:
            raise ValueError("status changes go through transition()")
        if not fields:
            return
        encoded = _encode(fields)

        def write() -> None:
            with self._r.pipeline(transaction=True) as pipe:
                pipe.watch(keys.job_meta(job_id))
                if not pipe.exists(keys.job_meta(job_id)):
                    pipe.reset()
                    raise JobNotFoundError(job_id=job_id)
                pipe.multi()
                pipe.hset(keys.job_meta(job_id), mapping=encoded)
                pipe.execute()

        self._conn.call(write)

    def transition(
        self,
        job_id: str,
        target: JobStatus,
        allowed: Callable[[JobStatus, JobStatus], bool],
        stamp: str | None = None,
        now: float | None = None,
        event: tuple[str, str] | None = None,
        **fields: Any,
    ) -> JobRecord:
        """Atomically move a job to ``target`` if ``allowed(current, target)``; else JobStateError.

        ``stamp`` names a timestamp attribute set to ``now``; ``fields`` are set and ``event``
        (kind, message) is logged in the same transaction, so a status never changes without its
        event. A concurrent status change makes the transaction retry on the new status.
        """
        meta = keys.job_meta(job_id)
        when = time.time() if now is None else now
        extra = dict(fields)
        if stamp:
            extra[stamp] = when

        def attempt() -> None:
            while True:
                with self._r.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(meta)
                        raw = pipe.hget(meta, "status")
                        if raw is None:
                            raise JobNotFoundError(job_id=job_id)
                        current = JobStatus(json.loads(raw))
                        if not allowed(current, target):
                            raise JobStateError(
                                f"a {current.value} job cannot become {target.value}", status=current.value
                            )
                        pipe.multi()
                        pipe.hset(meta, mapping=_encode({"status": target, **extra}))
                        if event is not None:
                            self._push_event(pipe, job_id, event[0], event[1], when)
                        pipe.execute()
                        return
                    except redis.WatchError:
                        continue

        self._conn.call(attempt)
        return self.get(job_id)

    def delete_job(self, job_id: str) -> None:
        """Forget a job and every key under its hash tag."""
        record = self.find(job_id)

        def drop() -> None:
            doomed = list(self._r.scan_iter(match=keys.job_prefix(job_id) + "*", count=1000))
            pipe = self._r.pipeline(transaction=True)
            if doomed:
                pipe.delete(*doomed)
            pipe.srem(keys.JOBS, job_id)
            if record is not None:
                pipe.zrem(keys.user_jobs(record.user), job_id)
            pipe.execute()

        self._conn.call(drop)

    # -- controller lock ------------------------------------------------
    @contextmanager
    def lock(self, job_id: str, ttl_s: float | None = None) -> Iterator[bool]:
        """Hold the job's controller lock for one tick; yields False if another controller holds it.

        The lock expires after ``ttl_s`` on its own, so a killed controller never blocks a job
        for longer than that; release only deletes the lock if it is still ours.
        """
        ttl_ms = int((ttl_s if ttl_s is not None else self.settings.control.lock_ttl_s) * 1000)
        name = keys.job_lock(job_id)
        token = uuid.uuid4().hex
        acquired = bool(self._conn.call(lambda: self._r.set(name, token, nx=True, px=ttl_ms)))
        try:
            yield acquired
        finally:
            if acquired:  # only if still ours: after an expiry someone else may hold it
                self._conn.script("unlock", [name], [token])

    def lock_and_read(self, job_ids: list[str], ttl_s: float | None = None) -> tuple[dict[str, str], dict[str, JobSnapshot]]:
        """Try the controller lock of every job in ``job_ids`` and read the ones taken, in one round trip.

        Returns (job id -> lock token, for the locks taken; job id -> snapshot, for those of them
        that still exist). Release with ``unlock_many``. The reads are queued after each lock
        attempt, so a snapshot is read under its lock.
        """
        if not job_ids:
            return {}, {}
        ttl_ms = int((ttl_s if ttl_s is not None else self.settings.control.lock_ttl_s) * 1000)
        tokens = {job_id: uuid.uuid4().hex for job_id in job_ids}

        def run() -> list:
            pipe = self._r.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.set(keys.job_lock(job_id), tokens[job_id], nx=True, px=ttl_ms)
                pipe.hgetall(keys.job_meta(job_id))
                pipe.hgetall(keys.job_replicas(job_id))
                pipe.hmget(keys.job_counts(job_id), COUNT_FIELDS)
            return pipe.execute()

        replies = self._conn.call(run)
        taken: dict[str, str] = {}
        snapshots: dict[str, JobSnapshot] = {}
        for i, job_id in enumerate(job_ids):
            got, meta, replicas, counts = replies[4 * i: 4 * i + 4]
            if not got:
                continue
            taken[job_id] = tokens[job_id]
            if meta:
                snapshots[job_id] = JobSnapshot(
                    record=JobRecord.model_validate(_decode(meta)),
                    replicas=sorted((Replica.from_dict(json.loads(v)) for v in replicas.values()),
                                    key=lambda r: (r.created_at, r.replica_id)),
                    counts=QueueCounts(*(int(v or 0) for v in counts)))
        return taken, snapshots

    def relock_many(self, tokens: dict[str, str], ttl_s: float | None = None) -> set[str]:
        """Extend locks taken by ``lock_and_read`` (each only if still ours); the job ids still held."""
        if not tokens:
            return set()
        ttl_ms = int((ttl_s if ttl_s is not None else self.settings.control.lock_ttl_s) * 1000)

        def run() -> list:
            pipe = self._r.pipeline(transaction=False)
            for job_id, token in tokens.items():
                self._conn.queue_script(pipe, "relock", [keys.job_lock(job_id)], [token, ttl_ms])
            return pipe.execute()

        return {job_id for job_id, ok in zip(tokens, self._conn.call(run)) if ok}

    def unlock_many(self, tokens: dict[str, str]) -> None:
        """Release locks taken by ``lock_and_read`` (each only if still ours), in one round trip."""
        if not tokens:
            return

        def run() -> None:
            pipe = self._r.pipeline(transaction=False)
            for job_id, token in tokens.items():
                self._conn.queue_script(pipe, "unlock", [keys.job_lock(job_id)], [token])
            pipe.execute()

        self._conn.call(run)

    # -- controllers ------------------------------------------------------
    def heartbeat(self, controller_id: str, now: float | None = None) -> None:
        """Record that ``controller_id`` is alive (once per tick)."""
        when = time.time() if now is None else now

        def beat() -> None:
            pipe = self._r.pipeline(transaction=False)
            pipe.zadd(keys.CONTROLLERS, {controller_id: when * 1000.0})
            pipe.zremrangebyscore(keys.CONTROLLERS, 0, (when - 86400.0) * 1000.0)  # forget controllers gone a day
            pipe.execute()

        self._conn.call(beat)

    def controllers(self, since: float) -> set[str]:
        """Controllers that reported alive at or after ``since`` (unix seconds)."""
        return set(self._conn.call(lambda: self._r.zrangebyscore(keys.CONTROLLERS, since * 1000.0, "+inf")))

    # -- replicas -------------------------------------------------------
    def put_replica(self, replica: Replica) -> None:
        data = json.dumps(replica.to_dict())
        self._conn.call(lambda: self._r.hset(keys.job_replicas(replica.job_id), replica.replica_id, data))

    def put_replicas(self, replicas: list[Replica]) -> None:
        """Write several replica records of one job in one round trip."""
        if not replicas:
            return
        mapping = {r.replica_id: json.dumps(r.to_dict()) for r in replicas}
        self._conn.call(lambda: self._r.hset(keys.job_replicas(replicas[0].job_id), mapping=mapping))

    def replicas(self, job_id: str) -> list[Replica]:
        raw = self._conn.call(lambda: self._r.hgetall(keys.job_replicas(job_id)))
        reps = [Replica.from_dict(json.loads(v)) for v in raw.values()]
        return sorted(reps, key=lambda r: (r.created_at, r.replica_id))

    # -- workers (reported by the worker processes themselves) ---------------
    def worker_metrics(self, job_id: str, worker_id: str) -> dict[str, str]:
        return self._conn.call(lambda: self._r.hgetall(keys.job_worker_metrics(job_id, worker_id)))

    def workers_metrics(self, job_id: str, worker_ids: list[str]) -> list[dict[str, str]]:
        """The latest metrics report of each worker (empty for one that has not reported), in one round trip."""
        if not worker_ids:
            return []

        def fetch() -> list[dict[str, str]]:
            pipe = self._r.pipeline(transaction=False)
            for worker_id in worker_ids:
                pipe.hgetall(keys.job_worker_metrics(job_id, worker_id))
            return pipe.execute()

        return self._conn.call(fetch)

    # -- events ---------------------------------------------------------
    def add_event(self, job_id: str, kind: str, message: str, **data: Any) -> None:
        def write() -> None:
            pipe = self._r.pipeline(transaction=True)
            self._push_event(pipe, job_id, kind, message, time.time(), **data)
            pipe.execute()

        self._conn.call(write)

    def add_events(self, job_id: str, events: list[tuple[str, str]]) -> None:
        """Several (kind, message) events of one job in one round trip."""
        if not events:
            return

        def write() -> None:
            pipe = self._r.pipeline(transaction=True)
            now = time.time()
            for kind, message in events:
                self._push_event(pipe, job_id, kind, message, now)
            pipe.execute()

        self._conn.call(write)

    def _push_event(self, pipe: Any, job_id: str, kind: str, message: str, when: float, **data: Any) -> None:
        """Queue the writes of one capped event on ``pipe``."""
        event = json.dumps({"t": when, "kind": kind, "message": message, **data}, default=str)
        pipe.rpush(keys.job_events(job_id), event)
        pipe.ltrim(keys.job_events(job_id), -self.settings.control.max_events, -1)

    def events(self, job_id: str) -> list[dict]:
        raw = self._conn.call(lambda: self._r.lrange(keys.job_events(job_id), 0, -1))
        return [json.loads(e) for e in raw]

    # -- files ----------------------------------------------------------
    def put_file(self, record: FileRecord) -> FileRecord:
        def write() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(keys.FILES, record.id, record.model_dump_json())
            pipe.zadd(keys.user_files(record.user), {record.id: record.created_at})
            if record.expires_at is not None:
                pipe.zadd(keys.FILES_EXPIRY, {record.id: record.expires_at})
            pipe.execute()

        self._conn.call(write)
        return record

    def get_file(self, file_id: str) -> FileRecord | None:
        raw = self._conn.call(lambda: self._r.hget(keys.FILES, file_id))
        return FileRecord.model_validate_json(raw) if raw else None

    def user_file_ids(self, user: str) -> list[str]:
        """One user's files, newest first."""
        return list(self._conn.call(lambda: self._r.zrevrange(keys.user_files(user), 0, -1)))

    def delete_file(self, record: FileRecord) -> None:
        def drop() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.hdel(keys.FILES, record.id)
            pipe.zrem(keys.user_files(record.user), record.id)
            pipe.zrem(keys.FILES_EXPIRY, record.id)
            pipe.execute()

        self._conn.call(drop)

    def expired_file_ids(self, now: float, limit: int) -> list[str]:
        """Up to ``limit`` ids of files whose ``expires_at`` is at or before ``now``, soonest first."""
        return list(self._conn.call(lambda: self._r.zrangebyscore(keys.FILES_EXPIRY, "-inf", now, start=0, num=limit)))

    def forget_expiry(self, file_id: str) -> None:
        """Drop a file id from the expiry worklist (its record is already gone)."""
        self._conn.call(lambda: self._r.zrem(keys.FILES_EXPIRY, file_id))
