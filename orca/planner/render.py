"""Glue for ``orca plan``: parse a deadline, plan a job's stats, render plans as a table or JSON-able dicts."""

from __future__ import annotations

from dataclasses import asdict, replace

from orca import durations
from orca.errors import ConfigError
from orca.planner.planning import plan
from orca.planner.types import Constraints, JobStats, Plan


def parse_duration(text: str | float | int) -> float:
    """Seconds in a deadline (``orca.durations`` syntax); ConfigError when it is not one."""
    try:
        return durations.parse_duration(text)
    except ValueError as exc:
        raise ConfigError(str(exc), value=text) from None


def plan_for_stats(
    stats: JobStats,
    deadline: str | float,
    model: str | None = None,
    markets: tuple[str, ...] | None = None,
    gpus: tuple[str, ...] = (),
    regions: tuple[str, ...] = (),
    max_replicas: int | None = None,
    catalog=None,
    settings=None,
) -> list[Plan]:
    """``plan()`` for the CLI: a deadline string, an optional model override and constraint shortcuts."""
    if model:
        stats = replace(stats, model=model)
    base = Constraints()
    constraints = Constraints(markets=tuple(markets) if markets else base.markets, gpus=tuple(gpus),
                              regions=tuple(regions), max_replicas=max_replicas)
    return plan(stats, parse_duration(deadline), constraints, catalog=catalog, settings=settings)


def plan_to_dict(p: Plan) -> dict:
    """JSON-able dict of a plan, with its pool key."""
    return {**asdict(p), "key": p.key}


def _eta(seconds: float) -> str:
    h, rem = divmod(int(round(seconds)), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def plans_table(plans: list[Plan]) -> str:
    """Plain-text table: GPU, TP/PP, market, region, replicas, ETA, cost, risk."""
    header = ("GPU", "TP/PP", "MARKET", "REGION", "REPLICAS", "ETA", "COST", "RISK")
    rows = [
        (f"{p.gpus_per_replica}x{p.gpu}", f"{p.tp}/{p.pp}", p.market, p.region or "-", str(p.replicas),
         _eta(p.expected_finish_s), f"${p.expected_cost_usd:,.2f}", f"{p.risk:.2f}")
        for p in plans
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])
