"""Spot traces and the offline optimum (the simulated cloud itself: tests/unit/test_sim_run.py)."""

from __future__ import annotations

import math

from orca.planner.offline import optimal_cost, tick_availability
from orca.planner.traces import Trace, bundled_traces


def test_bundled_traces_use_value_zero_as_available():
    traces = bundled_traces()
    assert len(traces) == 17
    t = next(x for x in traces if x.name == "aws-02-15-2023/us-east-1a_v100_1")
    assert t.gap_s == 195 and 0.8 < t.fraction_available() < 0.85  # 16798 zeros of 20158


def test_offline_optimum_small_cases():
    prices = {"spot": 1.0, "on_demand": 3.0, "serverless": 2.0}
    starts = {"spot": 5, "on_demand": 5, "serverless": 1}
    assert optimal_cost([True] * 200, 60, 120, prices, starts) == 65
    assert optimal_cost([False] * 200, 60, 120, prices, starts) == 122
    assert optimal_cost([False] * 200, 60, 60, prices, starts) == math.inf
    # spot for 30 ticks, gone 30, back: 25 ticks of work on spot, wait, then 5 + 35 on spot
    assert optimal_cost([True] * 30 + [False] * 30 + [True] * 200, 60, 100, prices, starts) == 70


def test_tick_availability_excludes_ticks_that_lose_spot():
    t = Trace("t", 90.0, (True, False, True, True))
    assert tick_availability(t, 0, 60, 6) == [True, False, False, True, True, True]
