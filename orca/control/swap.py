"""Live GPU swap, make-before-break: a new pool joins the job's queue, the old pool hands over.

Two layers:

* :func:`swap_step` - a pure state machine. Data in (the swap record and what was
  observed this tick), decisions out (the next record and a list of actions).
* :class:`SwapManager` - performs those actions on the job record (pool phases, swap
  history) and the chunk queue (``drain``/``undrain``, ``set_standby``). It never calls a
  launcher: the controller brings each pool's replicas to the pool's phase on its own tick
  (an active pool is scaled, a draining pool's replicas are drained, a drained or cancelled
  pool's replicas are terminated), with its launcher calls off the tick.

Phases (``SwapOut.state``)::

    launching --(a new replica is running, or the new pool completed a chunk)--> draining
    draining  --(old pool has no live replica, or swap_grace_s passed)--> done
    launching/draining --(swap --cancel)--> cancelled
    launching --(swap_max_failures new replicas failed)--> cancelled

* launching: the new pool is added to ``JobRecord.pools`` as ``active`` with the old pool's
  target and put on **standby** in the queue: its burst workers that find nothing pending
  wait while the old pool holds chunks, instead of exiting "empty" and being relaunched in a
  loop. The controller launches the new pool's target once (at most target + failed
  replicas). The old pool is untouched: it keeps working.
* draining starts once the new pool is ready: a live new replica whose worker reports
  ``running`` (engine up, claiming), or a chunk completed by the new pool. The old pool
  becomes ``draining``, ``ChunkQueue.drain(old)`` stops its claims, and the controller
  drains its replicas (SIGTERM semantics: finish in-flight chunks within the worker's drain
  grace, release the rest without charging an attempt). Released chunks go to the waiting
  new pool at once: the swap moves the work instead of waiting for the old pool to run dry.
* done: when every old replica has ended, or ``swap_grace_s`` after draining began; the old
  pool becomes ``drained`` (the controller terminates what is still live; its chunks come
  back uncharged) and the new pool leaves standby.
* cancelled: the new pool becomes ``cancelled`` (the controller terminates its replicas) and
  leaves standby; on a user's cancel the old pool is undrained and ``active`` again.

The swap record lives in ``JobRecord.swaps`` (a list; the last entry with state launching
or draining is the active swap; finished entries are the history). Each entry has the
``SwapOut`` fields (state, from_pool, to_pool, started_at, finished_at) plus
``reason``, ``drain_started_at``, ``baseline_completions``, ``cancel_requested`` and
``cost_usd`` (pool key -> money spent by that pool's replicas, updated every tick).

What the control plane calls (``orca/control/service.py`` and the controller)::

    SwapManager(settings, registry).request(record, swap_request)   # API: POST /api/jobs/{id}/swap
        # starts a swap (record must be in_progress), or with swap_request.cancel backs one out.
        # Raises JobStateError (no pool to swap from, swap already running, nothing to cancel,
        # same pool) or JobStateError when the job's lock stays busy for swap_lock_wait_s.
    SwapManager(settings, registry).tick(record, queue, replicas)
        # every controller tick of a job (under the job's lock, after following replicas);
        # a job that left in_progress closes its active swap.

``registry`` needs: ``get(job_id) -> JobRecord``, ``update(job_id, **fields)``,
``replicas(job_id) -> list[Replica]``, ``workers_metrics(job_id, ids)``,
``add_event(job_id, kind, message)``, ``lock(job_id)`` (context manager yielding bool),
``redis_url`` (``orca.queue.jobs.JobRegistry`` has all of them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

from orca.control.pools import find, swap_pool, with_changes
from orca.errors import JobStateError
from orca.fleet import Pool, PoolPhase, Replica, ReplicaState
from orca.launchers.costs import pool_costs
from orca.models import JobStatus
from orca.settings import Settings, get_settings


class SwapPhase(str, Enum):
    LAUNCHING = "launching"
    DRAINING = "draining"
    DONE = "done"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in (SwapPhase.LAUNCHING, SwapPhase.DRAINING)


@dataclass(frozen=True)
class SwapState:
    """One swap, as stored in ``JobRecord.swaps``."""

    from_pool: str
    to_pool: str
    state: SwapPhase
    started_at: float
    baseline_completions: int = 0     # to_pool's completions when the swap began
    drain_started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    reason: str = ""
    cost_usd: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, d: dict) -> "SwapState":
        names = cls.__dataclass_fields__
        return cls(**{**{k: v for k, v in d.items() if k in names}, "state": SwapPhase(d["state"])})


@dataclass(frozen=True)
class SwapObservation:
    """What the manager saw this tick."""

    now: float
    to_completions: int      # pool_completions()[to_pool]
    to_failed: int           # new-pool replicas that ended FAILED
    from_live: int           # old-pool replicas still live
    to_running: int = 0      # live new-pool replicas whose worker reports running (engine up)


# -- actions -----------------------------------------------------------------
@dataclass(frozen=True)
class SetPoolState:
    pool: str
    state: PoolPhase


@dataclass(frozen=True)
class DrainQueue:
    pool: str


@dataclass(frozen=True)
class UndrainQueue:
    pool: str


@dataclass(frozen=True)
class SetStandby:
    pool: str
    on: bool


Action = SetPoolState | DrainQueue | UndrainQueue | SetStandby


def swap_step(swap: SwapState, obs: SwapObservation, grace_s: float, max_failures: int) -> tuple[SwapState, list[Action]]:
    """The next swap record and the actions to take now (pure)."""
    if not swap.state.active:
        return swap, []
    old, new = swap.from_pool, swap.to_pool
    if swap.cancel_requested:
        return (replace(swap, state=SwapPhase.CANCELLED, finished_at=obs.now, reason=swap.reason or "cancelled by user"),
                [SetPoolState(new, PoolPhase.CANCELLED), SetStandby(new, False), UndrainQueue(old),
                 SetPoolState(old, PoolPhase.ACTIVE)])
    if swap.state is SwapPhase.LAUNCHING:
        if obs.to_running >= 1 or obs.to_completions - swap.baseline_completions >= 1:
            return (replace(swap, state=SwapPhase.DRAINING, drain_started_at=obs.now),
                    [SetPoolState(old, PoolPhase.DRAINING), DrainQueue(old)])
        if obs.to_failed >= max_failures:
            return (replace(swap, state=SwapPhase.CANCELLED, finished_at=obs.now,
                            reason=f"{obs.to_failed} new replicas failed before the new pool was ready"),
                    [SetPoolState(new, PoolPhase.CANCELLED), SetStandby(new, False)])
        return swap, []
    # draining
    assert swap.drain_started_at is not None
    if obs.from_live == 0:
        reason = "old pool drained"
    elif obs.now - swap.drain_started_at >= grace_s:
        reason = f"grace of {grace_s:.0f}s expired; old replicas terminated"
    else:
        return swap, []
    return (replace(swap, state=SwapPhase.DONE, finished_at=obs.now, reason=reason),
            [SetPoolState(old, PoolPhase.DRAINED), SetStandby(new, False)])


# -- the manager ----------------------------------------------------------------


class SwapManager:
    def __init__(self, settings: Settings | None, registry: Any, clock: Callable[[], float] = time.time,
                 queues: Callable[[str], Any] | None = None) -> None:
        """``queues``: job id -> chunk queue (default: a ``ChunkQueue`` on the registry's Redis)."""
        self.settings = settings or get_settings()
        self.registry = registry
        self._clock = clock
        self._queues = queues

    # -- API side --------------------------------------------------------
    def request(self, record: Any, request: Any) -> SwapState:
        """Start a swap (``request``: gpu, tp, pp, market, launcher) or back one out (``request.cancel``)."""
        with self._locked(record.id):
            record = self.registry.get(record.id)
            if record.status is not JobStatus.IN_PROGRESS:
                raise JobStateError("only a running job can swap", status=record.status.value)
            active = self.active(record)
            if request.cancel:
                if active is None:
                    raise JobStateError("no swap in progress to cancel")
                return self._advance(record, replace(active, cancel_requested=True), queue=None,
                                     replicas=self.registry.replicas(record.id))
            if active is not None:
                raise JobStateError("a swap is already in progress", from_pool=active.from_pool, to_pool=active.to_pool)
            return self._start(record, request)

    def _start(self, record: Any, request: Any) -> SwapState:
        pools = list(record.pools)
        current = [p for p in pools if p.active]
        if not current:
            raise JobStateError("the job has no active pool to swap from")
        old = current[0]
        if old.target is None:
            old = replace(old, target=int((record.plan or {}).get("replicas", 1)))
            pools = [old if p.key == old.key else p for p in pools]
        new = swap_pool(old, request.gpu, request.tp, request.pp, request.market, request.launcher, self.settings)
        if new.key == old.key:
            raise JobStateError("the job already runs on that pool", pool=old.key)
        pools = [p for p in pools if p.key != new.key] + [new]
        with self._queue(record.id) as queue:
            baseline = queue.pool_completions().get(new.key, 0)
            queue.set_standby(new.key, True)
        swap = SwapState(from_pool=old.key, to_pool=new.key, state=SwapPhase.LAUNCHING,
                         started_at=self._clock(), baseline_completions=baseline)
        self.registry.update(record.id, pools=pools, swaps=self._history(record) + [swap.to_dict()])
        self.registry.add_event(record.id, "swap_started", f"swap {old.key} -> {new.key}: launching the new pool")
        record.pools = pools
        return swap

    # -- controller side -------------------------------------------------
    def tick(self, record: Any, queue: Any = None, replicas: list[Replica] | None = None) -> SwapState | None:
        """Advance the job's active swap, if any (call under the job's lock, after following replicas)."""
        active = self.active(record)
        if active is None:
            return None
        if record.status is not JobStatus.IN_PROGRESS:
            # The job's teardown stops every replica; only the record is closed here.
            if active.state is SwapPhase.DRAINING:
                phase, pool_state = SwapPhase.DONE, SetPoolState(active.from_pool, PoolPhase.DRAINED)
            else:
                phase, pool_state = SwapPhase.CANCELLED, SetPoolState(active.to_pool, PoolPhase.CANCELLED)
            closed = replace(active, state=phase, finished_at=self._clock(),
                             reason=f"job left in_progress ({record.status.value})")
            self._save(record, closed, self._apply(record, [pool_state], queue=None))
            self._event(record, closed)
            return closed
        return self._advance(record, active, queue, replicas if replicas is not None else self.registry.replicas(record.id))

    @staticmethod
    def active(record: Any) -> SwapState | None:
        swaps = getattr(record, "swaps", None) or []
        if swaps and SwapPhase(swaps[-1]["state"]).active:
            return SwapState.from_dict(swaps[-1])
        return None

    # -- internals -------------------------------------------------------
    @contextmanager
    def _queue(self, job_id: str, queue: Any = None) -> Iterator[Any]:
        if queue is not None:
            yield queue
        elif self._queues is not None:
            yield self._queues(job_id)
        else:
            from orca.queue import ChunkQueue

            with ChunkQueue(self.registry.redis_url, job_id, self.settings.queue) as own:
                yield own

    def _advance(self, record: Any, swap: SwapState, queue: Any, replicas: list[Replica]) -> SwapState:
        with self._queue(record.id, queue) as queue:
            fresh = [r.replica_id for r in replicas if r.pool == swap.to_pool and r.state.live]
            reports = self.registry.workers_metrics(record.id, fresh) if swap.state is SwapPhase.LAUNCHING else []
            obs = SwapObservation(
                now=self._clock(),
                to_completions=int(queue.pool_completions().get(swap.to_pool, 0)),
                to_failed=sum(1 for r in replicas if r.pool == swap.to_pool and r.state is ReplicaState.FAILED),
                from_live=sum(1 for r in replicas if r.pool == swap.from_pool and r.state.live),
                to_running=sum(1 for report in reports if report.get("state") == "running"),
            )
            nxt, actions = swap_step(swap, obs, self.settings.launcher.swap_grace_s, self.settings.launcher.swap_max_failures)
            pools = self._apply(record, actions, queue)
            costs = pool_costs(r for r in replicas if r.pool in (swap.from_pool, swap.to_pool))
            nxt = replace(nxt, cost_usd={k: round(v, 6) for k, v in costs.items()})
            if nxt != swap or pools is not None:
                self._save(record, nxt, pools)
            if nxt.state is not swap.state:
                self._event(record, nxt)
            return nxt

    def _event(self, record: Any, swap: SwapState) -> None:
        """The job event for a swap entering ``swap.state`` (``swap_draining``, ``swap_done``, ...)."""
        self.registry.add_event(record.id, f"swap_{swap.state.value}",
                                f"swap {swap.from_pool} -> {swap.to_pool}: {swap.state.value}"
                                + (f" ({swap.reason})" if swap.reason else ""))

    def _apply(self, record: Any, actions: Iterable[Action], queue: Any) -> list[Pool] | None:
        """Perform ``actions``; returns the new pools list when a pool state changed."""
        pools = list(record.pools)
        changed = False
        for action in actions:
            if isinstance(action, SetPoolState):
                if find(pools, action.pool) is not None:
                    pools = with_changes(pools, action.pool, state=action.state)
                    changed = True
            elif isinstance(action, DrainQueue):
                queue.drain(action.pool)
            elif isinstance(action, UndrainQueue):
                queue.undrain(action.pool)
            elif isinstance(action, SetStandby):
                queue.set_standby(action.pool, action.on)
        if changed:
            record.pools = pools
        return pools if changed else None

    def _save(self, record: Any, swap: SwapState, pools: list[Pool] | None = None) -> None:
        swaps = self._history(record)
        swaps = swaps[:-1] + [swap.to_dict()] if swaps else [swap.to_dict()]
        fields: dict[str, Any] = {"swaps": swaps}
        if pools is not None:
            fields["pools"] = pools
        self.registry.update(record.id, **fields)
        record.swaps = swaps

    @staticmethod
    def _history(record: Any) -> list[dict]:
        return [dict(s) for s in (getattr(record, "swaps", None) or [])]

    @contextmanager
    def _locked(self, job_id: str) -> Iterator[None]:
        """Hold the job's controller lock, waiting up to ``swap_lock_wait_s`` for a tick to let go."""
        wait_s = self.settings.launcher.swap_lock_wait_s
        deadline = time.monotonic() + wait_s
        while True:
            with self.registry.lock(job_id) as mine:
                if mine:
                    yield
                    return
            if time.monotonic() >= deadline:
                raise JobStateError("the job is busy; try the swap again", job_id=job_id)
            time.sleep(wait_s / 100)
