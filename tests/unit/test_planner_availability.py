"""The availability estimate: blocks a zone/market on failures, backs off, re-probes, heals on a launch that came up."""

from __future__ import annotations

from orca.planner.availability import AvailabilityEstimator


def est() -> AvailabilityEstimator:
    return AvailabilityEstimator(backoff_s=100.0, backoff_max_s=350.0)


def test_unknown_zones_are_usable():
    assert est().usable("us-east-1a", "spot", 0.0)


def test_capacity_error_blocks_for_the_backoff_then_probes_again():
    e = est()
    e.capacity_error("z1", "spot", 10.0)
    assert not e.usable("z1", "spot", 10.0) and not e.usable("z1", "spot", 109.0)
    assert e.usable("z1", "spot", 110.0)  # backoff over: the next launch is the probe
    assert e.usable("z2", "spot", 10.0) and e.usable("z1", "on_demand", 10.0)  # per zone and market


def test_failures_of_one_outage_do_not_escalate_but_a_failed_probe_doubles_up_to_the_cap():
    e = est()
    for _ in range(5):  # five replicas refused at once: one failure
        e.capacity_error("z1", "spot", 0.0)
    assert e.health("z1", "spot").blocked_until == 100.0 and e.health("z1", "spot").capacity_errors == 5
    e.capacity_error("z1", "spot", 100.0)   # the probe failed: 200 s
    assert e.health("z1", "spot").blocked_until == 300.0
    e.capacity_error("z1", "spot", 300.0)   # 400 s, capped at 350
    assert e.health("z1", "spot").blocked_until == 650.0


def test_preemption_and_notice_block_and_a_launch_that_came_up_heals():
    e = est()
    e.preempted("z1", "spot", 0.0)
    assert not e.usable("z1", "spot", 50.0)
    e.came_up("z1", "spot", 60.0)
    assert e.usable("z1", "spot", 60.0) and e.health("z1", "spot").failures == 0
    e.preempted("z1", "spot", 70.0)  # after healing the backoff starts over
    assert e.health("z1", "spot").blocked_until == 170.0


def test_stuck_provisioning_counts_as_a_failure():
    e = est()
    e.stuck("z1", "spot", 5.0)
    assert not e.usable("z1", "spot", 6.0)


def test_from_settings_uses_the_planner_section():
    from orca.settings import PlannerSettings, Settings

    e = AvailabilityEstimator.from_settings(Settings(planner=PlannerSettings(
        availability_backoff_s=7.0, availability_backoff_max_s=9.0, availability_short_backoff_s=11.0, availability_probation_factor=3.0)))
    assert (e.backoff_s, e.backoff_max_s, e.short_backoff_s, e.probation_factor) == (7.0, 9.0, 11.0, 3.0)


def test_short_lived_capacity_is_avoided_longer_then_gets_one_replica_until_it_lasts():
    e = AvailabilityEstimator(backoff_s=100.0, backoff_max_s=350.0, short_backoff_s=900.0, probation_factor=2.0)
    e.came_up("z1", "spot", 0.0)
    e.preempted("z1", "spot", 500.0, short_s=750.0)   # capacity lasted 500 s < 750 s: a start-up not repaid
    e.preempted("z1", "spot", 505.0, short_s=750.0)   # another replica of the same outage: counted once
    h = e.health("z1", "spot")
    assert h.short_lives == 1 and not e.usable("z1", "spot", 500.0 + 899.0) and e.usable("z1", "spot", 1400.0)
    e.came_up("z1", "spot", 600.0)  # a launch made before the block came up: it does not lift the short block
    assert not e.usable("z1", "spot", 700.0) and e.on_probation("z1", "spot", 700.0)
    # after the block a launch comes up: one replica there (probation) until capacity has lasted 2 x 750 s
    e.came_up("z1", "spot", 1500.0)
    assert e.on_probation("z1", "spot", 600.0 + 1499.0) and not e.on_probation("z1", "spot", 600.0 + 1500.0)
    assert not e.on_probation("z2", "spot", 0.0)


def test_short_lives_in_a_row_double_the_block_and_a_long_life_clears_them():
    e = AvailabilityEstimator(backoff_s=100.0, backoff_max_s=350.0, short_backoff_s=900.0)
    e.came_up("z1", "spot", 0.0)
    e.preempted("z1", "spot", 100.0, short_s=750.0)
    e.came_up("z1", "spot", 1000.0)
    e.preempted("z1", "spot", 1200.0, short_s=750.0)  # short again: 1800 s
    assert e.health("z1", "spot").short_lives == 2
    assert not e.usable("z1", "spot", 1200.0 + 1799.0) and e.usable("z1", "spot", 3000.0)
    e.came_up("z1", "spot", 3000.0)
    e.preempted("z1", "spot", 5000.0, short_s=750.0)  # lasted 2000 s: not short, probation over
    h = e.health("z1", "spot")
    assert h.short_lives == 0 and not e.on_probation("z1", "spot", 5000.0) and e.usable("z1", "spot", 5100.0)
    # a preemption without a launch that came up (nothing known of its life) is an ordinary failure
    e2 = AvailabilityEstimator(backoff_s=100.0)
    e2.preempted("z1", "spot", 0.0, short_s=750.0)
    assert e2.health("z1", "spot").short_lives == 0 and e2.usable("z1", "spot", 100.0)
