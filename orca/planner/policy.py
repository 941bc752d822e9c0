"""orca's runtime scaling policy: spot whenever it is there, serverless or on-demand only when the deadline needs it.

Call it once per controller tick (``PlannerSettings.replan_every_s``)::

    decision = decide(state, options, settings)

- ``state``: :class:`RuntimeState` -- seconds since job start, the deadline (seconds from start),
  total and committed work (output tokens), the job's live pools (:class:`PoolState`, one per
  pool key, ``replicas_running`` processing and ``replicas_starting`` launched but not yet
  processing) and whether spot capacity can be had right now.
- ``options``: :class:`PoolOption` per market the job may use (at most one each of ``spot``,
  ``on_demand``, ``serverless``, ``local``): the pool key, per-replica throughput and price,
  launch-to-first-chunk time and replica cap. Build them from plans with :func:`options_from_plans`.
- ``settings``: :class:`orca.settings.Settings` (default: the process settings).

It returns a :class:`ScalingDecision` whose ``targets`` map every option key and every live pool
key to a desired replica count (live pools that are not options get 0: drain them). The controller
launches or drains to match. Pure and stateless: all hysteresis comes from the thresholds below.

The rules (work ``W``, done ``w``, remaining ``R = W - w``, time left ``T``, reserve ``T * safety_margin``):

1. **Spot whenever available.** A spot pool is sized to finish ``R`` (inflated by
   ``preemption_loss``) in ``spot_aim`` of the usable time, and is never shrunk while spot is up
   (except by the tail cap in rule 5). When spot is gone its target is 0.
2. **Uniform progress.** Expected progress is a straight line from the first spot replica's start
   (the fallback's, for a job without spot) to the safe deadline ``deadline * (1 - safety_margin)``. Behind the line (in-flight chunks counted as
   half done), fallback capacity is added so that spot (discounted by ``preemption_loss``) plus
   fallback reach the rate that finishes ``R`` in the time left.
3. **Fallback market.** Among ``serverless`` and ``on_demand`` (``local`` for local jobs), the one
   with the lowest cost per token once its start-up time is paid for over the usable window;
   serverless starts in about a minute, so it wins for short bursts and late in a job.
4. **Hysteresis and order of release.** Fallback is released only when progress is ahead of the
   line by two fallback start-ups, or when running spot alone exceeds the needed rate by
   ``scale_down_hysteresis``; serverless is dropped first, on-demand after.
5. **Safety net.** Once the time left is within two fallback start-ups of what the fallback pool
   at its full size (``max_replicas``) needs for ``R`` -- Can't Be Late's ``remaining time <=
   remaining work + 2d`` with the pool as the instance -- spot no longer counts: guaranteed capacity alone must finish ``R``, and it is
   never released. No pool keeps more replicas than the remaining work can keep busy
   (one chunk, ``ingest.target_chunk_s``, each).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from orca.planner.types import Plan, PoolOption, PoolState, RuntimeState, ScalingDecision

FALLBACK_MARKETS = ("serverless", "on_demand", "local")
_DROP_ORDER = ("serverless", "on_demand", "local")


def _settings(settings):
    if settings is None:
        from orca.settings import get_settings

        settings = get_settings()
    return settings


def _live(pool: PoolState | None) -> int:
    return 0 if pool is None else pool.replicas_running + pool.replicas_starting


def _fallback(options: dict[str, PoolOption], usable_s: float) -> PoolOption | None:
    """Cheapest guaranteed option per token, start-up amortised over the usable window."""
    best, best_cost = None, math.inf
    for market in FALLBACK_MARKETS:
        o = options.get(market)
        if o is None or o.max_replicas <= 0 or o.replica_tokens_per_s <= 0:
            continue
        window = usable_s - o.startup_s
        if window <= 0:
            cost = 1e12 + o.startup_s  # cannot start in time: only as a last resort, fastest first
        else:
            cost = o.price_per_replica_hour / o.replica_tokens_per_s * (1.0 + o.startup_s / window)
        if cost < best_cost:
            best, best_cost = o, cost
    return best


def decide(state: RuntimeState, options: Iterable[PoolOption], settings=None) -> ScalingDecision:
    """Desired replicas per pool for this tick (see the module docstring for the rules)."""
    settings = _settings(settings)
    ps = settings.planner
    opts = {o.market: o for o in options}
    pools = {p.key: p for p in state.pools}
    targets = {p.key: 0 for p in state.pools}
    for o in opts.values():
        targets[o.key] = 0
    remaining = state.work_total - state.work_done
    if remaining <= 0:
        return ScalingDecision(targets, "done")

    time_left = state.deadline_s - state.now_s
    usable = time_left * (1.0 - ps.safety_margin)
    grain = settings.ingest.target_chunk_s
    cur = {m: _live(pools.get(o.key)) for m, o in opts.items()}
    running = {m: (pools[o.key].replicas_running if o.key in pools else 0) for m, o in opts.items()}
    reasons: list[str] = []

    # 1. spot whenever available
    spot = opts.get("spot")
    n_spot = 0
    if spot is not None and state.spot_available and spot.max_replicas > 0:
        horizon = ps.spot_aim * (usable - spot.startup_s)
        want = cur["spot"]
        if horizon > grain:
            want = math.ceil(remaining * (1.0 + ps.preemption_loss) / (spot.replica_tokens_per_s * horizon))
        n_spot = min(spot.max_replicas, max(cur["spot"], want))
    spot_rate = n_spot * spot.replica_tokens_per_s * (1.0 - ps.preemption_loss) if spot else 0.0
    spot_running_rate = (min(running.get("spot", 0), n_spot) * spot.replica_tokens_per_s * (1.0 - ps.preemption_loss)) if spot else 0.0

    # 2./3. uniform progress line and the fallback market
    fb = _fallback(opts, usable)
    n_fb = {m: cur[m] for m in FALLBACK_MARKETS if m in opts}
    safety = False
    if fb is not None:
        first_start = spot.startup_s if spot is not None else fb.startup_s
        safe_deadline = state.deadline_s * (1.0 - ps.safety_margin)
        span = max(1.0, safe_deadline - first_start)

        def expected(t: float) -> float:
            return state.work_total * min(1.0, max(0.0, (t - first_start) / span))

        in_flight = sum(
            pools[o.key].replicas_running * o.replica_tokens_per_s * grain / 2 for o in opts.values() if o.key in pools
        )
        done = state.work_done + min(in_flight, remaining)
        need_rate = (state.work_total - done) / max(1.0, usable - fb.startup_s)
        fb_rate = sum(n_fb[m] * opts[m].replica_tokens_per_s for m in n_fb)
        full_rate = fb.max_replicas * fb.replica_tokens_per_s
        safety = usable <= remaining / full_rate + 2 * fb.startup_s
        behind = done < expected(state.now_s)
        ahead = done >= expected(state.now_s + 2 * fb.startup_s)
        counted_spot = 0.0 if safety else spot_rate
        if safety or behind:
            deficit = need_rate - counted_spot - fb_rate
            if deficit > 0:
                add = math.ceil(deficit / fb.replica_tokens_per_s - 1e-9)
                n_fb[fb.market] = min(fb.max_replicas, n_fb[fb.market] + add)
                reasons.append(f"{'safety net' if safety else 'behind'}: +{n_fb[fb.market] - cur[fb.market]} {fb.market}")
        elif ahead or spot_running_rate >= need_rate * (1.0 + ps.scale_down_hysteresis):
            for m in _DROP_ORDER:
                if n_fb.get(m, 0) > 0:
                    n_fb[m] = 0
                    reasons.append(f"{'ahead' if ahead else 'spot covers'}: drop {m}")
                    break

    # 5. never more replicas than the remaining work keeps busy
    counts = {"spot": n_spot, **n_fb}
    cap_order = ("spot", *_DROP_ORDER) if safety else (*_DROP_ORDER, "spot")
    total_cap = 0
    for m, n in counts.items():
        o = opts.get(m)
        if o is not None and n:
            total_cap = max(total_cap, math.ceil(remaining / (o.replica_tokens_per_s * grain)))
    excess = sum(counts.values()) - max(1, total_cap)
    for m in cap_order:
        if excess <= 0:
            break
        cut = min(excess, counts.get(m, 0))
        if cut:
            counts[m] -= cut
            excess -= cut
            reasons.append(f"tail: -{cut} {m}")
    for m, n in counts.items():
        if m in opts:
            targets[opts[m].key] = n
    if n_spot and not reasons:
        reasons.append("spot")
    return ScalingDecision(targets, "; ".join(reasons) or ("spot unavailable, on schedule" if spot else "on schedule"))


def options_from_plans(plans: Iterable[Plan], settings=None) -> tuple[PoolOption, ...]:
    """One :class:`PoolOption` per market: the cheapest plan of each (plans are ranked cheapest first)."""
    settings = _settings(settings)
    ps = settings.planner
    caps = {"serverless": ps.serverless_max_replicas, "local": settings.launcher.local_max_workers}
    out: dict[str, PoolOption] = {}
    for p in plans:
        if p.market in out:
            continue
        cap = min(ps.max_replicas, caps.get(p.market, ps.max_replicas))
        out[p.market] = PoolOption(
            key=p.key, market=p.market, replica_tokens_per_s=p.replica_tokens_per_s,
            price_per_replica_hour=p.price_per_replica_hour, startup_s=p.startup_s, max_replicas=max(cap, p.replicas),
        )
    return tuple(out.values())
