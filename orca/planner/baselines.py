"""Baseline policies the simulated cloud (``orca.sim``) compares orca against, with the same signature as ``decide``.

Each treats the job's pool as the single instance of the Can't Be Late paper (NSDI'24): a group of
``max_replicas`` replicas of the option (all options of one job share a size), with changeover
delay ``d`` = the option's start-up time, compute ``C`` = total work, deadline ``D``:

- :func:`on_demand_only`: on-demand from start to end.
Spot counts as available when the availability estimate does not block it (``RuntimeState.blocked``).

- :func:`greedy`: spot whenever available, otherwise wait; on-demand to the end once
  ``time left <= remaining work / rate + 2d``.
- :func:`uniform_progress`: spot whenever available; when spot is gone and progress ``cp(t)`` is
  behind ``ep(t) = C * t / D``, on-demand; stay on it until ``cp(t) >= C * (t + 2d) / D``; the same
  safety net as greedy.
"""

from __future__ import annotations

from collections.abc import Iterable

from orca.planner.types import PoolOption, RuntimeState, ScalingDecision


def _setup(state: RuntimeState, options: Iterable[PoolOption]):
    """(first option per market, all-zero targets, live replicas per pool): baselines use one spot zone."""
    opts: dict[str, PoolOption] = {}
    for o in options:
        opts.setdefault(o.market, o)
    targets = {p.key: 0 for p in state.pools}
    for o in opts.values():
        targets[o.key] = 0
    live = {p.key: p.replicas_running + p.replicas_starting for p in state.pools}
    return opts, targets, live


def on_demand_only(state: RuntimeState, options: Iterable[PoolOption], settings=None) -> ScalingDecision:
    opts, targets, _ = _setup(state, options)
    od = opts["on_demand"]
    targets[od.key] = od.max_replicas if state.work_done < state.work_total else 0
    return ScalingDecision(targets, "on-demand only")


def _safety(state: RuntimeState, od: PoolOption) -> bool:
    remaining = state.work_total - state.work_done
    rate = od.max_replicas * od.replica_tokens_per_s
    return state.deadline_s - state.now_s <= remaining / rate + 2 * od.startup_s


def greedy(state: RuntimeState, options: Iterable[PoolOption], settings=None) -> ScalingDecision:
    opts, targets, live = _setup(state, options)
    od, spot = opts["on_demand"], opts["spot"]
    if state.work_done >= state.work_total:
        return ScalingDecision(targets, "done")
    if live.get(od.key, 0) or _safety(state, od):
        targets[od.key] = od.max_replicas
        return ScalingDecision(targets, "safety net: on-demand to the end")
    if spot.key not in state.blocked:
        targets[spot.key] = spot.max_replicas
        return ScalingDecision(targets, "spot")
    return ScalingDecision(targets, "wait for spot")


def uniform_progress(state: RuntimeState, options: Iterable[PoolOption], settings=None) -> ScalingDecision:
    opts, targets, live = _setup(state, options)
    od, spot = opts["on_demand"], opts["spot"]
    c, d, t, big_d = state.work_total, od.startup_s, state.now_s, state.deadline_s
    if state.work_done >= c:
        return ScalingDecision(targets, "done")
    if _safety(state, od):
        targets[od.key] = od.max_replicas
        return ScalingDecision(targets, "safety net: on-demand to the end")
    if live.get(od.key, 0):
        if state.work_done < c * (t + 2 * d) / big_d:
            targets[od.key] = od.max_replicas
            return ScalingDecision(targets, "stay on on-demand")
    if spot.key not in state.blocked:
        targets[spot.key] = spot.max_replicas
        return ScalingDecision(targets, "spot")
    if state.work_done < c * t / big_d:
        targets[od.key] = od.max_replicas
        return ScalingDecision(targets, "behind: on-demand")
    return ScalingDecision(targets, "ahead: wait for spot")
