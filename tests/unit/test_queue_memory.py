"""The in-memory twin's own parts: clocks and shared state (its semantics are in the contract suite)."""

from __future__ import annotations

import time

from orca.queue import ManualClock, MemoryChunkQueue, MemoryQueueServer, SystemClock
from orca.settings import QueueSettings


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(start_ms=1000)
    assert clock.now_ms() == 1000
    clock.advance(1.5)
    assert clock.now_ms() == 2500


def test_system_clock_follows_wall_time() -> None:
    before = time.time() * 1000
    assert before - 5 <= SystemClock().now_ms() <= time.time() * 1000 + 5


def test_queues_share_state_through_one_server() -> None:
    server = MemoryQueueServer()
    controller = MemoryChunkQueue("job", QueueSettings(lease_s=10), server=server)
    worker = MemoryChunkQueue("job", QueueSettings(lease_s=10), server=server)
    other = MemoryChunkQueue("job", QueueSettings(lease_s=10))  # its own server
    controller.enqueue_many(["a"])
    (lease,) = worker.claim("w", "p")
    assert lease.expires_at_ms == server.clock.now_ms() + 10_000
    assert other.counts().total == 0
    server.clock.advance(11)  # type: ignore[attr-defined]
    assert controller.reap() == ["a"]
    assert worker.chunk("a").attempts == 1
