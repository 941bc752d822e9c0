"""The controller loop: drives every job from Redis state, one short locked tick at a time.

On each tick (``control.tick_s``) it lists ``keys.JOBS`` and, for each job that is not
settled, takes the job's Redis lock (so two controllers never act on one job at once),
follows the job's launcher calls (``orca.control.replicas``) and:

* validating/planning: makes sure the ingest step is queued; expires the job past its deadline;
* in_progress: reaps expired leases (every ``queue.reap_every_s``), advances a swap, brings
  each pool's replicas to its phase (active pools to their target, up to the plan's or the
  runtime policy's count and never above the chunks left; draining pools drained; drained or
  cancelled pools torn down), starts finalizing when every chunk is done or dead, expires the
  job past its deadline, fails it when replicas keep crashing;
* finalizing: makes sure the assembly step is queued;
* cancelling and every terminal state: tears workers down, waits for chunks still leased by
  workers no replica tracks (they commit, or their leases expire), assembles the partial
  results, and marks the job settled.

The tick only reads and decides: every launcher call (launch, poll, drain, teardown) is
submitted to a :class:`~orca.control.calls.CallRunner` and followed on later ticks, so a slow
or failing cloud never delays another job. A job whose tick raises gets the error as an event
and as its message; after ``control.max_tick_failures`` failing ticks in a row it fails with
that reason. Other jobs go on in the same tick.

A restarted controller holds no state that matters: everything it needs is in Redis, local
workers are adopted by pid, and launcher calls of a controller that stopped beating are
taken over (``orca.control.replicas``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from orca.clock import SYSTEM_CLOCK, Clock
from orca.control.calls import CallRunner, ThreadCalls
from orca.control.pools import Launchers, pool_for_plan
from orca.control.progress_series import ProgressSampler
from orca.control.replicas import ReplicaCalls
from orca.control.retention import Retention
from orca.control.service import OrcaService
from orca.control.swap import SwapManager
from orca.control.transitions import move
from orca.errors import JobStateError, OrcaError, QueueUnavailableError
from orca.fleet import Pool, PoolPhase, Replica, ReplicaState, WorkerEnv
from orca.launchers.base import Launcher
from orca.models import JobStatus
from orca.planner.availability import AvailabilityEstimator
from orca.queue.background import Background
from orca.queue.jobs import JobRecord, JobSnapshot
from orca.queue.types import QueueCounts

log = logging.getLogger("orca.controller")
S = JobStatus


@dataclass
class TickReport:
    """What one tick did (for logs and benchmarks)."""

    controller: str
    started: float                  # unix seconds
    duration_s: float = 0.0
    jobs: dict[str, float] = field(default_factory=dict)   # job this controller ticked -> when (unix s)
    failed: list[str] = field(default_factory=list)    # jobs whose tick raised


class Controller:
    def __init__(self, service: OrcaService, controller_id: str | None = None,
                 launchers: dict[str, Launcher] | None = None, calls: CallRunner | None = None,
                 on_tick: Callable[[TickReport], None] | None = None, *, clock: Clock = SYSTEM_CLOCK,
                 policy: Callable | None = None, samples: ProgressSampler | None = None) -> None:
        """``launchers``: launcher name -> instance to use instead of the configured one (tests, benchmarks);
        ``calls``: where launcher calls run (default: a bounded thread pool; ``InlineCalls`` for
        deterministic simulations); ``on_tick``: called with each tick's report. The simulated cloud
        (``orca.sim``) also injects ``clock`` (every time read of the control loop), ``policy``
        (``decide``'s signature) and ``samples`` (the dashboard's chart sampler)."""
        self.svc = service
        self.settings = service.settings
        self.registry = service.registry
        self.id = controller_id or f"ctl-{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.policy = policy
        self.availability = AvailabilityEstimator.from_settings(self.settings)
        self.launcher = Launchers(self.settings, self.registry, overrides=launchers)
        self.calls = calls or ThreadCalls(self.settings.control)
        self.replicas = ReplicaCalls(self.id, self.settings, self.registry, self.launcher, self.calls, service.queue,
                                     clock=clock.time, monotonic=clock.monotonic, observe=self._observe)
        self.on_tick = on_tick
        self._last_reap: dict[str, float] = {}
        self._waiting_leases: set[str] = set()    # stopping jobs whose wait for leftover leases has an event
        self._plans: dict[str, tuple[float, dict[str, int]]] = {}  # job -> (when, the policy's targets then)
        self._settled: set[str] = set()
        self._live_controllers: set[str] = {self.id}
        self.retention = Retention(service)  # deletes expired files every retention.every_s
        self._samples = samples or ProgressSampler(service)  # the dashboard's progress/cost charts
        # Reaping waits one renewal period after this controller starts or Redis restarts: leases
        # whose expiry passed while nobody could renew them are live workers' until they had a chance.
        self._reap_after = self.clock.monotonic() + self.settings.queue.renew_every_s
        self._redis_run_id: str | None = None

    # -- loop -----------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Tick every ``control.tick_s`` until ``stop`` is set; a failing tick is logged, not fatal."""
        log.info("controller %s started", self.id)
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self.tick()
                except OrcaError as exc:
                    log.warning("controller tick failed: %s", exc)
                except Exception:  # noqa: BLE001 - the loop must outlive one bad tick
                    log.exception("controller tick crashed")
                stop.wait(max(0.0, self.settings.control.tick_s - (time.monotonic() - started)))
        finally:
            self.calls.close()

    def _watch_redis(self) -> None:
        run_id = self.registry.server_run_id()
        if self._redis_run_id is not None and run_id != self._redis_run_id:
            log.warning("Redis restarted: reaping resumes in %.0f s, once live workers renewed their leases",
                        self.settings.queue.renew_every_s)
            self._reap_after = self.clock.monotonic() + self.settings.queue.renew_every_s
        self._redis_run_id = run_id

    def tick(self) -> TickReport:
        """One pass over every unsettled job (in random order, so two controllers share the work)."""
        report = TickReport(controller=self.id, started=self.clock.time())
        started = time.monotonic()
        self._watch_redis()
        self.registry.heartbeat(self.id, report.started)
        self._live_controllers = self.registry.controllers(report.started - self.settings.control.controller_ttl_s) | {self.id}
        self.retention.tick()
        job_ids = [j for j in self.registry.job_ids() if j not in self._settled]
        random.shuffle(job_ids)
        batch, ttl_s = self.settings.control.lock_batch, self.settings.control.lock_ttl_s
        for i in range(0, len(job_ids), batch):
            tokens, snapshots = self.registry.lock_and_read(job_ids[i:i + batch])
            locked_at = time.monotonic()
            try:
                for job_id, snapshot in snapshots.items():
                    if time.monotonic() - locked_at > ttl_s / 3:  # a slow batch: keep its locks, never act on a lapsed one
                        held = self.registry.relock_many(tokens)
                        tokens = {j: t for j, t in tokens.items() if j in held}
                        locked_at = time.monotonic()
                    if job_id in tokens:
                        self._tick_one(snapshot, report)
            finally:
                self.registry.unlock_many(tokens)
        report.duration_s = time.monotonic() - started
        if self.on_tick is not None:
            self.on_tick(report)
        return report

    def _tick_one(self, snapshot: JobSnapshot, report: TickReport) -> None:
        """One job's tick (under its lock), isolated: its exception is recorded on it and ends nothing else."""
        record = snapshot.record
        if record.settled:
            self._settled.add(record.id)
            return
        report.jobs[record.id] = self.clock.time()
        try:
            self.tick_job(record, snapshot)
            if record.tick_failures:
                self.registry.update(record.id, tick_failures=0)
        except QueueUnavailableError:
            raise  # Redis is gone: the whole tick ends, no job is blamed
        except JobStateError as exc:  # a user's cancel raced us; next tick sees the new status
            log.info("job %s changed under the controller: %s", record.id, exc)
        except Exception as exc:  # noqa: BLE001 - one job's failure must not stop the others
            report.failed.append(record.id)
            self._tick_failed(record, exc)

    def _tick_failed(self, record: JobRecord, exc: Exception) -> None:
        """Record a failing tick on its job; fail the job after ``max_tick_failures`` in a row."""
        n = record.tick_failures + 1
        limit = self.settings.control.max_tick_failures
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OrcaError) else str(exc)
        log.warning("job %s: tick failed (%d/%d): %s", record.id, n, limit, reason)
        try:
            self.registry.add_event(record.id, "tick_failed", f"controller tick failed ({n}/{limit}): {reason}")
            self.registry.update(record.id, tick_failures=n, message=f"controller: {reason}")
            if n < limit:
                return
            if record.status.terminal:
                self.registry.add_event(record.id, "settle_failed", f"gave up settling after {n} failed ticks: {reason}")
                self.registry.update(record.id, settled=True)
            else:
                self._to(record, S.FAILED, f"the controller failed on this job {n} ticks in a row: {reason}")
        except OrcaError as inner:
            log.warning("job %s: could not record its failed tick: %s", record.id, inner)

    def _to(self, record: JobRecord, target: JobStatus, message: str = "", **fields) -> JobRecord:
        return move(self.registry, record.id, target, message, message=message or None, now=self.clock.time(), **fields)

    def _swaps(self) -> SwapManager:
        return SwapManager(self.settings, self.registry, clock=self.clock.time, queues=self.svc.queue)

    def _step(self, name: str, func: str, job_id: str) -> None:
        self.svc.background.submit(f"{name}-{job_id}", f"orca.control.tasks.{func}", self.svc._settings_json(), job_id)

    # -- one job --------------------------------------------------------
    def tick_job(self, record: JobRecord, snapshot: JobSnapshot | None = None) -> None:
        """Act on one job (call under its lock; ``snapshot``: its replicas and counts read with the lock)."""
        now = self.clock.time()
        status = record.status
        replicas = self.replicas.follow(record, self._live_controllers, snapshot.replicas if snapshot else None)
        counts = snapshot.counts if snapshot else None
        if status is not S.IN_PROGRESS and SwapManager.active(record) is not None:
            self._swaps().tick(record, replicas=replicas)  # closes it
            record = self.registry.get(record.id)
        if status.terminal:
            self._settle(record, replicas)
        elif status in (S.VALIDATING, S.PLANNING):
            if now > record.deadline_at:
                self._to(record, S.EXPIRED, "deadline passed before the job started")
            elif self.svc.background.step_status(f"ingest-{record.id}") == "failed":
                self._to(record, S.FAILED, "ingest failed; see the control plane's worker log")
            elif self.svc.background.step_status(f"ingest-{record.id}") is None:
                self._step("ingest", "ingest_job", record.id)
        elif status is S.CANCELLING:
            if self._stop_replicas(record, replicas) and self._leases_settled(record, counts):
                if record.chunks_total:
                    self._assemble(record)
                else:
                    self._to(record, S.CANCELLED, "job cancelled", settled=True)
        elif status is S.FINALIZING:
            self._assemble(record)
        elif status is S.IN_PROGRESS:
            self._run(record, replicas, now, counts)
        self._samples.sample(record, now)
        # polls go out after the tick has decided: a poll in flight would keep this tick's drains and
        # teardowns from being submitted (one call per replica at a time)
        self.replicas.poll_due(record, replicas)

    def _assemble(self, record: JobRecord) -> None:
        status = self.svc.background.step_status(f"assemble-{record.id}")
        if status in Background.PENDING:
            return  # queued or running: nothing to ask for
        if status == "failed":
            if record.status is S.FINALIZING or record.status is S.CANCELLING:
                self._to(record, S.FAILED, "assembling the output failed; see the control plane's worker log", settled=True)
            else:
                self.registry.add_event(record.id, "assemble_failed", "assembling partial results failed")
                self.registry.update(record.id, settled=True)
            return
        self._step("assemble", "assemble_job", record.id)

    def _settle(self, record: JobRecord, replicas: list[Replica]) -> None:
        """A terminal job: stop its workers, keep (partial) results, then never look at it again."""
        if not self._stop_replicas(record, replicas):
            return
        if record.chunks_total and not record.output_available:
            if self._leases_settled(record, None):
                self._assemble(record)
            return
        self.registry.update(record.id, settled=True)
        self._settled.add(record.id)
        self._plans.pop(record.id, None)

    def _stop_replicas(self, record: JobRecord, replicas: list[Replica]) -> bool:
        """True when no replica of the job is live; otherwise stops claims and asks for each teardown."""
        live = [r for r in replicas if r.state.live]
        if not live:
            return True
        queue = self.svc.queue(record.id)
        for pool in record.pools:
            queue.drain(pool.key)  # no new claims while the workers stop
        for replica in live:
            self.replicas.act(record, replica, "terminate")
        return False

    def _leases_settled(self, record: JobRecord, counts: QueueCounts | None) -> bool:
        """True when no chunk of a stopping job is leased. With every replica ended, a lease left is held by
        a worker no replica record tracks (a launch lost with its controller, on a launcher that names no
        handle before launching): its answers land once it commits, or its lease expires and is reaped.
        The final assembly waits for either, so nothing answered is written off as never run."""
        if not record.chunks_total:
            return True
        queue = self.svc.queue(record.id)
        if self._reap_due(record):
            queue.reap()
            counts = None
        leased = (counts or queue.counts()).leased
        if not leased:
            self._waiting_leases.discard(record.id)
            return True
        if record.id not in self._waiting_leases:
            self._waiting_leases.add(record.id)
            self.registry.add_event(record.id, "waiting_for_leases",
                                    f"{leased} chunk(s) still leased by untracked workers: assembling once they commit or expire")
        return False

    def _reap_due(self, record: JobRecord) -> bool:
        """Whether the job's expired leases are due for a reap (every ``queue.reap_every_s``, and not just
        after a Redis restart, before live workers renewed their leases); marks it done when it is."""
        now = self.clock.time()
        if (now - self._last_reap.get(record.id, 0.0) < self.settings.queue.reap_every_s
                or self.clock.monotonic() < self._reap_after):
            return False
        self._last_reap[record.id] = now
        return True

    def _run(self, record: JobRecord, replicas: list[Replica], now: float, counts: QueueCounts | None = None) -> None:
        queue = self.svc.queue(record.id)
        if self._reap_due(record):
            reaped = queue.reap()
            if reaped:
                self.registry.add_event(record.id, "reaped", f"{len(reaped)} expired lease(s) returned to the queue")
                counts = None
        if counts is None:
            counts = queue.counts()
        if SwapManager.active(record) is not None:
            self._swaps().tick(record, queue, replicas)
            record = self.registry.get(record.id)
        if counts.finished:
            self._to(record, S.FINALIZING, f"chunks: {counts.done} done, {counts.dead} dead")
            self._step("assemble", "assemble_job", record.id)
            return
        if now > record.deadline_at:
            self._to(record, S.EXPIRED, f"deadline passed with {counts.done + counts.dead}/{counts.total} chunks finished; partial results kept")
            return
        if record.rate_done0 is None and counts.done >= 1:
            self.registry.update(record.id, rate_t0=now, rate_done0=counts.done)
        if record.replica_failures >= self.settings.launcher.max_replica_failures:
            self._to(record, S.FAILED, f"{record.replica_failures} worker replicas failed; giving up")
            return
        self._scale(record, replicas, counts)

    def _scale(self, record: JobRecord, replicas: list[Replica], counts: QueueCounts) -> None:
        """Bring each pool's replicas to the pool's phase; each active pool to its target, never above
        the chunks left to run.

        A pool with an explicit ``target`` (a swap sets one) keeps it. Local pools keep the plan's
        replica count (local workers cost nothing, so the fastest finish is the cheapest). Cloud
        pools follow the runtime policy's decision, which may open a pool in another market from
        the job's options or shrink one (drain).
        """
        remaining = counts.pending + counts.leased
        targets = self._policy_targets(record, replicas, counts)
        pools = list(record.pools)
        known = {p.key for p in pools}
        for option in record.options:
            if targets.get(option["key"], 0) > 0 and option["key"] not in known:
                pool = pool_for_plan(option, record.launcher or self.settings.control.default_launcher, self.settings)
                pools.append(pool)
                self.registry.update(record.id, pools=pools)
                self.registry.add_event(record.id, "pool_opened", f"runtime policy opened pool {pool.key}")
        swap = SwapManager.active(record)
        swapping_to = swap.to_pool if swap is not None else None
        for pool in pools:
            live = [r for r in replicas if r.pool == pool.key and r.state.live]
            if pool.state is PoolPhase.DRAINING:
                for replica in live:
                    if replica.state is not ReplicaState.DRAINING:
                        self.replicas.act(record, replica, "drain")
                continue
            if pool.state in (PoolPhase.DRAINED, PoolPhase.CANCELLED):
                for replica in live:
                    self.replicas.act(record, replica, "terminate")
                continue
            if pool.target is not None:  # set by a swap
                target = pool.target
            elif pool.launcher == "local":
                target = int((record.plan or {}).get("replicas", 1))
            else:
                target = targets.get(pool.key, 0)
            if pool.launcher == "local":
                target = min(target, self.settings.launcher.local_max_workers)
            target = min(target, remaining)
            # a replica under a preemption notice or being torn down (a lost launch) is leaving: it no longer
            # counts, so its replacement starts now
            working = [r for r in live if r.state is not ReplicaState.DRAINING and r.notice_at is None
                       and r.call != "terminate"]
            # Launch only for chunks nobody holds: a burst worker that found nothing pending has
            # exited on purpose and is not relaunched while other workers hold the chunks. The
            # pool a swap moves to is the exception: its workers stand by (they wait instead of
            # exiting) for the chunks the old pool hands over once the new pool is ready.
            room = remaining if pool.key == swapping_to else counts.pending
            self._launch(record, pool, min(target - len(working), room))
            if pool.launcher != "local" and len(working) > target:
                for replica in sorted(working, key=lambda r: r.created_at, reverse=True)[: len(working) - target]:
                    if self.replicas.act(record, replica, "drain"):
                        self.registry.add_event(record.id, "replica_draining", f"{replica.replica_id}: scaled down")

    def _observe(self, record: JobRecord, old: Replica, new: Replica) -> None:
        """Feed what a launcher call showed (capacity errors, notices, preemptions, a launch that came up)
        into the availability estimate the policy reads."""
        pool = next((p for p in record.pools if p.key == new.pool), None)
        zone = new.zone or (pool.region if pool is not None else None) or ""
        market, now, est = (pool.market if pool is not None else ""), self.clock.time(), self.availability
        for _ in range(new.capacity_errors - old.capacity_errors):
            est.capacity_error(zone, market, now)
        if (new.notice_at is not None and old.notice_at is None) or (
                new.state is ReplicaState.PREEMPTED and old.state is not ReplicaState.PREEMPTED and old.notice_at is None):
            option = next((o for o in record.options if o.get("key") == new.pool), None) or {}
            short_s = self.settings.planner.availability_short_life_factor * float(option.get("startup_s") or self.settings.planner.provision_s)
            est.preempted(zone, market, now, short_s)
        if old.state is ReplicaState.PROVISIONING and new.state in (ReplicaState.STARTING, ReplicaState.RUNNING):
            est.came_up(zone, market, now)

    def _policy_targets(self, record: JobRecord, replicas: list[Replica], counts: QueueCounts) -> dict[str, int]:
        """The runtime policy's replica target per pool key (empty for local-only jobs), decided again every
        ``planner.replan_every_s`` (in between, the last decision holds: pools do not flap tick to tick)."""
        now = self.clock.time()
        last = self._plans.get(record.id)
        if last is not None and now - last[0] < self.settings.planner.replan_every_s - 1e-6:
            return last[1]
        targets = self._replan(record, replicas, counts, now)
        self._plans[record.id] = (now, targets)
        return targets

    def _replan(self, record: JobRecord, replicas: list[Replica], counts: QueueCounts, now: float) -> dict[str, int]:
        cloud = [p for p in record.pools if p.launcher != "local"]
        if not cloud:
            return {}
        from orca.planner.policy import decide, option_cap
        from orca.planner.types import PoolOption, PoolState, RuntimeState

        start = record.in_progress_at or record.created_at
        options = [PoolOption(key=o["key"], market=o["market"], replica_tokens_per_s=o["replica_tokens_per_s"],
                              price_per_replica_hour=o["price_per_replica_hour"], startup_s=o.get("startup_s", 0.0),
                              max_replicas=int(o.get("max_replicas") or option_cap(o["market"], self.settings)),
                              zone=o.get("region") or "") for o in record.options]
        stuck_s = self.settings.planner.availability_stuck_factor * self.settings.planner.provision_s
        for pool in cloud:  # a launch provisioning far longer than it should: its zone counts as failing
            if any(r.pool == pool.key and r.state is ReplicaState.PROVISIONING and now - r.created_at > stuck_s
                   for r in replicas):
                self.availability.stuck(pool.region or "", pool.market, now)
        blocked = frozenset(o.key for o in options if not self.availability.usable(o.zone, o.market, now))
        probation = frozenset(o.key for o in options if self.availability.on_probation(o.zone, o.market, now))
        measured = self._measured_tokens_per_s(record.id, [r.replica_id for r in replicas if r.state is ReplicaState.RUNNING])
        states = []
        for pool in cloud:
            mine = [r for r in replicas if r.pool == pool.key]
            staying = [r for r in mine if r.notice_at is None and r.call != "terminate"]  # noticed or torn down: going
            running = [r for r in staying if r.state is ReplicaState.RUNNING]
            starting = [r for r in staying if r.state in (ReplicaState.PROVISIONING, ReplicaState.STARTING)]
            rates = [measured[r.replica_id] for r in running if measured.get(r.replica_id)]
            option = next((o for o in record.options if o["key"] == pool.key), record.plan or {})
            states.append(PoolState(
                key=pool.key, market=pool.market, replicas_running=len(running), replicas_starting=len(starting),
                replica_tokens_per_s=sum(rates) / len(rates) if rates else float(option.get("replica_tokens_per_s", 1.0)),
                price_per_replica_hour=pool.price_per_replica_hour,
                recent_preemptions=sum(1 for r in mine if r.state is ReplicaState.PREEMPTED or r.notice_at is not None),
            ))
        work_total = float(max(1, record.est_output_tokens))
        frac = counts.done / counts.total if counts.total else 0.0
        state = RuntimeState(now_s=now - start, deadline_s=record.deadline_at - start,
                             work_total=work_total, work_done=work_total * frac, pools=tuple(states), blocked=blocked,
                             probation=probation)
        return dict((self.policy or decide)(state, options, self.settings).targets)

    def _measured_tokens_per_s(self, job_id: str, replica_ids: list[str]) -> dict[str, float]:
        """Replica id -> completion tokens/s from its latest metrics report (one round trip for all)."""
        out = {}
        for worker_id, metrics in zip(replica_ids, self.registry.workers_metrics(job_id, replica_ids)):
            try:
                out[worker_id] = float(metrics.get("tokens_per_s", 0) or 0)
            except ValueError:
                continue
        return out

    def _launch(self, record: JobRecord, pool: Pool, n: int) -> None:
        if n <= 0:
            return
        env = WorkerEnv(job_id=record.id, redis_url=self.registry.redis_url, store_url=self.svc.store.url,
                        model=record.model or "")
        launched = self.replicas.launch(record, pool, env, n)
        self.registry.add_events(record.id, [("replica_launched", f"{r.replica_id} in pool {pool.key}: launch requested by {self.id}")
                                             for r in launched])
