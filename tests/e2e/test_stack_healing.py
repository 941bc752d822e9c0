"""The embedded stack heals itself and never charges chunks for its own faults.

Real processes: redis-server, API server + controller, RQ worker, local workers on the fake engine.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orca.control import embedded
from orca.launchers.local import process_start_time
from orca.queue import ChunkQueue
from tests.e2e.stack import Stack, assert_exactly_once, batch, running_stack


@pytest.fixture
def stubborn_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """Workers whose drain grace outlasts the launcher's stop grace: `orca down` SIGKILLs them holding leases."""
    with running_stack(tmp_path / "orca", monkeypatch,
                       ORCA_WORKER__DRAIN_GRACE_S="30", ORCA_LAUNCHER__LOCAL_STOP_GRACE_S="0.5") as s:
        yield s


def test_orca_down_gives_held_chunks_back_uncharged(stubborn_stack: Stack) -> None:
    stack = stubborn_stack
    job = stack.submit(batch(40, 60.0))  # nothing finishes: every held chunk is still leased at `down`
    stack.wait(job["id"], lambda j: j["progress"]["chunks_leased"] >= 2, what="workers holding chunks")
    redis_url = embedded.redis_url(stack.settings)  # with its password (status shows it redacted)
    embedded.down(stack.settings, keep_redis=True)
    with ChunkQueue(redis_url, job["id"], stack.settings.queue) as queue:
        counts = queue.counts()
        assert counts.leased == 0 and counts.pending == counts.total and counts.dead == 0
        infos = [queue.chunk(f"chunk-{i:06d}") for i in range(counts.total)]
    assert all(info.attempts == 0 for info in infos)
    # chunks not yet started were released by the workers themselves; those in flight were reclaimed
    reclaimed = [info for info in infos if "orca down" in (info.last_error or "")]
    assert reclaimed
    stack.up()
    reg = stack.registry()
    try:
        events = [e for e in reg.events(job["id"]) if e.get("kind") == "reclaimed"]
        assert events and all("uncharged" in e["message"] for e in events)
        assert {r.state.value for r in reg.replicas(job["id"]) if r.replica_id in {i.owner for i in reclaimed}} == {"terminated"}
    finally:
        reg.close()


def _redis_state(stack: Stack) -> tuple[int, int]:
    pid, port = (stack.home / "redis" / "orca-redis.state").read_text().split()
    return int(pid), int(port)


def _job_when_answering(stack: Stack, job_id: str, pred, timeout: float, what: str) -> dict:
    """Poll the job, riding out 503s and refused connections while the stack heals."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{stack.api}/api/jobs/{job_id}", headers=stack.headers, timeout=10)
            if r.status_code == 200 and pred(r.json()):
                return r.json()
            assert r.status_code in (200, 503), r.text
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_start_time(pid) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_killed_redis_server_comes_back_on_its_port_and_the_same_server_carries_on(stack: Stack) -> None:
    n = 160
    job = stack.submit(batch(n, 0.05))
    stack.wait(job["id"], lambda j: j["progress"]["chunks_done"] >= 1, what="first chunk")
    pid, port = _redis_state(stack)
    before = embedded.status(stack.settings).processes
    _kill(pid)
    _job_when_answering(stack, job["id"], lambda j: j["status"] == "completed", 90, "completion after a Redis crash")
    new_pid, new_port = _redis_state(stack)
    assert new_pid != pid and new_port == port  # restarted by the supervisor, where every client looks for it
    after = embedded.status(stack.settings).processes
    assert after["server"] == before["server"] and after["rq-worker"] == before["rq-worker"]  # reconnected, not replaced
    assert httpx.get(f"{stack.api}/healthz", timeout=5).json() == {"ok": True, "redis": True, "store": True}
    assert_exactly_once(stack, job["id"], n)


def test_orca_up_repairs_a_half_dead_stack(stack: Stack) -> None:
    n = 80
    job = stack.submit(batch(n, 0.05))
    stack.wait(job["id"], lambda j: j["progress"]["chunks_done"] >= 1, what="first chunk")
    before = embedded.status(stack.settings).processes
    _kill(before["supervisor"])  # nobody heals it by itself now
    pid, port = _redis_state(stack)
    _kill(pid)
    _kill(before["rq-worker"])
    assert httpx.get(f"{stack.api}/healthz", timeout=10).status_code == 503
    stack.up()
    after = embedded.status(stack.settings).processes
    assert after["server"] == before["server"] and all(after.values())
    assert _redis_state(stack)[1] == port
    _job_when_answering(stack, job["id"], lambda j: j["status"] == "completed", 90, "completion after orca up")
    assert_exactly_once(stack, job["id"], n)


def test_a_redis_kill_while_the_supervisor_restarts_the_server_heals_in_seconds(tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Overlapping faults (chaos bench seed 3): the server is killed, then the redis-server while the supervisor
    waits for the new server to come up. That server answers 503 (no Redis); the supervisor must go on and
    restart Redis, not wait out ``stack_start_timeout_s`` (60 s here) for a server that cannot be healthy."""
    with running_stack(tmp_path / "orca", monkeypatch, ORCA_CONTROL__STACK_START_TIMEOUT_S="60",
                       ORCA_CONTROL__SUPERVISE_EVERY_S="0.5") as stack:
        old = embedded.status(stack.settings).processes["server"]
        assert old is not None
        _kill(old)
        deadline = time.monotonic() + 30
        while embedded.status(stack.settings).processes["server"] in (None, old):  # the supervisor spawned a new one
            assert time.monotonic() < deadline, "the supervisor did not restart the server"
            time.sleep(0.02)
        _kill(_redis_state(stack)[0])  # while its up() waits for that server to answer
        killed = time.monotonic()

        def healthy() -> bool:
            try:
                return httpx.get(f"{stack.api}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        while not healthy():
            assert time.monotonic() - killed < 25, "the stack did not heal within 25 s of the overlapping faults"
            time.sleep(0.1)
