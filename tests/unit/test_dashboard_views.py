"""The dashboard's pure parts: on track / at risk / late, job rows, status filters, the sampling rule,
the swap preview's remaining work, the sign-in redirect guard."""

from __future__ import annotations

import pytest

from orca.control.dashboard import views
from orca.control.dashboard.session import safe_next
from orca.control.dashboard.swap_preview import remaining_stats
from orca.control.progress_series import due, sample_gap_s, sample_of
from orca.control.schemas import Job, PlanOut, PoolOut, Progress, RequestCounts
from orca.models import JobStatus
from orca.planner.types import JobStats
from orca.settings import DashboardSettings

NOW = 10_000.0


def job(status: str = "in_progress", eta: float | None = 100.0, deadline_in: float = 1000.0, **kw) -> Job:
    return Job(id="batch_1", status=JobStatus(status), created_at=NOW - 50, deadline_at=NOW + deadline_in, eta_s=eta, **kw)


@pytest.mark.parametrize("eta,deadline_in,state", [
    (100.0, 1000.0, "on_track"),
    (799.0, 1000.0, "on_track"),
    (801.0, 1000.0, "at_risk"),
    (1001.0, 1000.0, "late"),
    (None, 1000.0, "measuring"),
    (10.0, -5.0, "late"),
])
def test_track_of_a_running_job(eta, deadline_in, state) -> None:
    t = views.track(job(eta=eta, deadline_in=deadline_in), NOW, 0.8)
    assert t["state"] == state
    if eta is not None and deadline_in > 0:
        assert t["finish_at"] == NOW + eta


def test_track_of_finished_and_starting_jobs() -> None:
    assert views.track(job("completed", completed_at=NOW - 1), NOW, 0.8)["state"] == "done"
    late = job("completed", deadline_in=-10, completed_at=NOW - 1)
    assert views.track(late, NOW, 0.8) == {"state": "late", "label": "done late", "finish_at": NOW - 1}
    assert views.track(job("expired", expired_at=NOW), NOW, 0.8)["label"] == "missed deadline"
    assert views.track(job("cancelled", cancelled_at=NOW), NOW, 0.8)["state"] == "ended"
    assert views.track(job("validating", eta=None), NOW, 0.8)["state"] == "starting"
    assert views.track(job("finalizing", eta=None), NOW, 0.8)["state"] == "on_track"


def test_row_counts_running_chunks_and_places_the_job_on_its_active_pools() -> None:
    j = job(request_counts=RequestCounts(total=100, completed=30, failed=2), progress=Progress(requests_uncommitted=8),
            pools=[PoolOut(key="a", launcher="local", gpu="cpu", market="local", state="drained"),
                   PoolOut(key="b", launcher="local", gpu="fast", market="local", state="active")],
            plan=PlanOut(gpu="cpu", gpus_per_replica=1, tp=1, pp=1, market="local", region=None, replicas=2,
                         expected_finish_s=60, expected_cost_usd=0, risk=0.02, price_per_replica_hour=0))
    row = views.job_row(j, NOW, 0.8)
    assert row["requests_done"] == 40 and row["fraction"] == 0.4
    assert row["gpu"] == "fast" and row["market"] == "local"
    assert row["requests_note"] == "2 failed"
    assert views.plan_line(j) == {"t0": j.created_at, "t1": j.created_at + 60, "cost_usd": 0}


def test_a_cancelled_job_counts_only_what_completed() -> None:
    j = job("cancelled", request_counts=RequestCounts(total=600, completed=40, failed=560))
    row = views.job_row(j, NOW, 0.8)
    assert row["requests_done"] == 40 and row["fraction"] == pytest.approx(40 / 600)
    assert row["requests_note"] == "560 failed or unfinished"
    assert views.fraction(job("completed", request_counts=RequestCounts(total=5, completed=4, failed=1))) == 1.0


def test_status_filters() -> None:
    rows = [{"status": s.value} for s in JobStatus]
    assert {r["status"] for r in views.filter_rows(rows, "active")} == {"validating", "planning", "in_progress",
                                                                         "finalizing", "cancelling"}
    assert views.filter_rows(rows, "completed") == [{"status": "completed"}]
    assert views.filter_rows(rows, None) == rows
    assert views.filter_rows(rows, "bogus") == []


def test_sample_gap_grows_with_the_deadline_so_the_series_stays_bounded() -> None:
    s = DashboardSettings(sample_every_s=5, series_max_points=720)
    assert sample_gap_s(0, 600, s) == 5
    assert sample_gap_s(0, 86_400, s) == 120  # 24 h in 720 points
    assert due(None, 1.0, "in_progress", 5)
    assert not due({"t": 10.0, "status": "in_progress"}, 12.0, "in_progress", 5)
    assert due({"t": 10.0, "status": "in_progress"}, 15.0, "in_progress", 5)
    assert due({"t": 10.0, "status": "in_progress"}, 11.0, "finalizing", 5)  # a status change always samples


def test_sample_of_a_job() -> None:
    j = job(request_counts=RequestCounts(total=10, completed=3), progress=Progress(requests_uncommitted=2), cost_usd=1.5,
            projected_cost_usd=4.0)
    s = sample_of(j, NOW)
    assert s == {"t": NOW, "status": "in_progress", "fraction": 0.5, "requests_done": 3, "requests_uncommitted": 2,
                 "cost_usd": 1.5, "projected_cost_usd": 4.0, "eta_s": 100.0}


def test_remaining_stats_scale_the_job() -> None:
    stats = JobStats(n_requests=1000, prompt_tokens=50_000, max_output_tokens=200_000, model="m")
    left = remaining_stats(stats, 0.25)
    assert (left.n_requests, left.prompt_tokens, left.max_output_tokens) == (250, 12_500, 50_000)
    assert remaining_stats(stats, 0.0).n_requests == 1


@pytest.mark.parametrize("target,expected", [
    ("/jobs/batch_1?x=1", "/jobs/batch_1?x=1"), (None, "/"), ("https://evil.example", "/"), ("//evil.example", "/"),
    ("/\\evil.example", "/"), ("jobs", "/"),
])
def test_safe_next(target, expected) -> None:
    assert safe_next(target) == expected


def _record(launcher: str, gpu: str, market: str):
    from orca.fleet import Pool
    from orca.queue.jobs import JobRecord

    return JobRecord(id="batch_1", user="alice", status=JobStatus.IN_PROGRESS, created_at=NOW - 600, deadline_at=NOW + 4 * 3600,
                     stats={"n_requests": 10_000, "prompt_tokens": 2_000_000, "max_output_tokens": 2_560_000,
                            "model": "meta-llama/Llama-3.1-8B-Instruct"},
                     pools=[Pool(key=f"{gpu}-tp1-pp1-{market}", launcher=launcher, gpu=gpu, market=market)])


def test_swap_choices_and_the_plan_for_the_work_left() -> None:
    from orca.control.dashboard.swap_preview import gpu_choices, preview
    from orca.planner.catalog import load_catalog
    from orca.settings import LauncherSettings, Settings

    catalog = load_catalog()
    settings = Settings(launcher=LauncherSettings(local_swap_profiles={"fast": {"fake_latency_s": "0.01"}}))
    cloud = gpu_choices(_record("skypilot", "L4", "spot"), settings, catalog)
    assert "H100" in cloud["gpus"] and "cpu" not in cloud["gpus"] and cloud["current"] == "L4"
    assert cloud["markets"] == ["spot", "on_demand", "serverless"]
    local = gpu_choices(_record("local", "cpu", "local"), settings, catalog)
    assert local["gpus"] == ["cpu", "fast"] and local["markets"] == ["local"]

    half_done = job(request_counts=RequestCounts(total=10_000, completed=5_000))
    out = preview(_record("skypilot", "L4", "spot"), half_done, "H100", "spot", settings, catalog, now=NOW)
    assert out["error"] is None and out["plans"] and out["remaining_requests"] == 5_000
    assert {(p["gpu"], p["market"]) for p in out["plans"]} == {("H100", "spot")}
    assert out["time_left_s"] == 4 * 3600
