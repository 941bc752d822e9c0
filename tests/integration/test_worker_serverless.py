"""``run_until_empty``: the serverless entry point, against redis-server, a file store and the fake engine."""

from __future__ import annotations

import time

from orca.queue import ChunkQueue, ChunkState
from orca.settings import EngineSettings, Settings, WorkerSettings
from orca.storage import open_store
from orca.worker.engines import EngineSpec
from orca.worker.engines.fake import FakeEngine
from orca.worker.serverless import run_until_empty
from tests.fakes.worker_job import read_committed, request, write_chunks


def chunks(n_chunks: int, per_chunk: int, **extra) -> list[list[dict]]:
    return [[request(f"s{c}-{i}", "/v1/embeddings", {"model": "emb", "input": f"t{c}-{i}", **extra})
             for i in range(per_chunk)] for c in range(n_chunks)]


def test_one_call_runs_until_the_queue_is_empty_on_a_warm_engine(redis_url, tmp_path):
    job = "job-sls-1"
    store_url = f"file://{tmp_path}/store"
    store = open_store(store_url)
    ids = write_chunks(store, job, chunks(3, 10))
    settings = Settings(worker=WorkerSettings(idle_poll_s=0.05))
    engine = FakeEngine(EngineSpec(kind="fake", model="emb"), settings.engine)
    engine.start()
    try:
        with ChunkQueue(redis_url, job) as queue:
            queue.enqueue_many(ids)
            result = run_until_empty(job, redis_url, store_url, engine=engine, worker_id="sls-1", settings=settings)
            assert result == {"exit_code": 0, "stop_reason": "finished", "worker_id": "sls-1"}
            assert engine.ready  # a warm engine is left running for the next invocation
            outputs = read_committed(store, queue, job)
        assert sorted(line["custom_id"] for lines in outputs.values() for line in lines) == sorted(
            f"s{c}-{i}" for c in range(3) for i in range(10))
    finally:
        engine.stop()


def test_the_time_budget_ends_the_call_and_releases_what_is_left(redis_url, tmp_path):
    job = "job-sls-2"
    store_url = f"file://{tmp_path}/store"
    ids = write_chunks(open_store(store_url), job, chunks(2, 4, fake_delay_s=60))
    settings = Settings(worker=WorkerSettings(idle_poll_s=0.05, drain_grace_s=0.5),
                        engine=EngineSettings(health_poll_s=0.05))
    with ChunkQueue(redis_url, job) as queue:
        queue.enqueue_many(ids)
        started = time.monotonic()
        result = run_until_empty(job, redis_url, store_url, engine=EngineSpec(kind="fake", model="emb"),
                                 time_budget_s=1.5, settings=settings)
        assert time.monotonic() - started < 10
        assert result["exit_code"] == 0 and result["stop_reason"] == "budget"
        for chunk_id in ids:
            info = queue.chunk(chunk_id)
            assert info.state is ChunkState.PENDING and info.attempts == 0
