"""``orca submit``'s checks before anything is uploaded: --metadata parsing, the local-workers plan check
and the deadline quote. No typer: problems are raised as ValueError or OrcaError for the CLI to report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orca.cli_plan import plans_and_quote

if TYPE_CHECKING:
    from orca.planner.types import JobStats
    from orca.settings import ControlSettings, Settings


def parse_metadata(items: list[str], control: "ControlSettings") -> dict[str, str]:
    """``--metadata KEY=VALUE`` options as a dict; ValueError for a malformed item or one past OpenAI's limits."""
    from orca.metadata import metadata_issues

    meta = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        meta[key] = value
    if issues := metadata_issues(meta, control):  # OpenAI's limits, before anything is uploaded
        raise ValueError(issues[0].message)
    return meta


def local_quote(stats: "JobStats", deadline_s: float, model: str | None, gpu: str | None,
                market: list[str] | None, settings: "Settings") -> str:
    """The deadline quote for the plan a cloud launcher would get, computed here before uploading."""
    from orca.errors import PlanInfeasibleError
    from orca.sim.quote import quote_line

    try:
        _, q = plans_and_quote(stats, deadline_s, model, gpu, market, settings)
    except PlanInfeasibleError as exc:
        return f"no quote: {exc}"
    return f"quote: {quote_line(q)}" if q is not None else "no quote for a local plan"


def check_local_plan(stats: "JobStats", deadline_s: float, model: str | None, launcher: str | None, gpu: str | None,
                     market: list[str] | None, settings: "Settings") -> None:
    """For the embedded stack with local workers: raise now (the server's field checks, then PlanInfeasibleError)
    if this machine's workers cannot run the job, before uploading."""
    from orca.control.schemas import JobCreate
    from orca.control.validation import check_job_create
    from orca.planner.render import plan_for_stats

    check_job_create(JobCreate(launcher=launcher, gpu=gpu, markets=market), settings)  # the server's field checks
    plan_for_stats(stats, deadline_s, model=model, markets=("local",), gpus=(gpu,) if gpu else (),
                   max_replicas=settings.launcher.local_max_workers, settings=settings)
