"""The worker against a real redis-server and a local file store, with supervised fake-engine subprocesses."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx

from orca.queue import ChunkQueue, ChunkState
from orca.queue.worker_metrics import WorkerMetrics, WorkerMetricsStore
from orca.settings import EngineSettings, Settings, WorkerSettings
from orca.storage import open_store
from orca.storage.layout import JobLayout
from orca.worker.engines import EngineSpec
from orca.worker.engines.base import ServerProcess, free_port
from orca.worker.engines.fake import FakeEngine
from orca.worker.runner import WorkerConfig, run_worker
from orca.worker.worker import ExitCode, StopReason


def write_job(store, job: str, n_chunks: int, per_chunk: int, **extra) -> list[str]:
    layout = JobLayout(job)
    ids = []
    for c in range(n_chunks):
        chunk_id = f"chunk-{c:03d}"
        lines = [json.dumps({"custom_id": f"req-{c}-{i}", "method": "POST", "url": "/v1/chat/completions",
                             "body": {"model": "smollm2", "messages": [{"role": "user", "content": f"q{i}"}],
                                      "max_tokens": 4, **extra}}) for i in range(per_chunk)]
        store.put_bytes(layout.chunk(chunk_id), ("\n".join(lines) + "\n").encode())
        ids.append(chunk_id)
    return ids


def test_run_worker_with_the_fake_engine_kind_commits_every_chunk_and_reports_metrics(redis_url, tmp_path):
    job = "job-redis-1"
    store_url = f"file://{tmp_path}/store"
    store = open_store(store_url)
    ids = write_job(store, job, n_chunks=4, per_chunk=20)
    with ChunkQueue(redis_url, job) as queue:
        queue.enqueue_many(ids)
    settings = Settings(worker=WorkerSettings(metrics_every_s=3600, idle_poll_s=0.05))
    config = WorkerConfig(job_id=job, redis_url=redis_url, store_url=store_url, pool="p", worker_id="w-int",
                          engine=EngineSpec(kind="fake", model="smollm2", fake_slots=8, fake_latency_s=0.01),
                          burst=True)
    code, reason = run_worker(config, settings)
    assert (code, reason) == (ExitCode.OK, StopReason.FINISHED)
    with ChunkQueue(redis_url, job) as queue:
        assert queue.committed_generations() == {chunk_id: 1 for chunk_id in ids}
    for c, chunk_id in enumerate(ids):
        lines = [json.loads(x) for x in store.get_bytes(JobLayout(job).chunk_output(chunk_id, 1)).splitlines()]
        assert [x["custom_id"] for x in lines] == [f"req-{c}-{i}" for i in range(20)]
        assert all(x["response"]["status_code"] == 200 for x in lines)
    metrics = WorkerMetricsStore(redis_url, job)
    try:
        [report] = metrics.read(max_age_s=60)
    finally:
        metrics.close()
    assert report.worker_id == "w-int" and report.state == "stopped" and report.engine == "fake"
    assert report.requests_total == 80 and report.errors_total == 0 and report.chunks_done == 4
    assert report.tokens_per_s > 0 and report.requests_per_s > 0 and 0 < report.busy_fraction <= 1


def test_worker_metrics_round_trip_and_age_filter(redis_url):
    store = WorkerMetricsStore(redis_url, "job-metrics")
    try:
        base = dict(pool="p", state="running", engine="vllm", requests_total=10, errors_total=1, chunks_done=2,
                    in_flight=3, requests_per_s=1.5, tokens_per_s=120.25, prompt_tokens_per_s=40.0, busy_fraction=0.75)
        written = store.report(WorkerMetrics(worker_id="a", **base))
        store.report(WorkerMetrics(worker_id="b", **{**base, "state": "draining"}))
        got = store.read()
        assert [m.worker_id for m in got] == ["a", "b"]
        assert got[0] == written and written.reported_at_ms > 0
        assert got[1].state == "draining" and got[1].tokens_per_s == 120.25
        time.sleep(0.05)
        assert store.read(max_age_s=0.01) == []
    finally:
        store.close()


def test_supervisor_restarts_a_crashed_engine_and_gives_up_after_max_restarts():
    settings = EngineSettings(health_poll_s=0.05, start_timeout_s=20, max_restarts=1)
    port = free_port()
    import sys
    server = ServerProcess("fake", [sys.executable, "-m", "orca.worker.engines.fake_server", "--port", str(port)],
                           port, settings)
    server.start()
    try:
        assert server.ready and httpx.get(server.url + "/health").status_code == 200
        first = server.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (server.pid == first or not server.ready) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.ready and server.pid != first and server.restarts == 1 and server.failure is None
        assert httpx.get(server.url + "/health").status_code == 200
        os.kill(server.pid, signal.SIGKILL)
        while server.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.failure and not server.ready
    finally:
        server.stop()


def test_an_engine_that_dies_for_good_gets_its_chunks_released(redis_url, tmp_path):
    job = "job-redis-2"
    store_url = f"file://{tmp_path}/store"
    ids = write_job(open_store(store_url), job, n_chunks=2, per_chunk=4, fake_delay_s=30)
    with ChunkQueue(redis_url, job) as queue:
        queue.enqueue_many(ids)
    settings = Settings(engine=EngineSettings(health_poll_s=0.05, max_restarts=0),
                        worker=WorkerSettings(idle_poll_s=0.05))
    engine = FakeEngine(EngineSpec(kind="fake", model="smollm2"), settings.engine)
    engine.start()
    result: list = []
    config = WorkerConfig(job_id=job, redis_url=redis_url, store_url=store_url, pool="p", worker_id="w-dies",
                          engine=engine.spec, burst=True)
    t = threading.Thread(target=lambda: result.append(run_worker(config, settings, engine=engine)))
    t.start()
    try:
        with ChunkQueue(redis_url, job) as queue:
            deadline = time.monotonic() + 10
            while queue.counts().leased < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(engine.servers[0].pid, signal.SIGKILL)
            t.join(15)
            assert result == [(ExitCode.ENGINE_FAILED, StopReason.ENGINE_FAILED)]
            for chunk_id in ids:
                info = queue.chunk(chunk_id)
                assert info.state is ChunkState.PENDING and info.attempts == 0
    finally:
        engine.stop()


def test_a_crashed_engine_is_restarted_and_its_requests_retried_without_using_up_attempts(redis_url, tmp_path):
    job = "job-redis-3"
    store_url = f"file://{tmp_path}/store"
    store = open_store(store_url)
    ids = write_job(store, job, n_chunks=1, per_chunk=6, fake_delay_s=1.0)
    with ChunkQueue(redis_url, job) as queue:
        queue.enqueue_many(ids)
    settings = Settings(engine=EngineSettings(health_poll_s=0.05, max_restarts=2),
                        worker=WorkerSettings(idle_poll_s=0.05, request_retries=0))  # no retry budget at all
    engine = FakeEngine(EngineSpec(kind="fake", model="smollm2"), settings.engine)
    engine.start()
    result: list = []
    config = WorkerConfig(job_id=job, redis_url=redis_url, store_url=store_url, pool="p", worker_id="w-crash",
                          engine=engine.spec, burst=True)
    t = threading.Thread(target=lambda: result.append(run_worker(config, settings, engine=engine)))
    t.start()
    try:
        first = engine.servers[0].pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(engine.servers[0].url + "/fake/stats").json()["in_flight"] == 6:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        os.kill(first, signal.SIGKILL)
        t.join(30)
        assert result == [(ExitCode.OK, StopReason.FINISHED)]
        assert engine.servers[0].restarts == 1 and engine.servers[0].pid != first
    finally:
        engine.stop()
    lines = [json.loads(x) for x in store.get_bytes(JobLayout(job).chunk_output(ids[0], 1)).splitlines()]
    assert [x["response"]["status_code"] for x in lines] == [200] * 6 and all(x["error"] is None for x in lines)
