"""Simulated workers stop as ``orca.worker`` does: at a serverless budget's end and on a preemption notice
they let their chunk go through the queue's partial commit, so the answered requests are kept."""

from __future__ import annotations

import pytest

from orca.clock import VirtualClock
from orca.fleet import PoolSpec, ReplicaState
from orca.planner.traces import Trace
from orca.queue.memory import MemoryChunkQueue, MemoryQueueServer
from orca.queue.types import ChunkState, split_children
from orca.settings import Settings
from orca.sim.cloud import ChunkWork, CloudFacts, MachineProfile, SimCloud, Zone

T0 = 1_700_000_000.0
RATE = 1.0                          # tokens/s: one chunk of 1000 tokens takes 1000 s
WORK = ChunkWork(1000.0, 100)       # 100 requests of 10 tokens: one answered every 10 s


def world(settings: Settings, zones=(), startup_s: float = 60.0):
    clock = VirtualClock(T0)
    queue = MemoryChunkQueue("j", settings.queue, MemoryQueueServer(clock))
    queue.enqueue_many(["c0"])
    cloud = SimCloud(settings, clock, tuple(zones), CloudFacts(), lambda pool: MachineProfile(startup_s, RATE),
                     lambda job_id: queue, lambda *a: None, lambda job_id, chunk_id: WORK)
    return clock, queue, cloud


@pytest.mark.parametrize("concurrency, kept", [(64, 60), (1, 58)])
def test_budget_end_commits_the_answered_requests_and_hands_the_rest_back(concurrency, kept):
    s = Settings(worker={"max_concurrency": concurrency})
    clock, queue, cloud = world(s)
    m = cloud.launch("j", PoolSpec("sl", "modal", "L4", market="serverless"), "r1")
    # cold start: ready at 5 + 60 = 65 s; budget ends at 665 s; dispatch halts drain_grace_s (30 s) before it
    cloud.advance(T0 + 700)
    assert m.end_state is ReplicaState.TERMINATED and m.ended_at == T0 + 65 + s.launcher.serverless_budget_s
    # 57 requests answered by the halt at 635 s; those in flight (at most max_concurrency) finish in the grace
    assert queue.splits() == {"c0": "1s0"}
    answered, rest = split_children("c0", "1s0")
    assert queue.chunk(answered).state is ChunkState.DONE and queue.chunk(rest).state is ChunkState.PENDING
    assert cloud.stats.requests_salvaged == kept and cloud.stats.splits == 1
    assert cloud._children[("j", rest)] == ChunkWork(1000.0 * (100 - kept) / 100, 100 - kept)
    assert queue.chunk(rest).attempts == 0   # handed back uncharged


def test_preemption_notice_salvages_before_the_machine_goes():
    s = Settings()
    # spot for 300 s, then none: the cloud gives 120 s of notice at 300 s and takes the VM at 420 s
    zone = Zone("z1", Trace("drop", 300.0, (True, False)), 0.0, 4, 120.0)
    clock, queue, cloud = world(s, [zone])
    m = cloud.launch("j", PoolSpec("sp", "skypilot", "L4", market="spot", region="z1"), "r1")
    cloud.advance(T0 + 500)
    assert m.end_state is ReplicaState.PREEMPTED and m.ended_at == T0 + 420
    # ready at 65 s; the worker sees the notice at its next metadata poll (305 s) and halts; its grace is
    # min(drain_grace_s, 420 - 305 - notice_margin_s) = 30 s: 27 requests answered by 335 s are kept
    assert cloud.stats.notices == 1 and cloud.stats.requests_salvaged == 27
    assert queue.counts().done == 1 and queue.counts().pending == 1 and not queue.counts().leased


def test_a_notice_too_short_to_see_loses_the_chunk_in_progress():
    s = Settings()
    zone = Zone("z1", Trace("drop", 300.0, (True, False)), 0.0, 4, s.worker.preemption_poll_s / 2)
    clock, queue, cloud = world(s, [zone])
    m = cloud.launch("j", PoolSpec("sp", "skypilot", "L4", market="spot", region="z1"), "r1")
    cloud.advance(T0 + 500)
    assert m.end_state is ReplicaState.PREEMPTED and cloud.stats.splits == 0
    assert queue.counts().leased == 1   # still leased to the lost worker: the controller's reclaim takes it back
