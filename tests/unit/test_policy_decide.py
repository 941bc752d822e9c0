"""decide(): spot first, fallback when behind, hysteresis, safety net, serverless dropped first."""

from __future__ import annotations

import math

from orca.planner.policy import decide, options_from_plans
from orca.planner.types import Plan, PoolOption, PoolState, RuntimeState
from orca.settings import Settings

S = Settings()
R = 1000.0
SPOT = PoolOption("spot-pool", "spot", R, 0.4, 300, 8)
OD = PoolOption("od-pool", "on_demand", R, 0.8, 300, 8)
SL = PoolOption("sl-pool", "serverless", R, 0.7, 60, 8)
OPTS = (SPOT, OD, SL)
DEADLINE = 8 * 3600.0
WORK = 4 * R * 4 * 3600  # four replicas for four hours


def pool(o: PoolOption, running: int, starting: int = 0) -> PoolState:
    return PoolState(o.key, o.market, running, starting, o.replica_tokens_per_s, o.price_per_replica_hour)


def state(now: float, done: float, pools=(), spot=True, deadline=DEADLINE, work=WORK) -> RuntimeState:
    return RuntimeState(now_s=now, deadline_s=deadline, work_total=work, work_done=done, pools=tuple(pools),
                        blocked=frozenset() if spot else frozenset({SPOT.key}))


def test_start_takes_spot_only():
    d = decide(state(0, 0), OPTS, S)
    assert d.targets["spot-pool"] >= 1 and d.targets["od-pool"] == 0 and d.targets["sl-pool"] == 0


def test_spot_outage_while_ahead_waits():
    # an hour in with 40% done: well ahead of the line, spot gone -> no fallback yet
    d = decide(state(3600, 0.4 * WORK, spot=False), OPTS, S)
    assert d.targets == {"spot-pool": 0, "od-pool": 0, "sl-pool": 0}


def test_behind_adds_cheapest_fast_fallback():
    d = decide(state(4 * 3600, 0.2 * WORK, spot=False), OPTS, S)
    assert d.targets["sl-pool"] >= 1 and d.targets["od-pool"] == 0 and d.targets["spot-pool"] == 0
    assert "behind" in d.reason


def test_on_demand_chosen_when_it_is_cheaper():
    pricey_sl = PoolOption("sl-pool", "serverless", R, 5.0, 60, 8)
    d = decide(state(4 * 3600, 0.2 * WORK, spot=False), (SPOT, OD, pricey_sl), S)
    assert d.targets["od-pool"] >= 1 and d.targets["sl-pool"] == 0


def test_hysteresis_keeps_fallback_until_clearly_ahead():
    # just on the line with serverless running: neither behind nor two start-ups ahead -> keep it
    s = S.planner
    safe = DEADLINE * (1 - s.safety_margin)
    t = 3 * 3600
    on_line = WORK * (t - SPOT.startup_s) / (safe - SPOT.startup_s)
    pools = [pool(SL, 3)]
    d = decide(state(t, on_line - 3 * R * S.ingest.target_chunk_s / 2 + 1, pools, spot=False), OPTS, S)
    assert d.targets["sl-pool"] == 3
    # clearly ahead while spot runs -> released
    d = decide(state(t, on_line + 0.1 * WORK, pools + [pool(SPOT, 1)]), OPTS, S)
    assert d.targets["sl-pool"] == 0
    # clearly ahead with no spot running: the fallback is all the progress there is; released now it would
    # only be started again (and its start-up paid again) once the line catches up
    d = decide(state(t, on_line + 0.1 * WORK, pools, spot=False), OPTS, S)
    assert d.targets["sl-pool"] == 3


def test_serverless_is_dropped_before_on_demand():
    pools = [pool(SPOT, 8), pool(OD, 2), pool(SL, 2)]
    d = decide(state(2 * 3600, 0.6 * WORK, pools, spot=True), OPTS, S)
    assert d.targets["sl-pool"] == 0 and d.targets["od-pool"] == 2
    d = decide(state(2 * 3600, 0.6 * WORK, [pool(SPOT, 8), pool(OD, 2)], spot=True), OPTS, S)
    assert d.targets["od-pool"] == 0


def test_safety_net_ignores_spot_near_the_deadline():
    # 35 min left, a quarter of the work (about 30 min of the full fallback pool) left, spot running:
    # spot no longer counts, the whole guaranteed pool is started
    pools = [pool(SPOT, 8)]
    d = decide(state(DEADLINE - 2100, WORK * 3 / 4, pools, spot=True), OPTS, S)
    assert "safety net" in d.reason
    assert d.targets["sl-pool"] == 8 and d.targets["spot-pool"] == 8
    # an hour earlier the same spot pool is trusted
    d = decide(state(DEADLINE - 5700, WORK * 3 / 4, pools, spot=True), OPTS, S)
    assert d.targets["sl-pool"] == 0 and d.targets["od-pool"] == 0


def test_done_and_foreign_pools_drain():
    foreign = PoolState("old-pool", "spot", 3, 0, R, 0.4)
    d = decide(state(100, WORK, [pool(SPOT, 4), foreign]), OPTS, S)
    assert set(d.targets.values()) == {0} and "old-pool" in d.targets
    d = decide(state(100, 0, [foreign]), OPTS, S)
    assert d.targets["old-pool"] == 0


def test_tail_caps_replicas_to_remaining_chunks():
    pools = [pool(SPOT, 8)]
    d = decide(state(3600, WORK - 2 * R * S.ingest.target_chunk_s, pools), OPTS, S)
    assert d.targets["spot-pool"] <= 2


def test_options_from_plans_takes_cheapest_per_market():
    def p(market, cost, reps=1):
        return Plan("L4", 1, 1, 1, market, "r", reps, 1.0, R, 100.0, cost, 0.1, startup_s=60.0)

    opts = options_from_plans([p("spot", 1), p("spot", 2), p("serverless", 3, reps=40)], S)
    assert [o.market for o in opts] == ["spot", "serverless"]
    assert opts[1].max_replicas == 40 and opts[1].startup_s == 60.0
    assert opts[0].max_replicas == S.planner.max_replicas and opts[1].zone == "r"


def test_options_from_plans_keeps_one_spot_option_per_region_up_to_spot_zones():
    def p(region, cost):
        return Plan("L4", 1, 1, 1, "spot", region, 1, 1.0, R, 100.0, cost, 0.1, startup_s=60.0)

    opts = options_from_plans([p(f"z{i}", i) for i in range(6)] + [p("z0", 9)], S)
    assert [o.zone for o in opts] == [f"z{i}" for i in range(S.planner.spot_zones)]


Z1 = PoolOption("spot-z1", "spot", R, 0.4, 300, 8, zone="z1")
Z2 = PoolOption("spot-z2", "spot", R, 0.4, 300, 8, zone="z2")


def test_spot_spreads_over_zones_and_avoids_a_blocked_one():
    d = decide(state(0, 0), (Z1, Z2, OD, SL), S)
    assert d.targets["spot-z1"] >= 1 and abs(d.targets["spot-z1"] - d.targets["spot-z2"]) <= 1
    # z1 blocked by the availability estimate: its 2 running replicas stay, its starting one is released,
    # new spot goes to z2
    pools = [pool(Z1, 2, 1), pool(Z2, 0)]
    s = RuntimeState(now_s=600, deadline_s=DEADLINE, work_total=WORK, work_done=0.05 * WORK, pools=tuple(pools),
                     blocked=frozenset({"spot-z1"}))
    d = decide(s, (Z1, Z2, OD, SL), S)
    assert d.targets["spot-z1"] == 2 and d.targets["spot-z2"] >= 2


def test_measured_throughput_replaces_the_estimate():
    # the pool runs at 0.5x its estimate: behind the line, more fallback is needed than the estimate says
    t, done = 4 * 3600, 0.45 * WORK
    slow = PoolState(OD.key, "on_demand", 4, 0, 0.5 * R, OD.price_per_replica_hour)
    fast = PoolState(OD.key, "on_demand", 4, 0, R, OD.price_per_replica_hour)
    opts = (SPOT, OD)
    d_slow = decide(state(t, done, [slow], spot=False), opts, S)
    d_fast = decide(state(t, done, [fast], spot=False), opts, S)
    assert d_slow.targets[OD.key] > d_fast.targets[OD.key]
    # an option not running yet is judged by the same shortfall: serverless measured at 0.5x is not
    # traded for an on-demand estimate that would be just as wrong
    sl_slow = PoolState(SL.key, "serverless", 2, 0, 0.5 * R, SL.price_per_replica_hour)
    d = decide(state(t, done, [sl_slow], spot=False), OPTS, S)
    assert d.targets[SL.key] > 2 and d.targets[OD.key] == 0


SMALL = R * 3600.0  # one replica for an hour


def test_spot_is_sized_by_its_start_ups_one_replica_for_a_small_job_a_pool_for_a_big_one():
    # 1 h of work due in 1.5 h: one replica finishes in time; a second would pay a start-up (8% of the work) for nothing
    d = decide(state(0, 0, deadline=1.5 * 3600, work=SMALL), OPTS, S)
    assert d.targets["spot-pool"] == 1
    # 16 replica-hours due in 8 h: beyond the replicas the deadline needs, spot_aim's more (their start-ups are ~2% of the work)
    s = S.planner
    window = DEADLINE * (1 - s.safety_margin) - S.ingest.target_chunk_s - SPOT.startup_s
    needed = math.ceil(WORK * (1 + s.preemption_loss) / (R * window))
    d = decide(state(0, 0), OPTS, S)
    assert d.targets["spot-pool"] > needed


def test_an_outage_is_waited_out_while_the_fallback_could_still_finish():
    # behind the line (nothing done 40 min into a 1.5 h job), spot gone: serverless started 20 min later still
    # finishes the hour of work with start-ups of a few minutes, so nothing is bought yet
    d = decide(state(2400, 0, deadline=1.5 * 3600, work=SMALL, pools=[pool(SPOT, 0)], spot=False), OPTS, S)
    assert d.targets["sl-pool"] == 0 and d.targets["od-pool"] == 0
    # 20 min later it can no longer wait: serverless for the whole hour at once
    d = decide(state(3600, 0, deadline=1.5 * 3600, work=SMALL, pools=[pool(SPOT, 0)], spot=False), OPTS, S)
    assert d.targets["sl-pool"] >= 2 and "behind" in d.reason


def test_an_unmeasured_throughput_waits_less_than_a_measured_one():
    # same moment; once a pool has run, its measured rate is trusted and the wait goes on longer
    t, done = 3900, 0.1 * SMALL
    unmeasured = decide(state(t, done, deadline=1.5 * 3600, work=SMALL, spot=False), OPTS, S)
    measured = decide(state(t, done, deadline=1.5 * 3600, work=SMALL, pools=[pool(SPOT, 1)], spot=False), OPTS, S)
    assert unmeasured.targets["sl-pool"] > 0 and measured.targets["sl-pool"] == 0


def test_no_spot_replica_whose_start_up_the_remaining_work_cannot_repay():
    # spot is back 15 min before the end with serverless finishing the last 10 min of work: a 5 min spot
    # start-up would leave it too little to do, so none is started; earlier in the job it would be
    pools = [pool(SL, 2), pool(SPOT, 0)]
    d = decide(state(3600, 0.83 * SMALL, deadline=1.5 * 3600, work=SMALL, pools=pools), OPTS, S)
    assert d.targets["spot-pool"] == 0 and d.targets["sl-pool"] == 2
    d = decide(state(600, 0.1 * SMALL, deadline=1.5 * 3600, work=SMALL, pools=pools), OPTS, S)
    assert d.targets["spot-pool"] >= 1


def test_a_zone_on_probation_gets_one_spot_replica():
    s = RuntimeState(now_s=0, deadline_s=DEADLINE, work_total=WORK, work_done=0, pools=(), probation=frozenset({"spot-z1"}))
    d = decide(s, (Z1, Z2, OD, SL), S)
    assert d.targets["spot-z1"] == 1 and d.targets["spot-z2"] >= 2
    # its running replicas are kept
    s = RuntimeState(now_s=0, deadline_s=DEADLINE, work_total=WORK, work_done=0, pools=(pool(Z1, 3),), probation=frozenset({"spot-z1"}))
    assert decide(s, (Z1, Z2, OD, SL), S).targets["spot-z1"] == 3
