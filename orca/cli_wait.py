"""Following a job from the CLI (``orca submit --wait``): the plan notice, the wait, the final summary. No typer."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from orca.client import Client
    from orca.control.schemas import Job


def announce_plan() -> Callable[["Job"], None]:
    """An ``on_update`` hook that prints the job's plan once the planner has chosen it."""
    shown = False

    def on_update(job: "Job") -> None:
        nonlocal shown
        if not shown and job.plan is not None:
            from tqdm.auto import tqdm

            from orca.cli_format import plan_text

            shown = True
            tqdm.write(f"orca: plan: {plan_text(job.plan)}", file=sys.stderr)
            if job.quote is not None:
                from orca.cli_format import quote_text

                tqdm.write(f"orca: quote: {quote_text(job)}", file=sys.stderr)

    return on_update


def save_results(client: "Client", job: "Job", output: Path | None) -> Path | None:
    """Write a finished job's results to ``output`` if asked and it has any; returns the path written, else None."""
    if output is None or not job.output_available:
        return None
    with open(output, "wb") as f:
        client.download(job.id, f, "results")
    return output


def stopped_waiting_line(job_id: str) -> str:
    return f"orca: stopped waiting; {job_id} keeps running (`orca status {job_id}`, `orca cancel {job_id}`)"


def final_summary(job: "Job", output: Path | None) -> list[str]:
    """The lines printed when a waited-for job ends: counts, time, cost, problems and where the results are."""
    from orca.cli_format import cost_text, issue_lines
    from orca.durations import format_duration

    c = job.request_counts
    end = job.completed_at or job.failed_at or job.cancelled_at or job.expired_at or time.time()
    lines = [f"{job.id} {job.status.value}: {c.completed}/{c.total} requests succeeded, {c.failed} failed, "
             f"in {format_duration(end - job.created_at)}, cost {cost_text(job)}"]
    if job.message:
        lines.append(f"  {job.message}")
    lines += issue_lines(job.validation_errors, total=job.validation_error_count)
    if output is not None:
        lines.append(f"results: {output}")
    elif job.output_available:
        lines.append(f"results: orca results {job.id} -o output.jsonl")
    if job.output_available and c.failed:
        lines.append(f"errors:  orca errors {job.id} -o errors.jsonl")
    return lines
