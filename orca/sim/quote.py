"""A deadline quote before launch: expected cost and P(deadline met) of a plan, from simulated runs.

``quote(plans, stats, deadline_s)`` runs the production controller and policy on the simulated cloud
(``orca.sim.run``) for ``planner.quote_runs`` windows of the bundled spot traces (each spot zone of the
options gets its own trace and start), with the options the runtime policy would get for these
plans. The throughput is the catalog's estimate (a quote cannot know the real one). To answer in a
few hundred ms, a quoted run ticks at most ``planner.quote_max_ticks`` times and cuts the work in at
most ``planner.quote_max_chunks`` chunks. Quotes are cached per (options, work, deadline).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from orca.planner.traces import bundled_traces
from orca.planner.types import JobStats, Plan
from orca.settings import IngestSettings, Settings, get_settings
from orca.sim.cloud import Zone
from orca.sim.run import Scenario, simulate

_CACHE: dict[tuple, "Quote"] = {}


@dataclass(frozen=True)
class Quote:
    expected_cost_usd: float
    p_deadline_met: float
    runs: int

    def to_dict(self) -> dict:
        return asdict(self)


def _option(p: Plan, cap: int) -> dict:
    return {"key": p.key, "gpu": p.gpu, "gpus_per_replica": p.gpus_per_replica, "tp": p.tp, "pp": p.pp,
            "market": p.market, "region": p.region, "replicas": p.replicas, "price_per_replica_hour": p.price_per_replica_hour,
            "replica_tokens_per_s": p.replica_tokens_per_s, "startup_s": p.startup_s, "max_replicas": cap}


def quote(plans: list[Plan], stats: JobStats, deadline_s: float, settings: Settings | None = None) -> Quote | None:
    """The quote for running ``plans[0]`` with the runtime policy over ``plans``' options (None for local plans)."""
    from orca.planner.policy import options_from_plans

    settings = settings or get_settings()
    if not plans or plans[0].market == "local":
        return None
    by_key = {p.key: p for p in plans}
    options = [_option(by_key[o.key], o.max_replicas) for o in options_from_plans(plans, settings)]
    best = _option(plans[0], next(o["max_replicas"] for o in options if o["key"] == plans[0].key)
                   if any(o["key"] == plans[0].key for o in options) else plans[0].replicas)
    options = [best] + [o for o in options if o["key"] != best["key"]]
    work = float(max(1, stats.max_output_tokens))
    key = (tuple(tuple(sorted(o.items())) for o in options), work, round(deadline_s))
    if key in _CACHE:
        return _CACHE[key]
    chunk_s = max(settings.ingest.target_chunk_s, work / (best["replica_tokens_per_s"] * settings.planner.quote_max_chunks))
    run_settings = settings.model_copy(update={"ingest": IngestSettings(**{**settings.ingest.model_dump(), "target_chunk_s": chunk_s})})
    tick = max(settings.planner.replan_every_s, deadline_s / settings.planner.quote_max_ticks)
    traces = bundled_traces()
    spot_regions = [o["region"] or "" for o in options if o["market"] == "spot"]
    costs, met = [], []
    for k in range(settings.planner.quote_runs):
        zones = tuple(Zone(region, t, t.duration_s * ((0.37 * k + 0.11 * i) % 1.0))
                      for i, region in enumerate(spot_regions) for t in (traces[(k + i) % len(traces)],))
        sc = Scenario(f"quote-{k}", tuple(options), best, work, deadline_s, zones, tick_s=tick)
        r = simulate(sc, settings=run_settings)
        costs.append(r.cost_usd)
        met.append(r.met)
    q = Quote(round(statistics.fmean(costs), 4), round(sum(met) / len(met), 4), len(met))
    _CACHE[key] = q
    return q


def quote_line(q: Quote) -> str:
    """'expected $12.30, P(deadline met) 0.97 (8 simulated runs)'."""
    return f"expected ${q.expected_cost_usd:,.2f}, P(deadline met) {q.p_deadline_met:.2f} ({q.runs} simulated runs over bundled spot traces)"


__all__ = ["Quote", "quote", "quote_line"]
