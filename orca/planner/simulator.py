"""Discrete-event simulation of one job under a scaling policy against a spot availability trace.

Model (the fake world a benchmark controls; nothing here touches a cloud):

- The job is ``work`` units (output tokens) cut into chunks of ``chunk_work`` units, claimed one at a
  time by replicas from a shared queue, as real workers claim leases.
- Every ``tick_s`` the policy (``decide`` or a baseline, same signature) sees a :class:`RuntimeState`
  built from the simulated pools and returns targets. Launched replicas start processing after the
  option's ``startup_s`` (VM boot + model load, or serverless cold start) and are billed from launch.
  Scale-down drains: a replica finishes its chunk, then stops (starting replicas stop at once).
- Spot follows the trace (``available_at(offset + t)``); all spot replicas of the job share it.
  When it turns unavailable every spot replica dies at that instant: its chunk goes back to the
  queue and the progress made on it is lost. Spot cannot be launched while unavailable.
- Between ticks, time advances through events: replica ready, chunk done, spot lost.
- The run ends when all work is committed (finish time), or at ``max_time_factor * deadline``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from orca.planner.traces import Trace
from orca.planner.types import PoolOption, PoolState, RuntimeState, ScalingDecision

Policy = Callable[[RuntimeState, Iterable[PoolOption], object], ScalingDecision]


@dataclass
class _Replica:
    rid: int
    option: PoolOption
    launched_at: float
    ready_at: float
    chunk: float = 0.0          # size of the claimed chunk (0: none)
    chunk_done_at: float = 0.0  # when the claimed chunk completes
    draining: bool = False
    ended_at: float | None = None


@dataclass(frozen=True)
class SimResult:
    cost_usd: float
    finish_s: float | None      # None: not finished within the simulated horizon
    deadline_s: float
    met: bool
    cost_by_market: dict[str, float] = field(default_factory=dict)
    preemptions: int = 0
    launches: int = 0


def simulate(
    policy: Policy,
    options: Iterable[PoolOption],
    work: float,
    deadline_s: float,
    trace: Trace,
    offset_s: float = 0.0,
    chunk_work: float | None = None,
    tick_s: float | None = None,
    settings=None,
    max_time_factor: float = 3.0,
) -> SimResult:
    """Run ``policy`` on a job of ``work`` units due ``deadline_s`` after start, spot from ``trace`` at ``offset_s``."""
    if settings is None:
        from orca.settings import get_settings

        settings = get_settings()
    options = tuple(options)
    by_key = {o.key: o for o in options}
    tick = tick_s or settings.planner.replan_every_s
    if chunk_work is None:
        chunk_work = min(o.replica_tokens_per_s for o in options) * settings.ingest.target_chunk_s
    unclaimed, done = work, 0.0
    live: dict[int, _Replica] = {}
    ended: list[_Replica] = []
    ids = itertools.count()
    preemptions, launches = 0, 0
    recent: list[float] = []
    now, finish = 0.0, None
    horizon = deadline_s * max_time_factor
    eps = 1e-9 * max(1.0, work)

    def end(r: _Replica, t: float) -> None:
        nonlocal unclaimed
        if r.chunk and r.chunk_done_at > t:
            unclaimed += r.chunk  # work in progress is lost
        r.chunk, r.ended_at = 0.0, t
        ended.append(live.pop(r.rid))

    def claim(r: _Replica, t: float) -> None:
        nonlocal unclaimed
        if r.draining or unclaimed <= eps:
            r.chunk = 0.0
            return
        size = min(chunk_work, unclaimed)
        unclaimed -= size
        r.chunk, r.chunk_done_at = size, t + size / r.option.replica_tokens_per_s

    def advance(t_end: float) -> float | None:
        """Process replica events up to ``t_end``; returns the finish time if the job completes."""
        nonlocal done
        heap = []
        for r in live.values():
            if r.chunk:
                heap.append((r.chunk_done_at, r.rid))
            elif r.ready_at <= t_end and not r.draining:
                heap.append((max(r.ready_at, now), r.rid))
        heapq.heapify(heap)
        while heap:
            t, rid = heapq.heappop(heap)
            if t > t_end:
                break
            r = live.get(rid)
            if r is None:
                continue
            if r.chunk and r.chunk_done_at <= t:
                done += r.chunk
                r.chunk = 0.0
                if done >= work - eps:
                    return t
                if r.draining:
                    end(r, t)
                    continue
            claim(r, t)  # work only returns to the queue between advances, so idle replicas wait for the next one
            if r.chunk:
                heapq.heappush(heap, (r.chunk_done_at, r.rid))
        return None

    while now < horizon:
        spot_ok = trace.available_at(offset_s + now)
        if not spot_ok:
            for r in [r for r in live.values() if r.option.market == "spot"]:
                end(r, now)
                preemptions += 1
                recent.append(now)
        recent = [t for t in recent if t > now - 3600]
        pools = []
        for o in options:
            mine = [r for r in live.values() if r.option.key == o.key and not r.draining]
            pools.append(PoolState(
                key=o.key, market=o.market,
                replicas_running=sum(1 for r in mine if r.ready_at <= now),
                replicas_starting=sum(1 for r in mine if r.ready_at > now),
                replica_tokens_per_s=o.replica_tokens_per_s, price_per_replica_hour=o.price_per_replica_hour,
                recent_preemptions=len(recent) if o.market == "spot" else 0,
            ))
        state = RuntimeState(now_s=now, deadline_s=deadline_s, work_total=work, work_done=done,
                             pools=tuple(pools), spot_available=spot_ok)
        decision = policy(state, options, settings)
        for key, target in decision.targets.items():
            o = by_key.get(key)
            if o is None:
                continue
            mine = sorted((r for r in live.values() if r.option.key == key and not r.draining),
                          key=lambda r: (r.ready_at <= now, r.chunk_done_at))
            if target > len(mine):
                if o.market == "spot" and not spot_ok:
                    continue
                for _ in range(target - len(mine)):
                    r = _Replica(next(ids), o, now, now + o.startup_s)
                    live[r.rid] = r
                    launches += 1
            else:
                for r in mine[: len(mine) - target]:
                    if r.ready_at > now or not r.chunk:
                        end(r, now)
                    else:
                        r.draining = True
        # advance to the next tick, stopping where spot disappears
        t_next = min(now + tick, horizon)
        change = trace.next_change(offset_s + now, t_next - now)
        if change is not None and spot_ok:
            lost_at = change - offset_s
            finish = advance(lost_at)
            if finish is not None:
                break
            now = lost_at
            for r in [r for r in live.values() if r.option.market == "spot"]:
                end(r, now)
                preemptions += 1
                recent.append(now)
        finish = advance(t_next)
        if finish is not None:
            break
        now = t_next

    stop = finish if finish is not None else now
    for r in list(live.values()):
        end(r, stop)
    cost_by_market: dict[str, float] = {}
    for r in ended:
        c = r.option.price_per_replica_hour * (r.ended_at - r.launched_at) / 3600.0
        cost_by_market[r.option.market] = cost_by_market.get(r.option.market, 0.0) + c
    return SimResult(
        cost_usd=sum(cost_by_market.values()),
        finish_s=finish,
        deadline_s=deadline_s,
        met=finish is not None and finish <= deadline_s + 1e-6,
        cost_by_market=cost_by_market,
        preemptions=preemptions,
        launches=launches,
    )
