"""The deadline quote: expected cost and P(deadline met) of a plan from simulated runs, cached per plan."""

from __future__ import annotations

import time

from orca.cli_format import job_detail
from orca.control.schemas import Job, QuoteOut
from orca.models import JobStatus
from orca.planner.planning import plan
from orca.planner.types import Constraints, JobStats
from orca.settings import Settings
from orca.sim.quote import quote

S = Settings()
STATS = JobStats(n_requests=10_000, prompt_tokens=3_000_000, max_output_tokens=5_000_000, model="meta-llama/Llama-3.1-8B-Instruct")


def test_quote_of_a_cloud_plan_is_fast_cached_and_sane():
    plans = plan(STATS, 4 * 3600, settings=S)
    t = time.perf_counter()
    q = quote(plans, STATS, 4 * 3600, S)
    first = time.perf_counter() - t
    assert q is not None and q.runs == S.planner.quote_runs
    assert 0.0 <= q.p_deadline_met <= 1.0 and q.expected_cost_usd > 0
    assert first < 5.0  # a few hundred ms on an idle core; generous for a loaded CI machine
    t = time.perf_counter()
    assert quote(plans, STATS, 4 * 3600, S) is q and time.perf_counter() - t < 0.05


def test_spot_only_quotes_the_outages_of_the_traces_and_a_fallback_removes_them():
    spot_only = Constraints(markets=("spot",), regions=("us-east-1",))
    risky = quote(plan(STATS, 1.1 * 3600, spot_only, settings=S), STATS, 1.1 * 3600, S)
    safe = quote(plan(STATS, 1.1 * 3600, Constraints(markets=("spot", "on_demand")), settings=S), STATS, 1.1 * 3600, S)
    assert risky.p_deadline_met < 0.5 and safe.p_deadline_met == 1.0


def test_local_plans_get_no_quote():
    stats = JobStats(n_requests=10, prompt_tokens=1000, max_output_tokens=1000, model="HuggingFaceTB/SmolLM2-135M-Instruct")
    plans = plan(stats, 3600, Constraints(markets=("local",)), settings=S)
    assert quote(plans, stats, 3600, S) is None


def test_status_shows_the_quote_and_the_actuals_once_the_job_ended():
    q = QuoteOut(expected_cost_usd=12.5, p_deadline_met=0.97, runs=8)
    running = Job(id="batch_1", status=JobStatus.IN_PROGRESS, created_at=0.0, deadline_at=3600.0, quote=q, cost_usd=3.0)
    assert "expected $12.50, P(deadline met) 0.97 (8 simulated runs)" in job_detail(running, now=10.0)
    assert "actual" not in job_detail(running, now=10.0)
    done = Job(id="batch_1", status=JobStatus.COMPLETED, created_at=0.0, deadline_at=3600.0, completed_at=3000.0,
               quote=q, cost_usd=11.25)
    assert "actual $11.25, deadline met (50m" in job_detail(done, now=4000.0)
    late = Job(id="batch_1", status=JobStatus.EXPIRED, created_at=0.0, deadline_at=3600.0, expired_at=3700.0, quote=q)
    assert "deadline missed" in job_detail(late, now=4000.0)
