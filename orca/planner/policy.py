"""orca's runtime scaling policy: spot whenever it is there, serverless or on-demand only when the deadline needs it.

Call it once per controller tick (``PlannerSettings.replan_every_s``)::

    decision = decide(state, options, settings)

- ``state``: :class:`RuntimeState` -- seconds since job start, the deadline (seconds from start),
  total and committed work (output tokens), the job's live pools (:class:`PoolState`, one per
  pool key, ``replicas_running`` processing and ``replicas_starting`` launched but not yet
  processing; their measured tokens/s) and ``blocked``: the option keys the availability
  estimate (:mod:`orca.planner.availability`, fed only by what launchers report) says not to
  launch in now.
- ``options``: :class:`PoolOption` per market the job may use (one per spot zone, at most one each
  of ``on_demand``, ``serverless``, ``local``): the pool key, per-replica throughput and price,
  launch-to-first-chunk time and replica cap. Build them from plans with :func:`options_from_plans`.
- ``settings``: :class:`orca.settings.Settings` (default: the process settings).

It returns a :class:`ScalingDecision` whose ``targets`` map every option key and every live pool
key to a desired replica count (live pools that are not options get 0: drain them). The controller
launches or drains to match. Pure and stateless: all hysteresis comes from the thresholds below.

The rules (work ``W``, done ``w``, remaining ``R = W - w``, time left ``T``, reserve ``T * safety_margin``):

1. **Spot whenever available, sized by its start-ups.** Spot gets the replicas that finish ``R``
   (inflated by ``preemption_loss``) in the usable time after their start-up, and more, up to
   finishing in ``spot_aim`` of it, only while all their start-ups stay within ``startup_share`` of
   the work (a small job gets one long-lived replica, a big one a pool that finishes early). No spot
   replica is started whose start-up the work it takes from the fallback cannot repay (it works from
   the end of its start-up, beside the running fallback, until the usable time ends). Spot is never
   shrunk while it is up (except by the tail cap in rule 5). New spot replicas go to the usable zone
   with the fewest (spread: one zone's outage takes only its share). A blocked zone keeps its running
   replicas and launches none; a zone on probation (``RuntimeState.probation``: its capacity went soon
   after it came up) gets one replica.
   Rates are the pools' measured tokens/s once they run; a pool not running yet gets its estimate
   scaled by how far the measured ones are from theirs, so a misestimated throughput is corrected
   at the next decision for every market alike.
2. **Wait out outages, then uniform progress.** Expected progress is a straight line from the first
   spot replica's start (the fallback's, for a job without spot) to the safe deadline
   ``deadline * (1 - safety_margin)``. Fallback capacity is added only when progress (in-flight chunks
   counted as half done) is behind the line *and* the outage can no longer be waited out: the
   fallback, started now at the size whose start-ups stay within ``startup_share`` of the work,
   would need more than the usable time with ``wait_reserve`` to spare (its rate trusted only to
   ``1 / (1 + unmeasured_reserve)`` until some pool has run). Then it is sized so that spot
   (discounted by ``preemption_loss``) plus fallback reach the rate that finishes ``R`` in the time left.
3. **Fallback market.** Among ``serverless`` and ``on_demand`` (``local`` for local jobs), the one
   with the lowest cost per token once its start-up time is paid for over the usable window;
   serverless starts in about a minute, so it wins for short bursts and late in a job.
4. **Hysteresis and order of release.** Fallback is released only when spot runs and progress is
   ahead of the line by two fallback start-ups (or two chunks) or the outage could be waited out again
   with that margin, or when running spot alone exceeds the needed rate by ``scale_down_hysteresis``;
   serverless is dropped first, on-demand after.
   Without spot running, being ahead does not release it: it would only be started again (its
   start-up paid again) once the line catches up.
5. **Safety net.** The usable time ends one chunk (``ingest.target_chunk_s``) before the safe
   deadline: the last chunk cannot be split. Once the time left is within two fallback start-ups of what the fallback pool
   at its full size (``max_replicas``) needs for ``R`` -- Can't Be Late's ``remaining time <=
   remaining work + 2d`` with the pool as the instance -- spot no longer counts: guaranteed capacity alone must finish ``R``, and it is
   never released; running spot replicas stay, no new ones start (they could not pay back their start-up). No pool keeps more replicas than the remaining work can keep busy
   (one chunk, ``ingest.target_chunk_s``, each).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

from orca.planner.types import Plan, PoolOption, PoolState, RuntimeState, ScalingDecision

FALLBACK_MARKETS = ("serverless", "on_demand", "local")
_DROP_ORDER = ("serverless", "on_demand", "local")


def _settings(settings):
    if settings is None:
        from orca.settings import get_settings

        settings = get_settings()
    return settings


def option_cap(market: str, settings=None) -> int:
    """Most replicas the runtime policy may run in one pool of ``market``."""
    settings = _settings(settings)
    ps = settings.planner
    caps = {"serverless": ps.serverless_max_replicas, "local": settings.launcher.local_max_workers}
    return min(ps.max_replicas, caps.get(market, ps.max_replicas))


def _live(pool: PoolState | None) -> int:
    return 0 if pool is None else pool.replicas_running + pool.replicas_starting


def _fallback(options: dict[str, PoolOption], rates: dict[str, float], usable_s: float) -> PoolOption | None:
    """Cheapest guaranteed option per token, start-up amortised over the usable window."""
    best, best_cost = None, math.inf
    for market in FALLBACK_MARKETS:
        o = options.get(market)
        if o is None or o.max_replicas <= 0 or rates[o.key] <= 0:
            continue
        window = usable_s - o.startup_s
        if window <= 0:
            cost = 1e12 + o.startup_s  # cannot start in time: only as a last resort, fastest first
        else:
            cost = o.price_per_replica_hour / rates[o.key] * (1.0 + o.startup_s / window)
        if cost < best_cost:
            best, best_cost = o, cost
    return best


def _repaid(remaining: float, usable: float, rate1: float, spot: PoolOption, fb: PoolOption | None, rates: dict[str, float],
            fb_rate: float, ps) -> int:
    """Most spot replicas whose start-up each is repaid by the work it takes from the fallback: a replica works
    from the end of its start-up, beside the fallback already running, on what is left then, and at most
    until the usable time ends."""
    c_spot = spot.price_per_replica_hour / rate1
    c_fb = fb.price_per_replica_hour / rates[fb.key] if fb is not None else 0.0
    if c_fb <= c_spot:
        return 10**9  # no fallback, or none dearer per token: nothing to repay against
    # tokens a spot replica must do to repay its start-up: start-up cost over the saving per token
    repay = spot.startup_s * spot.price_per_replica_hour / (c_fb - c_spot) / (1.0 - ps.preemption_loss)
    left = remaining - fb_rate * spot.startup_s
    if left <= 0:
        return 0
    if (usable - spot.startup_s) * rate1 < repay:
        return 0  # too late: even alone it could not work long enough
    # per replica: left * rate1 / (fb_rate + n * rate1) >= repay
    return max(0, math.floor((left * rate1 / repay - fb_rate) / rate1))


def _spot_count(remaining: float, usable: float, rate1: float, spot: PoolOption, grain: float, ps, live: int) -> int:
    """Spot replicas for ``remaining``: enough to finish it in the usable window (after the start-up), and up to
    ``spot_aim`` of it while all their start-ups stay within ``startup_share`` of the work."""
    window = usable - spot.startup_s
    if ps.spot_aim * window <= grain:
        return live
    busy = remaining * (1.0 + ps.preemption_loss) / rate1  # replica-seconds of spot work
    needed = math.ceil(busy / window)
    aimed = math.ceil(busy / (ps.spot_aim * window))
    affordable = math.floor(ps.startup_share * remaining / (rate1 * max(spot.startup_s, 1.0)))
    return max(needed, min(aimed, affordable))


def _wait_need(remaining: float, fb: PoolOption, rate1: float, measured: bool, ps) -> float:
    """Usable time the fallback needs for ``remaining`` if started now at the size it may start at: as many
    replicas as keep their start-ups within ``startup_share`` of the work (leaving ``wait_reserve`` headroom
    under its cap), its rate trusted to ``1 / (1 + unmeasured_reserve)`` until some pool has run, plus
    ``wait_reserve`` of spare time and one start-up."""
    cap = max(1, math.floor(fb.max_replicas / (1.0 + ps.wait_reserve)))
    k = max(1, min(cap, math.floor(ps.startup_share * remaining / (rate1 * max(fb.startup_s, 1.0)))))
    trust = 1.0 if measured else 1.0 / (1.0 + ps.unmeasured_reserve)
    return remaining / (k * rate1 * trust) * (1.0 + ps.wait_reserve) + fb.startup_s


def _spread(total: int, spots: list[PoolOption], live: dict[str, int], kept: dict[str, int], blocked: frozenset[str]) -> dict[str, int]:
    """``total`` spot replicas over the zones: blocked zones keep ``kept``, the rest fill the emptiest usable zone first."""
    out = {o.key: (kept[o.key] if o.key in blocked else live[o.key]) for o in spots}
    usable = [o for o in spots if o.key not in blocked]
    while sum(out.values()) < total and usable:
        room = [o for o in usable if out[o.key] < o.max_replicas]
        if not room:
            break
        pick = min(room, key=lambda o: out[o.key])  # ties: the earlier (cheaper) zone
        out[pick.key] += 1
    excess = sum(out.values()) - total
    for o in sorted(usable, key=lambda o: -out[o.key]):
        cut = min(excess, out[o.key])
        out[o.key] -= cut
        excess -= cut
    return out


def decide(state: RuntimeState, options: Iterable[PoolOption], settings=None) -> ScalingDecision:
    """Desired replicas per pool for this tick (see the module docstring for the rules)."""
    settings = _settings(settings)
    ps = settings.planner
    options = tuple(options)
    pools = {p.key: p for p in state.pools}
    # a zone on probation (its capacity went soon after it came up) gets one replica, not a pool, until it lasts
    spots = [replace(o, max_replicas=max(1, pools[o.key].replicas_running if o.key in pools else 0))
             if o.key in state.probation else o for o in options if o.market == "spot" and o.max_replicas > 0]
    opts = {o.market: o for o in options if o.market != "spot"}
    targets = {p.key: 0 for p in state.pools}
    for o in options:
        targets[o.key] = 0
    remaining = state.work_total - state.work_done
    if remaining <= 0:
        return ScalingDecision(targets, "done")

    def measured(o: PoolOption) -> float | None:
        p = pools.get(o.key)
        return p.replica_tokens_per_s if p is not None and p.replicas_running and p.replica_tokens_per_s > 0 else None

    # pools that run are measured; the others get their estimate scaled by how far the measured ones are off
    seen = [(measured(o), o.replica_tokens_per_s) for o in options if measured(o) and o.replica_tokens_per_s > 0]
    factor = sum(m for m, _ in seen) / sum(e for _, e in seen) if seen else 1.0
    rates = {o.key: measured(o) or o.replica_tokens_per_s * factor for o in options}
    time_left = state.deadline_s - state.now_s
    grain = settings.ingest.target_chunk_s
    # the last chunk cannot be split: one chunk's time at the end is not usable for scaling out
    usable = time_left * (1.0 - ps.safety_margin) - grain
    cur = {m: _live(pools.get(o.key)) for m, o in opts.items()}
    running = {m: (pools[o.key].replicas_running if o.key in pools else 0) for m, o in opts.items()}
    reasons: list[str] = []

    # 1. spot whenever available, spread over the usable zones
    spot_live = {o.key: _live(pools.get(o.key)) for o in spots}
    spot_run = {o.key: (pools[o.key].replicas_running if o.key in pools else 0) for o in spots}
    open_zones = [o for o in spots if o.key not in state.blocked]
    kept = sum(spot_run[o.key] for o in spots if o.key in state.blocked)
    spot_rate1 = sum(rates[o.key] for o in spots) / len(spots) if spots else 0.0
    fb = _fallback(opts, rates, usable)
    late = fb is not None and usable <= remaining / (fb.max_replicas * rates[fb.key]) + 2 * fb.startup_s
    cur_fb_rate = sum(cur[m] * rates[opts[m].key] for m in FALLBACK_MARKETS if m in opts)
    n_spot = kept
    if late:  # rule 5: guaranteed capacity finishes the job; running spot stays, none is started
        n_spot = kept + sum(spot_run[o.key] for o in open_zones)
        spot_live = spot_run
    elif open_zones:
        live_open = sum(spot_live[o.key] for o in open_zones)
        want = _spot_count(remaining, usable, spot_rate1, open_zones[0], grain, ps, live_open + kept)
        want = min(want, _repaid(remaining, usable, spot_rate1, open_zones[0], fb, rates, cur_fb_rate, ps))
        n_spot = min(kept + sum(o.max_replicas for o in open_zones), max(live_open + kept, want))
    elif spots and kept == 0:
        reasons.append("spot blocked in every zone")
    spot_rate = n_spot * spot_rate1 * (1.0 - ps.preemption_loss)
    spot_running_rate = min(sum(spot_run.values()), n_spot) * spot_rate1 * (1.0 - ps.preemption_loss)

    # 2./3. uniform progress line and the fallback market
    n_fb = {m: cur[m] for m in FALLBACK_MARKETS if m in opts}
    safety = False
    if fb is not None:
        fb_rate1 = rates[fb.key]
        first_start = spots[0].startup_s if spots else fb.startup_s
        safe_deadline = state.deadline_s * (1.0 - ps.safety_margin)
        span = max(1.0, safe_deadline - first_start)

        def expected(t: float) -> float:
            return state.work_total * min(1.0, max(0.0, (t - first_start) / span))

        in_flight = sum(p.replicas_running * p.replica_tokens_per_s * grain / 2 for p in state.pools)
        done = state.work_done + min(in_flight, remaining)
        need_rate = (state.work_total - done) / max(1.0, usable - fb.startup_s)
        fb_rate = sum(n_fb[m] * rates[opts[m].key] for m in n_fb)
        full_rate = fb.max_replicas * fb_rate1
        safety = usable <= remaining / full_rate + 2 * fb.startup_s
        margin = 2 * max(fb.startup_s, grain)
        wait_need = _wait_need(remaining, fb, fb_rate1, bool(seen), ps)
        # buy fallback only when behind the line and the outage can no longer be waited out
        behind = done < expected(state.now_s) and usable <= wait_need
        ahead = done >= expected(state.now_s + margin) or usable > wait_need + margin
        counted_spot = 0.0 if safety else spot_rate
        if safety or behind:
            deficit = need_rate - counted_spot - fb_rate
            if deficit > 0:
                add = math.ceil(deficit / fb_rate1 - 1e-9)
                n_fb[fb.market] = min(fb.max_replicas, n_fb[fb.market] + add)
                reasons.append(f"{'safety net' if safety else 'behind'}: +{n_fb[fb.market] - cur[fb.market]} {fb.market}")
        elif (ahead and spot_running_rate > 0) or spot_running_rate >= need_rate * (1.0 + ps.scale_down_hysteresis):
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
        r = spot_rate1 if m == "spot" else (rates[opts[m].key] if m in opts else 0.0)
        if r and n:
            total_cap = max(total_cap, math.ceil(remaining / (r * grain)))
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
    if spots:
        targets.update(_spread(counts["spot"], spots, spot_live, spot_run, state.blocked))
    if counts["spot"] and not reasons:
        reasons.append("spot")
    return ScalingDecision(targets, "; ".join(reasons) or ("spot unavailable, on schedule" if spots else "on schedule"))


def options_from_plans(plans: Iterable[Plan], settings=None) -> tuple[PoolOption, ...]:
    """One :class:`PoolOption` per market (the cheapest plan of each; plans are ranked cheapest first),
    and for spot one per region, up to ``planner.spot_zones`` regions."""
    settings = _settings(settings)
    out: dict[str, PoolOption] = {}
    zones = 0
    for p in plans:
        slot = f"spot-{p.region}" if p.market == "spot" else p.market
        if slot in out:
            continue
        if p.market == "spot":
            if zones >= settings.planner.spot_zones:
                continue
            zones += 1
        out[slot] = PoolOption(
            key=p.key, market=p.market, replica_tokens_per_s=p.replica_tokens_per_s,
            price_per_replica_hour=p.price_per_replica_hour, startup_s=p.startup_s,
            max_replicas=max(option_cap(p.market, settings), p.replicas), zone=p.region or "",
        )
    return tuple(out.values())
