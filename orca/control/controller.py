"""The controller loop: drives every job from Redis state, one short locked tick at a time.

On each tick (``control.tick_s``) it lists ``keys.JOBS`` and, for each job that is not
settled, takes the job's Redis lock (so two controllers never act on one job at once) and:

* validating/planning: makes sure the ingest step is queued; expires the job past its deadline;
* in_progress: reaps expired leases (every ``queue.reap_every_s``), polls replicas, launches
  replacements for crashed workers while chunks remain (up to the plan's or the runtime
  policy's target), starts finalizing when every chunk is done or dead, expires the job past
  its deadline, fails it when replicas keep crashing;
* finalizing: makes sure the assembly step is queued;
* cancelling and every terminal state: tears workers down (an RQ step), assembles the
  partial results, and marks the job settled.

A restarted controller holds no state that matters: everything it needs is in Redis, and
local workers are adopted by pid.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from orca.control.pools import Launchers, pool_for_plan
from orca.control.retention import Retention
from orca.control.service import OrcaService
from orca.control.swap import SwapManager
from orca.control.transitions import move
from orca.errors import JobStateError, OrcaError
from orca.fleet import Pool, Replica, ReplicaState, WorkerEnv
from orca.launchers.base import Launcher
from orca.models import JobStatus
from orca.queue.jobs import JobRecord
from orca.queue.types import QueueCounts

log = logging.getLogger("orca.controller")
S = JobStatus


class Controller:
    def __init__(self, service: OrcaService, controller_id: str | None = None,
                 launchers: dict[str, Launcher] | None = None) -> None:
        """``launchers``: launcher name -> instance to use instead of the configured one (tests, benchmarks)."""
        self.svc = service
        self.settings = service.settings
        self.registry = service.registry
        self.id = controller_id or f"ctl-{uuid.uuid4().hex[:8]}"
        self.launcher = Launchers(self.settings, self.registry, overrides=launchers)
        self._last_reap: dict[str, float] = {}
        self._settled: set[str] = set()
        self.retention = Retention(service)  # deletes expired files every retention.every_s

    # -- loop -----------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Tick every ``control.tick_s`` until ``stop`` is set; a failing tick is logged, not fatal."""
        log.info("controller %s started", self.id)
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except OrcaError as exc:
                log.warning("controller tick failed: %s", exc)
            except Exception:  # noqa: BLE001 - the loop must outlive one bad tick
                log.exception("controller tick crashed")
            stop.wait(max(0.0, self.settings.control.tick_s - (time.monotonic() - started)))

    def tick(self) -> None:
        self.retention.tick()
        for job_id in self.registry.job_ids():
            if job_id in self._settled:
                continue
            with self.registry.lock(job_id) as mine:
                if not mine:
                    continue
                record = self.registry.find(job_id)
                if record is None:
                    continue
                if record.settled:
                    self._settled.add(job_id)
                    continue
                try:
                    self.tick_job(record)
                except JobStateError as exc:  # a user's cancel raced us; next tick sees the new status
                    log.info("job %s changed under the controller: %s", job_id, exc)

    def _to(self, record: JobRecord, target: JobStatus, message: str = "", **fields) -> JobRecord:
        return move(self.registry, record.id, target, message, message=message or None, **fields)

    def _step(self, name: str, func: str, job_id: str) -> None:
        self.svc.background.submit(f"{name}-{job_id}", f"orca.control.tasks.{func}", self.svc._settings_json(), job_id)

    # -- one job --------------------------------------------------------
    def tick_job(self, record: JobRecord) -> None:
        now = time.time()
        status = record.status
        if status is not S.IN_PROGRESS and SwapManager.active(record) is not None:
            SwapManager(self.settings, self.registry, launchers=self.launcher).tick(record)  # closes it
            record = self.registry.get(record.id)
        if status.terminal:
            self._settle(record)
        elif status in (S.VALIDATING, S.PLANNING):
            if now > record.deadline_at:
                self._to(record, S.EXPIRED, "deadline passed before the job started")
            elif self.svc.background.step_status(f"ingest-{record.id}") == "failed":
                self._to(record, S.FAILED, "ingest failed; see the control plane's worker log")
            elif self.svc.background.step_status(f"ingest-{record.id}") is None:
                self._step("ingest", "ingest_job", record.id)
        elif status is S.CANCELLING:
            if self._stop_replicas(record):
                if record.chunks_total:
                    self._assemble(record)
                else:
                    self._to(record, S.CANCELLED, "job cancelled", settled=True)
        elif status is S.FINALIZING:
            self._assemble(record)
        elif status is S.IN_PROGRESS:
            self._run(record, now)

    def _assemble(self, record: JobRecord) -> None:
        if self.svc.background.step_status(f"assemble-{record.id}") == "failed":
            if record.status is S.FINALIZING or record.status is S.CANCELLING:
                self._to(record, S.FAILED, "assembling the output failed; see the control plane's worker log", settled=True)
            else:
                self.registry.add_event(record.id, "assemble_failed", "assembling partial results failed")
                self.registry.update(record.id, settled=True)
            return
        self._step("assemble", "assemble_job", record.id)

    def _settle(self, record: JobRecord) -> None:
        """A terminal job: stop its workers, keep (partial) results, then never look at it again."""
        if not self._stop_replicas(record):
            return
        if record.chunks_total and not record.output_available:
            self._assemble(record)
            return
        self.registry.update(record.id, settled=True)
        self._settled.add(record.id)

    def _poll(self, record: JobRecord) -> list[Replica]:
        out = []
        for replica in self.registry.replicas(record.id):
            if replica.state.live and replica.handle:
                before = (replica.state, replica.message, replica.cost_usd)
                replica = self.launcher(replica.launcher).poll(replica)
                if (replica.state, replica.message, replica.cost_usd) != before:
                    self.registry.put_replica(replica)
                    if replica.state is ReplicaState.FAILED:
                        self.registry.update(record.id, replica_failures=record.replica_failures + 1)
                        record.replica_failures += 1
                        self.registry.add_event(record.id, "replica_failed", f"{replica.replica_id}: {replica.message}")
                    if not replica.state.live:
                        self._reclaim(record, replica)
            out.append(replica)
        return out

    def _reclaim(self, record: JobRecord, replica: Replica) -> None:
        """A worker that is gone (crashed, killed, preempted, torn down) gets its chunks taken back now,
        not when its leases expire; fencing keeps anything it might still send from committing.
        Only a failure charges the chunks an attempt: a preemption or teardown is not their fault."""
        why = f"replica {replica.state.value}" + (f": {replica.message}" if replica.message else "")
        taken = self.svc.queue(record.id).reclaim(replica.replica_id, why, charge=replica.state is ReplicaState.FAILED)
        if taken:
            self.registry.add_event(record.id, "reclaimed", f"{len(taken)} chunk(s) of {replica.replica_id} "
                                    f"({replica.state.value}) returned to the queue")

    def _stop_replicas(self, record: JobRecord) -> bool:
        """True when no replica of the job is live; otherwise stops claims and asks for the teardown step."""
        if any(r.state.live for r in self._poll(record)):
            queue = self.svc.queue(record.id)
            for pool in record.pools:
                queue.drain(pool.key)  # no new claims while the workers stop
            self._step("teardown", "teardown_job", record.id)
            return False
        return True

    def _run(self, record: JobRecord, now: float) -> None:
        queue = self.svc.queue(record.id)
        if now - self._last_reap.get(record.id, 0.0) >= self.settings.queue.reap_every_s:
            reaped = queue.reap()
            self._last_reap[record.id] = now
            if reaped:
                self.registry.add_event(record.id, "reaped", f"{len(reaped)} expired lease(s) returned to the queue")
        counts = queue.counts()
        replicas = self._poll(record)
        if SwapManager.active(record) is not None:
            SwapManager(self.settings, self.registry, launchers=self.launcher).tick(record, queue)
            record = self.registry.get(record.id)
            replicas = self.registry.replicas(record.id)
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
        """Bring each active pool to its target, never above the chunks left to run.

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
        for pool in pools:
            if not pool.active:
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
            working = [r for r in replicas if r.pool == pool.key and r.state.live and r.state is not ReplicaState.DRAINING]
            # Launch only for chunks nobody holds: a burst worker that found nothing pending has
            # exited on purpose, and chunks of a dead worker come back as pending when reaped. A
            # swap's pools (explicit target) launch for all chunks left: the old pool releases its
            # chunks to the new one once that one has proved itself.
            room = counts.pending if pool.target is None else remaining
            for _ in range(min(target - len(working), room)):
                self._launch(record, pool)
            if pool.launcher != "local" and len(working) > target:
                for replica in sorted(working, key=lambda r: r.created_at, reverse=True)[: len(working) - target]:
                    self.registry.put_replica(self.launcher(replica.launcher).drain(replica))
                    self.registry.add_event(record.id, "replica_draining", f"{replica.replica_id}: scaled down")

    def _policy_targets(self, record: JobRecord, replicas: list[Replica], counts: QueueCounts) -> dict[str, int]:
        """The runtime policy's replica target per pool key (empty for local-only jobs)."""
        cloud = [p for p in record.pools if p.launcher != "local"]
        if not cloud:
            return {}
        from orca.planner.policy import decide
        from orca.planner.types import PoolOption, PoolState, RuntimeState

        start = record.in_progress_at or record.created_at
        options = [PoolOption(key=o["key"], market=o["market"], replica_tokens_per_s=o["replica_tokens_per_s"],
                              price_per_replica_hour=o["price_per_replica_hour"], startup_s=o.get("startup_s", 0.0),
                              max_replicas=self.settings.planner.max_replicas) for o in record.options]
        measured = self._measured_tokens_per_s(record.id)
        states = []
        for pool in cloud:
            mine = [r for r in replicas if r.pool == pool.key]
            running = [r for r in mine if r.state is ReplicaState.RUNNING]
            starting = [r for r in mine if r.state in (ReplicaState.PROVISIONING, ReplicaState.STARTING)]
            rates = [measured[r.replica_id] for r in running if measured.get(r.replica_id)]
            option = next((o for o in record.options if o["key"] == pool.key), record.plan or {})
            states.append(PoolState(
                key=pool.key, market=pool.market, replicas_running=len(running), replicas_starting=len(starting),
                replica_tokens_per_s=sum(rates) / len(rates) if rates else float(option.get("replica_tokens_per_s", 1.0)),
                price_per_replica_hour=pool.price_per_replica_hour,
                recent_preemptions=sum(1 for r in mine if r.state is ReplicaState.PREEMPTED),
            ))
        work_total = float(max(1, record.est_output_tokens))
        frac = counts.done / counts.total if counts.total else 0.0
        state = RuntimeState(now_s=time.time() - start, deadline_s=record.deadline_at - start,
                             work_total=work_total, work_done=work_total * frac, pools=tuple(states))
        return dict(decide(state, options, self.settings).targets)

    def _measured_tokens_per_s(self, job_id: str) -> dict[str, float]:
        """Replica id -> completion tokens/s from its latest metrics report."""
        out = {}
        for worker_id in self.registry.worker_last_seen(job_id):
            metrics = self.registry.worker_metrics(job_id, worker_id)
            try:
                out[worker_id] = float(metrics.get("tokens_per_s", 0) or 0)
            except ValueError:
                continue
        return out

    def _launch(self, record: JobRecord, pool: Pool) -> None:
        replica_id = f"w-{uuid.uuid4().hex[:10]}"
        env = WorkerEnv(job_id=record.id, redis_url=self.registry.redis_url, store_url=self.svc.store.url,
                        model=record.model or "")
        replica = self.launcher(pool.launcher).launch(env, pool, replica_id)
        self.registry.put_replica(replica)
        self.registry.add_event(record.id, "replica_launched", f"{replica_id} in pool {pool.key}: {replica.message or replica.state.value}")
