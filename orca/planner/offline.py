"""Offline optimum with full knowledge of the trace: a DP over discretised time for a one-replica job.

The job needs ``work_ticks`` ticks of one running replica. At every tick the replica is idle or on one
market (spot / on-demand / serverless); switching to a market (from idle or another market) costs that
market's start-up, ``ceil(startup_s / tick_s)`` billed ticks without progress; spot is usable only in
ticks the trace marks available and a spot replica dies the moment it is not. The DP returns the
least cost that finishes by the deadline (``inf`` if none). It is a lower bound for the simulated
cloud's single-replica runs: it never loses work in progress to a preemption (it knows when they come), and it
runs one replica at a time, as in the Can't Be Late paper's model. Pure Python, vectorised over work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

INF = math.inf


def optimal_cost(
    available: Sequence[bool],
    work_ticks: int,
    deadline_ticks: int,
    price_per_tick: dict[str, float],
    startup_ticks: dict[str, int],
) -> float:
    """Least cost to run ``work_ticks`` of work within ``deadline_ticks`` (``available[t]``: spot usable for all of tick t)."""
    markets = [m for m in ("spot", "on_demand", "serverless") if m in price_per_tick]
    # modes: 0 idle; then per market: booting with k ticks left (k = s..1), then up (k = 0)
    modes: list[tuple[str | None, int]] = [(None, 0)]
    for m in markets:
        modes += [(m, k) for k in range(startup_ticks[m], -1, -1)]
    index = {mode: i for i, mode in enumerate(modes)}
    w_max = work_ticks
    # value[i][w]: least cost from the current tick in mode i with w ticks of work left
    final = [0.0] + [INF] * w_max
    value = [final[:] for _ in modes]
    idle = index[(None, 0)]
    for t in range(deadline_ticks - 1, -1, -1):
        spot_ok = t < len(available) and available[t]
        nxt = value
        # the best continuation per (market, action) does not depend on the current mode except for "continue"
        best_start: dict[str, list[float]] = {}
        for m in markets:
            if m == "spot" and not spot_ok:
                continue
            p = price_per_tick[m]
            s = startup_ticks[m]
            if s == 0:
                after = nxt[index[(m, 0)]]
                best_start[m] = [0.0] + [p + after[w - 1] for w in range(1, w_max + 1)]
            else:
                after = nxt[index[(m, s - 1)]]
                best_start[m] = [0.0] + [p + after[w] for w in range(1, w_max + 1)]
        stay_idle = nxt[idle]
        fresh = stay_idle[:]
        for row in best_start.values():
            fresh = [a if a <= b else b for a, b in zip(fresh, row)]
        new_value = []
        for mode in modes:
            m, k = mode
            if m is None or (m == "spot" and not spot_ok):
                new_value.append(fresh)
                continue
            p = price_per_tick[m]
            if k == 0:
                after = nxt[index[(m, 0)]]
                cont = [0.0] + [p + after[w - 1] for w in range(1, w_max + 1)]
            else:
                after = nxt[index[(m, k - 1)]]
                cont = [0.0] + [p + after[w] for w in range(1, w_max + 1)]
            new_value.append([a if a <= b else b for a, b in zip(fresh, cont)])
        value = new_value
    return value[idle][w_max]


def tick_availability(trace, offset_s: float, tick_s: float, ticks: int) -> list[bool]:
    """Per tick: spot available at its start and not lost during it (what a spot replica could use without being preempted)."""
    return [
        trace.available_at(offset_s + t * tick_s) and trace.next_change(offset_s + t * tick_s, tick_s - 1e-6) is None
        for t in range(ticks)
    ]
