"""Per-user quota decisions (orca.control.quotas.violation, spent_in_window): pure, no services."""

from __future__ import annotations

import pytest

from orca.control.quotas import Limits, Usage, limits_for, spent_in_window, violation
from orca.fleet import Replica
from orca.settings import QuotaSettings


def test_unlimited_by_default() -> None:
    assert limits_for(QuotaSettings()) == Limits()
    assert violation("a", Usage(active_jobs=10**6, queued_requests=10**9, usd_last_day=1e9), Limits(), new_requests=10**9) is None


def test_overrides_win_over_settings() -> None:
    limits = limits_for(QuotaSettings(max_active_jobs=3, max_usd_per_day=10), {"max_active_jobs": 5.0})
    assert limits == Limits(max_active_jobs=5, max_queued_requests=0, max_usd_per_day=10)


def test_each_limit_names_itself_and_how_to_raise_it() -> None:
    jobs = violation("alice", Usage(active_jobs=2), Limits(max_active_jobs=2))
    assert "max_active_jobs" in jobs and "2 unfinished job(s)" in jobs
    assert "orca users quota alice --max-active-jobs N" in jobs and "ORCA_QUOTA__MAX_ACTIVE_JOBS" in jobs
    queued = violation("alice", Usage(queued_requests=90), Limits(max_queued_requests=100), new_requests=11)
    assert "max_queued_requests" in queued and "90 queued request(s) plus 11 in this file" in queued
    usd = violation("alice", Usage(usd_last_day=12.5), Limits(max_usd_per_day=10))
    assert "max_usd_per_day" in usd and "$12.50" in usd and "$10.00" in usd and "--max-usd-per-day" in usd


def test_at_the_limit_exactly() -> None:
    assert violation("a", Usage(active_jobs=1), Limits(max_active_jobs=2)) is None  # the second job fits
    assert violation("a", Usage(queued_requests=90), Limits(max_queued_requests=100), new_requests=10) is None
    assert violation("a", Usage(usd_last_day=9.99), Limits(max_usd_per_day=10)) is None
    assert violation("a", Usage(usd_last_day=10.0), Limits(max_usd_per_day=10)) is not None


def test_before_the_upload_a_full_queue_already_refuses() -> None:
    full = violation("a", Usage(queued_requests=100), Limits(max_queued_requests=100))  # the file is not counted yet
    assert full is not None and "100 queued request(s);" in full
    assert violation("a", Usage(queued_requests=99), Limits(max_queued_requests=100)) is None


def test_dollars_count_only_inside_the_window() -> None:
    def replica(start: float, end: float | None, cost: float) -> Replica:
        return Replica(replica_id="w", job_id="j", pool="p", launcher="local", created_at=start - 5,
                       started_at=start, ended_at=end, cost_usd=cost)

    day, now = 86400.0, 10 * 86400.0
    week_long = replica(now - 7 * day, now - day / 2, 65.0)  # 6.5 days at $10/day, ended 12 h ago: 12 h inside the window
    assert spent_in_window([week_long], now - day, now) == pytest.approx(5.0)
    assert spent_in_window([replica(now - 3 * day, now - 2 * day, 9.0)], now - day, now) == 0.0  # ended before the window
    assert spent_in_window([replica(now - 3600, None, 2.0)], now - day, now) == pytest.approx(2.0)  # still running
    assert spent_in_window([replica(now - 10, now - 10, 0.5)], now - day, now) == 0.5  # billed a minimum, no duration
