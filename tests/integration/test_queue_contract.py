"""The chunk queue contract, run against the real redis-server and the in-memory twin.

Time: the Redis backend uses 0.2 s leases and really sleeps; the twin advances its clock.
Every test ends by checking that counts agree with every chunk's state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable

import pytest

from orca.errors import ChunkNotFoundError, StaleLeaseError
from orca.queue import ChunkQueue, ChunkState, Lease, ManualClock, MemoryChunkQueue, MemoryQueueServer
from orca.queue.types import split_children
from orca.settings import QueueSettings

LEASE_S = 0.2


@dataclass
class Backend:
    name: str
    make: Callable[..., ChunkQueue | MemoryChunkQueue]
    advance: Callable[[float], None]
    url: str | None = None

    def expire(self) -> None:
        """Let every lease taken or renewed so far run out."""
        self.advance(LEASE_S + 0.05)


@pytest.fixture(params=["redis", "memory"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    def settings(**overrides: object) -> QueueSettings:
        return QueueSettings(**{"lease_s": LEASE_S, "max_attempts": 3, **overrides})

    opened: list = []
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")

        def make(job: str = "job", **overrides: object) -> ChunkQueue:
            q = ChunkQueue(url, job, settings(**overrides))
            opened.append(q)
            return q

        yield Backend("redis", make, time.sleep, url)
    else:
        server = MemoryQueueServer(ManualClock())

        def make(job: str = "job", **overrides: object) -> MemoryChunkQueue:
            q = MemoryChunkQueue(job, settings(**overrides), server=server)
            opened.append(q)
            return q

        yield Backend("memory", make, server.clock.advance)  # type: ignore[attr-defined]
    for q in opened:
        assert_consistent(q)
        q.close()


def assert_consistent(q: ChunkQueue | MemoryChunkQueue) -> None:
    """Counters equal the per-chunk states; done/dead maps agree with the chunk records."""
    counts = q.counts()
    committed = q.committed_generations()
    dead = q.dead_chunks()
    splits = q.splits()
    assert counts.done == len(committed)
    assert counts.dead == len(dead)
    assert counts.total == counts.pending + counts.leased + counts.done + counts.dead
    for chunk_id, tag in splits.items():
        info = q.chunk(chunk_id)
        assert info.state is ChunkState.SPLIT and info.split == tag
    for chunk_id, gen in committed.items():
        info = q.chunk(chunk_id)
        assert info.state is ChunkState.DONE and info.committed_generation == gen
    for chunk_id, error in dead.items():
        info = q.chunk(chunk_id)
        assert info.state is ChunkState.DEAD and info.last_error == error


def ids(leases: list[Lease]) -> list[str]:
    return [lease.chunk_id for lease in leases]


def test_enqueue_is_fifo_and_idempotent(backend: Backend) -> None:
    q = backend.make()
    assert q.enqueue_many(["a", "b", "c"]) == 3
    assert q.enqueue_many(["b", "d", "d"]) == 1
    counts = q.counts()
    assert (counts.pending, counts.leased, counts.done, counts.dead, counts.total) == (4, 0, 0, 0, 4)
    assert not counts.finished
    assert ids(q.claim("w", "p", n=10)) == ["a", "b", "c", "d"]
    assert q.claim("w", "p") == []


def test_enqueue_in_several_script_calls(backend: Backend) -> None:
    q = backend.make(enqueue_batch=7)
    chunk_ids = [f"c{i:03d}" for i in range(50)]
    assert q.enqueue_many(chunk_ids) == 50
    assert ids(q.claim("w", "p", n=50)) == chunk_ids[:32]  # max_claim caps a claim


def test_claim_leases_and_bumps_generation(backend: Backend) -> None:
    q = backend.make()
    q.enqueue_many(["a", "b", "c"])
    leases = q.claim("w1", "spot", n=2)
    assert ids(leases) == ["a", "b"]
    for lease in leases:
        assert (lease.job_id, lease.worker_id, lease.pool, lease.generation, lease.attempt) == ("job", "w1", "spot", 1, 1)
    assert leases[0].expires_at_ms == leases[1].expires_at_ms
    info = q.chunk("a")
    assert (info.state, info.generation, info.owner, info.pool, info.attempts) == (ChunkState.LEASED, 1, "w1", "spot", 0)
    assert q.chunk("c").owner is None and q.chunk("c").generation == 0
    counts = q.counts()
    assert (counts.pending, counts.leased) == (1, 2)
    assert q.claim("w2", "spot", n=0) == []


def test_renew_extends_from_now(backend: Backend) -> None:
    q = backend.make()
    q.enqueue_many(["a"])
    (lease,) = q.claim("w", "p")
    backend.advance(0.1)
    renewed = q.renew(lease)
    assert renewed.expires_at_ms >= lease.expires_at_ms + 90
    assert (renewed.chunk_id, renewed.generation, renewed.attempt) == ("a", 1, 1)
    backend.advance(0.15)  # past the first expiry, inside the renewed one
    assert q.reap() == []
    q.complete(renewed)
    assert q.chunk("a").state is ChunkState.DONE


def test_complete_records_generation_and_pool(backend: Backend) -> None:
    q = backend.make()
    q.enqueue_many(["a", "b", "c"])
    a, b = q.claim("w1", "old", n=2)
    (c,) = q.claim("w2", "new")
    q.complete(a)
    q.complete(c)
    q.complete(c)  # a repeat of an accepted completion counts nothing
    assert q.committed_generations() == {"a": 1, "c": 1}
    assert q.pool_completions() == {"old": 1, "new": 1}
    info = q.chunk("a")
    assert (info.state, info.committed_generation, info.owner, info.pool) == (ChunkState.DONE, 1, "w1", "old")
    counts = q.counts()
    assert (counts.pending, counts.leased, counts.done, counts.total) == (0, 1, 2, 3)
    q.complete(b)
    assert q.counts().finished


def test_stale_generation_is_refused_and_never_counted(backend: Backend) -> None:
    q = backend.make()
    q.enqueue_many(["a"])
    (old,) = q.claim("w1", "p")
    backend.expire()
    assert q.reap() == ["a"]
    (new,) = q.claim("w2", "p")
    assert new.generation == old.generation + 1 == 2
    for call in (q.renew, q.complete, q.release):
        with pytest.raises(StaleLeaseError):
            call(old)
    with pytest.raises(StaleLeaseError):
        q.fail(old, "late failure")
    info = q.chunk("a")
    assert (info.state, info.generation, info.owner, info.attempts) == (ChunkState.LEASED, 2, "w2", 1)
    q.complete(new)
    with pytest.raises(StaleLeaseError):
        q.complete(old)
    assert q.committed_generations() == {"a": 2}
    assert q.pool_completions() == {"p": 1}
    assert q.counts().done == 1


def test_expired_lease_holds_until_reaped(backend: Backend) -> None:
    q = backend.make()
    q.enqueue_many(["a", "b"])
    a, b = q.claim("w", "p", n=2)
    backend.expire()
    a = q.renew(a)  # expired, not reaped, nobody else holds it
    q.complete(b)
    assert q.reap() == []
    assert q.chunk("a").state is ChunkState.LEASED and q.chunk("b").state is ChunkState.DONE


def test_reap_charges_an_attempt_and_requeues_at_tail(backend: Backend) -> None:
    q = backend.make()
    q.enqueue_many(["a", "b", "c"])
    (a,) = q.claim("w1", "p")
    backend.expire()
    assert q.reap() == ["a"]
    assert q.reap() == []
    info = q.chunk("a")
    assert (info.state, info.attempts, info.generation) == (ChunkState.PENDING, 1, 1)
    assert "lease expired" in (info.last_error or "") and "w1" in (info.last_error or "")
    with pytest.raises(StaleLeaseError):
        q.complete(a)  # reaped: the output of generation 1 must not count
    assert q.fail(a, "late") is ChunkState.PENDING  # the lease already ended: nothing changes
    assert q.chunk("a").attempts == 1
    leases = q.claim("w2", "p", n=3)
    assert ids(leases) == ["b", "c", "a"]
    assert leases[2].attempt == 2 and leases[2].generation == 2


def test_reclaim_takes_back_only_the_lost_workers_leases_at_once(backend: Backend) -> None:
    q = backend.make(max_attempts=2)
    q.enqueue_many(["a", "b", "c", "d"])
    a, b = q.claim("w1", "p", n=2)
    (c,) = q.claim("w2", "p")
    assert q.reclaim("w9", "gone") == []
    assert sorted(q.reclaim("w1", "process exited (signal 9)")) == ["a", "b"]  # no lease had expired
    assert q.reclaim("w1", "again") == []
    info = q.chunk("a")
    assert (info.state, info.attempts, info.generation) == (ChunkState.PENDING, 1, 1)
    assert "w1" in (info.last_error or "") and "signal 9" in (info.last_error or "")
    assert q.chunk("c").state is ChunkState.LEASED
    counts = q.counts()
    assert (counts.pending, counts.leased) == (3, 1)
    with pytest.raises(StaleLeaseError):
        q.complete(a)  # the lost worker can never commit
    assert ids(q.claim("w3", "p", n=3)) == ["d", "a", "b"]  # requeued at the tail
    assert q.reclaim("w3", "preempted") and q.chunk("a").state is ChunkState.DEAD  # second attempt charged
    q.complete(c)


def test_reclaim_without_charge_puts_chunks_back_first(backend: Backend) -> None:
    q = backend.make(max_attempts=1)
    q.enqueue_many(["a", "b", "c"])
    (a,) = q.claim("w1", "p")
    assert q.reclaim("w1", "replica preempted", charge=False) == ["a"]
    info = q.chunk("a")
    assert (info.state, info.attempts) == (ChunkState.PENDING, 0)  # max_attempts 1: a charge would have killed it
    assert "preempted" in (info.last_error or "")
    with pytest.raises(StaleLeaseError):
        q.complete(a)
    (again,) = q.claim("w2", "p")
    assert (again.chunk_id, again.generation, again.attempt) == ("a", 2, 1)  # at the head of the queue


def test_dead_letter_after_max_attempts_of_expiry(backend: Backend) -> None:
    q = backend.make(max_attempts=2)
    q.enqueue_many(["a"])
    for attempt in (1, 2):
        (lease,) = q.claim("w", "p")
        assert lease.attempt == attempt
        backend.expire()
        assert q.reap() == ["a"]
    info = q.chunk("a")
    assert (info.state, info.attempts) == (ChunkState.DEAD, 2)
    assert q.dead_chunks() == {"a": info.last_error}
    assert q.claim("w", "p") == []
    counts = q.counts()
    assert (counts.pending, counts.leased, counts.dead) == (0, 0, 1) and counts.finished


def test_retryable_fail_requeues_until_attempts_exhausted(backend: Backend) -> None:
    q = backend.make(max_attempts=3)
    q.enqueue_many(["a", "b"])
    (a,) = q.claim("w", "p")
    assert q.fail(a, "engine 500") is ChunkState.PENDING
    assert q.fail(a, "engine 500") is ChunkState.PENDING  # repeat of an ended lease: no second charge
    b, a = q.claim("w", "p", n=2)
    assert (b.chunk_id, a.chunk_id) == ("b", "a")  # the failed chunk went to the tail
    assert (a.generation, a.attempt) == (2, 2)
    info = q.chunk("a")
    assert (info.state, info.attempts, info.last_error) == (ChunkState.LEASED, 1, "engine 500")
    assert q.fail(a, "engine 500 again") is ChunkState.PENDING
    (a,) = q.claim("w", "p")
    assert a.attempt == 3
    assert q.fail(a, "engine 500 for good") is ChunkState.DEAD
    assert q.dead_chunks() == {"a": "engine 500 for good"}
    assert q.chunk("a").attempts == 3


def test_non_retryable_fail_dead_letters_at_once(backend: Backend) -> None:
    q = backend.make(max_attempts=5, max_error_chars=10)
    q.enqueue_many(["a"])
    (a,) = q.claim("w", "p")
    assert q.fail(a, "bad input line 7: not JSON", retryable=False) is ChunkState.DEAD
    info = q.chunk("a")
    assert (info.state, info.attempts, info.last_error) == (ChunkState.DEAD, 1, "bad input ")
    assert q.dead_chunks() == {"a": "bad input "}
    with pytest.raises(StaleLeaseError):
        q.renew(a)


def test_release_requeues_at_head_without_charge(backend: Backend) -> None:
    q = backend.make(max_attempts=1)
    q.enqueue_many(["a", "b", "c"])
    a, b = q.claim("w1", "old", n=2)
    q.release(b)
    q.release(a)
    q.release(a)  # repeat: nothing changes
    info = q.chunk("a")
    assert (info.state, info.attempts, info.generation) == (ChunkState.PENDING, 0, 1)
    assert (q.counts().pending, q.counts().leased) == (3, 0)
    leases = q.claim("w2", "new", n=3)
    assert ids(leases) == ["a", "b", "c"]
    assert [lease.attempt for lease in leases] == [1, 1, 1]  # max_attempts=1 and still alive
    with pytest.raises(StaleLeaseError):
        q.release(a)
    for lease in leases:
        q.complete(lease)
    assert q.pool_completions() == {"new": 3}


def test_reclaim_many_takes_back_several_workers_at_once(backend: Backend) -> None:
    q = backend.make(max_attempts=3)
    q.enqueue_many(["a", "b", "c"])
    q.claim("w1", "p", n=2)
    q.claim("w2", "p")
    taken = q.reclaim_many([("w1", "crashed", True), ("w2", "torn down", False), ("w9", "never held", False)])
    assert {k: sorted(v) for k, v in taken.items()} == {"w1": ["a", "b"], "w2": ["c"], "w9": []}
    assert [q.chunk(c).attempts for c in "abc"] == [1, 1, 0]
    assert q.reclaim_many([]) == {}


def test_standby_is_a_set_of_pools(backend: Backend) -> None:
    q = backend.make()
    assert q.standby() == set()
    q.set_standby("new", True)
    q.set_standby("new", True)
    assert q.standby() == {"new"}
    q.set_standby("new", False)
    assert q.standby() == set()


def test_drain_and_undrain(backend: Backend) -> None:
    q = backend.make()
    q.enqueue_many(["a", "b", "c"])
    (held,) = q.claim("w1", "old")
    q.drain("old")
    assert q.draining() == {"old"}
    assert q.claim("w1", "old", n=2) == []
    assert ids(q.claim("w2", "new")) == ["b"]
    q.renew(held)  # leases the drained pool already holds are untouched
    q.complete(held)
    q.undrain("old")
    q.undrain("old")
    assert q.draining() == set()
    assert ids(q.claim("w1", "old")) == ["c"]


def test_unknown_chunk(backend: Backend) -> None:
    q = backend.make()
    ghost = Lease(job_id="job", chunk_id="ghost", generation=1, worker_id="w", pool="p", expires_at_ms=0, attempt=1)
    with pytest.raises(ChunkNotFoundError):
        q.chunk("ghost")
    for call in (q.renew, q.complete, q.release):
        with pytest.raises(ChunkNotFoundError):
            call(ghost)
    with pytest.raises(ChunkNotFoundError):
        q.fail(ghost, "x")


def test_jobs_are_separate_and_delete_removes_one(backend: Backend) -> None:
    one, two = backend.make("one"), backend.make("two")
    one.enqueue_many(["a", "b"])
    two.enqueue_many(["a"])
    (lease,) = one.claim("w", "p")
    one.complete(lease)
    one.drain("p")
    assert two.counts().total == 1 and ids(two.claim("w", "p")) == ["a"]
    one.delete()
    counts = one.counts()
    assert (counts.pending, counts.leased, counts.done, counts.dead, counts.total) == (0, 0, 0, 0, 0)
    assert one.committed_generations() == {} and one.pool_completions() == {} and one.draining() == set()
    with pytest.raises(ChunkNotFoundError):
        one.chunk("a")
    assert two.chunk("a").state is ChunkState.LEASED


def test_split_keeps_the_answered_part_and_hands_the_rest_back_first(backend: Backend) -> None:
    q = backend.make(max_attempts=2)
    q.enqueue_many(["a"])
    (a,) = q.claim("w1", "old")
    backend.expire()
    assert q.reap() == ["a"]  # one attempt charged: the rest child carries it
    (a,) = q.claim("w1", "old")
    q.enqueue_many(["b"])
    answered, rest = q.split(a, "2x")
    assert (answered, rest) == split_children("a", "2x") == ("a.2xa", "a.2xr")
    assert q.split(a, "2x") == (answered, rest)  # a repeat after a lost reply changes nothing
    info = q.chunk("a")
    assert (info.state, info.split, info.generation) == (ChunkState.SPLIT, "2x", 2)
    assert q.splits() == {"a": "2x"}
    assert q.committed_generations() == {answered: 1}
    done = q.chunk(answered)
    assert (done.state, done.committed_generation, done.owner, done.pool) == (ChunkState.DONE, 1, "w1", "old")
    assert q.pool_completions() == {"old": 1}
    counts = q.counts()
    assert (counts.pending, counts.leased, counts.done, counts.dead, counts.total) == (2, 0, 1, 0, 3)
    with pytest.raises(StaleLeaseError):
        q.complete(a)  # the parent's lease ended with the split
    assert q.fail(a, "late") is ChunkState.SPLIT and q.chunk("a").attempts == 1
    q.release(a)
    assert q.split(a, "2x") == (answered, rest)
    (again,) = q.claim("w2", "new")
    assert (again.chunk_id, again.generation, again.attempt) == (rest, 1, 2)  # at the head, attempts carried
    assert q.fail(again, "engine 500") is ChunkState.DEAD  # the carried attempt counts toward dead-lettering
    (b,) = q.claim("w2", "new")
    q.complete(b)
    assert q.counts().finished


def test_split_of_a_split_child_and_counts(backend: Backend) -> None:
    q = backend.make()
    q.enqueue_many(["a"])
    (a,) = q.claim("w1", "p")
    _, rest = q.split(a, "1k")
    (r,) = q.claim("w2", "p")
    answered2, rest2 = q.split(r, "1z")
    assert rest2 == "a.1kr.1zr" and q.splits() == {"a": "1k", rest: "1z"}
    (r2,) = q.claim("w3", "p")
    q.complete(r2)
    counts = q.counts()
    assert (counts.done, counts.total) == (3, 3) and counts.finished
    assert set(q.committed_generations()) == {"a.1ka", answered2, rest2}


def test_a_stale_worker_cannot_split(backend: Backend) -> None:
    q = backend.make()
    q.enqueue_many(["a"])
    (old,) = q.claim("w1", "p")
    backend.expire()
    assert q.reap() == ["a"]
    with pytest.raises(StaleLeaseError):
        q.split(old, "1x")  # reaped, not claimed again: still refused
    (new,) = q.claim("w2", "p")
    q.enqueue_many(["b"])
    with pytest.raises(StaleLeaseError):
        q.split(old, "1x")
    assert q.splits() == {} and q.committed_generations() == {}
    info = q.chunk("a")
    assert (info.state, info.generation, info.owner) == (ChunkState.LEASED, 2, "w2")
    q.split(new, "2y")
    with pytest.raises(StaleLeaseError):
        q.split(old, "2y")  # a generation that never held it, even with the accepted tag
    (r,) = q.claim("w1", "p")
    assert r.chunk_id == "a.2yr"
    q.complete(r)
    with pytest.raises(StaleLeaseError):
        q.split(r, "1q")  # done chunks cannot be split
    with pytest.raises(ChunkNotFoundError):
        q.split(Lease(job_id="job", chunk_id="ghost", generation=1, worker_id="w", pool="p", expires_at_ms=0,
                      attempt=1), "1x")
    assert q.counts().total == 3
