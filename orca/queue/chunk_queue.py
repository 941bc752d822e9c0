"""A job's chunk queue in Redis: leases with fencing generations, attempts, dead letters.

Per chunk (one JSON record in ``keys.job_chunks``): state (pending, leased, done, dead),
attempts charged, generation, owner and pool of the last claim, committed generation,
last error. Every transition is one Lua script in ``orca/queue/scripts`` that also keeps
the job counters (``keys.job_counts``) exactly in step with the sets.

Semantics (the in-memory twin ``orca.queue.memory`` implements the same, and one contract
test suite runs against both):

* **Generation** (fencing token) increases by one on every claim of the chunk.
  ``renew``/``complete``/``fail``/``release`` name a generation; a newer generation on the
  chunk raises ``StaleLeaseError`` and the call changes nothing.
* **A lease holds until it is reaped or the chunk is claimed again.** Its expiry (from
  Redis ``TIME``) only makes it reapable; a worker whose lease expired but was not yet
  reaped may still renew or complete it, because nobody else can hold the chunk.
* **Attempts charged** = failed or expired leases: ``fail`` (either kind) and ``reap``
  charge one each; ``claim`` and ``release`` charge nothing. When a charge brings the
  count to ``max_attempts`` the chunk is dead-lettered with that last error;
  ``fail(retryable=False)`` dead-letters at once. ``Lease.attempt`` = charged + 1.
* Requeue positions: ``release`` puts the chunk at the head (redone first); ``fail`` and
  ``reap`` put it at the tail (a chunk that keeps failing does not block the others).
* **Partial commit** (``split``): a worker that must stop holding a chunk (cancel, SIGTERM,
  budget, preemption notice) writes the answered requests' output under a child chunk and
  hands the rest back as another child, in one fenced step; the parent leaves the counts
  (state ``split``), ``total`` grows by one. Nothing answered is thrown away, and the
  assembler still sees each request in exactly one chunk.
* Repeats are harmless, so a call retried after a lost reply is safe: ``enqueue_many``
  skips known ids; ``complete`` of the committed generation again is a no-op;
  ``fail``/``release`` of a lease that already ended (same generation) return the current
  state and change nothing; ``renew``/``complete`` of a lease that ended are ``STALE``.
  A ``claim`` whose reply is lost leaves leases nobody renews; ``reap`` returns them.
* ``owner``/``pool`` in ``ChunkInfo`` are those of the last claim (kept after it ends;
  ``None`` before the first claim).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from orca.errors import ChunkNotFoundError
from orca.queue import keys
from orca.queue.connection import RedisConnection
from orca.queue.types import COUNT_FIELDS, ChunkInfo, ChunkState, Lease, QueueCounts, split_children
from orca.settings import QueueSettings, get_settings


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def chunk_info_from_record(chunk_id: str, record: dict) -> ChunkInfo:
    """A ``ChunkInfo`` from a chunk's stored JSON record."""
    return ChunkInfo(
        chunk_id=chunk_id,
        state=ChunkState(record["state"]),
        attempts=int(record["attempts"]),
        generation=int(record["gen"]),
        committed_generation=int(record["committed"]) or None,
        owner=record["owner"] or None,
        pool=record["pool"] or None,
        last_error=record["error"] or None,
        split=record.get("split") or None,
    )


class ChunkQueue:
    """The chunk queue of one job, in the Redis at ``redis_url``."""

    def __init__(self, redis_url: str, job_id: str, settings: QueueSettings | None = None) -> None:
        self.job_id = job_id
        self.settings = settings or get_settings().queue
        self._conn = RedisConnection(redis_url, self.settings)
        self._lease_ms = int(self.settings.lease_s * 1000)
        j = job_id  # key names pre-encoded: fewer conversions per call on the hot path
        self._k_pending = keys.job_pending(j).encode()
        self._k_chunks = keys.job_chunks(j).encode()
        self._k_leases = keys.job_leases(j).encode()
        self._k_done = keys.job_done(j).encode()
        self._k_dead = keys.job_dead(j).encode()
        self._k_counts = keys.job_counts(j).encode()
        self._k_draining = keys.job_draining(j).encode()
        self._k_standby = keys.job_standby(j).encode()
        self._k_pool_completions = keys.job_pool_completions(j).encode()
        self._k_splits = keys.job_splits(j).encode()

    # -- lifecycle -----------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ChunkQueue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transitions ---------------------------------------------------------
    def enqueue_many(self, chunk_ids: Iterable[str]) -> int:
        """Queue chunks as pending (in order, at the tail); returns how many were new."""
        ids = list(chunk_ids)
        added = 0
        for batch in _batches(ids, self.settings.enqueue_batch):
            added += int(self._conn.script(
                "enqueue_many", [self._k_chunks, self._k_pending, self._k_counts], batch))
        return added

    def claim(self, worker_id: str, pool: str, n: int = 1) -> list[Lease]:
        """Lease up to ``n`` (at most ``max_claim``) chunks, oldest first; a drained pool gets []."""
        n = max(0, min(n, self.settings.max_claim))
        if n == 0:
            return []
        reply = self._conn.script(
            "claim",
            [self._k_pending, self._k_chunks, self._k_leases, self._k_counts, self._k_draining],
            [worker_id, pool, n, self._lease_ms],
        )
        expires = int(reply[0])
        return [
            Lease(job_id=self.job_id, chunk_id=chunk_id, generation=int(gen), worker_id=worker_id,
                  pool=pool, expires_at_ms=expires, attempt=int(attempts) + 1)
            for chunk_id, gen, attempts in reply[1:]
        ]

    def renew(self, lease: Lease) -> Lease:
        """Extend the lease by ``lease_s`` from now (Redis time); ``StaleLeaseError`` if lost."""
        expires = self._conn.script(
            "renew", [self._k_chunks, self._k_leases], [lease.chunk_id, lease.generation, self._lease_ms])
        return Lease(job_id=lease.job_id, chunk_id=lease.chunk_id, generation=lease.generation,
                     worker_id=lease.worker_id, pool=lease.pool, expires_at_ms=int(expires),
                     attempt=lease.attempt)

    def complete(self, lease: Lease) -> None:
        """Commit the lease's output (its generation) and count it for its pool."""
        self._conn.script(
            "complete",
            [self._k_chunks, self._k_leases, self._k_done, self._k_counts, self._k_pool_completions],
            [lease.chunk_id, lease.generation],
        )

    def fail(self, lease: Lease, error: str, retryable: bool = True) -> ChunkState:
        """Charge an attempt; requeue (retryable, attempts left) or dead-letter. Returns the new state."""
        state = self._conn.script(
            "fail",
            [self._k_chunks, self._k_leases, self._k_pending, self._k_dead, self._k_counts],
            [lease.chunk_id, lease.generation, error[: self.settings.max_error_chars],
             1 if retryable else 0, self.settings.max_attempts],
        )
        return ChunkState(state)

    def split(self, lease: Lease, tag: str) -> tuple[str, str]:
        """Partial commit: keep the answered part (its output already written), hand the rest back.

        The chunk is replaced by ``split_children(chunk_id, tag)``: the answered child is done at
        generation 1, the rest is pending at the head of the queue with the attempts charged so
        far. Fenced like ``complete`` (``StaleLeaseError``); a repeat is a no-op. Returns the children.
        """
        answered, rest = split_children(lease.chunk_id, tag)
        self._conn.script(
            "split",
            [self._k_chunks, self._k_leases, self._k_pending, self._k_done, self._k_counts,
             self._k_pool_completions, self._k_splits],
            [lease.chunk_id, lease.generation, tag, answered, rest],
        )
        return answered, rest

    def release(self, lease: Lease) -> None:
        """Give the chunk back at the head of the queue without charging an attempt."""
        self._conn.script(
            "release", [self._k_chunks, self._k_leases, self._k_pending, self._k_counts],
            [lease.chunk_id, lease.generation])

    def reap(self) -> list[str]:
        """Requeue (one attempt charged) or dead-letter every expired lease; returns their chunk ids."""
        reaped: list[str] = []
        while True:
            batch = self._conn.script(
                "reap", [self._k_leases, self._k_chunks, self._k_pending, self._k_dead, self._k_counts],
                [self.settings.max_attempts, self.settings.reap_batch])
            reaped.extend(batch)
            if len(batch) < self.settings.reap_batch:
                return reaped

    def reclaim(self, worker_id: str, reason: str, charge: bool = True) -> list[str]:
        """Take back every lease ``worker_id`` holds, now: its launcher reported it gone.

        ``charge``: one attempt each, requeued at the tail or dead-lettered (a crash may be the
        chunk's fault); otherwise back at the head with no attempt charged (a preemption is not).
        Its late commits are STALE. Returns the chunk ids.
        """
        return self._conn.script(
            "reclaim", [self._k_leases, self._k_chunks, self._k_pending, self._k_dead, self._k_counts],
            [worker_id, self.settings.max_attempts, reason[: self.settings.max_error_chars], 1 if charge else 0])

    def reclaim_many(self, lost: list[tuple[str, str, bool]]) -> dict[str, list[str]]:
        """``reclaim`` for several workers (worker id, reason, charge) in one round trip; worker id -> chunk ids."""
        if not lost:
            return {}
        keys_ = [self._k_leases, self._k_chunks, self._k_pending, self._k_dead, self._k_counts]

        def run() -> list:
            pipe = self._conn.client.pipeline(transaction=False)
            for worker_id, reason, charge in lost:
                self._conn.queue_script(pipe, "reclaim", keys_, [worker_id, self.settings.max_attempts,
                                                                 reason[: self.settings.max_error_chars], 1 if charge else 0])
            return pipe.execute()

        return {worker_id: list(taken) for (worker_id, _, _), taken in zip(lost, self._conn.call(run))}

    def drain(self, pool: str) -> None:
        """From now on, claims from ``pool`` return nothing (leases it holds are untouched)."""
        self._conn.script("drain", [self._k_draining], [pool, 1])

    def undrain(self, pool: str) -> None:
        """Let ``pool`` claim again."""
        self._conn.script("drain", [self._k_draining], [pool, 0])

    def set_standby(self, pool: str, on: bool) -> None:
        """``on``: burst workers of ``pool`` that find nothing pending wait while chunks are leased
        elsewhere, instead of exiting (a swap's new pool); off: they exit as usual."""
        self._conn.script("drain", [self._k_standby], [pool, 1 if on else 0])  # the same set operation

    # -- reads ---------------------------------------------------------------
    def counts(self) -> QueueCounts:
        """Pending, leased, done, dead and total chunks: one HMGET."""
        values = self._conn.call(lambda: self._conn.client.hmget(self._k_counts, COUNT_FIELDS))
        return QueueCounts(*(int(v or 0) for v in values))

    def chunk(self, chunk_id: str) -> ChunkInfo:
        raw = self._conn.call(lambda: self._conn.client.hget(self._k_chunks, chunk_id))
        if raw is None:
            raise ChunkNotFoundError(chunk_id=chunk_id, job_id=self.job_id)
        return chunk_info_from_record(chunk_id, json.loads(raw))

    def committed_generations(self) -> dict[str, int]:
        """Chunk id -> generation whose output counts, for every done chunk."""
        done = self._conn.call(lambda: self._conn.client.hgetall(self._k_done))
        return {chunk_id: int(gen) for chunk_id, gen in done.items()}

    def dead_chunks(self) -> dict[str, str]:
        """Chunk id -> last error, for every dead-lettered chunk."""
        return self._conn.call(lambda: self._conn.client.hgetall(self._k_dead))

    def splits(self) -> dict[str, str]:
        """Chunk id -> tag of its accepted partial commit (the assembler reads its children from the store)."""
        return self._conn.call(lambda: self._conn.client.hgetall(self._k_splits))

    def pool_completions(self) -> dict[str, int]:
        """Pool -> chunks that pool completed."""
        counts = self._conn.call(lambda: self._conn.client.hgetall(self._k_pool_completions))
        return {pool: int(n) for pool, n in counts.items()}

    def draining(self) -> set[str]:
        """Pools currently drained."""
        return self._conn.call(lambda: self._conn.client.smembers(self._k_draining))

    def standby(self) -> set[str]:
        """Pools on standby (see ``set_standby``)."""
        return self._conn.call(lambda: self._conn.client.smembers(self._k_standby))

    def delete(self) -> None:
        """Remove every key of the job: the fixed keys and any other ``orca:{job}:*`` key."""
        client = self._conn.client
        pattern = _glob_escape(keys.job_prefix(self.job_id)) + "*"

        def run() -> None:
            names = set(keys.job_keys(self.job_id))
            names.update(client.scan_iter(match=pattern, count=1000))
            for batch in _batches(sorted(names), 500):
                client.unlink(*batch)

        self._conn.call(run)


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so a job id matches only itself in SCAN MATCH."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
