"""Live GPU swap: the pure state machine, and the manager against an in-memory registry and queue."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from orca.control.pools import catalog_price, swap_pool
from orca.control.swap import (DrainQueue, SetPoolState, SetStandby, SwapManager, SwapObservation, SwapPhase,
                               SwapState, UndrainQueue, swap_step)
from orca.errors import JobStateError
from orca.fleet import Pool, Replica, ReplicaState
from orca.models import JobStatus
from orca.queue import ChunkState, MemoryChunkQueue, MemoryQueueServer
from orca.settings import LauncherSettings, Settings

GRACE, MAX_FAIL = 60.0, 3


def launching(**kw) -> SwapState:
    return SwapState(from_pool="old", to_pool="new", state=SwapPhase.LAUNCHING, started_at=0.0, **kw)


def obs(now=10.0, to_completions=0, to_failed=0, from_live=2, to_running=0) -> SwapObservation:
    return SwapObservation(now=now, to_completions=to_completions, to_failed=to_failed, from_live=from_live,
                           to_running=to_running)


# -- the pure state machine ---------------------------------------------------------
def test_new_pool_not_yet_ready_leaves_old_pool_untouched():
    swap = launching()
    for seen in (obs(), obs(now=500.0, from_live=2), obs(to_failed=MAX_FAIL - 1)):
        nxt, actions = swap_step(swap, seen, GRACE, MAX_FAIL)
        assert nxt == swap and actions == []


def test_completions_from_before_the_swap_do_not_count():
    swap = launching(baseline_completions=4)
    assert swap_step(swap, obs(to_completions=4), GRACE, MAX_FAIL) == (swap, [])
    nxt, _ = swap_step(swap, obs(to_completions=5), GRACE, MAX_FAIL)
    assert nxt.state is SwapPhase.DRAINING


def test_first_completion_drains_the_old_pool():
    nxt, actions = swap_step(launching(), obs(now=42.0, to_completions=1), GRACE, MAX_FAIL)
    assert nxt.state is SwapPhase.DRAINING and nxt.drain_started_at == 42.0
    assert actions == [SetPoolState("old", "draining"), DrainQueue("old")]


def test_a_running_new_worker_moves_the_chunks_before_any_completion():
    """Ready means a new worker is up and waiting: the old pool hands its chunks over now instead
    of running dry first (on a job whose chunks the old pool holds, nothing would ever complete)."""
    nxt, actions = swap_step(launching(), obs(now=7.0, to_running=1), GRACE, MAX_FAIL)
    assert nxt.state is SwapPhase.DRAINING and actions == [SetPoolState("old", "draining"), DrainQueue("old")]


def test_draining_waits_for_old_replicas_within_grace():
    draining = SwapState(from_pool="old", to_pool="new", state=SwapPhase.DRAINING, started_at=0.0, drain_started_at=100.0)
    assert swap_step(draining, obs(now=159.0, to_completions=3, from_live=1), GRACE, MAX_FAIL) == (draining, [])


def test_grace_expiry_terminates_the_old_pool():
    draining = SwapState(from_pool="old", to_pool="new", state=SwapPhase.DRAINING, started_at=0.0, drain_started_at=100.0)
    nxt, actions = swap_step(draining, obs(now=160.0, from_live=1), GRACE, MAX_FAIL)
    assert nxt.state is SwapPhase.DONE and nxt.finished_at == 160.0 and "grace" in nxt.reason
    assert actions == [SetPoolState("old", "drained"), SetStandby("new", False)]


def test_old_pool_that_drained_by_itself_finishes_early():
    draining = SwapState(from_pool="old", to_pool="new", state=SwapPhase.DRAINING, started_at=0.0, drain_started_at=100.0)
    nxt, actions = swap_step(draining, obs(now=110.0, from_live=0), GRACE, MAX_FAIL)
    assert nxt.state is SwapPhase.DONE and nxt.reason == "old pool drained"
    assert actions == [SetPoolState("old", "drained"), SetStandby("new", False)]


@pytest.mark.parametrize("phase", [SwapPhase.LAUNCHING, SwapPhase.DRAINING])
def test_cancel_tears_down_the_new_pool_and_undrains_the_old(phase):
    swap = SwapState(from_pool="old", to_pool="new", state=phase, started_at=0.0, drain_started_at=5.0,
                     cancel_requested=True)
    nxt, actions = swap_step(swap, obs(now=20.0, to_completions=9), GRACE, MAX_FAIL)
    assert nxt.state is SwapPhase.CANCELLED and nxt.finished_at == 20.0
    assert actions == [SetPoolState("new", "cancelled"), SetStandby("new", False), UndrainQueue("old"),
                       SetPoolState("old", "active")]


def test_new_pool_that_keeps_failing_backs_out_on_its_own():
    nxt, actions = swap_step(launching(), obs(to_failed=MAX_FAIL), GRACE, MAX_FAIL)
    assert nxt.state is SwapPhase.CANCELLED and "failed" in nxt.reason
    assert actions == [SetPoolState("new", "cancelled"), SetStandby("new", False)]


@pytest.mark.parametrize("phase", [SwapPhase.DONE, SwapPhase.CANCELLED])
def test_finished_swaps_do_nothing(phase):
    swap = SwapState(from_pool="old", to_pool="new", state=phase, started_at=0.0, cancel_requested=True)
    assert swap_step(swap, obs(to_completions=5, from_live=3), GRACE, MAX_FAIL) == (swap, [])


def test_record_round_trip():
    swap = launching(baseline_completions=2, cost_usd={"old": 1.5})
    assert SwapState.from_dict({**swap.to_dict(), "unknown": 1}) == swap


# -- new pool -----------------------------------------------------------------------
def test_new_pool_for_a_cloud_swap_prices_from_the_catalog():
    catalog = SimpleNamespace(
        instances=[SimpleNamespace(gpu="H100", gpus=2, prices=[SimpleNamespace(region="us-east-1", spot=5.0, on_demand=9.0),
                                                               SimpleNamespace(region="us-west-2", spot=4.0, on_demand=8.0)]),
                   SimpleNamespace(gpu="H100", gpus=8, prices=[SimpleNamespace(region="us-east-1", spot=1.0, on_demand=2.0)])],
        serverless=[SimpleNamespace(provider="modal", gpu_hour={"H100": 4.5})])
    old = Pool(key="A100-tp1-pp1-spot", launcher="skypilot", gpu="A100", engine="vllm", engine_args={"max_model_len": "8192"})
    new = swap_pool(old, "H100", 2, 1, "spot", None, Settings(), catalog)
    assert new.key == "H100-tp2-pp1-spot" and new.gpus_per_replica == 2 and new.active
    assert new.price_per_replica_hour == 4.0 and new.engine_args == {"max_model_len": "8192"}
    assert catalog_price(catalog, "skypilot", "H100", 2, "on_demand", "us-east-1") == 9.0
    burst = swap_pool(old, "H100", 1, 1, "spot", "modal", Settings(), catalog)
    assert burst.market == "serverless" and burst.price_per_replica_hour == 4.5


def test_new_local_pool_takes_its_engine_profile_from_settings():
    settings = Settings(launcher=LauncherSettings(local_swap_profiles={"fast": {"fake_latency_s": "0.01"}}))
    old = Pool(key="cpu-tp1-pp1-local", launcher="local", gpu="cpu", engine="fake",
               engine_args={"fake_latency_s": "0.5", "fake_slots": "4"})
    new = swap_pool(old, "fast", 1, 1, "spot", None, settings)
    assert new.key == "fast-tp1-pp1-local" and new.market == "local" and new.price_per_replica_hour == 0.0
    assert new.engine_args == {"fake_latency_s": "0.01", "fake_slots": "4"}


# -- the manager ----------------------------------------------------------------------
class FakeRegistry:
    """In-memory stand-in for orca.queue.jobs.JobRegistry (only what SwapManager uses)."""

    redis_url = "redis://unused"

    def __init__(self, record) -> None:
        self.record = record
        self.replica_map: dict[str, Replica] = {}
        self.events: list[tuple[str, str]] = []
        self.reports: dict[str, dict] = {}   # worker id -> its latest metrics report
        self.locked = False

    def get(self, job_id):
        return self.record.model_copy(deep=True) if hasattr(self.record, "model_copy") else _copy(self.record)

    def update(self, job_id, **fields):
        for k, v in fields.items():
            setattr(self.record, k, v)

    def replicas(self, job_id):
        return [Replica.from_dict(r.to_dict()) for r in self.replica_map.values()]

    def put_replica(self, replica):
        self.replica_map[replica.replica_id] = Replica.from_dict(replica.to_dict())

    def add_event(self, job_id, kind, message, **data):
        self.events.append((kind, message))

    def workers_metrics(self, job_id, worker_ids):
        return [self.reports.get(w, {}) for w in worker_ids]

    @contextmanager
    def lock(self, job_id, ttl_s=None):
        yield not self.locked


def _copy(ns):
    return SimpleNamespace(**{k: (list(v) if isinstance(v, list) else v) for k, v in vars(ns).items()})


@pytest.fixture
def rig():
    record = SimpleNamespace(id="job_1", status=JobStatus.IN_PROGRESS, plan={"replicas": 2}, swaps=[],
                             pools=[Pool(key="cpu-tp1-pp1-local", launcher="local", gpu="cpu", engine="fake")])
    registry = FakeRegistry(record)
    for i in (1, 2):
        registry.put_replica(Replica(replica_id=f"old-{i}", job_id="job_1", pool="cpu-tp1-pp1-local", launcher="local",
                                     state=ReplicaState.RUNNING, handle="1:1"))
    server = MemoryQueueServer()
    queue = MemoryChunkQueue("job_1", server=server)
    queue.enqueue_many([f"c{i}" for i in range(10)])
    clock = SimpleNamespace(t=1000.0)
    settings = Settings(launcher=LauncherSettings(swap_grace_s=60, local_swap_profiles={"fast": {"fake_latency_s": "0"}}))
    manager = SwapManager(settings, registry, clock=lambda: clock.t, queues=lambda job_id: queue)
    return SimpleNamespace(record=record, registry=registry, queue=queue, clock=clock, manager=manager)


def _request(**kw):
    return SimpleNamespace(**{"gpu": "fast", "tp": 1, "pp": 1, "market": "spot", "launcher": None, "cancel": False, **kw})


def _states(rig) -> dict[str, str]:
    return {p.key: p.state.value for p in rig.record.pools}


def test_manager_swap_start_drain_and_finish(rig):
    swap = rig.manager.request(rig.record, _request())
    assert swap.state is SwapPhase.LAUNCHING and swap.to_pool == "fast-tp1-pp1-local"
    pools = {p.key: p for p in rig.record.pools}
    assert pools["fast-tp1-pp1-local"].active and pools["fast-tp1-pp1-local"].target == 2
    assert pools["cpu-tp1-pp1-local"].target == 2
    assert rig.queue.standby() == {"fast-tp1-pp1-local"}  # its workers wait for chunks instead of exiting

    # the controller launched the new pool; its worker is still loading its engine
    rig.registry.put_replica(Replica(replica_id="new-1", job_id="job_1", pool="fast-tp1-pp1-local", launcher="local",
                                     state=ReplicaState.STARTING, handle="2:2"))
    rig.registry.reports["new-1"] = {"state": "starting"}
    assert rig.manager.tick(rig.record).state is SwapPhase.LAUNCHING
    [old_lease] = rig.queue.claim("old-1", "cpu-tp1-pp1-local")  # the old pool still claims

    rig.registry.reports["new-1"] = {"state": "running"}  # engine up: the new pool is ready
    rig.clock.t = 1010.0
    swap = rig.manager.tick(rig.record)
    assert swap.state is SwapPhase.DRAINING and swap.drain_started_at == 1010.0
    assert rig.queue.claim("old-1", "cpu-tp1-pp1-local") == []  # drained pool gets nothing
    assert rig.queue.claim("new-1", "fast-tp1-pp1-local")  # the new one does
    assert _states(rig)["cpu-tp1-pp1-local"] == "draining"  # the controller drains its replicas

    rig.clock.t = 1069.0
    assert rig.manager.tick(rig.record).state is SwapPhase.DRAINING
    rig.clock.t = 1070.0
    swap = rig.manager.tick(rig.record)
    assert swap.state is SwapPhase.DONE and swap.finished_at == 1070.0 and "grace" in swap.reason
    assert _states(rig) == {"cpu-tp1-pp1-local": "drained", "fast-tp1-pp1-local": "active"}
    assert rig.queue.standby() == set() and rig.queue.chunk(old_lease.chunk_id).owner == "old-1"
    assert rig.record.swaps[-1]["state"] == "done" and set(rig.record.swaps[-1]["cost_usd"]) == {
        "cpu-tp1-pp1-local", "fast-tp1-pp1-local"}
    kinds = [k for k, _ in rig.registry.events]
    assert kinds == ["swap_started", "swap_draining", "swap_done"]
    assert rig.manager.tick(rig.record) is None  # nothing active any more


def test_old_pool_that_ended_finishes_the_swap_before_the_grace(rig):
    rig.manager.request(rig.record, _request())
    lease = rig.queue.claim("new-1", "fast-tp1-pp1-local")[0]
    rig.queue.complete(lease)  # a completion is proof enough
    assert rig.manager.tick(rig.record).state is SwapPhase.DRAINING
    for i in (1, 2):
        rig.registry.put_replica(Replica(replica_id=f"old-{i}", job_id="job_1", pool="cpu-tp1-pp1-local",
                                         launcher="local", state=ReplicaState.TERMINATED))
    swap = rig.manager.tick(rig.record)
    assert swap.state is SwapPhase.DONE and swap.reason == "old pool drained"


def test_manager_cancel_backs_out(rig):
    rig.manager.request(rig.record, _request())
    rig.registry.put_replica(Replica(replica_id="new-1", job_id="job_1", pool="fast-tp1-pp1-local", launcher="local",
                                     state=ReplicaState.STARTING))
    rig.queue.drain("cpu-tp1-pp1-local")  # as if the drain had begun
    swap = rig.manager.request(rig.record, _request(cancel=True))
    assert swap.state is SwapPhase.CANCELLED
    assert rig.queue.claim("old-1", "cpu-tp1-pp1-local")  # undrained
    assert _states(rig) == {"cpu-tp1-pp1-local": "active", "fast-tp1-pp1-local": "cancelled"}  # the controller tears it down
    assert rig.queue.standby() == set()
    with pytest.raises(JobStateError):
        rig.manager.request(rig.record, _request(cancel=True))


def test_manager_refuses_bad_requests(rig):
    with pytest.raises(JobStateError, match="already runs"):
        rig.manager.request(rig.record, _request(gpu="cpu"))
    rig.manager.request(rig.record, _request())
    with pytest.raises(JobStateError, match="already in progress"):
        rig.manager.request(rig.record, _request(gpu="other"))
    rig.record.status = JobStatus.FINALIZING
    with pytest.raises(JobStateError):
        rig.manager.request(rig.record, _request(cancel=True))


def test_manager_waits_for_the_job_lock_then_gives_up(rig):
    rig.registry.locked = True
    rig.manager.settings.launcher.swap_lock_wait_s = 0.05
    with pytest.raises(JobStateError, match="busy"):
        rig.manager.request(rig.record, _request())


def test_job_leaving_in_progress_closes_the_swap(rig):
    rig.manager.request(rig.record, _request())
    rig.record.status = JobStatus.FINALIZING
    swap = rig.manager.tick(rig.record)
    assert swap.state is SwapPhase.CANCELLED and "left in_progress" in swap.reason
    assert _states(rig) == {"cpu-tp1-pp1-local": "active", "fast-tp1-pp1-local": "cancelled"}


def test_job_finishing_mid_drain_marks_the_old_pool_drained(rig):
    rig.manager.request(rig.record, _request())
    lease = rig.queue.claim("new-1", "fast-tp1-pp1-local")[0]
    rig.queue.complete(lease)
    assert rig.manager.tick(rig.record).state is SwapPhase.DRAINING
    rig.record.status = JobStatus.FINALIZING
    swap = rig.manager.tick(rig.record)
    assert swap.state is SwapPhase.DONE and "left in_progress" in swap.reason
    assert _states(rig) == {"cpu-tp1-pp1-local": "drained", "fast-tp1-pp1-local": "active"}
    assert [k for k, _ in rig.registry.events][-1] == "swap_done"
