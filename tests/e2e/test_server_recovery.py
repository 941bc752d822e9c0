"""The embedded stack end to end, as subprocesses: redis-server, API server + controller, RQ worker,
local workers on the fake engine. Kill -9 the server or a worker mid-job, or cancel, and check the
outcome: every custom_id exactly once, or partial results with a cancelled status.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orca.control import embedded
from orca.launchers.local import process_start_time
from orca.queue.embedded import free_port
from orca.queue.jobs import JobRegistry
from orca.settings import Settings
from tests.conftest import wait_until

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

FAST = {
    "ORCA_CONTROL__TICK_S": "0.3",
    "ORCA_CONTROL__LOCK_TTL_S": "2",
    "ORCA_CONTROL__TASK_RETRY_BACKOFF_S": "1",
    "ORCA_QUEUE__LEASE_S": "3",
    "ORCA_QUEUE__RENEW_EVERY_S": "0.5",
    "ORCA_QUEUE__REAP_EVERY_S": "0.5",
    "ORCA_WORKER__DRAIN_GRACE_S": "1",
    "ORCA_WORKER__METRICS_EVERY_S": "0.5",
    "ORCA_WORKER__IDLE_POLL_S": "0.2",
    "ORCA_INGEST__MIN_CHUNK_REQUESTS": "1",
    "ORCA_INGEST__MAX_CHUNK_REQUESTS": "8",
    "ORCA_LAUNCHER__LOCAL_ENGINE": "fake",
    "ORCA_LAUNCHER__LOCAL_STOP_GRACE_S": "5",
    "ORCA_LAUNCHER__LOCAL_ENGINE_ARGS": json.dumps({"fake_latency_s": "0.01", "fake_slots": "8"}),
}


def batch(n: int, delay_s: float) -> bytes:
    """``n`` chat requests; the fake engine takes ``delay_s`` to answer each (``fake_delay_s``)."""
    lines = [json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": MODEL, "max_tokens": 8, "fake_delay_s": delay_s,
                                  "messages": [{"role": "user", "content": f"hi {i}"}]}})
             for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


class Stack:
    def __init__(self, home: Path) -> None:
        self.settings = Settings()
        self.home = home

    def up(self) -> embedded.StackStatus:
        self.status = embedded.up(self.settings)
        self.api = self.status.api_url
        self.token = (self.home / "token").read_text().strip()
        return self.status

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def submit(self, data: bytes, deadline: str = "1h") -> dict:
        r = httpx.post(f"{self.api}/api/jobs", headers=self.headers, files={"file": ("b.jsonl", data)},
                       data={"deadline": deadline}, timeout=30)
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: str) -> dict:
        r = httpx.get(f"{self.api}/api/jobs/{job_id}", headers=self.headers, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, pred, timeout: float = 40.0, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        job = {}
        while time.monotonic() < deadline:
            try:
                job = self.job(job_id)
            except httpx.HTTPError:
                time.sleep(0.2)  # server restarting
                continue
            if pred(job):
                return job
            assert job["status"] not in ("failed",) or pred(job), f"job failed: {job.get('message')}"
            time.sleep(0.2)
        logs = "\n".join(p.read_text()[-3000:] for p in (self.home / "logs").glob("*.log"))
        raise AssertionError(f"timed out waiting for {what}: {job}\n{logs}")

    def lines(self, job_id: str, kind: str, partial: bool = False) -> list[dict]:
        r = httpx.get(f"{self.api}/api/jobs/{job_id}/{kind}", headers=self.headers, params={"partial": partial}, timeout=30)
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]

    def registry(self) -> JobRegistry:
        return JobRegistry(embedded.redis_url(self.settings), self.settings)


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    home = tmp_path / "orca"
    monkeypatch.setenv("ORCA_HOME", str(home))
    monkeypatch.setenv("ORCA_CONTROL__PORT", str(free_port()))
    for k, v in FAST.items():
        monkeypatch.setenv(k, v)
    for k in ("ORCA_REDIS_URL", "ORCA_STORE_URL", "ORCA_API_URL", "ORCA_API_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    s = Stack(home)
    s.up()
    try:
        yield s
    finally:
        embedded.down(s.settings)


def assert_exactly_once(stack: Stack, job_id: str, n: int) -> None:
    out = stack.lines(job_id, "results")
    err = stack.lines(job_id, "errors")
    ids = [line["custom_id"] for line in out + err]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(n)), f"{len(ids)} lines for {n} requests"
    assert len(out) == n and err == []


def wait_replicas_ended(reg: JobRegistry, job_id: str, ids: set[str], timeout: float = 30.0) -> dict:
    """The job's replicas by id, once none of ``ids`` is live (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        replicas = {r.replica_id: r for r in reg.replicas(job_id)}
        if time.monotonic() > deadline or not any(replicas[i].state.live for i in ids):
            return replicas
        time.sleep(0.2)


def test_server_killed_mid_job_is_readopted(stack: Stack) -> None:
    n = 240
    job = stack.submit(batch(n, 0.5))
    before = stack.wait(job["id"], lambda j: j["progress"]["chunks_done"] >= 2, what="first chunks")
    reg = stack.registry()
    try:
        workers = {r.replica_id for r in reg.replicas(job["id"]) if r.state.live}
        pid = int((stack.home / "run" / "server.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        assert before["progress"]["chunks_done"] < before["progress"]["chunks_total"]  # killed mid-job
        # SIGKILL lands when the kernel next schedules the process (later still if it sits in an fsync):
        # `up` must see the old server gone, or it rightly leaves a running server alone
        wait_until(lambda: process_start_time(pid) is None, timeout_s=30, what=f"the killed server {pid} to exit")
        # a fresh server (and controller) adopts the running job and its workers: the stack's supervisor
        # starts it within a second, or this `up` does, whichever comes first
        stack.up()
        assert embedded.status(stack.settings).processes["server"] not in (None, pid)
        done = stack.wait(job["id"], lambda j: j["status"] == "completed", what="completion after restart")
        assert done["request_counts"] == {"total": n, "completed": n, "failed": 0}
        assert_exactly_once(stack, job["id"], n)
        # The workers that outlived the server were adopted by pid and ended cleanly, not as crashes.
        # A worker still starting when the job completed ends after that (the settle step stops it).
        assert workers and workers <= {r.replica_id for r in reg.replicas(job["id"])}
        replicas = wait_replicas_ended(reg, job["id"], workers)
        ended = {w: (replicas[w].state.value, replicas[w].message) for w in workers}
        assert all(state == "terminated" for state, _ in ended.values()), ended
    finally:
        reg.close()


def test_worker_killed_mid_job_is_replaced(stack: Stack) -> None:
    n = 240
    job = stack.submit(batch(n, 0.5))
    stack.wait(job["id"], lambda j: j["progress"]["chunks_done"] >= 1, what="first chunk")
    reg = stack.registry()
    try:
        live = [r for r in reg.replicas(job["id"]) if r.state.live]
        assert live, "no live replica to kill"
        os.kill(int(live[0].handle.split(":")[0]), signal.SIGKILL)
        stack.wait(job["id"], lambda j: j["status"] == "completed", what="completion after worker kill")
        replicas = reg.replicas(job["id"])
        assert any(r.replica_id == live[0].replica_id and r.state.value == "failed" for r in replicas)
        assert len(replicas) > len(live)  # a replacement was launched
    finally:
        reg.close()
    assert_exactly_once(stack, job["id"], n)


def test_cancel_mid_job_keeps_partial_results(stack: Stack) -> None:
    n = 320
    job = stack.submit(batch(n, 1.0))
    stack.wait(job["id"], lambda j: j["progress"]["chunks_done"] >= 2, what="first chunks")
    r = httpx.post(f"{stack.api}/api/jobs/{job['id']}/cancel", headers=stack.headers, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "cancelling"
    done = stack.wait(job["id"], lambda j: j["status"] == "cancelled" and j["output_available"], what="cancelled")
    out = stack.lines(job["id"], "results")
    err = stack.lines(job["id"], "errors")
    assert 0 < len(out) < n
    assert sorted(line["custom_id"] for line in out + err) == sorted(f"req-{i}" for i in range(n))
    assert done["request_counts"]["completed"] == len(out)
    reg = stack.registry()
    try:
        assert not any(r.state.live for r in reg.replicas(job["id"]))
    finally:
        reg.close()
