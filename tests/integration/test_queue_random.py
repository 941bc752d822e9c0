"""Randomized workers against both queue backends: crashes, late stale completions, retries.

Many simulated workers claim, renew, complete, fail, release, and sometimes freeze (stop
renewing; half the time their launcher reports them gone and their leases are reclaimed at
once) and wake up later to complete leases that were reaped or reclaimed and re-claimed meanwhile.
At the end every chunk is done exactly once or dead, and the accepted completions are
exactly the done chunks with exactly the committed generations.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from orca.errors import StaleLeaseError
from orca.queue import ChunkState, Lease
from tests.integration.test_queue_contract import Backend, assert_consistent, backend  # noqa: F401
from tests.integration.test_queue_redis import assert_redis_structure

STEP_S = 0.02
LEASE_S = 0.1  # five steps


@dataclass
class SimWorker:
    worker_id: str
    leases: list[Lease] = field(default_factory=list)
    frozen_until: int = -1  # step at which a frozen worker wakes up


@dataclass
class Outcome:
    accepted: dict[str, list[int]] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)

    def accept(self, lease: Lease) -> None:
        self.accepted.setdefault(lease.chunk_id, []).append(lease.generation)


def try_complete(q, lease: Lease, out: Outcome, kind: str) -> None:
    try:
        q.complete(lease)
    except StaleLeaseError:
        out.stats[f"stale_{kind}"] += 1
    else:
        out.accept(lease)
        out.stats[f"accepted_{kind}"] += 1


def simulate(backend: Backend, seed: int, n_chunks: int, n_workers: int, steps: int,
             max_attempts: int, p_fatal: float) -> Outcome:
    rng = random.Random(seed)
    q = backend.make(f"sim{seed}", lease_s=LEASE_S, max_attempts=max_attempts)
    q.enqueue_many([f"c{i:03d}" for i in range(n_chunks)])
    workers = [SimWorker(f"w{i}") for i in range(n_workers)]
    out = Outcome()
    for step in range(steps):
        if q.counts().finished:
            break
        backend.advance(STEP_S)
        q.reap()
        rng.shuffle(workers)
        for w in workers:
            if w.frozen_until > step:
                continue
            if w.frozen_until == step:  # wakes up and finishes what it was doing, too late or not
                for lease in w.leases:
                    try_complete(q, lease, out, "late")
                w.leases = []
            if rng.random() < 0.03:
                w.frozen_until = step + rng.randint(3, 15)
                if rng.random() < 0.5:  # its launcher reports it gone: the leases come back before they expire
                    out.stats["reclaimed"] += len(q.reclaim(w.worker_id, "launcher reports the worker gone", charge=rng.random() < 0.5))
                continue
            if not w.leases:
                w.leases = q.claim(w.worker_id, f"pool{rng.randint(0, 1)}", n=rng.randint(1, 3))
                continue
            kept = []
            for lease in w.leases:
                roll = rng.random()
                try:
                    if roll < 0.35:
                        try_complete(q, lease, out, "live")
                    elif roll < 0.45:
                        q.fail(lease, "transient engine error")
                    elif roll < 0.45 + p_fatal:
                        q.fail(lease, "bad request", retryable=False)
                    elif roll < 0.50 + p_fatal:
                        q.release(lease)
                    else:
                        kept.append(q.renew(lease))
                except StaleLeaseError:  # reaped while this worker was slow: drop it
                    out.stats["stale_other"] += 1
            w.leases = kept
    for w in workers:  # every frozen worker wakes up at the end
        for lease in w.leases:
            try_complete(q, lease, out, "late")
    finisher = 0
    while not q.counts().finished:
        backend.advance(LEASE_S + STEP_S)
        q.reap()
        for lease in q.claim("finisher", "pool0", n=32):
            try_complete(q, lease, out, "live")
        finisher += 1
        assert finisher < 50, q.counts()
    assert_consistent(q)
    if backend.url is not None:
        assert_redis_structure(backend.url, f"sim{seed}")

    counts = q.counts()
    committed = q.committed_generations()
    assert counts.total == n_chunks and counts.done + counts.dead == n_chunks
    for chunk_id in (f"c{i:03d}" for i in range(n_chunks)):
        state = q.chunk(chunk_id).state
        assert state in (ChunkState.DONE, ChunkState.DEAD)
        gens = out.accepted.get(chunk_id, [])
        assert len(gens) == (1 if state is ChunkState.DONE else 0), (chunk_id, gens)
    assert sum(len(g) for g in out.accepted.values()) == counts.done == len(committed)
    assert committed == {chunk_id: gens[0] for chunk_id, gens in out.accepted.items()}
    assert sum(q.pool_completions().values()) == counts.done
    out.stats["dead"] = counts.dead
    return out


@pytest.mark.parametrize("seed", [7, 8])
def test_random_workers_with_deaths(backend: Backend, seed: int) -> None:
    out = simulate(backend, seed, n_chunks=100, n_workers=8, steps=150, max_attempts=2, p_fatal=0.01)
    assert out.stats["stale_late"] > 0  # fencing was exercised: late completions were refused
    assert out.stats["reclaimed"] > 0
    assert out.stats["dead"] > 0


def test_random_workers_without_deaths_finish_every_chunk(backend: Backend) -> None:
    out = simulate(backend, 11, n_chunks=100, n_workers=8, steps=150, max_attempts=1000, p_fatal=0.0)
    assert out.stats["dead"] == 0
    assert sum(len(g) for g in out.accepted.values()) == 100
    assert out.stats["stale_late"] > 0
