"""Simulator, traces and the offline optimum."""

from __future__ import annotations

import math

import pytest

from orca.planner.baselines import greedy, on_demand_only, uniform_progress
from orca.planner.offline import optimal_cost, tick_availability
from orca.planner.policy import decide
from orca.planner.simulator import simulate
from orca.planner.traces import Trace, bundled_traces, synthetic_trace
from orca.planner.types import PoolOption
from orca.settings import Settings

S = Settings()
R = 1000.0
OPTS = (PoolOption("s", "spot", R, 0.4, 300, 2), PoolOption("o", "on_demand", R, 0.8, 300, 2),
        PoolOption("l", "serverless", R, 0.7, 60, 2))
WORK = 2 * R * 2 * 3600  # two replicas, two hours


def const(avail: bool) -> Trace:
    return Trace("const", 60.0, (avail,) * 10)


def test_bundled_traces_use_value_zero_as_available():
    traces = bundled_traces()
    assert len(traces) == 17
    t = next(x for x in traces if x.name == "aws-02-15-2023/us-east-1a_v100_1")
    assert t.gap_s == 195 and 0.8 < t.fraction_available() < 0.85  # 16798 zeros of 20158


def test_always_available_runs_on_spot_only():
    r = simulate(decide, OPTS, WORK, 4 * 3600, const(True), tick_s=60, settings=S)
    assert r.met and set(r.cost_by_market) == {"spot"} and r.preemptions == 0
    assert r.cost_usd == pytest.approx(2 * 0.4 * (300 + 7200) / 3600, rel=0.05)


def test_never_available_still_meets_deadline():
    for policy in (decide, greedy, uniform_progress, on_demand_only):
        r = simulate(policy, OPTS if policy is decide else OPTS[:2], WORK, 4 * 3600, const(False), tick_s=60, settings=S)
        assert r.met and "spot" not in r.cost_by_market, policy.__name__


def test_preemption_loses_work_in_progress():
    # spot for 10 minutes, gone 10 minutes, ... : chunks (120 s) caught mid-way are redone
    flappy = Trace("flappy", 610.0, (True, False) * 50)
    r = simulate(decide, OPTS[:2], WORK, 8 * 3600, flappy, tick_s=60, settings=S)
    assert r.met and r.preemptions > 0
    clean = simulate(decide, OPTS[:2], WORK, 8 * 3600, const(True), tick_s=60, settings=S)
    assert r.cost_usd > clean.cost_usd


def test_orca_beats_on_demand_on_a_synthetic_trace():
    trace = synthetic_trace("syn", 3600, 1800, 86400, seed=7)
    od = simulate(on_demand_only, OPTS[:2], WORK, 4 * 3600, trace, tick_s=60, settings=S)
    orca = simulate(decide, OPTS, WORK, 4 * 3600, trace, tick_s=60, settings=S)
    assert orca.met and orca.cost_usd < od.cost_usd


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
