"""A whole job through the production controller on the simulated cloud: a spot outage (with notices),
a throughput shortfall and a mid-job swap, checked for launches, costs and the deadline."""

from __future__ import annotations

import pytest

from orca.fleet import ReplicaState
from orca.planner.baselines import on_demand_only
from orca.planner.traces import Trace
from orca.settings import Settings
from orca.sim.cloud import Zone
from orca.sim.run import T0, Scenario, simulate
from orca.sim.scenarios import option

S = Settings()
R = 1000.0
SPOT = option("spot", 0.4, 300, R, 8, region="z1", replicas=4)
OD = option("on_demand", 0.8, 300, R, 8)
SL = option("serverless", 0.7, 60, R, 8)
# spot for 30 min, gone for an hour (AWS notice: 2 min), back for good
TRACE = Trace("outage", 600.0, (True,) * 3 + (False,) * 6 + (True,) * 100)


def scenario(options, swap: bool) -> Scenario:
    return Scenario("outage+shortfall+swap", tuple(options), options[0], 4 * R * 2 * 3600, 4 * 3600,
                    (Zone("z1", TRACE, 0.0, 64, 120.0),), throughput_factor=0.8,
                    swap_at_s=2 * 3600 if swap else None,
                    swap_to={"gpu": "L40S", "tp": 1, "pp": 1, "market": "on_demand"} if swap else None,
                    gpu_tokens_per_s={"L40S": 1.6 * R})


def test_outage_and_shortfall_meet_the_deadline_for_less_than_on_demand():
    r = simulate(scenario((SPOT, OD, SL), swap=False), settings=S)
    kinds = [e["kind"] for e in r.events]
    assert r.met and r.status == "finalizing", (r.status, r.finish_s)
    # the outage: every running spot replica got the notice and was preempted; its worker kept the answered
    # requests of its chunk by a partial commit and handed the rest back (nothing left to reclaim)
    assert r.stats.notices >= 4 and r.stats.preemptions == r.stats.notices
    assert r.stats.splits >= 4 and r.stats.requests_salvaged > 0 and "reclaimed" not in kinds
    assert r.stats.capacity_errors > 0  # relaunches into the outage were refused
    # the fallback opened while spot was gone (cheapest per token with its start-up: serverless)
    opened = next(e for e in r.events if e["kind"] == "pool_opened")
    assert SL["key"] in opened["message"] and 1800 <= opened["t"] - T0 <= 5400
    # spot did most of the work; the measured 0.8x throughput was made up without on-demand
    assert r.cost_by_market["spot"] > r.cost_by_market["serverless"] > 0 and r.cost_by_market.get("on_demand", 0.0) == 0
    assert sum(x.cost_usd for x in r.replicas) == pytest.approx(r.cost_usd, rel=0.02)  # the launcher's view agrees
    assert not any(x.state is ReplicaState.FAILED for x in r.replicas)
    baseline = simulate(scenario((SPOT, OD), swap=False), on_demand_only, settings=S)
    assert baseline.met and r.cost_usd < 0.7 * baseline.cost_usd


def test_a_mid_job_swap_moves_the_work_and_still_meets_the_deadline():
    r = simulate(scenario((SPOT, OD, SL), swap=True), settings=S)
    kinds = [e["kind"] for e in r.events]
    assert r.met, (r.status, r.finish_s)
    assert kinds.index("swap_started") < kinds.index("swap_draining") < kinds.index("swap_done")
    started = next(e["t"] for e in r.events if e["kind"] == "swap_started") - T0
    assert started == pytest.approx(2 * 3600, abs=60)
    # the new pool (L40S on-demand, 1.6x the tokens/s) ran and was billed; the old spot pool stopped
    l40s = [x for x in r.replicas if x.pool.startswith("L40S")]
    assert l40s and all(x.started_at is not None for x in l40s) and r.cost_by_market["on_demand"] > 0
    spot_after = [x for x in r.replicas if x.pool == SPOT["key"] and x.created_at - T0 > started + 600]
    assert not spot_after
