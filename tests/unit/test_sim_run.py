"""The production controller on the simulated cloud: spot, outages, capacity errors, crashes, misestimates."""

from __future__ import annotations

import pytest

from orca.fleet import ReplicaState
from orca.planner.baselines import greedy, on_demand_only, uniform_progress
from orca.planner.traces import Trace, synthetic_trace
from orca.settings import Settings
from orca.sim.cloud import CloudFacts, Zone
from orca.sim.run import Scenario, simulate
from orca.sim.scenarios import constant_zone, option

S = Settings()
R = 1000.0
SPOT = option("spot", 0.4, 300, R, 2, region="z1", replicas=2)
OD = option("on_demand", 0.8, 300, R, 2)
SL = option("serverless", 0.7, 60, R, 2)
WORK = 2 * R * 2 * 3600  # two replicas, two hours


def scenario(zones, options=(SPOT, OD, SL), deadline=4 * 3600, **kw) -> Scenario:
    return Scenario("t", tuple(options), options[0], WORK, deadline, tuple(zones), **kw)


def test_always_available_runs_on_spot_only():
    r = simulate(scenario([constant_zone("z1", True)]), settings=S)
    assert r.met and set(r.cost_by_market) == {"spot"} and r.stats.preemptions == 0
    assert r.cost_usd == pytest.approx(2 * 0.4 * (300 + 7200) / 3600, rel=0.05)
    parts = r.cost_breakdown
    assert parts["startup"] == pytest.approx(2 * 0.4 * 300 / 3600) and parts["committed"] == pytest.approx(2 * 0.4 * 7200 / 3600)
    assert sum(parts.values()) == pytest.approx(r.cost_usd)


def test_never_available_still_meets_deadline_and_stops_asking():
    for policy in (None, greedy, uniform_progress, on_demand_only):
        opts = (SPOT, OD, SL) if policy is None else (SPOT, OD)
        r = simulate(scenario([constant_zone("z1", False)], opts), policy, settings=S)
        assert r.met and r.cost_by_market.get("spot", 0.0) == 0.0, policy
        # the estimate blocks the zone after its first capacity errors and re-probes with a doubling backoff: at
        # most one probe (a launch per spot replica) per longest backoff plus the refusal's delay, not one per tick
        probes = 4 * 3600 / (S.planner.availability_backoff_max_s + CloudFacts().capacity_error_s) + 3
        assert r.stats.capacity_errors <= SPOT["max_replicas"] * probes, (policy, r.stats.capacity_errors)


def test_preemption_notices_keep_the_answered_work_and_still_cost_more():
    flappy = Zone("z1", Trace("flappy", 610.0, (True, False) * 50), 0.0, 64, 30.0)
    r = simulate(scenario([flappy], (SPOT, OD), deadline=8 * 3600), settings=S)
    assert r.met and r.stats.preemptions > 0
    # every worker saw its 30 s notice and let its chunk go by a partial commit: nothing left to reclaim
    assert r.stats.splits > 0 and r.stats.requests_salvaged > 0
    assert not any(e["kind"] == "reclaimed" for e in r.events)
    clean = simulate(scenario([constant_zone("z1", True)], (SPOT, OD), deadline=8 * 3600), settings=S)
    assert r.cost_usd > clean.cost_usd


def test_preemption_without_a_usable_notice_loses_work_in_progress():
    flappy = Zone("z1", Trace("flappy", 610.0, (True, False) * 50), 0.0, 64, S.worker.preemption_poll_s / 2)
    r = simulate(scenario([flappy], (SPOT, OD), deadline=8 * 3600), settings=S)
    assert r.met and r.stats.preemptions > 0 and r.stats.splits == 0
    assert any(e["kind"] == "reclaimed" for e in r.events)


def test_orca_beats_on_demand_on_a_synthetic_trace():
    zone = Zone("z1", synthetic_trace("syn", 3600, 1800, 86400, seed=7))
    od = simulate(scenario([zone], (SPOT, OD)), on_demand_only, settings=S)
    orca = simulate(scenario([zone]), settings=S)
    assert od.met and orca.met and orca.cost_usd < od.cost_usd


def test_a_crashed_worker_is_replaced_and_its_chunk_charged():
    r = simulate(scenario([constant_zone("z1", True)], crash_after_s=600), settings=S)
    assert r.met and r.stats.crashes == 1
    failed = [x for x in r.replicas if x.state is ReplicaState.FAILED]
    assert len(failed) == 1 and any(e["kind"] == "replica_failed" for e in r.events)


def test_throughput_shortfall_is_made_up_by_fallback():
    # true tokens/s is 0.7x the estimate and spot is gone: the measured rate drives the fallback size
    r = simulate(scenario([constant_zone("z1", False)], throughput_factor=0.7, deadline=5 * 3600), settings=S)
    assert r.met, r.finish_s


def test_spot_moves_to_the_zone_that_has_capacity():
    z2 = option("spot", 0.4, 300, R, 2, region="z2")
    r = simulate(scenario([constant_zone("z1", False), constant_zone("z2", True)], (SPOT, z2, OD, SL)), settings=S)
    assert r.met and r.cost_by_market.get("on_demand", 0.0) == 0.0
    up = [x for x in r.replicas if x.started_at is not None and x.pool == z2["key"]]
    assert up and all(x.zone == "z2" for x in up)


def test_a_launch_that_hangs_counts_as_a_failing_zone():
    # z1's API never answers within the run (no capacity error either): after availability_stuck_factor x
    # provision_s of provisioning the zone is avoided and spot goes to z2
    from orca.sim.cloud import CloudFacts

    z2 = option("spot", 0.4, 300, R, 2, region="z2")
    sc = scenario([constant_zone("z1", False), constant_zone("z2", True)], (SPOT, z2, OD, SL),
                  facts=CloudFacts(capacity_error_s=20 * 3600))
    r = simulate(sc, settings=S)
    assert r.met and r.stats.capacity_errors == 0
    stuck_s = S.planner.availability_stuck_factor * S.planner.provision_s
    z1 = [x for x in r.replicas if x.pool == SPOT["key"]]
    # z1's hanging launches were given up once stuck (never billed); spot ran in z2 instead
    assert z1 and all(not x.state.live and x.started_at is None for x in z1)
    assert min(x.ended_at for x in z1) - 1_700_000_000 >= stuck_s
    assert sum(1 for x in r.replicas if x.pool == z2["key"] and x.started_at is not None) >= 2


def test_the_policy_decides_every_replan_every_s_not_every_tick():
    from orca.planner.policy import decide

    seen = []

    def counting(state, options, settings):
        seen.append(state.now_s)
        return decide(state, options, settings)

    r = simulate(scenario([constant_zone("z1", True)], tick_s=10.0), counting, settings=S)
    assert r.met and len(seen) > 10
    assert {round(b - a) for a, b in zip(seen, seen[1:])} == {round(S.planner.replan_every_s)}


def test_spot_windows_too_short_to_repay_a_start_up_are_avoided():
    # spot for 10 min of every 30: a 5 min start-up leaves each replica 5 min of work, so after the first short
    # window the zone is avoided (availability_short_backoff_s) and then probed with one replica at a time
    from orca.settings import PlannerSettings

    zone = Zone("z1", Trace("short-windows", 600.0, (True, False, False) * 40), 0.0, 64, 120.0)
    spot = option("spot", 0.4, 300, R, 2, region="z1", replicas=1)
    sc = Scenario("t", (spot, OD, SL), spot, R * 3600, 2 * 3600, (zone,))
    r = simulate(sc, settings=S)
    naive = simulate(sc, settings=Settings(planner=PlannerSettings(availability_short_life_factor=0.0)))
    assert r.met and naive.met
    assert r.stats.preemptions < naive.stats.preemptions
    assert r.cost_breakdown["startup"] < naive.cost_breakdown["startup"] and r.cost_usd < naive.cost_usd
