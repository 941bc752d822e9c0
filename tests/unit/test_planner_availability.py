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

    e = AvailabilityEstimator.from_settings(Settings(planner=PlannerSettings(availability_backoff_s=7.0, availability_backoff_max_s=9.0)))
    assert (e.backoff_s, e.backoff_max_s) == (7.0, 9.0)
