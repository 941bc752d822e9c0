"""A job through the whole control plane in one process: HTTP submit, ingest (RQ step run inline),
controller ticks launching real local workers on the fake engine, assembly, results over HTTP.
Also: a bad input file fails fast with line-numbered errors and launches nothing; cancel and
deadline expiry keep partial results.
"""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from orca.control.app import create_app
from orca.control.controller import Controller
from orca.control.service import OrcaService
from orca.settings import ControlSettings, IngestSettings, LauncherSettings, QueueSettings, Settings, WorkerSettings

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def batch(n: int, delay_s: float = 0.0) -> bytes:
    rows = [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": MODEL, "max_tokens": 8, "fake_delay_s": delay_s, "messages": [{"role": "user", "content": f"q{i}"}]}}
            for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def flow_settings(redis_url: str, tmp_path, lease_s: float = 3) -> Settings:
    """Fast timings, chunks of at most 4 requests, up to 2 local workers on the fake engine."""
    return Settings(
        home=tmp_path, redis_url=redis_url, store_url=(tmp_path / "store").as_uri(),
        queue=QueueSettings(lease_s=lease_s, renew_every_s=0.5, reap_every_s=0.2),
        ingest=IngestSettings(min_chunk_requests=1, max_chunk_requests=4),
        control=ControlSettings(tick_s=0.1, lock_ttl_s=5),
        launcher=LauncherSettings(local_engine="fake", local_engine_args={"fake_slots": "4"}, local_stop_grace_s=3, local_max_workers=2),
        worker=WorkerSettings(drain_grace_s=0.3, metrics_every_s=0.5, idle_poll_s=0.2),
    )


@pytest.fixture
def env(redis_url: str, tmp_path):
    svc = OrcaService.from_settings(flow_settings(redis_url, tmp_path), synchronous=True)
    client = TestClient(create_app(svc))
    token = svc.registry.create_token("alice")
    client.headers["authorization"] = f"Bearer {token}"
    controller = Controller(svc)
    yield svc, client, controller
    for job_id in svc.registry.job_ids():  # never leave workers behind
        for r in svc.registry.replicas(job_id):
            if r.state.live:
                controller.launcher("local").terminate(r)
    svc.close()


def run_until(controller: Controller, client: TestClient, job_id: str, pred, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        controller.tick()
        job = client.get(f"/api/jobs/{job_id}").json()
        if pred(job):
            return job
        assert job["status"] != "failed", job
        time.sleep(0.1)
    raise AssertionError(f"job stuck: {job}")


def lines(client: TestClient, job_id: str, kind: str, **params) -> list[dict]:
    r = client.get(f"/api/jobs/{job_id}/{kind}", params=params)
    assert r.status_code == 200, r.text
    return [json.loads(x) for x in r.text.splitlines() if x.strip()]


def test_job_runs_to_completion(env) -> None:
    svc, client, controller = env
    r = client.post("/api/jobs", files={"file": ("b.jsonl", batch(20))}, data={"deadline": "1h", "metadata": '{"team": "x"}'})
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "in_progress"  # ingest ran inline (synchronous background)
    assert job["request_counts"]["total"] == 20 and job["progress"]["chunks_total"] == 5
    assert job["plan"]["market"] == "local" and job["plan"]["replicas"] == 2
    done = run_until(controller, client, job["id"], lambda j: j["status"] == "completed")
    assert done["request_counts"] == {"total": 20, "completed": 20, "failed": 0}
    assert done["output_available"] and done["completed_at"] >= done["in_progress_at"]
    assert done["metadata"] == {"team": "x"}
    out = lines(client, job["id"], "results")
    assert [x["custom_id"] for x in out] == [f"req-{i}" for i in range(20)]
    assert lines(client, job["id"], "errors") == []
    kinds = [e["kind"] for e in client.get(f"/api/jobs/{job['id']}/logs").json()]
    assert kinds[0] == "created" and "replica_launched" in kinds and kinds[-1] in ("completed", "teardown")
    run_until(controller, client, job["id"], lambda j: svc.registry.get(j["id"]).settled)
    assert not any(r.state.live for r in svc.registry.replicas(job["id"]))


def test_status_counts_requests_answered_in_a_running_chunk(env) -> None:
    """One chunk whose last request is slow: status shows the three answered ones (from the
    worker's metrics reports) before the chunk commits, then the committed counts."""
    svc, client, controller = env
    rows = [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": MODEL, "max_tokens": 8, "fake_delay_s": delay, "messages": [{"role": "user", "content": f"q{i}"}]}}
            for i, delay in enumerate([0.1, 0.1, 0.1, 4.0])]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    job = client.post("/api/jobs", files={"file": ("b.jsonl", body)}, data={"deadline": "1h"}).json()
    assert job["progress"]["chunks_total"] == 1
    running = run_until(controller, client, job["id"], lambda j: j["progress"]["requests_uncommitted"] == 3)
    assert running["progress"]["chunks_done"] == 0 and running["request_counts"]["completed"] == 0
    done = run_until(controller, client, job["id"], lambda j: j["status"] == "completed")
    assert done["request_counts"]["completed"] == 4 and done["progress"]["requests_uncommitted"] == 0


def test_bad_input_fails_fast_with_line_numbers(env) -> None:
    svc, client, controller = env
    bad = batch(3) + b"not json\n" + b'{"custom_id": "req-0", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    job = client.post("/api/jobs", files={"file": ("b.jsonl", bad)}).json()
    assert job["status"] == "failed"
    assert job["validation_error_count"] >= 2
    assert {e["line"] for e in job["validation_errors"]} >= {4, 5}
    errors = lines(client, job["id"], "errors")
    assert {e["line"] for e in errors} >= {4, 5}
    controller.tick()
    assert svc.registry.replicas(job["id"]) == []


def test_cancel_keeps_partial_results(env) -> None:
    svc, client, controller = env
    n = 80
    job = client.post("/api/jobs", files={"file": ("b.jsonl", batch(n, 1.0))}).json()
    run_until(controller, client, job["id"], lambda j: j["progress"]["chunks_done"] >= 1)
    partial = lines(client, job["id"], "results", partial=True)
    assert 0 < len(partial) < n
    assert client.post(f"/api/jobs/{job['id']}/cancel").json()["status"] == "cancelling"
    done = run_until(controller, client, job["id"], lambda j: j["status"] == "cancelled" and j["output_available"])
    out, err = lines(client, job["id"], "results"), lines(client, job["id"], "errors")
    assert 0 < len(out) < n and len(out) + len(err) == n
    assert "batch_cancelled" in {e["error"]["code"] for e in err}
    assert done["request_counts"]["completed"] == len(out)
    assert not any(r.state.live for r in svc.registry.replicas(job["id"]))
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 409


def test_deadline_expiry_keeps_partial_results(env) -> None:
    svc, client, controller = env
    n = 80
    job = client.post("/api/jobs", files={"file": ("b.jsonl", batch(n, 1.0))}).json()
    run_until(controller, client, job["id"], lambda j: j["progress"]["chunks_done"] >= 1)
    svc.registry.update(job["id"], deadline_at=time.time())  # the clock reaches the deadline mid-job
    done = run_until(controller, client, job["id"], lambda j: j["status"] == "expired" and j["output_available"])
    out, err = lines(client, job["id"], "results"), lines(client, job["id"], "errors")
    assert 0 < len(out) < n and len(out) + len(err) == n
    assert {e["error"]["code"] for e in err} == {"batch_expired"}
    assert done["expired_at"] >= done["deadline_at"] and "deadline" in done["message"]
    run_until(controller, client, job["id"], lambda j: svc.registry.get(j["id"]).settled)
    assert not any(r.state.live for r in svc.registry.replicas(job["id"]))


def test_two_controllers_never_double_launch(env) -> None:
    """Two controllers tick the same job concurrently; the per-job lock lets one act at a time."""
    import threading

    svc, client, first = env
    second = Controller(OrcaService.from_settings(svc.settings, synchronous=True))
    job = client.post("/api/jobs", files={"file": ("b.jsonl", batch(40, 0.2))}).json()
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,)) for c in (first, second)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while client.get(f"/api/jobs/{job['id']}").json()["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
        second.svc.close()
    assert client.get(f"/api/jobs/{job['id']}").json()["status"] == "completed"
    launched = [e for e in svc.registry.events(job["id"]) if e["kind"] == "replica_launched"]
    assert len(launched) == len(svc.registry.replicas(job["id"])) == 2
    assert len(lines(client, job["id"], "results")) == 40


def test_chunks_are_sized_for_the_planned_local_replica(redis_url: str, tmp_path) -> None:
    """With default chunk limits, a job the reference GPU rate would put in one chunk is split
    into chunks of about ``target_chunk_s`` of the planned CPU replica's work, so both local
    workers get chunks."""
    settings = Settings(home=tmp_path, redis_url=redis_url, store_url=(tmp_path / "store").as_uri(),
                        ingest=IngestSettings(min_chunk_requests=1),
                        launcher=LauncherSettings(local_engine="fake", local_max_workers=2))
    svc = OrcaService.from_settings(settings, synchronous=True)
    try:
        client = TestClient(create_app(svc))
        client.headers["authorization"] = f"Bearer {svc.registry.create_token('alice')}"
        body = b"".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                    "body": {"model": MODEL, "max_tokens": 100,
                                             "messages": [{"role": "user", "content": f"q{i}"}]}}).encode() + b"\n"
                        for i in range(200))
        job = client.post("/api/jobs", files={"file": ("b.jsonl", body)}, data={"deadline": "24h"}).json()
        assert job["status"] == "in_progress", job
        rate = svc.registry.get(job["id"]).plan["replica_tokens_per_s"]
        assert job["plan"]["market"] == "local" and rate < 200  # the planner's CPU estimate for SmolLM2
        per_chunk_s = 200 * 100 / rate / job["progress"]["chunks_total"]
        assert job["progress"]["chunks_total"] > 1 and job["plan"]["replicas"] == 2
        assert 0.5 * settings.ingest.target_chunk_s <= per_chunk_s <= settings.ingest.target_chunk_s * 1.1
        [validated] = [e for e in svc.registry.events(job["id"]) if e["kind"] == "validated"]
        assert f"cut for 120 s of work each on a replica making {rate:.0f} output tokens/s" in validated["message"]
    finally:
        svc.close()


@pytest.mark.parametrize("preempted", [False, True])
def test_a_lost_workers_chunks_are_reclaimed_without_waiting_for_the_lease(redis_url: str, tmp_path, preempted: bool) -> None:
    """kill -9 the local worker holding a chunk, with 60 s leases: the controller sees the process
    gone and takes its chunks back at once; the job completes well inside one lease. A crash
    (failed) charges the chunks an attempt; the same loss reported as a preemption does not."""
    import os
    import signal

    from orca.launchers.base import ReplicaState
    from orca.launchers.local import LocalLauncher
    from orca.queue import ChunkState

    class PreemptedLauncher(LocalLauncher):
        """The local launcher, except that a worker that died reads as preempted (as a spot VM would)."""

        def poll(self, replica):
            replica = super().poll(replica)
            if replica.state is ReplicaState.FAILED:
                replica.state = ReplicaState.PREEMPTED
            return replica

    settings = flow_settings(redis_url, tmp_path, lease_s=60)
    svc = OrcaService.from_settings(settings, synchronous=True)
    controller = Controller(svc, launchers={"local": PreemptedLauncher(settings)} if preempted else None)
    try:
        client = TestClient(create_app(svc))
        client.headers["authorization"] = f"Bearer {svc.registry.create_token('alice')}"
        job = client.post("/api/jobs", files={"file": ("b.jsonl", batch(16, 3.0))}).json()  # 3 s per chunk
        queue = svc.queue(job["id"])
        chunk_ids = [f"chunk-{i:06d}" for i in range(job["progress"]["chunks_total"])]

        def held() -> dict[str, str]:
            return {c: queue.chunk(c).owner for c in chunk_ids if queue.chunk(c).state is ChunkState.LEASED}

        run_until(controller, client, job["id"], lambda j: bool(held()))
        holding = held()
        victim_id = next(iter(holding.values()))
        victim = next(r for r in svc.registry.replicas(job["id"]) if r.replica_id == victim_id)
        lost = [c for c, owner in holding.items() if owner == victim_id]
        os.kill(int(victim.handle.split(":")[0]), signal.SIGKILL)
        started = time.monotonic()
        done = run_until(controller, client, job["id"], lambda j: j["status"] == "completed", timeout=40)
        assert time.monotonic() - started < 40 < settings.queue.lease_s
        assert done["request_counts"] == {"total": 16, "completed": 16, "failed": 0}
        events = client.get(f"/api/jobs/{job['id']}/logs").json()
        kinds = [e["kind"] for e in events]
        assert "reclaimed" in kinds and "reaped" not in kinds
        assert any(e["kind"] == "reclaimed" and victim_id in e["message"] for e in events)
        assert {queue.chunk(c).attempts for c in lost} == ({0} if preempted else {1})
    finally:
        for r in svc.registry.replicas(job["id"]):
            if r.state.live:
                controller.launcher("local").terminate(r)
        svc.close()
