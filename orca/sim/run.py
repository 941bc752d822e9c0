"""One job, start to end, through the production ``Controller`` on the simulated cloud.

``simulate(scenario, policy)`` builds a virtual clock, the in-memory queue and registry twins, the
simulated cloud and its ``SimLauncher``, and the real ``orca.control.controller.Controller`` with
that clock, launcher and policy injected. Then it alternates: the controller ticks (reap, poll,
swap, policy, launches and drains, exactly as in production), the cloud plays its events until
the next tick. The run ends when the controller moves the job out of ``in_progress`` (all chunks
done -> finalizing; deadline passed -> expired; too many crashes -> failed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

from orca.clock import VirtualClock
from orca.control.calls import InlineCalls
from orca.control.controller import Controller
from orca.control.swap import SwapManager
from orca.control.pools import pool_for_plan
from orca.fleet import PoolSpec, Replica
from orca.launchers.base import Launcher
from orca.models import JobStatus
from orca.queue.jobs import JobRecord
from orca.queue.memory import MemoryChunkQueue, MemoryQueueServer
from orca.queue.memory_jobs import MemoryJobRegistry
from orca.settings import Settings, get_settings
from orca.sim.cloud import ChunkWork, CloudFacts, CloudStats, MachineProfile, SimCloud, Zone
from orca.sim.launcher import SimLauncher

T0 = 1_700_000_000.0
JOB_ID = "batch_sim"


@dataclass(frozen=True)
class Scenario:
    """A job and the world it runs in.

    ``options`` are ``JobRecord.options`` entries (plan dicts: key, gpu, tp, pp, market, region,
    price_per_replica_hour, replica_tokens_per_s = the catalog's estimate, startup_s, max_replicas);
    ``plan`` is the planned pool. ``throughput_factor`` sets every replica's true tokens/s apart
    from the estimate; ``gpu_tokens_per_s`` gives the true rate of GPUs a swap moves to.
    """

    name: str
    options: tuple[dict, ...]
    plan: dict
    work_tokens: float
    deadline_s: float
    zones: tuple[Zone, ...]
    throughput_factor: float = 1.0
    gpu_tokens_per_s: dict[str, float] = field(default_factory=dict)
    request_tokens: float = 500.0         # output tokens per request: a chunk holds work / request_tokens requests
    crash_after_s: float | None = None
    swap_at_s: float | None = None
    swap_to: dict | None = None           # gpu, tp, pp, market of the pool a swap moves to
    facts: CloudFacts = CloudFacts()
    tick_s: float = 30.0


@dataclass(frozen=True)
class Outcome:
    scenario: str
    status: str
    finish_s: float | None
    deadline_s: float
    met: bool
    cost_usd: float
    cost_by_market: dict[str, float]
    cost_breakdown: dict[str, float]    # SimCloud.cost_breakdown: startup, committed, other
    stats: CloudStats
    replicas: list[Replica]
    events: list[dict]


class _Background:
    """The RQ step queue, as the controller sees it: steps are recorded, none runs (the run ends first)."""

    def __init__(self) -> None:
        self.steps: dict[str, str] = {}

    def submit(self, step_id: str, func: str, *args: object) -> bool:
        self.steps.setdefault(step_id, func)
        return True

    def step_status(self, step_id: str) -> str | None:
        return "queued" if step_id in self.steps else None


class _NoCharts:
    """The dashboard's progress sampler, as the simulated control plane needs it: nobody looks at charts."""

    def sample(self, record: JobRecord, now: float | None = None) -> None:
        """Nothing to draw."""

    def close(self) -> None:
        """Nothing to close."""


class _Service:
    """What the controller uses of ``OrcaService``: settings, registry, background steps, store URL, queues."""

    def __init__(self, settings: Settings, registry: MemoryJobRegistry, server: MemoryQueueServer) -> None:
        self.settings = settings
        self.registry = registry
        self.background = _Background()
        self.store = SimpleNamespace(url="memory://sim")
        self._server = server
        self._queues: dict[str, MemoryChunkQueue] = {}

    def queue(self, job_id: str) -> MemoryChunkQueue:
        if job_id not in self._queues:
            self._queues[job_id] = MemoryChunkQueue(job_id, self.settings.queue, self._server)
        return self._queues[job_id]

    def _settings_json(self) -> str:
        return self.settings.model_dump_json()


def _profiles(scenario: Scenario) -> Callable[[PoolSpec], MachineProfile]:
    by_key = {o["key"]: o for o in scenario.options}
    startup_by_market = {o["market"]: float(o.get("startup_s", 0.0)) for o in scenario.options}

    def profile(pool: PoolSpec) -> MachineProfile:
        o = by_key.get(pool.key)
        if o is not None:
            rate = float(o["replica_tokens_per_s"]) * scenario.throughput_factor
            return MachineProfile(float(o.get("startup_s", 0.0)), rate)
        rate = scenario.gpu_tokens_per_s.get(pool.gpu, float(scenario.plan["replica_tokens_per_s"])) * scenario.throughput_factor
        return MachineProfile(startup_by_market.get(pool.market, 300.0), rate)

    return profile


def simulate(scenario: Scenario, policy: Callable | None = None, settings: Settings | None = None,
             launchers: Callable[[SimCloud], dict[str, Launcher]] | None = None) -> Outcome:
    """Run ``scenario`` through the production controller with ``policy`` (default: ``decide``).

    ``launchers``: cloud -> launcher name -> Launcher (default ``{"sim": SimLauncher(cloud)}``); the
    job runs on the first one (a test puts the production SkyPilot launcher over a fake SDK here)."""
    settings = settings or get_settings()
    clock = VirtualClock(T0)
    server = MemoryQueueServer(clock)
    registry = MemoryJobRegistry(settings, clock)
    svc = _Service(settings, registry, server)
    n_chunks = max(1, math.ceil(scenario.work_tokens / (float(scenario.plan["replica_tokens_per_s"]) * settings.ingest.target_chunk_s)))
    chunk_tokens = scenario.work_tokens / n_chunks
    work = ChunkWork(chunk_tokens, max(1, round(chunk_tokens / scenario.request_tokens)))
    cloud = SimCloud(settings, clock, scenario.zones, scenario.facts, _profiles(scenario), svc.queue, registry.report_worker,
                     lambda job_id, chunk_id: work, crash_after_s=scenario.crash_after_s)
    by_name = launchers(cloud) if launchers is not None else {"sim": SimLauncher(cloud)}
    launcher_name = next(iter(by_name))
    controller = Controller(svc, "ctl-sim", by_name, InlineCalls(clock.monotonic), clock=clock,  # type: ignore[arg-type]
                            policy=policy, samples=_NoCharts())
    registry.create_job(JobRecord(
        id=JOB_ID, user="sim", status=JobStatus.IN_PROGRESS, created_at=T0, in_progress_at=T0,
        deadline_at=T0 + scenario.deadline_s, launcher=launcher_name, model="sim", n_requests=n_chunks,
        est_output_tokens=int(scenario.work_tokens), chunks_total=n_chunks, plan=dict(scenario.plan),
        options=[dict(o) for o in scenario.options], pools=[pool_for_plan(scenario.plan, launcher_name, settings)],
    ))
    svc.queue(JOB_ID).enqueue_many(f"c{i:06d}" for i in range(n_chunks))
    swapped = scenario.swap_at_s is None
    horizon = T0 + scenario.deadline_s * 3
    while True:
        controller.tick()
        if registry.statuses()[JOB_ID] is not JobStatus.IN_PROGRESS or clock.time() >= horizon:
            break
        if not swapped and clock.time() - T0 >= scenario.swap_at_s:
            swapped = True
            SwapManager(settings, registry, clock=clock.time, queues=svc.queue).request(
                registry.get(JOB_ID), SimpleNamespace(launcher=None, cancel=False, **(scenario.swap_to or {})))
        cloud.advance(clock.time() + scenario.tick_s)
        cloud.heartbeat()
    record = registry.get(JOB_ID)
    finish = (cloud.stats.last_commit_at - T0) if record.status is JobStatus.FINALIZING and cloud.stats.last_commit_at else None
    costs = cloud.cost()
    return Outcome(
        scenario=scenario.name, status=record.status.value, finish_s=finish, deadline_s=scenario.deadline_s,
        met=finish is not None and finish <= scenario.deadline_s, cost_usd=sum(costs.values()), cost_by_market=costs,
        cost_breakdown=cloud.cost_breakdown(), stats=cloud.stats, replicas=registry.replicas(JOB_ID), events=registry.events(JOB_ID),
    )


def outcome_json(outcome: Outcome) -> str:
    """A one-line summary of a run (for logs and debugging)."""
    return json.dumps({"scenario": outcome.scenario, "status": outcome.status, "finish_s": outcome.finish_s,
                       "deadline_s": outcome.deadline_s, "cost_usd": round(outcome.cost_usd, 4),
                       "cost_by_market": {k: round(v, 4) for k, v in outcome.cost_by_market.items()},
                       "launches": outcome.stats.launches, "capacity_errors": outcome.stats.capacity_errors,
                       "preemptions": outcome.stats.preemptions})
