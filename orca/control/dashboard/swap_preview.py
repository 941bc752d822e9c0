"""The job page's swap form: which GPUs a job may move to, and the planner's table for the work left.

Local pools swap between the local engine profiles (``launcher.local_swap_profiles``, plus the
catalog's local pseudo-GPU); cloud pools between the catalog's GPUs. The preview plans only
what is left (requests not yet answered) against the time left to the deadline, with the same
planner ``orca plan`` uses; nothing is launched.
"""

from __future__ import annotations

import dataclasses
import time

from orca.control.schemas import Job, PlanOut
from orca.errors import PlanInfeasibleError
from orca.planner.types import JobStats
from orca.queue.jobs import JobRecord
from orca.settings import Settings

CLOUD_MARKETS = ("spot", "on_demand", "serverless")


def job_launcher(record: JobRecord, settings: Settings) -> str:
    """The launcher of the job's active pool (what a swap keeps by default)."""
    active = [p for p in record.pools if p.active]
    if active:
        return active[0].launcher
    return record.launcher or settings.control.default_launcher


def gpu_choices(record: JobRecord, settings: Settings, catalog) -> dict:
    """``{"launcher", "gpus": [names], "markets": [names], "current": gpu or None}`` for the swap form."""
    launcher = job_launcher(record, settings)
    active = [p for p in record.pools if p.active]
    current = active[0].gpu if active else None
    if launcher == "local":
        names = [catalog.local_gpu, *sorted(settings.launcher.local_swap_profiles)]
        markets = ["local"]
    else:
        names = [g for g in catalog.gpus if g != catalog.local_gpu]
        markets = list(CLOUD_MARKETS)
    return {"launcher": launcher, "gpus": list(dict.fromkeys(names)), "markets": markets, "current": current}


def remaining_stats(stats: JobStats, share_left: float) -> JobStats:
    """The job's stats scaled to the share of requests not answered yet (at least one request)."""
    share = min(1.0, max(0.0, share_left))
    return dataclasses.replace(
        stats, n_requests=max(1, round(stats.n_requests * share)),
        prompt_tokens=max(1, round(stats.prompt_tokens * share)),
        max_output_tokens=max(1, round(stats.max_output_tokens * share)),
    )


def preview(record: JobRecord, job: Job, gpu: str, market: str, settings: Settings, catalog,
            now: float | None = None) -> dict:
    """Plans for the job's remaining work on ``gpu`` in ``market``: ``{"plans", "remaining_requests",
    "time_left_s", "note", "error"}`` (``error`` is the planner's message when nothing fits)."""
    from orca.planner.planning import plan
    from orca.planner.types import Constraints

    from orca.control.dashboard.views import fraction

    now = time.time() if now is None else now
    if not record.stats:
        return {"plans": [], "remaining_requests": 0, "time_left_s": 0.0, "note": "", "error": "the job has no stats yet"}
    left = remaining_stats(JobStats(**record.stats), 1.0 - fraction(job))
    time_left = max(1.0, record.deadline_at - now)
    launcher = job_launcher(record, settings)
    note = ""
    if launcher == "local":
        gpus: tuple[str, ...] = (catalog.local_gpu,)
        constraints = Constraints(markets=("local",), gpus=gpus, max_replicas=settings.launcher.local_max_workers)
        if gpu != catalog.local_gpu:
            note = (f"'{gpu}' is a local engine profile ({_profile_text(settings.launcher.local_swap_profiles.get(gpu, {}))}); "
                    "the planner has no throughput model for it, so the table shows the local CPU plan.")
    else:
        constraints = Constraints(markets=(market,), gpus=(gpu,))
    try:
        plans = plan(left, time_left, constraints, catalog, settings)
        error = None
    except PlanInfeasibleError as exc:
        plans, error = [], str(exc)
    out = [PlanOut(gpu=p.gpu, gpus_per_replica=p.gpus_per_replica, tp=p.tp, pp=p.pp, market=p.market, region=p.region,
                   replicas=p.replicas, expected_finish_s=p.expected_finish_s, expected_cost_usd=p.expected_cost_usd,
                   risk=p.risk, price_per_replica_hour=p.price_per_replica_hour,
                   instance_type=p.instance_type).model_dump(mode="json") for p in plans]
    return {"plans": out, "remaining_requests": left.n_requests if job.request_counts.total else 0,
            "time_left_s": time_left, "note": note, "error": error}


def _profile_text(args: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(args.items())) or "no extra engine arguments"
