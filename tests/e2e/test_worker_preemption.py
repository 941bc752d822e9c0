"""Worker subprocesses under SIGTERM and kill -9, against redis-server, a file store and the fake engine."""

from __future__ import annotations

import signal
import time
from collections import Counter

from orca.queue import ChunkQueue, ChunkState
from orca.storage import open_store
from orca.storage.layout import JobLayout
from orca.worker.engines.fake_server import FakeOpenAIServer
from tests.conftest import wait_until
from tests.fakes.worker_job import read_committed, request, spawn_worker, write_chunks


def chunks_of(n_chunks: int, per_chunk: int, delay_s: float) -> list[list[dict]]:
    return [[request(f"r{c}-{i}", "/v1/completions",
                     {"model": "smollm2", "prompt": f"p{c}-{i}", "max_tokens": 2, "fake_delay_s": delay_s})
             for i in range(per_chunk)] for c in range(n_chunks)]


def test_sigterm_releases_the_chunk_without_charging_an_attempt_and_exits_0(redis_url, tmp_path):
    job = "job-sigterm"
    store_url = f"file://{tmp_path}/store"
    store = open_store(store_url)
    [chunk_id] = write_chunks(store, job, chunks_of(1, 4, delay_s=60))
    with ChunkQueue(redis_url, job) as queue, FakeOpenAIServer() as fake:
        queue.enqueue_many([chunk_id])
        proc = spawn_worker(job, redis_url, store_url, "w-term", "--engine", "external", "--engine-url", fake.url,
                            "--max-concurrency", "4", env={"ORCA_WORKER__DRAIN_GRACE_S": "0.5"}, log_dir=tmp_path)
        try:
            wait_until(lambda: fake.stats.in_flight == 4, 30, "the chunk's requests to reach the engine")
            assert queue.chunk(chunk_id).state is ChunkState.LEASED
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            proc.kill()
        info = queue.chunk(chunk_id)
        assert info.state is ChunkState.PENDING and info.attempts == 0 and info.owner == "w-term"
        assert queue.counts().pending == 1
        assert list(store.list(JobLayout(job).chunk_output_prefix(chunk_id))) == []


def test_kill_9_mid_chunk_another_worker_finishes_it_after_the_lease_expires(redis_url, tmp_path):
    job = "job-kill9"
    store_url = f"file://{tmp_path}/store"
    store = open_store(store_url)
    chunks = chunks_of(3, 8, delay_s=0.5)
    ids = write_chunks(store, job, chunks)
    env = {"ORCA_QUEUE__LEASE_S": "2", "ORCA_QUEUE__RENEW_EVERY_S": "0.5", "ORCA_WORKER__IDLE_POLL_S": "0.1"}
    with ChunkQueue(redis_url, job) as queue, FakeOpenAIServer() as fake:
        queue.enqueue_many(ids)
        victim = spawn_worker(job, redis_url, store_url, "w-victim", "--engine", "external", "--engine-url", fake.url,
                              "--max-concurrency", "4", env=env, log_dir=tmp_path)
        try:
            wait_until(lambda: fake.stats.in_flight > 0, 30, "the victim's requests to reach the engine")
            victim.kill()  # SIGKILL: no release, no cleanup
            assert victim.wait(10) == -signal.SIGKILL
        finally:
            victim.kill()
        held = [c for c in ids if queue.chunk(c).state is ChunkState.LEASED]
        assert held and all(queue.chunk(c).owner == "w-victim" for c in held)
        rescuer = spawn_worker(job, redis_url, store_url, "w-rescuer", "--engine", "external", "--engine-url",
                               fake.url, "--max-concurrency", "8", env=env, log_dir=tmp_path)
        try:
            deadline = time.monotonic() + 60
            while rescuer.poll() is None:  # the test plays the controller's reaper
                assert time.monotonic() < deadline, "rescuer did not finish"
                queue.reap()
                time.sleep(0.2)
            assert rescuer.returncode == 0
        finally:
            rescuer.kill()
        assert queue.counts().done == 3
        for chunk_id in held:
            info = queue.chunk(chunk_id)
            assert info.owner == "w-rescuer" and info.committed_generation == 2 and info.attempts == 1
        outputs = read_committed(store, queue, job)
        seen = Counter(line["custom_id"] for lines in outputs.values() for line in lines)
        assert seen == Counter(r["custom_id"] for chunk in chunks for r in chunk)  # every one exactly once
        assert all(line["error"] is None for lines in outputs.values() for line in lines)
