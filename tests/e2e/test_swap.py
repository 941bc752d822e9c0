"""`orca swap` end to end on the embedded stack: local workers on two FAKE engine profiles.

The job starts on a slow pool (fake engine, 0.6 s per request); mid-job it is swapped to
the "fast" profile (``local_swap_profiles``: 0.005 s per request) through the API. The new
pool must complete a chunk before the old one drains; the old pool ends ``drained``; the
job completes with every custom_id exactly once and no attempt charged to any chunk.
"""

from __future__ import annotations

import json

import httpx
import pytest

from orca.control import embedded
from orca.queue import ChunkQueue
from tests.e2e.stack import FAST, MODEL, Stack, assert_exactly_once

SLOW = {"fake_latency_s": "0.6", "fake_slots": "8"}
FAST_PROFILE = {"fast": {"fake_latency_s": "0.005"}}


def plain_batch(n: int) -> bytes:
    """``n`` chat requests whose latency is the engine's own (no per-request delay)."""
    lines = [json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": f"hi {i}"}]}})
             for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(autouse=True)
def two_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAST, "ORCA_LAUNCHER__LOCAL_ENGINE_ARGS", json.dumps(SLOW))
    monkeypatch.setitem(FAST, "ORCA_LAUNCHER__LOCAL_SWAP_PROFILES", json.dumps(FAST_PROFILE))
    monkeypatch.setitem(FAST, "ORCA_LAUNCHER__SWAP_GRACE_S", "20")


def swap(stack: Stack, job_id: str, **body) -> dict:
    r = httpx.post(f"{stack.api}/api/jobs/{job_id}/swap", headers=stack.headers, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_swap_mid_job_drains_old_pool_and_loses_nothing(stack: Stack) -> None:
    n = 480  # 60 chunks of 8: about 18 s on the slow pool alone (2 workers), longer than a new pool takes to start
    job = stack.submit(plain_batch(n))
    job_id = job["id"]
    running = stack.wait(job_id, lambda j: j["progress"]["chunks_done"] >= 1, what="first slow chunk")
    old_pool = running["pools"][0]["key"]

    after = swap(stack, job_id, gpu="fast")
    assert after["swaps"][-1]["state"] == "launching"
    new_pool = after["swaps"][-1]["to_pool"]
    assert new_pool == "fast-tp1-pp1-local" and after["swaps"][-1]["from_pool"] == old_pool

    stack.wait(job_id, lambda j: j["swaps"][-1]["state"] in ("done", "cancelled"), timeout=60, what="swap to finish")
    done = stack.wait(job_id, lambda j: j["status"] == "completed", timeout=60, what="completion")
    assert done["swaps"][-1]["state"] == "done"
    pools = {p["key"]: p for p in done["pools"]}
    assert pools[old_pool]["state"] == "drained" and pools[new_pool]["state"] == "active"
    assert_exactly_once(stack, job_id, n)

    with ChunkQueue(embedded.redis_url(stack.settings), job_id) as queue:
        completions = queue.pool_completions()
        assert completions.get(new_pool, 0) >= 1 and completions.get(old_pool, 0) >= 1
        committed = queue.committed_generations()
        # a drained worker commits what it answered and hands back the rest: each split adds one chunk
        assert len(committed) == n // 8 + len(queue.splits())
        charged = {cid: queue.chunk(cid).attempts for cid in committed}
    assert set(charged.values()) == {0}, f"the swap charged attempts: {charged}"

    registry = stack.registry()
    try:
        kinds = [e["kind"] for e in registry.events(job_id)]
        record = registry.get(job_id)
    finally:
        registry.close()
    assert kinds.index("swap_started") < kinds.index("swap_draining") < kinds.index("swap_done")
    assert set(record.swaps[-1]["cost_usd"]) <= {old_pool, new_pool}
