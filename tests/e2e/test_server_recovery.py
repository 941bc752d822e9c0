"""The embedded stack end to end, as subprocesses: redis-server, API server + controller, RQ worker,
local workers on the fake engine. Kill -9 the server or a worker mid-job, or cancel, and check the
outcome: every custom_id exactly once, or partial results with a cancelled status.
"""

from __future__ import annotations

import os
import signal
import time

import httpx

from orca.control import embedded
from orca.launchers.local import process_start_time
from orca.queue.jobs import JobRegistry
from tests.conftest import wait_until
from tests.e2e.stack import Stack, assert_exactly_once, batch


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
