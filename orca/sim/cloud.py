"""The simulated cloud: zones with trace-driven spot capacity, machines, billing, and the workers on them.

Everything outside orca that a job meets, and nothing of orca itself:

- **Spot capacity per zone** follows an availability trace (``orca.planner.traces``): while the
  trace says available the zone holds ``capacity`` spot replicas (shared by every replica there),
  otherwise none. When a zone turns unavailable every spot machine in it gets the cloud's
  preemption notice (``notice_s``: AWS 120 s, GCP 30 s) and is taken away when it runs out.
- **Launches** return at once; the cloud answers after ``api_latency_s`` (capacity found:
  the machine boots) or, without capacity, with a capacity error after ``capacity_error_s``.
  Refused launches are retried as ``SkyPilotLauncher`` retries them (``launcher.launch_backoff_s``
  doubling, ``launcher.launch_retries`` times, then FAILED).
- **Start-up**: a booted machine runs its worker after the pool's start-up (VM boot + image +
  model load; serverless: the provider's cold start, or a warm start when a container of the pool
  ended within ``serverless_warm_s``). Serverless runs at most ``serverless_concurrency``
  containers at once (more wait, unbilled) and each invocation lasts ``launcher.serverless_budget_s``.
- **Billing** is per second from the moment the machine is allocated to its end.
- **Workers** claim and commit real chunks through the real queue contract (the in-memory twin
  ``orca.queue.memory``) at the replica's *true* tokens/s, which the scenario may set apart from
  the catalog's estimate. Time advances by events (allocation, ready, chunk done, notice,
  preemption, crash), never per request. A worker behaves like ``python -m orca.worker --burst``:
  it exits when nothing is left to claim (unless its pool is on standby for a swap while other
  workers hold chunks: then it waits); drained, it finishes its chunk and exits; it reports
  its tokens/s to the registry as a real worker does.
- **Stopping** as ``orca.worker.worker`` stops: ``worker.drain_grace_s`` before a serverless budget
  ends, or when it sees the cloud's notice (``worker.preemption_poll_s`` after it, at worst), the
  worker halts dispatch and claims nothing more; the requests in flight (at most
  ``worker.max_concurrency``) get the grace (a notice's: what it leaves less ``worker.notice_margin_s``,
  at most ``drain_grace_s``); then the chunk is let go through the queue's partial commit
  (``split``): the answered requests commit, the rest goes back to the head of the queue (all
  answered: ``complete``; none: ``release``). A chunk holds ``ChunkWork.requests`` requests of equal
  size; a request counts as answered once the engine's output covers it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from orca.clock import VirtualClock
from orca.errors import StaleLeaseError
from orca.fleet import PoolSpec, ReplicaState
from orca.planner.traces import Trace
from orca.queue.types import Lease
from orca.settings import Settings


@dataclass(frozen=True)
class Zone:
    """One spot zone: its availability trace (read from ``offset_s``), its capacity and its notice."""

    name: str
    trace: Trace
    offset_s: float = 0.0
    capacity: int = 64
    notice_s: float = 120.0


@dataclass(frozen=True)
class CloudFacts:
    """Timings of the cloud APIs and providers (reference facts; see ``orca/sim/__init__.py``)."""

    api_latency_s: float = 5.0          # a launch request the cloud can serve is accepted
    capacity_error_s: float = 45.0      # a launch it cannot serve fails after this
    serverless_concurrency: int = 16    # providers' default GPU concurrency
    serverless_warm_s: float = 60.0     # a container that ended this recently is reused
    serverless_warm_start_s: float = 5.0


@dataclass(frozen=True)
class MachineProfile:
    """What a pool's replica is, in the simulated world: start-up and *true* output tokens/s."""

    startup_s: float
    tokens_per_s: float


@dataclass(frozen=True)
class ChunkWork:
    """What a chunk asks of an engine: output tokens, in ``requests`` requests of equal size."""

    tokens: float
    requests: int


@dataclass
class Machine:
    replica_id: str
    job_id: str
    pool: PoolSpec
    zone: str
    profile: MachineProfile
    launched_at: float
    answer_at: float                    # when the pending launch request is answered
    up_at: float | None = None          # allocated: billing starts
    ready_at: float | None = None       # worker claims from here
    claim_at: float | None = None       # its next claim attempt (a standby worker retries every worker.idle_poll_s)
    ended_at: float | None = None
    end_state: ReplicaState | None = None
    message: str = ""
    capacity_errors: int = 0
    refusing: bool = False              # the pending answer is a capacity error
    retry: bool = True                  # the cloud side retries refused launches (False: one attempt, as one sky.launch)
    notice_at: float | None = None
    preempt_at: float | None = None
    crash_at: float | None = None
    draining: bool = False
    budget_end: float | None = None     # serverless invocation budget
    halt_at: float | None = None        # the worker stops dispatching and claiming (budget or notice)
    salvage_at: float | None = None     # ... and lets its chunk go (partial commit), then stops
    worker_stopped: bool = False        # a worker stopped on a notice: the machine idles until preempted
    lease: Lease | None = None
    work: ChunkWork | None = None       # the leased chunk's work
    chunk_started_at: float | None = None
    chunk_done_at: float | None = None
    tokens_committed: float = 0.0       # output tokens of the chunks (and answered parts) it committed

    @property
    def ended(self) -> bool:
        return self.end_state is not None

    def cost(self, now: float) -> float:
        if self.up_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, end - self.up_at) * self.pool.price_per_replica_hour / 3600.0

    def next_event(self) -> float:
        if self.ended:
            return math.inf
        times = [t for t in (self.preempt_at, self.crash_at) if t is not None]
        if self.worker_stopped:
            return min(times, default=math.inf)
        if self.salvage_at is not None:
            times.append(self.salvage_at)
        if self.up_at is None:
            times.append(self.answer_at)
        elif self.lease is None:
            times.append(self.claim_at if self.claim_at is not None else math.inf)
        else:
            times.append(self.chunk_done_at)
        return min(times) if times else math.inf


@dataclass
class CloudStats:
    launches: int = 0
    capacity_errors: int = 0
    preemptions: int = 0
    notices: int = 0
    crashes: int = 0
    chunks_done: int = 0
    splits: int = 0                     # chunks let go with a partial commit
    requests_salvaged: int = 0          # answered requests those partial commits kept
    last_commit_at: float | None = None


class SimCloud:
    """The world one simulated run happens in (see the module docstring)."""

    def __init__(self, settings: Settings, clock: VirtualClock, zones: tuple[Zone, ...], facts: CloudFacts,
                 profile: Callable[[PoolSpec], MachineProfile], queues: Callable[[str], object],
                 report: Callable[[str, str, dict, float], None], chunk_work: Callable[[str, str], ChunkWork],
                 crash_after_s: float | None = None) -> None:
        self.launcher_settings, self.drain_grace_s = settings.launcher, settings.worker.drain_grace_s
        self.worker_settings = settings.worker
        self.idle_poll_s = settings.worker.idle_poll_s
        self.clock = clock
        self.t0 = clock.time()
        self.zones = {z.name: z for z in zones}
        self.facts = facts
        self.profile = profile
        self.queues = queues
        self.report = report
        self.chunk_work = chunk_work
        self._children: dict[tuple[str, str], ChunkWork] = {}  # the rests of partial commits
        self.crash_after_s = crash_after_s   # the first worker to run crashes this long after it starts
        self.machines: dict[str, Machine] = {}
        self.stats = CloudStats()
        self._warm: dict[str, float] = {}    # serverless pool key -> when its last container ended

    # -- the cloud API (what SimLauncher calls) ------------------------------
    def launch(self, job_id: str, pool: PoolSpec, replica_id: str, retry: bool = True) -> Machine:
        """A launch request; ``retry=False``: one attempt that ends FAILED on a capacity error (a ``sky.launch``)."""
        now = self.clock.time()
        m = Machine(replica_id=replica_id, job_id=job_id, pool=pool, zone=self._zone_for(pool),
                    profile=self.profile(pool), launched_at=now, answer_at=now + self.facts.api_latency_s, retry=retry)
        self.machines[replica_id] = m
        self.stats.launches += 1
        return m

    def drain(self, m: Machine) -> None:
        if m.ended:
            return
        if m.ready_at is None or m.ready_at > self.clock.time():
            self._end(m, self.clock.time(), ReplicaState.TERMINATED, "torn down before it ran")
            return
        m.draining = True
        if m.lease is None:
            self._end(m, self.clock.time(), ReplicaState.TERMINATED, "worker stopped after drain")

    def terminate(self, m: Machine) -> None:
        if not m.ended:
            self._end(m, self.clock.time(), ReplicaState.TERMINATED, "terminated")

    def cost(self, now: float | None = None) -> dict[str, float]:
        """Money spent per market up to ``now`` (every machine, ended or not)."""
        now = self.clock.time() if now is None else now
        out: dict[str, float] = {}
        for m in self.machines.values():
            out[m.pool.market] = out.get(m.pool.market, 0.0) + m.cost(now)
        return out

    def cost_breakdown(self, now: float | None = None) -> dict[str, float]:
        """Where the money went: ``startup`` (billed before the worker ran), ``committed`` (the time the
        committed output took at the machine's true rate) and ``other`` (work lost to preemptions and
        crashes, waiting, idling after a notice: the rest)."""
        now = self.clock.time() if now is None else now
        startup = committed = total = 0.0
        for m in self.machines.values():
            if m.up_at is None:
                continue
            per_s = m.pool.price_per_replica_hour / 3600.0
            end = m.ended_at if m.ended_at is not None else now
            total += m.cost(now)
            startup += max(0.0, min(end, m.ready_at if m.ready_at is not None else end) - m.up_at) * per_s
            committed += m.tokens_committed / m.profile.tokens_per_s * per_s
        return {"startup": startup, "committed": committed, "other": total - startup - committed}

    # -- time ------------------------------------------------------------------
    def advance(self, t_end: float) -> None:
        """Play every event up to ``t_end`` in time order, then leave the clock at ``t_end``."""
        while True:
            t_zone, zone = self._next_zone_change(t_end)
            m = min((m for m in self.machines.values() if not m.ended), key=Machine.next_event, default=None)
            t_m = m.next_event() if m is not None else math.inf
            t = min(t_zone, t_m)
            if t > t_end:
                break
            self.clock.advance_to(max(t, self.clock.time()))
            if t_zone <= t_m:
                self._zone_change(zone, t)
            else:
                self._machine_event(m, t)
        self.clock.advance_to(t_end)

    def heartbeat(self) -> None:
        """Workers renew their leases (a real worker does every ``queue.renew_every_s``, well within one tick)."""
        for m in self.machines.values():
            if m.lease is not None and not m.ended:
                try:
                    m.lease = self.queues(m.job_id).renew(m.lease)
                except StaleLeaseError:  # taken back (reaped or reclaimed): drop it, claim anew
                    self._drop(m)
                    self._claim(m, self.clock.time())

    # -- zones -------------------------------------------------------------
    def _zone_for(self, pool: PoolSpec) -> str:
        if pool.market != "spot":
            return pool.region or ""
        candidates = [z for z in (pool.region or "").split(",") if z in self.zones] or list(self.zones)
        if not candidates:
            return pool.region or ""
        now = self.clock.time()
        free = [z for z in candidates if self._free(self.zones[z], now) > 0]
        return (free or candidates)[0]

    def _available(self, zone: Zone, t: float) -> bool:
        return zone.trace.available_at(zone.offset_s + t - self.t0)

    def _free(self, zone: Zone, t: float) -> int:
        if not self._available(zone, t):
            return 0
        used = sum(1 for m in self.machines.values() if not m.ended and m.zone == zone.name
                   and m.pool.market == "spot" and m.up_at is not None)
        return zone.capacity - used

    def _next_zone_change(self, t_end: float) -> tuple[float, Zone | None]:
        best, which = math.inf, None
        now = self.clock.time()
        for z in self.zones.values():
            rel = z.offset_s + now - self.t0
            change = z.trace.next_change(rel, max(0.0, t_end - now))
            if change is not None and change - rel + now < best:
                best, which = change - rel + now, z
        return best, which

    def _zone_change(self, zone: Zone, t: float) -> None:
        if not self._available(zone, t):
            for m in self.machines.values():
                if (not m.ended and m.zone == zone.name and m.pool.market == "spot" and m.up_at is not None
                        and m.notice_at is None):
                    m.notice_at, m.preempt_at = t, t + zone.notice_s
                    self.stats.notices += 1
                    self._notice(m, t)

    # -- machines ------------------------------------------------------------
    def _machine_event(self, m: Machine, t: float) -> None:
        if m.preempt_at is not None and t >= m.preempt_at:
            self.stats.preemptions += 1
            self._end(m, t, ReplicaState.PREEMPTED, "preempted by the cloud")
        elif m.crash_at is not None and t >= m.crash_at:
            self.stats.crashes += 1
            self._end(m, t, ReplicaState.FAILED, "worker exited with code 1 (simulated crash)")
        elif m.salvage_at is not None and t >= m.salvage_at:
            if m.lease is not None and m.chunk_done_at is not None and m.chunk_done_at <= t:
                self._commit(m, t)  # finished right at the end of the grace: committed, then the worker stops
                return
            if m.lease is not None:
                self._salvage(m, t)
            self._stop(m, t)
        elif m.up_at is None:
            self._answer(m, t)
        elif m.lease is None:
            if m.crash_at is None and self.crash_after_s is not None:
                m.crash_at, self.crash_after_s = t + self.crash_after_s, None
            self._claim(m, t)
        else:
            self._commit(m, t)

    def _answer(self, m: Machine, t: float) -> None:
        """The cloud answers a launch: allocated (boots), or a capacity error after its delay."""
        market = m.pool.market
        if market == "serverless":
            busy = sum(1 for o in self.machines.values() if not o.ended and o.pool.market == "serverless" and o.up_at is not None)
            if busy >= self.facts.serverless_concurrency:
                m.answer_at = t + self.facts.api_latency_s  # queued by the provider, unbilled
                return
            warm = t - self._warm.get(m.pool.key, -math.inf) <= self.facts.serverless_warm_s
            startup = self.facts.serverless_warm_start_s if warm else m.profile.startup_s
            m.up_at, m.ready_at = t, t + startup
            m.claim_at = m.ready_at
            m.budget_end = m.ready_at + self.launcher_settings.serverless_budget_s
            self._halt(m, m.budget_end - self.drain_grace_s, m.budget_end)
            return
        if m.refusing or (market == "spot" and m.zone in self.zones and self._free(self.zones[m.zone], t) <= 0):
            if not m.refusing:  # no capacity: the refusal arrives after the API's delay
                m.refusing, m.answer_at = True, t + max(0.0, self.facts.capacity_error_s - self.facts.api_latency_s)
                return
            m.refusing = False
            m.capacity_errors += 1
            self.stats.capacity_errors += 1
            if not m.retry:
                self._end(m, t, ReplicaState.FAILED, f"no capacity in {m.zone}")
                return
            ls = self.launcher_settings
            if m.capacity_errors > ls.launch_retries:
                self._end(m, t, ReplicaState.FAILED, f"no capacity after {m.capacity_errors} attempts")
                return
            backoff = min(ls.launch_backoff_s * 2 ** (m.capacity_errors - 1), ls.launch_backoff_max_s)
            m.message = f"no capacity in {m.zone} (attempt {m.capacity_errors}); retrying in {backoff:.0f}s"
            m.answer_at = t + backoff + self.facts.api_latency_s
            m.zone = self._zone_for(m.pool)  # the retry may land in another of the pool's zones
            return
        m.message = ""
        m.up_at, m.ready_at = t, t + m.profile.startup_s
        m.claim_at = m.ready_at

    def _claim(self, m: Machine, t: float) -> None:
        if m.draining:
            self._end(m, t, ReplicaState.TERMINATED, "worker stopped after drain")
            return
        if m.halt_at is not None and t >= m.halt_at:
            self._stop(m, t)
            return
        queue = self.queues(m.job_id)
        leases = queue.claim(m.replica_id, m.pool.key, 1)
        if not leases:
            counts = queue.counts()
            if m.pool.key not in queue.draining() and counts.leased and not counts.pending and m.pool.key in queue.standby():
                # a swap is moving chunks to this pool: wait for them (orca.worker's burst rule)
                m.claim_at = t + self.idle_poll_s
                self.report(m.job_id, m.replica_id, {"state": "running", "tokens_per_s": "0"}, t)
                return
            self._end(m, t, ReplicaState.TERMINATED, "worker finished: nothing left to claim")
            return
        m.lease, m.chunk_started_at = leases[0], t
        m.work = self._children.get((m.job_id, m.lease.chunk_id)) or self.chunk_work(m.job_id, m.lease.chunk_id)
        m.chunk_done_at = t + m.work.tokens / m.profile.tokens_per_s
        self._cut_short(m)
        self.report(m.job_id, m.replica_id, {"state": "running", "tokens_per_s": str(m.profile.tokens_per_s)}, t)

    def _commit(self, m: Machine, t: float) -> None:
        lease, work = m.lease, m.work
        self._drop(m)
        try:
            self.queues(m.job_id).complete(lease)
            m.tokens_committed += work.tokens if work is not None else 0.0
            self.stats.chunks_done += 1
            self.stats.last_commit_at = t
        except StaleLeaseError:
            pass  # it was taken back meanwhile: the redo elsewhere counts
        self.report(m.job_id, m.replica_id, {"state": "running", "tokens_per_s": str(m.profile.tokens_per_s)}, t)
        self._claim(m, t)

    # -- stopping (as orca.worker.worker stops) ----------------------------------
    def _notice(self, m: Machine, t: float) -> None:
        """The worker sees the notice at its next metadata poll and keeps ``notice_margin_s`` for the commit."""
        ws = self.worker_settings
        seen = t + ws.preemption_poll_s
        assert m.preempt_at is not None
        grace = min(self.drain_grace_s, max(0.0, m.preempt_at - seen - ws.notice_margin_s))
        self._halt(m, seen, seen + grace)

    def _halt(self, m: Machine, halt_at: float, salvage_at: float) -> None:
        m.halt_at = halt_at if m.halt_at is None else min(m.halt_at, halt_at)
        m.salvage_at = salvage_at if m.salvage_at is None else min(m.salvage_at, salvage_at)
        self._cut_short(m)

    def _answered(self, m: Machine, t: float) -> int:
        """Requests of the leased chunk answered by ``t``: those the engine's output covers; after the
        halt only the ones in flight then (at most ``max_concurrency``) may still finish."""
        assert m.work is not None and m.chunk_started_at is not None
        n = m.work.requests

        def covered(at: float) -> int:
            done = max(0.0, at - m.chunk_started_at) * m.profile.tokens_per_s / m.work.tokens
            return min(n, math.floor(done * n + 1e-9))

        if m.halt_at is None or t <= m.halt_at:
            return covered(t)
        return min(covered(t), covered(m.halt_at) + self.worker_settings.max_concurrency)

    def _cut_short(self, m: Machine) -> None:
        """A chunk that cannot be answered in full before the salvage does not complete: it is split then."""
        if m.lease is None or m.halt_at is None or m.chunk_done_at is None or m.chunk_done_at <= m.halt_at:
            return
        assert m.work is not None and m.salvage_at is not None
        if m.chunk_done_at > m.salvage_at or self._answered(m, m.chunk_done_at) < m.work.requests:
            m.chunk_done_at = math.inf

    def _salvage(self, m: Machine, t: float) -> None:
        """Let the leased chunk go as the worker does: all answered -> complete; some -> split; none -> release."""
        assert m.lease is not None and m.work is not None
        lease, work, answered = m.lease, m.work, self._answered(m, t)
        if answered >= work.requests:
            self._commit(m, t)
            return
        self._drop(m)
        queue = self.queues(m.job_id)
        try:
            if answered == 0:
                queue.release(lease)
                return
            _, rest = queue.split(lease, f"{lease.generation}s{self.stats.splits}")
        except StaleLeaseError:
            return  # taken back meanwhile: nothing kept
        left = work.requests - answered
        self._children[(m.job_id, rest)] = ChunkWork(work.tokens * left / work.requests, left)
        self.stats.splits += 1
        self.stats.requests_salvaged += answered
        m.tokens_committed += work.tokens * answered / work.requests
        self.stats.chunks_done += 1
        self.stats.last_commit_at = t

    def _stop(self, m: Machine, t: float) -> None:
        """The worker exits: a serverless invocation ends; a noticed VM idles until the cloud takes it."""
        if m.ended or m.worker_stopped:
            return
        m.claim_at, m.salvage_at = None, None
        if m.budget_end is not None:
            self._end(m, t, ReplicaState.TERMINATED, "serverless time budget used")
        else:
            m.worker_stopped = True
            m.message = "worker stopped on the preemption notice"

    def _drop(self, m: Machine) -> None:
        m.lease, m.work, m.chunk_started_at, m.chunk_done_at = None, None, None, None

    def _end(self, m: Machine, t: float, state: ReplicaState, message: str) -> None:
        m.end_state, m.ended_at, m.message = state, t, message
        m.chunk_done_at = None
        if m.pool.market == "serverless" and m.up_at is not None:
            self._warm[m.pool.key] = t


def machine_state(m: Machine, now: float) -> ReplicaState:
    """The replica state a launcher reports for ``m`` at ``now``."""
    if m.ended:
        return m.end_state  # type: ignore[return-value]
    if m.draining:
        return ReplicaState.DRAINING
    if m.up_at is None:
        return ReplicaState.PROVISIONING
    if m.ready_at is not None and now >= m.ready_at:
        return ReplicaState.RUNNING
    return ReplicaState.STARTING


