"""What only the Redis ChunkQueue can show: concurrency, Redis TIME, script reload, key layout."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter

import pytest
import redis

from orca.errors import StaleLeaseError
from orca.queue import ChunkQueue, ChunkState, Lease, keys
from orca.settings import QueueSettings


def assert_redis_structure(url: str, job: str) -> None:
    """The counters hash equals the sizes of the sets, and each set holds exactly its state's chunks."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        records = {cid: json.loads(raw) for cid, raw in client.hgetall(keys.job_chunks(job)).items()}
        pending = client.lrange(keys.job_pending(job), 0, -1)
        leased = client.zrange(keys.job_leases(job), 0, -1)
        done = client.hgetall(keys.job_done(job))
        dead = client.hgetall(keys.job_dead(job))
        counts = {k: int(v) for k, v in client.hgetall(keys.job_counts(job)).items()}
        splits = client.hgetall(keys.job_splits(job))
    finally:
        client.close()
    by_state: dict[str, set[str]] = {s.value: set() for s in ChunkState}
    for cid, record in records.items():
        by_state[record["state"]].add(cid)
    assert len(pending) == len(set(pending)), "a chunk is queued twice"
    assert set(pending) == by_state["pending"]
    assert set(leased) == by_state["leased"]
    assert set(done) == by_state["done"]
    assert set(dead) == by_state["dead"]
    assert set(splits) == by_state["split"] and all(records[cid]["split"] == tag for cid, tag in splits.items())
    assert {cid: int(g) for cid, g in done.items()} == {cid: records[cid]["committed"] for cid in done}
    expected = {"pending": len(pending), "leased": len(leased), "done": len(done), "dead": len(dead),
                "total": len(records) - len(splits)}
    assert {k: counts.get(k, 0) for k in expected} == expected


def test_sixteen_concurrent_clients_never_share_a_live_lease(redis_url: str) -> None:
    chunk_ids = [f"c{i:04d}" for i in range(600)]
    settings = QueueSettings(lease_s=60, max_attempts=3)
    with ChunkQueue(redis_url, "job", settings) as q:
        q.enqueue_many(chunk_ids)
    holders: dict[tuple[str, int], str] = {}
    completed: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker(index: int) -> None:
        rng = random.Random(index)
        worker_id = f"w{index}"
        try:
            with ChunkQueue(redis_url, "job", settings) as q:  # its own client and connection
                start.wait()
                while leases := q.claim(worker_id, f"pool{index % 2}", n=rng.randint(1, 3)):
                    for lease in leases:
                        with lock:
                            assert (lease.chunk_id, lease.generation) not in holders
                            holders[(lease.chunk_id, lease.generation)] = worker_id
                    for lease in leases:
                        if rng.random() < 0.3:
                            q.release(lease)  # someone else must pick it up, under a new generation
                        else:
                            q.complete(lease)  # raises StaleLeaseError if another live lease fenced us
                            with lock:
                                completed.append((lease.chunk_id, lease.generation))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(cid for cid, _ in completed) == chunk_ids  # each chunk completed exactly once
    assert len(set(holders.values())) == 16  # every client took part
    with ChunkQueue(redis_url, "job", settings) as q:
        counts = q.counts()
        assert (counts.done, counts.pending, counts.leased, counts.total) == (600, 0, 0, 600)
        assert q.committed_generations() == dict(completed)
        assert sum(q.pool_completions().values()) == 600
    assert any(gen > 1 for _, gen in completed)  # releases happened and were re-claimed
    assert_redis_structure(redis_url, "job")


def test_lease_expiry_comes_from_redis_time(redis_url: str) -> None:
    with ChunkQueue(redis_url, "job", QueueSettings(lease_s=30)) as q:
        q.enqueue_many(["a"])
        (lease,) = q.claim("w", "p")
        client = redis.Redis.from_url(redis_url)
        seconds, micros = client.time()
        client.close()
        redis_now_ms = seconds * 1000 + micros // 1000
        assert 0 <= redis_now_ms + 30_000 - lease.expires_at_ms < 500
        stored = redis.Redis.from_url(redis_url).zscore(keys.job_leases("job"), "a")
        assert stored == lease.expires_at_ms


def test_scripts_reload_after_redis_forgets_them(redis_url: str) -> None:
    with ChunkQueue(redis_url, "job") as q:
        q.enqueue_many(["a", "b"])
        client = redis.Redis.from_url(redis_url)
        client.script_flush()
        client.close()
        (lease,) = q.claim("w", "p")  # NOSCRIPT -> SCRIPT LOAD -> EVALSHA
        q.complete(lease)
        assert q.counts().done == 1


def test_delete_removes_every_key_of_the_job_only(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with ChunkQueue(redis_url, "a*", QueueSettings()) as doomed, ChunkQueue(redis_url, "ab") as kept:
        for q in (doomed, kept):
            q.enqueue_many(["x", "y", "z"])
            x, y = q.claim("w", "p", n=2)
            q.complete(x)
            q.fail(y, "boom", retryable=False)
            q.drain("p")
            client.hset(keys.job_worker_metrics(q.job_id, "w"), "tokens_per_s", 10)
            client.hset(keys.job_meta(q.job_id), "status", "running")
        before = set(client.keys(f"orca:{{ab}}:*"))
        doomed.delete()
        assert client.keys("orca:{a\\*}:*") == []
        assert set(client.keys("*")) == before
        assert kept.counts().total == 3
    client.close()
    assert_redis_structure(redis_url, "ab")


@pytest.mark.parametrize("seed", [1, 2])
def test_structure_stays_consistent_through_every_transition(redis_url: str, seed: int) -> None:
    rng = random.Random(seed)
    settings = QueueSettings(lease_s=0.05, max_attempts=3)
    with ChunkQueue(redis_url, "job", settings) as q:
        q.enqueue_many([f"c{i}" for i in range(30)])
        held: list[Lease] = []
        ops: Counter[str] = Counter()
        for step in range(200):
            op = rng.choice(["claim", "claim", "complete", "fail", "fatal", "release", "renew", "reap"])
            if op == "claim":
                held += q.claim(f"w{step % 4}", "p", n=rng.randint(1, 3))
            elif op == "reap":
                time.sleep(rng.choice([0, 0, 0.06]))  # sometimes past every lease's expiry
                q.reap()
            elif held:
                lease = held.pop(rng.randrange(len(held)))
                try:
                    if op == "complete":
                        q.complete(lease)
                    elif op in ("fail", "fatal"):
                        q.fail(lease, "err", retryable=op == "fail")
                    elif op == "release":
                        q.release(lease)
                    else:
                        held.append(q.renew(lease))
                except StaleLeaseError:  # the lease was reaped meanwhile
                    ops["stale"] += 1
            ops[op] += 1
            if step % 10 == 0:
                assert_redis_structure(redis_url, "job")
        assert_redis_structure(redis_url, "job")
        assert ops["stale"] > 0
