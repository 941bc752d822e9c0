"""In-memory twin of ``ChunkQueue`` for unit tests of other parts (a fake: no Redis).

Same methods, same semantics (see ``orca.queue.chunk_queue``'s docstring), same errors;
the contract suite in ``tests/integration/test_queue_contract.py`` runs against both so
the twin cannot drift. Differences on purpose: time comes from a clock you control
(``ManualClock`` by default, so leases expire only when a test advances it), and several
queues share state only through one ``MemoryQueueServer`` (the stand-in for one Redis).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from orca.errors import ChunkNotFoundError, StaleLeaseError
from orca.queue.types import ChunkInfo, ChunkState, Lease, QueueCounts, split_children
from orca.settings import QueueSettings, get_settings


class Clock(Protocol):
    def now_ms(self) -> int: ...


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._ms = start_ms

    def now_ms(self) -> int:
        return self._ms

    def advance(self, seconds: float) -> None:
        self._ms += int(seconds * 1000)


class SystemClock:
    """Wall-clock time, for tests that run real workers against the twin."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass
class _Chunk:
    state: ChunkState = ChunkState.PENDING
    attempts: int = 0
    gen: int = 0
    owner: str = ""
    pool: str = ""
    committed: int = 0
    error: str = ""
    split: str = ""


@dataclass
class _Job:
    chunks: dict[str, _Chunk] = field(default_factory=dict)
    pending: deque[str] = field(default_factory=deque)
    leases: dict[str, int] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    dead: dict[str, str] = field(default_factory=dict)
    draining: set[str] = field(default_factory=set)
    standby: set[str] = field(default_factory=set)
    pool_completions: Counter[str] = field(default_factory=Counter)
    splits: dict[str, str] = field(default_factory=dict)


class MemoryQueueServer:
    """Stands in for one Redis: every job's queue state, one clock, one lock."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or ManualClock()
        self.lock = threading.RLock()
        self.jobs: dict[str, _Job] = {}


def _stale(chunk_id: str, gen: int, c: _Chunk) -> StaleLeaseError:
    return StaleLeaseError(detail=f"{chunk_id} generation {gen} (now {c.state.value} at generation {c.gen})")


class MemoryChunkQueue:
    """The chunk queue of one job, held in a ``MemoryQueueServer``."""

    def __init__(self, job_id: str, settings: QueueSettings | None = None,
                 server: MemoryQueueServer | None = None) -> None:
        self.job_id = job_id
        self.settings = settings or get_settings().queue
        self.server = server or MemoryQueueServer()
        self._lease_ms = int(self.settings.lease_s * 1000)

    @property
    def _job(self) -> _Job:
        return self.server.jobs.setdefault(self.job_id, _Job())

    def _get(self, chunk_id: str) -> _Chunk:
        c = self._job.chunks.get(chunk_id)
        if c is None:
            raise ChunkNotFoundError(chunk_id=chunk_id)
        return c

    def close(self) -> None:
        """Nothing to close; present for API parity."""

    def __enter__(self) -> "MemoryChunkQueue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transitions ---------------------------------------------------------
    def enqueue_many(self, chunk_ids: Iterable[str]) -> int:
        with self.server.lock:
            job, added = self._job, 0
            for chunk_id in chunk_ids:
                if chunk_id not in job.chunks:
                    job.chunks[chunk_id] = _Chunk()
                    job.pending.append(chunk_id)
                    added += 1
            return added

    def claim(self, worker_id: str, pool: str, n: int = 1) -> list[Lease]:
        n = max(0, min(n, self.settings.max_claim))
        with self.server.lock:
            job = self._job
            if n == 0 or pool in job.draining:
                return []
            expires = self.server.clock.now_ms() + self._lease_ms
            leases = []
            while job.pending and len(leases) < n:
                chunk_id = job.pending.popleft()
                c = job.chunks[chunk_id]
                c.state, c.gen, c.owner, c.pool = ChunkState.LEASED, c.gen + 1, worker_id, pool
                job.leases[chunk_id] = expires
                leases.append(Lease(job_id=self.job_id, chunk_id=chunk_id, generation=c.gen, worker_id=worker_id,
                                    pool=pool, expires_at_ms=expires, attempt=c.attempts + 1))
            return leases

    def renew(self, lease: Lease) -> Lease:
        with self.server.lock:
            c = self._get(lease.chunk_id)
            if c.state is not ChunkState.LEASED or c.gen != lease.generation:
                raise _stale(lease.chunk_id, lease.generation, c)
            expires = self.server.clock.now_ms() + self._lease_ms
            self._job.leases[lease.chunk_id] = expires
            return Lease(job_id=lease.job_id, chunk_id=lease.chunk_id, generation=lease.generation,
                         worker_id=lease.worker_id, pool=lease.pool, expires_at_ms=expires, attempt=lease.attempt)

    def complete(self, lease: Lease) -> None:
        with self.server.lock:
            c = self._get(lease.chunk_id)
            if c.state is ChunkState.DONE and c.committed == lease.generation:
                return
            if c.state is not ChunkState.LEASED or c.gen != lease.generation:
                raise _stale(lease.chunk_id, lease.generation, c)
            job = self._job
            c.state, c.committed = ChunkState.DONE, lease.generation
            del job.leases[lease.chunk_id]
            job.done[lease.chunk_id] = lease.generation
            job.pool_completions[c.pool] += 1

    def fail(self, lease: Lease, error: str, retryable: bool = True) -> ChunkState:
        with self.server.lock:
            c = self._get(lease.chunk_id)
            if c.gen != lease.generation:
                raise _stale(lease.chunk_id, lease.generation, c)
            if c.state is not ChunkState.LEASED:
                return c.state
            error = error[: self.settings.max_error_chars]
            job = self._job
            c.attempts += 1
            c.error = error
            del job.leases[lease.chunk_id]
            if not retryable or c.attempts >= self.settings.max_attempts:
                c.state = ChunkState.DEAD
                job.dead[lease.chunk_id] = error
            else:
                c.state = ChunkState.PENDING
                job.pending.append(lease.chunk_id)
            return c.state

    def split(self, lease: Lease, tag: str) -> tuple[str, str]:
        answered, rest = split_children(lease.chunk_id, tag)
        with self.server.lock:
            c = self._get(lease.chunk_id)
            if c.state is ChunkState.SPLIT and c.gen == lease.generation and c.split == tag:
                return answered, rest
            if c.state is not ChunkState.LEASED or c.gen != lease.generation:
                raise _stale(lease.chunk_id, lease.generation, c)
            job = self._job
            c.state, c.split = ChunkState.SPLIT, tag
            del job.leases[lease.chunk_id]
            job.splits[lease.chunk_id] = tag
            job.chunks[answered] = _Chunk(state=ChunkState.DONE, attempts=c.attempts, gen=1, owner=c.owner,
                                          pool=c.pool, committed=1)
            job.done[answered] = 1
            job.chunks[rest] = _Chunk(attempts=c.attempts)
            job.pending.appendleft(rest)
            job.pool_completions[c.pool] += 1
            return answered, rest

    def release(self, lease: Lease) -> None:
        with self.server.lock:
            c = self._get(lease.chunk_id)
            if c.gen != lease.generation:
                raise _stale(lease.chunk_id, lease.generation, c)
            if c.state is not ChunkState.LEASED:
                return
            job = self._job
            c.state = ChunkState.PENDING
            del job.leases[lease.chunk_id]
            job.pending.appendleft(lease.chunk_id)

    def reap(self) -> list[str]:
        with self.server.lock:
            job, now = self._job, self.server.clock.now_ms()
            expired = sorted((exp, chunk_id) for chunk_id, exp in job.leases.items() if exp <= now)
            for _, chunk_id in expired:
                c = job.chunks[chunk_id]
                self._take_back(job, chunk_id, f"lease expired: worker {c.owner} (pool {c.pool}) stopped renewing generation {c.gen}")
            return [chunk_id for _, chunk_id in expired]

    def reclaim(self, worker_id: str, reason: str, charge: bool = True) -> list[str]:
        with self.server.lock:
            job = self._job
            taken = sorted((exp, chunk_id) for chunk_id, exp in job.leases.items() if job.chunks[chunk_id].owner == worker_id)
            for _, chunk_id in taken:
                c = job.chunks[chunk_id]
                self._take_back(job, chunk_id, f"worker {c.owner} (pool {c.pool}) lost generation {c.gen}: "
                                f"{reason[: self.settings.max_error_chars]}", charge)
            return [chunk_id for _, chunk_id in taken]

    def reclaim_many(self, lost: list[tuple[str, str, bool]]) -> dict[str, list[str]]:
        return {worker_id: self.reclaim(worker_id, reason, charge) for worker_id, reason, charge in lost}

    def _take_back(self, job, chunk_id: str, error: str, charge: bool = True) -> None:
        """End a lease the worker lost (as reap.lua / reclaim.lua do): charged, requeue at the tail or
        dead-letter after max_attempts; uncharged, back at the head."""
        c = job.chunks[chunk_id]
        c.error = error
        del job.leases[chunk_id]
        if charge:
            c.attempts += 1
        if charge and c.attempts >= self.settings.max_attempts:
            c.state = ChunkState.DEAD
            job.dead[chunk_id] = c.error
            return
        c.state = ChunkState.PENDING
        if charge:
            job.pending.append(chunk_id)
        else:
            job.pending.appendleft(chunk_id)

    def drain(self, pool: str) -> None:
        with self.server.lock:
            self._job.draining.add(pool)

    def undrain(self, pool: str) -> None:
        with self.server.lock:
            self._job.draining.discard(pool)

    def set_standby(self, pool: str, on: bool) -> None:
        with self.server.lock:
            (self._job.standby.add if on else self._job.standby.discard)(pool)

    # -- reads ---------------------------------------------------------------
    def counts(self) -> QueueCounts:
        with self.server.lock:
            job = self._job
            return QueueCounts(pending=len(job.pending), leased=len(job.leases), done=len(job.done),
                               dead=len(job.dead), total=len(job.chunks) - len(job.splits))

    def chunk(self, chunk_id: str) -> ChunkInfo:
        with self.server.lock:
            c = self._get(chunk_id)
            return ChunkInfo(chunk_id=chunk_id, state=c.state, attempts=c.attempts, generation=c.gen,
                             committed_generation=c.committed or None, owner=c.owner or None,
                             pool=c.pool or None, last_error=c.error or None, split=c.split or None)

    def committed_generations(self) -> dict[str, int]:
        with self.server.lock:
            return dict(self._job.done)

    def dead_chunks(self) -> dict[str, str]:
        with self.server.lock:
            return dict(self._job.dead)

    def splits(self) -> dict[str, str]:
        with self.server.lock:
            return dict(self._job.splits)

    def pool_completions(self) -> dict[str, int]:
        with self.server.lock:
            return dict(self._job.pool_completions)

    def draining(self) -> set[str]:
        with self.server.lock:
            return set(self._job.draining)

    def standby(self) -> set[str]:
        with self.server.lock:
            return set(self._job.standby)

    def delete(self) -> None:
        with self.server.lock:
            self.server.jobs.pop(self.job_id, None)
