"""plan(): feasibility, deadlines, market choice, infeasibility, local plans, speed."""

from __future__ import annotations

import time

import pytest

from orca.errors import PlanInfeasibleError
from orca.planner import plan, plan_for_stats, plan_to_dict, plans_table
from orca.planner.catalog import load_catalog
from orca.planner.render import parse_duration
from orca.planner.throughput import estimate, model_params_b, model_shape
from orca.planner.types import Constraints, JobStats
from orca.settings import LauncherSettings, PlannerSettings, Settings

S = Settings()
BIG_8B = JobStats(n_requests=100_000, prompt_tokens=100_000 * 500, max_output_tokens=100_000 * 256,
                  model="meta-llama/Llama-3.1-8B-Instruct")
JOB_70B = JobStats(n_requests=20_000, prompt_tokens=20_000 * 500, max_output_tokens=20_000 * 256,
                   model="meta-llama/Llama-3.1-70B-Instruct")


def test_model_size_from_table_and_name():
    c = load_catalog()
    assert model_params_b("meta-llama/Llama-3.1-8B-Instruct", c) == pytest.approx(8.03)
    assert model_params_b("acme/foo-13B-chat", c) == 13.0
    assert model_params_b("acme/tiny-360m", c) == pytest.approx(0.36)
    assert model_shape("acme/no-size-here", c) is None
    # the CPU engine's served name (the README's input example) is an alias of the packaged model
    assert model_shape("smollm2", c) == c.models["HuggingFaceTB/SmolLM2-135M-Instruct"]


def test_70b_does_not_fit_on_one_l4():
    c = load_catalog()
    assert estimate(model_shape(JOB_70B.model, c), c.gpus["L4"], 1, 1, 500, 256, c) is None
    plans = plan(JOB_70B, 24 * 3600, Constraints(gpus=("L4",)), settings=S)
    assert plans and all(p.gpus_per_replica >= 8 for p in plans)


def test_every_plan_meets_the_deadline_with_margin():
    deadline = 4 * 3600
    plans = plan(BIG_8B, deadline, settings=S)
    assert len(plans) == S.planner.top_plans
    for p in plans:
        assert p.expected_finish_s <= deadline * (1 - S.planner.safety_margin)
        assert p.expected_cost_usd == pytest.approx(p.replicas * p.price_per_replica_hour * p.expected_finish_s / 3600, rel=1e-3)
    costs = [p.expected_cost_usd for p in plans]
    assert costs == sorted(costs)


def test_loose_deadline_picks_spot():
    assert plan(BIG_8B, 24 * 3600, settings=S)[0].market == "spot"


def test_tight_deadline_needs_fast_start_markets():
    # 5.5 minutes: a VM (5 min boot) cannot finish in time, serverless (1 min cold start) can
    small = JobStats(n_requests=1000, prompt_tokens=1000 * 200, max_output_tokens=1000 * 128, model=BIG_8B.model)
    plans = plan(small, 330, settings=S)
    assert {p.market for p in plans} == {"serverless"}
    with pytest.raises(PlanInfeasibleError) as err:
        plan(small, 330, Constraints(markets=("spot", "on_demand")), settings=S)
    assert err.value.context["fastest_finish_s"] > 330 * (1 - S.planner.safety_margin)


def test_tight_deadline_prefers_guaranteed_capacity_when_spot_is_excluded_by_replica_cap():
    plans = plan(BIG_8B, 2 * 3600, Constraints(max_replicas=1), settings=S)
    assert plans and all(p.replicas == 1 for p in plans)


def test_infeasible_raises_with_fastest_option():
    huge = JobStats(n_requests=10**6, prompt_tokens=10**9, max_output_tokens=10**9, model="meta-llama/Llama-3.1-405B-Instruct")
    with pytest.raises(PlanInfeasibleError) as err:
        plan(huge, 3600, settings=S)
    assert err.value.context["fastest_finish_s"] > 3600
    assert err.value.context["fastest_option"]


def test_a_model_no_candidate_can_hold_says_so():
    stats = JobStats(n_requests=10, prompt_tokens=1000, max_output_tokens=1000, model="meta-llama/Llama-3.1-8B-Instruct")
    with pytest.raises(PlanInfeasibleError) as err:
        plan(stats, 24 * 3600, Constraints(markets=("local",)), settings=S)
    assert "fits none of the allowed GPU configurations (cpu)" in err.value.message
    assert "fastest_finish_s" not in err.value.context


def test_with_replicas_recomputes_finish_cost_and_risk():
    from orca.planner.planning import with_replicas

    stats = JobStats(n_requests=2000, prompt_tokens=2000 * 50, max_output_tokens=2000 * 64, model="HuggingFaceTB/SmolLM2-135M-Instruct")
    one = plan(stats, 3600, Constraints(markets=("local",), max_replicas=1), settings=S)[0]
    two = with_replicas(one, stats, 2, 3600, S)
    assert one.replicas == 1 and two.replicas == 2
    work_s = one.expected_finish_s - one.startup_s
    assert two.expected_finish_s == pytest.approx(one.startup_s + work_s / 2, abs=0.2)
    assert two.expected_cost_usd == 0.0 and two.risk <= one.risk
    spot = plan(BIG_8B, 4 * 3600, Constraints(markets=("spot",)), settings=S)[0]
    same = with_replicas(spot, BIG_8B, spot.replicas, 4 * 3600, S)  # same replicas: the same plan (up to rounding)
    assert (same.expected_finish_s, same.risk) == (spot.expected_finish_s, spot.risk)
    assert same.expected_cost_usd == pytest.approx(spot.expected_cost_usd, abs=1e-3)


def test_unknown_model_and_cost_cap_raise():
    with pytest.raises(PlanInfeasibleError):
        plan(JobStats(n_requests=1, prompt_tokens=1, max_output_tokens=1, model="mystery"), 3600, settings=S)
    with pytest.raises(PlanInfeasibleError) as err:
        plan(BIG_8B, 4 * 3600, Constraints(max_cost_usd=0.01), settings=S)
    assert err.value.context["cheapest_usd"] > 0.01


def test_local_market_plans_cpu_workers():
    settings = Settings(launcher=LauncherSettings(local_max_workers=2))
    stats = JobStats(n_requests=2000, prompt_tokens=2000 * 50, max_output_tokens=2000 * 64, model="HuggingFaceTB/SmolLM2-135M-Instruct")
    plans = plan(stats, 3600, Constraints(markets=("local",)), settings=settings)
    assert [(p.gpu, p.market, p.price_per_replica_hour) for p in plans] == [("cpu", "local", 0.0)]
    assert 1 <= plans[0].replicas <= 2 and plans[0].region is None


def test_plan_is_fast():
    plan(BIG_8B, 4 * 3600, settings=S)
    best = min(_timed(lambda: plan(BIG_8B, 4 * 3600, settings=S)) for _ in range(5))
    assert best < 0.05


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_cli_glue_and_rendering():
    assert parse_duration("1h30m") == 5400 and parse_duration("90") == 90 and parse_duration(7.5) == 7.5
    plans = plan_for_stats(BIG_8B, "6h", model="Qwen/Qwen2.5-7B-Instruct", markets=("on_demand",), settings=S)
    assert {p.market for p in plans} == {"on_demand"}
    table = plans_table(plans)
    assert table.splitlines()[0].split() == ["GPU", "TP/PP", "MARKET", "REGION", "REPLICAS", "ETA", "COST", "RISK"]
    assert len(table.splitlines()) == len(plans) + 1
    d = plan_to_dict(plans[0])
    assert d["key"] == plans[0].key and d["market"] == "on_demand"


def test_preemption_loss_makes_spot_need_more_capacity():
    lossy = Settings(planner=PlannerSettings(preemption_loss=0.5))
    c = Constraints(markets=("spot",), gpus=("L4",))
    def g6(settings):
        return next(p for p in plan(BIG_8B, 6 * 3600, c, settings=settings) if p.instance_type == "g6.xlarge")

    assert g6(lossy).replicas > g6(S).replicas


def test_planner_import_is_light():
    import subprocess
    import sys

    code = "import sys, orca.planner; print(sorted(m for m in ('numpy', 'pandas', 'sky', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
