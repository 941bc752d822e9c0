"""``orca plan``'s work: the plans and quote for a validated file, as JSON or text. Pure calls into the planner
and the quote; no typer, no server."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orca.planner.types import JobStats
    from orca.settings import Settings


def plans_and_quote(stats: "JobStats", deadline_s: float, model: str | None, gpu: str | None,
                    market: list[str] | None, settings: "Settings") -> tuple[list, Any]:
    """The plans for ``stats`` (best first) and the deadline quote of the first (None when it has none)."""
    from orca.planner.render import plan_for_stats
    from orca.sim.quote import quote

    plans = plan_for_stats(stats, deadline_s, model=model, markets=tuple(market) if market else None,
                           gpus=(gpu,) if gpu else (), settings=settings)
    return plans, quote(plans, replace(stats, model=model) if model else stats, deadline_s, settings)


def plan_report(plans: list, q: Any, stats: "JobStats", model: str | None, deadline_s: float) -> dict[str, Any]:
    """``orca plan --json``: the plans, the file's estimates and the quote."""
    from orca.planner.render import plan_to_dict

    return {"object": "list", "data": [plan_to_dict(p) for p in plans], "n_requests": stats.n_requests,
            "est_prompt_tokens": stats.prompt_tokens, "est_output_tokens": stats.max_output_tokens,
            "model": model or stats.model, "deadline_s": deadline_s, "quote": q.to_dict() if q is not None else None}


def plan_lines(plans: list, q: Any, stats: "JobStats", model: str | None, deadline: str) -> list[str]:
    """``orca plan``'s text: the file's estimates, the plans table and the quote of the first plan."""
    from orca.planner.render import plans_table
    from orca.sim.quote import quote_line

    lines = [f"{stats.n_requests} requests to {model or stats.model} ({stats.endpoint}), "
             f"~{stats.prompt_tokens:,} prompt + {stats.max_output_tokens:,} output tokens; deadline {deadline}",
             plans_table(plans)]
    if q is not None:
        lines.append(f"quote for the first plan: {quote_line(q)}")
    return lines
