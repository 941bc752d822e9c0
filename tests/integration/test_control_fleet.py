"""The control plane as a fleet: one bad job never stalls another, bad launcher fields are refused
before anything is stored, and a swap whose old pool holds every chunk cannot relaunch in a loop.

Real redis-server, real controller ticks, real local workers on the fake engine; the only
stand-in is a launcher that raises on every call (a cloud whose API is broken).
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from fastapi.testclient import TestClient

from orca.control.app import create_app
from orca.control.controller import Controller
from orca.control.service import OrcaService
from orca.errors import LaunchError
from orca.fleet import ReplicaState
from orca.launchers.base import Launcher
from orca.queue import ChunkState
from orca.settings import LauncherSettings
from tests.conftest import wait_until
from tests.integration.test_control_flow import MODEL, batch, flow_settings


class BrokenCloud(Launcher):
    """A stand-in for a cloud whose API answers slowly and then fails, on every call."""

    name = "skypilot"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.calls = 0

    def _fail(self, *args, **kwargs):
        self.calls += 1
        time.sleep(self.delay_s)
        raise LaunchError("the cloud API is down")

    launch = poll = drain = terminate = _fail


@pytest.fixture
def fleet(redis_url: str, tmp_path):
    settings = flow_settings(redis_url, tmp_path)
    settings.launcher.max_replica_failures = 2
    settings.control.max_tick_failures = 3
    svc = OrcaService.from_settings(settings, synchronous=True)
    client = TestClient(create_app(svc))
    client.headers["authorization"] = f"Bearer {svc.registry.create_token('alice')}"
    yield svc, client
    local = Controller(svc).launcher("local")
    for job_id in svc.registry.job_ids():  # never leave workers behind
        for r in svc.registry.replicas(job_id):
            if r.state.live and r.launcher == "local":
                local.terminate(r)
    svc.close()


def engine_paced_batch(n: int) -> bytes:
    """``n`` requests that take as long as the engine's own latency (no per-request delay)."""
    rows = [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": f"q{i}"}]}} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def submit(client: TestClient, n: int, body: bytes | None = None, **form) -> dict:
    r = client.post("/api/jobs", files={"file": ("b.jsonl", body or batch(n))}, data={"deadline": "1h", **form})
    assert r.status_code == 201, r.text
    return r.json()


def repoint(svc: OrcaService, job_id: str, launcher: str, target: int | None = None) -> None:
    """Make the job's pool run on ``launcher`` (as a job planned for a cloud would)."""
    record = svc.registry.get(job_id)
    svc.registry.update(job_id, launcher=launcher,
                        pools=[dataclasses.replace(p, launcher=launcher, target=target) for p in record.pools])


def tick_until(controller: Controller, pred, timeout_s: float = 40.0, what: str = "the condition"):
    def step():
        controller.tick()
        time.sleep(0.1)
        return pred()
    return wait_until(step, timeout_s, what, interval_s=0)


def test_a_job_whose_launcher_raises_does_not_delay_another_jobs_launches(fleet) -> None:
    svc, client = fleet
    cloud = BrokenCloud(delay_s=1.0)
    controller = Controller(svc, launchers={"skypilot": cloud})
    bad = submit(client, 8)
    repoint(svc, bad["id"], "skypilot", target=2)
    good = submit(client, 8)

    report = controller.tick()
    assert set(report.jobs) == {bad["id"], good["id"]} and report.failed == []
    assert report.duration_s < cloud.delay_s  # the broken cloud's calls run off the tick
    launched = [e for e in svc.registry.events(good["id"]) if e["kind"] == "replica_launched"]
    assert len(launched) == 2  # the good job's workers were asked for in the very first tick

    done = tick_until(controller, lambda: svc.registry.get(bad["id"]).status.terminal, what="the bad job to fail")
    assert done
    bad_record = svc.registry.get(bad["id"])
    assert bad_record.status.value == "failed" and "replicas failed" in bad_record.message
    failed = [r for r in svc.registry.replicas(bad["id"]) if r.state is ReplicaState.FAILED]
    assert failed and all("the cloud API is down" in r.message for r in failed)
    tick_until(controller, lambda: svc.registry.get(good["id"]).status.value == "completed", what="the good job")


def test_a_job_whose_tick_raises_fails_with_the_reason_and_the_others_go_on(fleet) -> None:
    """A pool naming a launcher this server does not have (say, from a removed plugin) makes that
    job's tick raise: the error is an event and the job's message, the job fails after
    ``max_tick_failures`` ticks, and another job completes meanwhile."""
    svc, client = fleet
    controller = Controller(svc)
    bad = submit(client, 8)
    repoint(svc, bad["id"], "gone", target=2)
    good = submit(client, 8)
    report = controller.tick()
    assert report.failed == [bad["id"]]
    first = [e for e in svc.registry.events(bad["id"]) if e["kind"] == "tick_failed"]
    assert len(first) == 1 and "unknown launcher" in first[0]["message"]
    assert "unknown launcher" in client.get(f"/api/jobs/{bad['id']}").json()["message"]
    tick_until(controller, lambda: svc.registry.get(bad["id"]).status.value == "failed", what="the bad job to fail")
    record = svc.registry.get(bad["id"])
    assert "3 ticks in a row" in record.message and "unknown launcher" in record.message
    tick_until(controller, lambda: svc.registry.get(good["id"]).status.value == "completed", what="the good job")


@pytest.mark.parametrize("form, param", [
    ({"launcher": "bogus"}, "launcher"),
    ({"gpu": "../../etc"}, "gpu"),
    ({"gpu": "H100"}, "gpu"),          # not a GPU of the local launcher
    ({"markets": "spot,bogus"}, "markets"),
])
def test_bad_submit_fields_get_400_and_nothing_is_recorded(fleet, form, param) -> None:
    svc, client = fleet
    r = client.post("/api/jobs", files={"file": ("b.jsonl", batch(4))}, data=form)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and [e["param"] for e in error["errors"]] == [param]
    assert "known:" in error["message"]
    assert svc.registry.job_ids() == [] and svc.registry.user_file_ids("alice") == []


@pytest.mark.parametrize("body, param", [
    ({"gpu": "bogus"}, "gpu"),
    ({"gpu": ""}, "gpu"),
    ({"gpu": "../../etc"}, "gpu"),
    ({"gpu": "fast", "tp": 0}, "tp"),
    ({"gpu": "fast", "tp": 1000000000}, "tp"),
    ({"gpu": "fast", "launcher": "bogus"}, "launcher"),
    ({"gpu": "H100", "launcher": "skypilot", "tp": 3}, "tp"),
    ({"gpu": "H100", "launcher": "skypilot", "market": "bogus"}, "market"),
    ({"gpu": "T4", "launcher": "runpod"}, "gpu"),   # RunPod offers no T4
])
def test_bad_swap_fields_get_400_and_nothing_is_recorded(fleet, body, param) -> None:
    svc, client = fleet
    svc.settings.launcher.local_swap_profiles = {"fast": {"fake_latency_s": "0"}}
    job = submit(client, 4)
    r = client.post(f"/api/jobs/{job['id']}/swap", json=body)
    assert r.status_code == 400, r.text
    assert param in [e["param"] for e in r.json()["error"]["errors"]]
    record = svc.registry.get(job["id"])
    assert record.swaps == [] and len(record.pools) == 1


def test_swap_off_a_pool_that_holds_every_chunk_launches_at_most_target_plus_failures(redis_url: str, tmp_path) -> None:
    """Two chunks, both held by the old pool's slow workers: the new pool's workers stand by instead
    of exiting empty, the swap moves both chunks to them once one runs, and the job completes
    with at most target + failed launches in the new pool and no attempt charged."""
    settings = flow_settings(redis_url, tmp_path)
    settings.launcher = LauncherSettings(local_engine="fake", local_engine_args={"fake_latency_s": "30", "fake_slots": "4"},
                                         local_swap_profiles={"fast": {"fake_latency_s": "0.01"}},
                                         local_stop_grace_s=3, local_max_workers=2)
    svc = OrcaService.from_settings(settings, synchronous=True)
    controller = Controller(svc)
    client = TestClient(create_app(svc))
    client.headers["authorization"] = f"Bearer {svc.registry.create_token('alice')}"
    try:
        job = submit(client, 8, engine_paced_batch(8))
        assert job["progress"]["chunks_total"] == 2 and job["plan"]["replicas"] == 2
        queue = svc.queue(job["id"])
        tick_until(controller, lambda: queue.counts().leased == 2, what="the old pool to hold both chunks")
        r = client.post(f"/api/jobs/{job['id']}/swap", json={"gpu": "fast"})
        assert r.status_code == 200, r.text
        new_pool = r.json()["swaps"][-1]["to_pool"]
        tick_until(controller, lambda: svc.registry.get(job["id"]).status.value == "completed", timeout_s=60,
                   what="the job to complete on the new pool")
        controller.tick()  # the swap record closes on the tick after the job finished
        record = svc.registry.get(job["id"])
        assert record.swaps[-1]["state"] == "done"
        new = [r for r in svc.registry.replicas(job["id"]) if r.pool == new_pool]
        failures = sum(1 for r in new if r.state is ReplicaState.FAILED)
        target = next(p.target for p in record.pools if p.key == new_pool)
        assert len(new) <= target + failures, [(r.replica_id, r.state, r.message) for r in new]
        assert queue.pool_completions().get(new_pool) == 2
        assert all(queue.chunk(c).attempts == 0 and queue.chunk(c).state is ChunkState.DONE
                   for c in queue.committed_generations())
    finally:
        local = controller.launcher("local")
        for r in svc.registry.replicas(job["id"]):
            if r.state.live:
                local.terminate(r)
        svc.close()
