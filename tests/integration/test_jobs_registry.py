"""JobRegistry against a real redis-server: records, transitions, lock, replicas, events, tokens, files."""

from __future__ import annotations

import threading
import time

import pytest

from orca.control import lifecycle
from orca.errors import JobNotFoundError, JobStateError
from orca.launchers.base import Replica, ReplicaState
from orca.models import JobStatus as S
from orca.queue import keys
from orca.queue.jobs import FileRecord, JobRecord, JobRegistry
from orca.queue.memory_jobs import MemoryJobRegistry
from orca.settings import ControlSettings, Settings


@pytest.fixture
def reg(redis_url: str):
    r = JobRegistry(redis_url, Settings(control=ControlSettings(max_events=5)))
    yield r
    r.close()


@pytest.fixture(params=["redis", "memory"])
def any_reg(request, redis_url: str):
    """The registry and its in-memory twin (orca.queue.memory_jobs), for the contract both must keep."""
    settings = Settings(control=ControlSettings(max_events=5))
    r = JobRegistry(redis_url, settings) if request.param == "redis" else MemoryJobRegistry(settings)
    yield r
    r.close()


def record(job_id: str = "batch_1", user: str = "alice", created: float = 100.0) -> JobRecord:
    return JobRecord(id=job_id, user=user, status=S.VALIDATING, created_at=created, deadline_at=created + 3600,
                     spec={"deadline": "1h"}, metadata={"k": "v"})


def test_job_round_trip_and_indexes(reg: JobRegistry) -> None:
    reg.create_job(record("batch_1", created=1.0))
    reg.create_job(record("batch_2", created=2.0))
    reg.create_job(record("batch_3", user="bob", created=3.0))
    got = reg.get("batch_1")
    assert got == record("batch_1", created=1.0)
    assert reg.job_ids() == ["batch_1", "batch_2", "batch_3"]
    assert reg.user_job_ids("alice") == ["batch_2", "batch_1"]  # newest first
    assert reg.user_job_ids("bob") == ["batch_3"]
    assert reg.statuses() == {"batch_1": S.VALIDATING, "batch_2": S.VALIDATING, "batch_3": S.VALIDATING}
    with pytest.raises(JobNotFoundError):
        reg.get("batch_nope")
    assert reg.find("batch_nope") is None


def test_records_get_find_ids_and_statuses(any_reg) -> None:
    reg = any_reg
    reg.create_job(record("batch_2", created=2.0))
    reg.create_job(record("batch_1", created=1.0))
    assert reg.get("batch_1") == record("batch_1", created=1.0)
    assert reg.job_ids() == ["batch_1", "batch_2"]
    assert reg.statuses() == {"batch_1": S.VALIDATING, "batch_2": S.VALIDATING}
    with pytest.raises(JobNotFoundError):
        reg.get("batch_nope")
    assert reg.find("batch_nope") is None
    got = reg.get("batch_1")
    got.metadata["k"] = "changed"  # a read is a copy
    assert reg.get("batch_1").metadata == {"k": "v"}


def test_update_keeps_other_fields_and_extra_fields_survive(any_reg) -> None:
    reg = any_reg
    reg.create_job(record())
    reg.update("batch_1", n_requests=7, plan={"gpu": "cpu"}, swaps=[{"state": "done"}])
    got = reg.get("batch_1")
    assert got.n_requests == 7 and got.plan == {"gpu": "cpu"} and got.metadata == {"k": "v"}
    assert got.swaps == [{"state": "done"}]  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        reg.update("batch_1", status=S.FAILED)
    with pytest.raises(JobNotFoundError):
        reg.update("batch_nope", n_requests=1)


def test_transition_checks_the_table_and_stamps(any_reg) -> None:
    reg = any_reg
    reg.create_job(record())
    got = reg.transition("batch_1", S.PLANNING, lifecycle.can_transition)
    assert got.status is S.PLANNING
    got = reg.transition("batch_1", S.IN_PROGRESS, lifecycle.can_transition, stamp="in_progress_at", now=123.0, chunks_total=4)
    assert got.in_progress_at == 123.0 and got.chunks_total == 4
    with pytest.raises(JobStateError):
        reg.transition("batch_1", S.COMPLETED, lifecycle.can_transition)
    assert reg.get("batch_1").status is S.IN_PROGRESS
    with pytest.raises(JobNotFoundError):
        reg.transition("batch_nope", S.PLANNING, lifecycle.can_transition)
    reg.transition("batch_1", S.FINALIZING, lifecycle.can_transition, stamp="finalizing_at", now=200.0,
                   event=("finalizing", "all chunks done"))
    assert reg.events("batch_1")[-1] == {"t": 200.0, "kind": "finalizing", "message": "all chunks done"}


def test_concurrent_transitions_exactly_one_wins(reg: JobRegistry, redis_url: str) -> None:
    reg.create_job(record())
    reg.transition("batch_1", S.PLANNING, lifecycle.can_transition)
    reg.transition("batch_1", S.IN_PROGRESS, lifecycle.can_transition)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def go(target: S) -> None:
        mine = JobRegistry(redis_url)
        barrier.wait()
        try:
            mine.transition("batch_1", target, lifecycle.can_transition)
            outcomes.append(target.value)
        except JobStateError:
            outcomes.append("refused")
        finally:
            mine.close()

    threads = [threading.Thread(target=go, args=(t,)) for t in [S.CANCELLING, S.FINALIZING] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = reg.get("batch_1").status
    # From in_progress either may win; after it, the loser's target is refused (finalizing -/-> cancelling,
    # cancelling -/-> finalizing), and repeats of the winner's own target are refused too.
    assert [o for o in outcomes if o != "refused"] == [final.value]


def test_lock_excludes_a_second_holder_and_expires(reg: JobRegistry, redis_url: str) -> None:
    other = JobRegistry(redis_url)
    try:
        with reg.lock("batch_1", ttl_s=10) as mine:
            assert mine
            with other.lock("batch_1", ttl_s=10) as theirs:
                assert not theirs
        with other.lock("batch_1", ttl_s=10) as theirs:  # released on exit
            assert theirs
        with reg.lock("batch_1", ttl_s=0.2) as mine:
            assert mine
            time.sleep(0.35)  # a stuck holder loses the lock after its TTL
            with other.lock("batch_1", ttl_s=10) as theirs:
                assert theirs
    finally:
        other.close()


def test_expired_holder_does_not_release_the_new_holder(reg: JobRegistry, redis_url: str) -> None:
    other = JobRegistry(redis_url)
    try:
        cm = reg.lock("batch_1", ttl_s=0.2)
        assert cm.__enter__()
        time.sleep(0.35)
        with other.lock("batch_1", ttl_s=10) as theirs:
            assert theirs
            cm.__exit__(None, None, None)  # the old holder finishes late
            with reg.lock("batch_1", ttl_s=10) as stolen:
                assert not stolen
    finally:
        other.close()


def test_batch_lock_reads_only_what_it_took_and_relock_keeps_it(reg: JobRegistry, redis_url: str) -> None:
    other = JobRegistry(redis_url)
    try:
        for job_id in ("batch_1", "batch_2"):
            reg.create_job(record(job_id))
        reg.put_replicas([Replica("w-a", "batch_1", "p", "local", ReplicaState.RUNNING, created_at=1.0)])
        with other.lock("batch_2", ttl_s=10) as theirs:
            assert theirs
            tokens, snaps = reg.lock_and_read(["batch_1", "batch_2", "batch_gone"], ttl_s=0.3)
        assert set(tokens) == {"batch_1", "batch_gone"} and set(snaps) == {"batch_1"}
        snap = snaps["batch_1"]
        assert snap.record.id == "batch_1" and [r.replica_id for r in snap.replicas] == ["w-a"]
        assert snap.counts.total == 0
        assert reg.relock_many(tokens, ttl_s=10) == {"batch_1", "batch_gone"}
        time.sleep(0.4)  # past the first TTL: the relock kept them
        assert other.lock_and_read(["batch_1"])[0] == {}
        reg.unlock_many(tokens)
        taken, _ = other.lock_and_read(["batch_1"])
        assert set(taken) == {"batch_1"}
        assert reg.relock_many({"batch_1": "not-my-token"}) == set()  # someone else's lock is not extended
        other.unlock_many(taken)
    finally:
        other.close()


def test_replicas_round_trip(any_reg) -> None:
    reg = any_reg
    a = Replica("w-a", "batch_1", "cpu-local", "local", ReplicaState.RUNNING, handle="12:34", created_at=1.0, price_per_hour=0.5)
    b = Replica("w-b", "batch_1", "cpu-local", "local", created_at=2.0)
    reg.put_replica(b)
    reg.put_replica(a)
    assert reg.replicas("batch_1") == [a, b]
    a.state = ReplicaState.FAILED
    reg.put_replica(a)
    assert reg.replicas("batch_1")[0].state is ReplicaState.FAILED


def test_events_are_capped(any_reg) -> None:
    reg = any_reg
    for i in range(8):
        reg.add_event("batch_1", "tick", f"event {i}", n=i)
    events = reg.events("batch_1")
    assert [e["n"] for e in events] == [3, 4, 5, 6, 7]
    assert events[0]["kind"] == "tick" and events[0]["t"] > 0


def test_tokens_are_stored_hashed(reg: JobRegistry, redis_url: str) -> None:
    import redis

    token = reg.create_token("alice")
    assert reg.user_for_token(token) == "alice"
    assert reg.user_for_token(token + "x") is None
    raw = redis.Redis.from_url(redis_url, decode_responses=True).hgetall(keys.TOKENS)
    assert token not in raw and "alice" in raw.values()
    reg.revoke_token(token)
    assert reg.user_for_token(token) is None


def test_files_round_trip(reg: JobRegistry) -> None:
    f1 = FileRecord(id="file-1", user="alice", bytes=10, created_at=1.0, filename="a.jsonl", purpose="batch", store_key="files/file-1.jsonl")
    f2 = f1.model_copy(update={"id": "file-2", "created_at": 2.0})
    reg.put_file(f1)
    reg.put_file(f2)
    assert reg.get_file("file-1") == f1
    assert reg.user_file_ids("alice") == ["file-2", "file-1"]
    assert reg.user_file_ids("bob") == []
    reg.delete_file(f1)
    assert reg.get_file("file-1") is None and reg.user_file_ids("alice") == ["file-2"]


def test_delete_job_drops_every_key(reg: JobRegistry, redis_url: str) -> None:
    import redis

    reg.create_job(record())
    reg.add_event("batch_1", "x", "y")
    reg.put_replica(Replica("w-a", "batch_1", "p", "local"))
    reg.delete_job("batch_1")
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(match=keys.job_prefix("batch_1") + "*")) == []
    assert reg.job_ids() == [] and reg.user_job_ids("alice") == []
