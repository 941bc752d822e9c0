"""The embedded stack heals itself and never charges chunks for its own faults.

Real processes: redis-server, API server + controller, RQ worker, local workers on the fake engine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orca.control import embedded
from orca.queue import ChunkQueue
from orca.queue.embedded import free_port
from tests.e2e.test_server_recovery import FAST, Stack, batch


def _stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Stack:
    home = tmp_path / "orca"
    monkeypatch.setenv("ORCA_HOME", str(home))
    monkeypatch.setenv("ORCA_CONTROL__PORT", str(free_port()))
    for k, v in {**FAST, **env}.items():
        monkeypatch.setenv(k, v)
    for k in ("ORCA_REDIS_URL", "ORCA_STORE_URL", "ORCA_API_URL", "ORCA_API_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    return Stack(home)


@pytest.fixture
def stubborn_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """Workers whose drain grace outlasts the launcher's stop grace: `orca down` SIGKILLs them holding leases."""
    s = _stack(tmp_path, monkeypatch, ORCA_WORKER__DRAIN_GRACE_S="30", ORCA_LAUNCHER__LOCAL_STOP_GRACE_S="0.5")
    s.up()
    try:
        yield s
    finally:
        embedded.down(s.settings)


def test_orca_down_gives_held_chunks_back_uncharged(stubborn_stack: Stack) -> None:
    stack = stubborn_stack
    job = stack.submit(batch(40, 60.0))  # nothing finishes: every held chunk is still leased at `down`
    stack.wait(job["id"], lambda j: j["progress"]["chunks_leased"] >= 2, what="workers holding chunks")
    redis_url = stack.status.redis_url
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
