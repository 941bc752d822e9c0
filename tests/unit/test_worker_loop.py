"""The chunk loop over the in-memory queue twin, an in-memory store and the fake OpenAI server."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from orca.queue import ChunkState, ManualClock, MemoryChunkQueue, MemoryQueueServer, SystemClock
from orca.settings import EngineSettings, QueueSettings, Settings, WorkerSettings
from orca.storage import open_store
from orca.storage.layout import JobLayout
from orca.worker.engines import EngineSpec
from orca.worker.engines.external import ExternalEngine
from orca.worker.engines.fake_server import FakeOpenAIServer
from orca.worker.worker import StopReason, Worker
from tests.conftest import wait_until

JOB = "job-loop"
LAYOUT = JobLayout(JOB)


def settings(**worker) -> Settings:
    return Settings(queue=QueueSettings(lease_s=30, renew_every_s=0.1),
                    worker=WorkerSettings(**{"tick_s": 0.05, "idle_poll_s": 0.05, "retry_backoff_s": 0.01,
                                             "drain_grace_s": 5, **worker}))


def body(chunk: int, i: int, **extra) -> dict:
    return {"model": "smollm2", "prompt": f"p{chunk}-{i}", "max_tokens": 3, "user": f"c{chunk}-{i}", **extra}


def make_job(store, queue, n_chunks: int, per_chunk: int, **extra) -> list[str]:
    chunk_ids = []
    for c in range(n_chunks):
        chunk_id = f"chunk-{c:03d}"
        lines = [json.dumps({"custom_id": f"c{c}-{i}", "method": "POST", "url": "/v1/completions",
                             "body": body(c, i, **extra)}) for i in range(per_chunk)]
        store.put_bytes(LAYOUT.chunk(chunk_id), ("\n".join(lines) + "\n").encode())
        chunk_ids.append(chunk_id)
    queue.enqueue_many(chunk_ids)
    return chunk_ids


def make_worker(queue, store, url: str, s: Settings, concurrency: int = 8, burst: bool = True,
                worker_id: str = "w1", pool: str = "pool-a") -> Worker:
    engine = ExternalEngine(EngineSpec(kind="external", url=url), EngineSettings())
    return Worker(job_id=JOB, pool=pool, worker_id=worker_id, queue=queue, store=store, engine=engine,
                  settings=s, concurrency=concurrency, burst=burst)


def read_output(store, chunk_id: str, generation: int) -> list[dict]:
    return [json.loads(x) for x in store.get_bytes(LAYOUT.chunk_output(chunk_id, generation)).splitlines()]


def run_in_thread(worker: Worker) -> tuple[threading.Thread, list[StopReason]]:
    """Start ``worker.run()`` on a thread; the list gets its stop reason when it returns."""
    result: list[StopReason] = []
    t = threading.Thread(target=lambda: result.append(asyncio.run(worker.run())))
    t.start()
    return t, result


@pytest.fixture
def store():
    return open_store("memory://")


def queue_for(s: Settings, clock=None) -> MemoryChunkQueue:
    return MemoryChunkQueue(JOB, s.queue, MemoryQueueServer(clock or SystemClock()))


def test_every_chunk_is_committed_with_one_line_per_request_in_order(store):
    s = settings()
    queue = queue_for(s)
    chunk_ids = make_job(store, queue, n_chunks=3, per_chunk=25)
    with FakeOpenAIServer(slots=64, latency_s=0.005) as fake:
        worker = make_worker(queue, store, fake.url, s)
        assert asyncio.run(worker.run()) is StopReason.FINISHED
    assert queue.counts().done == 3 and worker.chunks_done == 3
    for c, chunk_id in enumerate(chunk_ids):
        info = queue.chunk(chunk_id)
        assert info.state is ChunkState.DONE and info.committed_generation == 1
        lines = read_output(store, chunk_id, 1)
        assert [line["custom_id"] for line in lines] == [f"c{c}-{i}" for i in range(25)]
        assert all(line["error"] is None and line["response"]["body"]["fake_request"] == body(c, i)
                   for i, line in enumerate(lines))
        assert len({line["id"] for line in lines}) == 25


def test_next_chunk_starts_while_the_previous_one_is_still_in_flight(store):
    """Prefetch: chunk k+1's first request starts before chunk k's last one finishes."""
    s = settings()
    queue = queue_for(s)
    make_job(store, queue, n_chunks=3, per_chunk=10)
    with FakeOpenAIServer(slots=64, latency_s=0.1, keep_log=True) as fake:
        worker = make_worker(queue, store, fake.url, s, concurrency=4)
        asyncio.run(worker.run())
        log = fake.stats.log
        assert fake.stats.max_in_flight == 4
    by_chunk: dict[str, list[tuple[float, float]]] = {}
    for _, started, finished, b in log:
        by_chunk.setdefault(b["user"].split("-")[0], []).append((started, finished))
    # 10 requests on 4 slots: chunk 0's last wave has 2 free slots, which chunk 1 fills
    assert min(st for st, _ in by_chunk["c1"]) < max(fin for _, fin in by_chunk["c0"])
    # the engine never sat idle between chunks: all its idle moments together are shorter than one request
    events = sorted([(st, 1) for _, st, _, _ in log] + [(fin, -1) for _, _, fin, _ in log])
    level, idle_s, idle_since = 0, 0.0, 0.0
    for at, delta in events:
        if level == 0 and delta == 1 and idle_since:
            idle_s += at - idle_since
        level += delta
        if level == 0:
            idle_since = at
    assert idle_s < 0.1


def test_a_fenced_off_lease_is_abandoned_at_once_and_nothing_is_uploaded(store):
    clock = ManualClock()
    s = settings()
    queue = queue_for(s, clock)
    [chunk_id] = make_job(store, queue, n_chunks=1, per_chunk=8, fake_delay_s=3.0)
    with FakeOpenAIServer(slots=64, keep_log=True) as fake:
        worker = make_worker(queue, store, fake.url, s, concurrency=8)
        t, result = run_in_thread(worker)
        wait_until(lambda: fake.stats.in_flight >= 8)
        clock.advance(s.queue.lease_s + 1)          # the worker's lease expires...
        assert queue.reap() == [chunk_id]           # ...is reaped (one attempt charged)...
        [thief] = queue.claim("w2", "pool-a")       # ...and another worker holds generation 2
        started = time.monotonic()
        t.join(5)
        assert not t.is_alive() and time.monotonic() - started < 2.0  # did not wait for the 3 s requests
    assert result == [StopReason.EMPTY]
    assert not store.exists(LAYOUT.chunk_output(chunk_id, 1))
    assert list(store.list(LAYOUT.chunk_output_prefix(chunk_id))) == []
    info = queue.chunk(chunk_id)
    assert info.state is ChunkState.LEASED and info.owner == "w2" and info.generation == thief.generation == 2


def test_stop_releases_unfinished_chunks_without_charging_attempts(store):
    s = settings(drain_grace_s=0.3)
    queue = queue_for(s)
    chunk_ids = make_job(store, queue, n_chunks=3, per_chunk=4, fake_delay_s=5.0)
    with FakeOpenAIServer(slots=64) as fake:
        worker = make_worker(queue, store, fake.url, s, concurrency=4, burst=False)
        t, result = run_in_thread(worker)
        wait_until(lambda: fake.stats.in_flight >= 4 and queue.counts().leased >= 3)
        # chunk 0 is all in flight, chunk 1 waits for a slot, chunk 2 is prefetched; no more
        time.sleep(0.2)
        assert fake.stats.in_flight == 4 and queue.counts().leased == 3
        worker.stop()
        t.join(5)
        assert not t.is_alive()
    assert result == [StopReason.SIGNALLED]
    counts = queue.counts()
    assert (counts.pending, counts.leased, counts.done) == (3, 0, 0)
    assert all(queue.chunk(c).attempts == 0 for c in chunk_ids)
    assert list(store.list(LAYOUT.root + "outputs/")) == []


def test_a_worker_claims_ahead_only_when_its_engine_is_about_to_run_dry(store):
    """Two chunks of 20 requests, concurrency 4: while 16 requests of the first chunk still wait
    to be sent, the second chunk stays in the queue for another worker; it is claimed ahead once
    at most 4 are left to send, and both chunks are done by this one worker in the end."""
    s = settings()
    queue = queue_for(s)
    make_job(store, queue, n_chunks=2, per_chunk=20, fake_delay_s=0.3)
    with FakeOpenAIServer(slots=64) as fake:
        worker = make_worker(queue, store, fake.url, s, concurrency=4, burst=True)
        t, result = run_in_thread(worker)
        wait_until(lambda: fake.stats.in_flight >= 4)
        time.sleep(0.1)
        counts = queue.counts()
        assert (counts.leased, counts.pending) == (1, 1)  # no prefetch while the engine has work queued
        wait_until(lambda: queue.counts().leased >= 2 or queue.counts().done > 0)
        counts = queue.counts()
        assert counts.leased == 2 and counts.done == 0  # claimed ahead before the first chunk finished
        t.join(10)
    assert result == [StopReason.FINISHED] and worker.chunks_done == 2


def test_answered_requests_of_a_running_chunk_are_counted_until_it_commits(store):
    s = settings()
    queue = queue_for(s)
    lines = [json.dumps({"custom_id": f"c0-{i}", "method": "POST", "url": "/v1/completions",
                         "body": body(0, i, fake_delay_s=delay)}) for i, delay in enumerate([0.05, 0.05, 0.05, 1.5])]
    store.put_bytes(LAYOUT.chunk("chunk-000"), ("\n".join(lines) + "\n").encode())
    queue.enqueue_many(["chunk-000"])
    with FakeOpenAIServer(slots=64) as fake:
        worker = make_worker(queue, store, fake.url, s, concurrency=4)
        t, result = run_in_thread(worker)
        wait_until(lambda: worker.requests_uncommitted >= 3)
        assert worker.requests_uncommitted == 3 and fake.stats.in_flight == 1
        assert worker._describe()["requests_uncommitted"] == 3
        t.join(10)
    assert result == [StopReason.FINISHED]
    assert worker.chunks_done == 1 and worker.requests_uncommitted == 0


def test_stop_lets_a_chunk_finish_inside_the_grace_period(store):
    s = settings(drain_grace_s=5)
    queue = queue_for(s)
    [chunk_id] = make_job(store, queue, n_chunks=1, per_chunk=4, fake_delay_s=0.5)
    with FakeOpenAIServer(slots=64) as fake:
        worker = make_worker(queue, store, fake.url, s, concurrency=4, burst=False)
        t, result = run_in_thread(worker)
        while fake.stats.in_flight < 4:
            time.sleep(0.01)
        worker.stop()
        t.join(5)
    assert result == [StopReason.SIGNALLED]
    assert queue.chunk(chunk_id).state is ChunkState.DONE
    assert len(read_output(store, chunk_id, 1)) == 4


def test_a_hung_engine_loses_its_leases(store):
    clock = ManualClock()
    s = settings(progress_stall_s=0.5)
    queue = queue_for(s, clock)
    [chunk_id] = make_job(store, queue, n_chunks=1, per_chunk=2, fake_hang=True)
    with FakeOpenAIServer(slots=64) as fake:
        worker = make_worker(queue, store, fake.url, s, concurrency=2)
        started = time.monotonic()
        assert asyncio.run(worker.run()) is StopReason.ENGINE_FAILED
        assert time.monotonic() - started < 5
    # not released, not completed: the lease runs out and the reaper charges the attempt
    assert queue.chunk(chunk_id).state is ChunkState.LEASED
    clock.advance(s.queue.lease_s + 1)
    assert queue.reap() == [chunk_id]
    assert queue.chunk(chunk_id).attempts == 1
    assert not store.exists(LAYOUT.chunk_output(chunk_id, 1))


def test_a_drained_pool_finishes_its_chunks_and_exits(store):
    s = settings()
    queue = queue_for(s)
    make_job(store, queue, n_chunks=6, per_chunk=4, fake_delay_s=0.2)
    with FakeOpenAIServer(slots=64) as fake:
        worker = make_worker(queue, store, fake.url, s, concurrency=4, burst=False)
        t, result = run_in_thread(worker)
        while fake.stats.in_flight == 0:
            time.sleep(0.01)
        queue.drain("pool-a")
        t.join(10)
    assert result == [StopReason.DRAINED]
    counts = queue.counts()
    assert counts.leased == 0 and counts.done >= 1 and counts.pending >= 1
    assert counts.done + counts.pending == 6


def test_an_unreadable_chunk_is_dead_lettered(store):
    s = settings()
    queue = queue_for(s)
    store.put_bytes(LAYOUT.chunk("broken"), b'{"custom_id": "a", "url": "/v1/completions", "body": {}}\nnot json\n')
    queue.enqueue_many(["broken"])
    with FakeOpenAIServer() as fake:
        assert asyncio.run(make_worker(queue, store, fake.url, s).run()) is StopReason.FINISHED
    info = queue.chunk("broken")
    assert info.state is ChunkState.DEAD and "unreadable" in (info.last_error or "")


def test_a_burst_worker_of_a_standby_pool_waits_for_chunks_held_elsewhere(store):
    """A swap's new pool is on standby: its worker finds nothing pending while the old pool holds
    the chunks, and waits instead of exiting empty; once the old worker releases, it runs them.
    Off standby, the same worker exits empty at once."""
    s = settings()
    queue = queue_for(s)
    make_job(store, queue, n_chunks=2, per_chunk=3)
    held = queue.claim("old-1", "old", n=2)
    with FakeOpenAIServer(slots=64, latency_s=0.005) as fake:
        assert asyncio.run(make_worker(queue, store, fake.url, s, pool="plain").run()) is StopReason.EMPTY
        queue.set_standby("new", True)
        worker = make_worker(queue, store, fake.url, s, worker_id="new-1", pool="new")
        t, result = run_in_thread(worker)
        time.sleep(0.3)  # several idle polls
        assert t.is_alive() and result == []
        for lease in held:
            queue.release(lease)
        t.join(10)
    assert result == [StopReason.FINISHED] and worker.chunks_done == 2


def test_stop_commits_the_answered_requests_and_hands_the_rest_back(store):
    """A stop mid-chunk keeps every answered request (a partial commit) and hands the unanswered
    ones back as a new chunk; a cancelled job then returns the answered ones and batch_cancelled
    only for those never run; once another worker runs the rest, each custom_id is in the output once."""
    from orca.assembler import assemble
    from orca.models import ChunkManifest

    s = settings(drain_grace_s=0.3)
    queue = queue_for(s)
    # concurrency 8: five answered at once, eight still in flight at the stop, three never sent
    delays = [0.01] * 5 + [30.0] * 11
    lines = [json.dumps({"custom_id": f"c0-{i}", "method": "POST", "url": "/v1/completions",
                         "body": body(0, i, fake_delay_s=d)}) for i, d in enumerate(delays)]
    store.put_bytes(LAYOUT.chunk("chunk-000"), ("\n".join(lines) + "\n").encode())
    queue.enqueue_many(["chunk-000"])
    manifests = [ChunkManifest(job_id=JOB, chunk_id="chunk-000", lines=list(range(1, 17)), est_tokens=16)]
    with FakeOpenAIServer(slots=64) as fake:
        worker = make_worker(queue, store, fake.url, s, concurrency=8, burst=False)
        t, result = run_in_thread(worker)
        wait_until(lambda: worker.requests_uncommitted == 5 and fake.stats.in_flight == 8)
        assert worker.requests_uncommitted == 5 and fake.stats.in_flight == 8
        worker.stop()
        t.join(5)
        assert not t.is_alive()
        assert result == [StopReason.SIGNALLED] and worker.requests_salvaged == 5
        info = queue.chunk("chunk-000")
        assert info.state is ChunkState.SPLIT and info.attempts == 0
        answered, rest = f"chunk-000.{info.split}a", f"chunk-000.{info.split}r"
        assert queue.committed_generations() == {answered: 1}
        assert [line["custom_id"] for line in read_output(store, answered, 1)] == [f"c0-{i}" for i in range(5)]
        counts = queue.counts()
        assert (counts.pending, counts.leased, counts.done, counts.total) == (1, 0, 1, 2)

        cancelled = assemble(store, JOB, queue.committed_generations(), queue.dead_chunks(), manifests,
                             unfinished_code="batch_cancelled", splits=queue.splits())
        assert (cancelled.completed, cancelled.failed) == (5, 11)
        errors = [json.loads(x) for x in store.get_bytes(LAYOUT.errors).splitlines()]
        assert [e["custom_id"] for e in errors] == [f"c0-{i}" for i in range(5, 16)]
        assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}

        fast = settings()
        store.put_bytes(LAYOUT.chunk(rest), b"".join(  # the rescuer should not wait 30 s for the slow ones
            json.dumps({**json.loads(x), "body": body(0, int(json.loads(x)["custom_id"][3:]))}).encode() + b"\n"
            for x in store.get_bytes(LAYOUT.chunk(rest)).splitlines()))
        rescuer = make_worker(queue, store, fake.url, fast, worker_id="w2")
        assert asyncio.run(rescuer.run()) is StopReason.FINISHED
    assert queue.counts().finished
    final = assemble(store, JOB, queue.committed_generations(), queue.dead_chunks(), manifests, splits=queue.splits())
    assert (final.completed, final.failed, final.missing) == (16, 0, 0)
    out = [json.loads(x) for x in store.get_bytes(LAYOUT.output).splitlines()]
    assert [o["custom_id"] for o in out] == [f"c0-{i}" for i in range(16)]


def test_a_stale_worker_keeps_nothing_when_it_stops(store):
    s = settings(drain_grace_s=0.3)
    clock = ManualClock()
    queue = queue_for(s, clock)
    delays = [0.01] * 2 + [30.0] * 2
    lines = [json.dumps({"custom_id": f"c0-{i}", "method": "POST", "url": "/v1/completions",
                         "body": body(0, i, fake_delay_s=d)}) for i, d in enumerate(delays)]
    store.put_bytes(LAYOUT.chunk("chunk-000"), ("\n".join(lines) + "\n").encode())
    queue.enqueue_many(["chunk-000"])
    with FakeOpenAIServer(slots=64) as fake:
        worker = make_worker(queue, store, fake.url, settings(drain_grace_s=0.3, tick_s=30), concurrency=4, burst=False)
        t, result = run_in_thread(worker)
        wait_until(lambda: worker.requests_uncommitted == 2)
        clock.advance(s.queue.lease_s + 1)
        assert queue.reap() == ["chunk-000"]
        (thief,) = queue.claim("w2", "pool-a")
        worker.stop()
        t.join(5)
    assert queue.splits() == {} and queue.committed_generations() == {}
    info = queue.chunk("chunk-000")
    assert (info.state, info.owner, info.generation) == (ChunkState.LEASED, "w2", thief.generation)
