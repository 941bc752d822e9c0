"""``plan()``: every way to run a job by its deadline, cheapest first. Pure: catalog and settings in, plans out.

Enumeration: GPU offer (instance type x region for spot and on-demand, provider x GPU count for
serverless, the ``cpu`` pseudo-GPU for ``local``) x (TP, PP) with ``tp * pp`` = GPUs of the replica.
For each, the throughput model (:mod:`orca.planner.throughput`) says whether weights plus KV cache
fit and how many output tokens/s one replica makes. Then:

- ``startup_s`` = VM provisioning (``provision_s``) or serverless cold start (catalog, per provider)
  or local start, plus loading weights beyond 16 GB at ``model_load_gb_per_s``;
- the deadline used is ``deadline_s * (1 - safety_margin)``; spot throughput is discounted by
  ``preemption_loss`` (redone chunks, restarts);
- ``replicas = ceil(work / (tokens_per_s * (safe_deadline - startup_s)))``, capped by
  ``Constraints.max_replicas`` / ``PlannerSettings.max_replicas`` (serverless by
  ``serverless_max_replicas``, local by ``launcher.local_max_workers``);
- ``expected_cost = replicas * price * expected_finish / 3600`` (every replica is billed from launch);
- ``risk`` = a market base (spot 0.2, serverless 0.05, on-demand/local 0.02) plus a term growing
  with ``(expected_finish / deadline) ** 4``: a heuristic score, not a calibrated probability.

Plans are ranked by expected cost, then risk, then finish; only the best (TP, PP) per offer is kept.
When nothing meets the deadline, :class:`~orca.errors.PlanInfeasibleError` carries the fastest
option's finish time. Work is the job's total output tokens (``JobStats.max_output_tokens``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from orca.errors import PlanInfeasibleError
from orca.planner.catalog import Catalog, load_catalog
from orca.planner.throughput import estimate, model_shape
from orca.planner.types import Constraints, JobStats, Market, Plan

RISK_BASE: dict[str, float] = {"spot": 0.2, "serverless": 0.05, "on_demand": 0.02, "local": 0.02}
_PARALLEL = ((1, 1), (2, 1), (4, 1), (8, 1), (4, 2), (8, 2), (2, 2), (2, 4))
#: (tp, pp) layouts the planner considers; swap requests are checked against them.
PARALLEL_LAYOUTS = _PARALLEL


@dataclass(frozen=True)
class _Offer:
    gpu: str
    gpus: int
    market: Market
    region: str | None
    price: float
    instance_type: str | None
    start_s: float      # before weight loading
    max_replicas: int


def _settings(settings):
    if settings is None:
        from orca.settings import get_settings

        settings = get_settings()
    return settings


def _offers(catalog: Catalog, constraints: Constraints, settings) -> list[_Offer]:
    ps = settings.planner
    cap = min(constraints.max_replicas or ps.max_replicas, ps.max_replicas)
    gpus = {g.lower() for g in constraints.gpus}
    regions = set(constraints.regions)
    out: list[_Offer] = []

    def wanted(gpu: str) -> bool:
        return not gpus or gpu.lower() in gpus

    for inst in catalog.instances:
        if not wanted(inst.gpu):
            continue
        for rp in inst.prices:
            if regions and rp.region not in regions:
                continue
            for market, price in (("spot", rp.spot), ("on_demand", rp.on_demand)):
                if market in constraints.markets and price:
                    out.append(_Offer(inst.gpu, inst.gpus, market, rp.region, price, inst.instance_type, ps.provision_s, cap))
    if "serverless" in constraints.markets:
        for offer in catalog.serverless:
            for gpu, gpu_hour in offer.gpu_hour.items():
                if not wanted(gpu) or gpu not in catalog.gpus:
                    continue
                for n in offer.gpu_counts:
                    out.append(_Offer(gpu, n, "serverless", offer.provider, gpu_hour * n, None, offer.cold_start_s,
                                      min(cap, ps.serverless_max_replicas)))
    if "local" in constraints.markets and (not gpus or catalog.local_gpu in gpus):
        local_cap = min(cap, settings.launcher.local_max_workers)
        out.append(_Offer(catalog.local_gpu, 1, "local", None, 0.0, None, ps.local_start_s, local_cap))
    return out


def _effective_rate(tokens_per_s: float, market: str, ps) -> float:
    """A replica's output tokens/s as planned: spot throughput is discounted by ``preemption_loss``."""
    return tokens_per_s * ((1.0 - ps.preemption_loss) if market == "spot" else 1.0)


def _risk(market: str, finish_s: float, deadline_s: float) -> float:
    base = RISK_BASE.get(market, 0.1)
    tight = min(1.0, finish_s / deadline_s) if deadline_s > 0 else 1.0
    return round(min(1.0, base + (1.0 - base) * 0.5 * tight**4), 4)


def plan(
    job_stats: JobStats,
    deadline_s: float,
    constraints: Constraints | None = None,
    catalog: Catalog | None = None,
    settings=None,
) -> list[Plan]:
    """Plans that finish ``job_stats`` within ``deadline_s``, cheapest expected cost first (then lowest risk).

    ``settings`` is an :class:`orca.settings.Settings` (default: the process settings).
    Raises :class:`PlanInfeasibleError` when no configuration meets the deadline (or ``max_cost_usd``).
    """
    constraints = constraints or Constraints()
    catalog = catalog or load_catalog()
    settings = _settings(settings)
    ps = settings.planner
    shape = model_shape(job_stats.model, catalog)
    if shape is None:
        raise PlanInfeasibleError("Cannot size the model: not in the catalog and no parameter count in its name", model=job_stats.model)
    n_req = max(1, job_stats.n_requests)
    work = float(max(1, job_stats.max_output_tokens))
    in_tok = job_stats.prompt_tokens / n_req
    out_tok = work / n_req
    safe_deadline = deadline_s * (1.0 - ps.safety_margin)

    best: dict[tuple, Plan] = {}
    fastest: tuple[float, str] | None = None
    cheapest_over_budget: float | None = None
    for offer in _offers(catalog, constraints, settings):
        gpu = catalog.gpus.get(offer.gpu)
        if gpu is None:
            continue
        layouts = [(1, 1)] if offer.market == "local" else [(t, p) for t, p in _PARALLEL if t * p == offer.gpus]
        for tp, pp in layouts:
            est = estimate(shape, gpu, tp, pp, in_tok, out_tok, catalog, ps.weight_bytes)
            if est is None:
                continue
            rate = _effective_rate(est.tokens_per_s, offer.market, ps)
            startup = offer.start_s + max(0.0, est.weights_gb - 16.0) / ps.model_load_gb_per_s
            quickest = startup + work / (rate * offer.max_replicas)
            label = f"{offer.gpu}x{offer.gpus} tp{tp} pp{pp} {offer.market} {offer.region or ''}".strip()
            if fastest is None or quickest < fastest[0]:
                fastest = (quickest, label)
            usable = safe_deadline - startup
            if usable <= 0:
                continue
            replicas = max(1, math.ceil(work / (rate * usable) - 1e-9))
            if replicas > offer.max_replicas:
                continue
            finish = startup + work / (rate * replicas)
            cost = replicas * offer.price * finish / 3600.0
            if constraints.max_cost_usd is not None and cost > constraints.max_cost_usd:
                cheapest_over_budget = cost if cheapest_over_budget is None else min(cheapest_over_budget, cost)
                continue
            p = Plan(
                gpu=offer.gpu, gpus_per_replica=offer.gpus, tp=tp, pp=pp, market=offer.market, region=offer.region,
                replicas=replicas, price_per_replica_hour=round(offer.price, 6), replica_tokens_per_s=round(est.tokens_per_s, 3),
                expected_finish_s=round(finish, 1), expected_cost_usd=round(cost, 4), risk=_risk(offer.market, finish, deadline_s),
                instance_type=offer.instance_type, startup_s=round(startup, 1),
            )
            key = (offer.gpu, offer.gpus, offer.market, offer.region, offer.instance_type)
            old = best.get(key)
            if old is None or (p.expected_cost_usd, p.risk) < (old.expected_cost_usd, old.risk):
                best[key] = p
    if not best:
        if cheapest_over_budget is not None:
            raise PlanInfeasibleError("No plan meets the deadline within the cost limit", max_cost_usd=constraints.max_cost_usd,
                                      cheapest_usd=round(cheapest_over_budget, 2), deadline_s=deadline_s)
        if fastest is None:  # no candidate can hold the model at all, whatever the deadline
            gpus = sorted({o.gpu for o in _offers(catalog, constraints, settings)})
            raise PlanInfeasibleError(f"{job_stats.model} fits none of the allowed GPU configurations "
                                      f"({', '.join(gpus) or 'none'}); allow larger GPUs or another launcher",
                                      model=job_stats.model)
        raise PlanInfeasibleError(deadline_s=round(deadline_s, 1), fastest_finish_s=round(fastest[0], 1),
                                  fastest_option=fastest[1], model=job_stats.model)
    ranked = sorted(best.values(), key=lambda p: (p.expected_cost_usd, p.risk, p.expected_finish_s))
    return ranked[: ps.top_plans]


def with_replicas(p: Plan, job_stats: JobStats, replicas: int, deadline_s: float, settings=None) -> Plan:
    """``p`` run on ``replicas`` replicas: finish, cost and risk recomputed as ``plan()`` computes them."""
    ps = _settings(settings).planner
    rate = _effective_rate(p.replica_tokens_per_s, p.market, ps)
    finish = p.startup_s + float(max(1, job_stats.max_output_tokens)) / (rate * replicas)
    return dataclasses.replace(p, replicas=replicas, expected_finish_s=round(finish, 1),
                               expected_cost_usd=round(replicas * p.price_per_replica_hour * finish / 3600.0, 4),
                               risk=_risk(p.market, finish, deadline_s))
