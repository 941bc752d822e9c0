"""What the dashboard shows about a job, computed from the API's ``Job`` view: pure functions, JSON-able dicts.

``track`` answers "will it make its deadline?" in one word; ``job_row`` is a line of the
jobs page; ``plan_line`` is the plan's uniform-progress line on the job page's chart.
"""

from __future__ import annotations

from orca.control.schemas import Job
from orca.models import JobStatus

#: Status filters of the jobs page: name -> statuses it shows.
STATUS_FILTERS: dict[str, tuple[str, ...]] = {
    "active": ("validating", "planning", "in_progress", "finalizing", "cancelling"),
    **{s.value: (s.value,) for s in JobStatus},
}


def track(job: Job, now: float, at_risk_fraction: float) -> dict:
    """ETA against deadline: ``state`` (on_track | at_risk | late | starting | measuring | done | ended),
    a short ``label`` and ``finish_at`` (unix s, the expected or actual end, or None)."""
    s = job.status
    if s is JobStatus.COMPLETED:
        end = job.completed_at or now
        on_time = end <= job.deadline_at
        return {"state": "done" if on_time else "late", "label": "done on time" if on_time else "done late", "finish_at": end}
    if s is JobStatus.EXPIRED:
        return {"state": "late", "label": "missed deadline", "finish_at": job.expired_at}
    if s.terminal or s is JobStatus.CANCELLING:
        return {"state": "ended", "label": s.value, "finish_at": job.failed_at or job.cancelled_at or job.cancelling_at}
    time_left = job.deadline_at - now
    if time_left <= 0:
        return {"state": "late", "label": "past deadline", "finish_at": None}
    if s in (JobStatus.VALIDATING, JobStatus.PLANNING):
        return {"state": "starting", "label": "not started", "finish_at": None}
    eta = job.eta_s
    if eta is None:
        if s is JobStatus.FINALIZING:
            return {"state": "on_track", "label": "on track", "finish_at": None}
        return {"state": "measuring", "label": "measuring", "finish_at": None}
    finish = now + eta
    if eta > time_left:
        return {"state": "late", "label": "late", "finish_at": finish}
    if eta > at_risk_fraction * time_left:
        return {"state": "at_risk", "label": "at risk", "finish_at": finish}
    return {"state": "on_track", "label": "on track", "finish_at": finish}


def placement(job: Job) -> dict:
    """GPU and market the job runs on: its active pools (newest last), else its plan."""
    active = [p for p in job.pools if p.state == "active"]
    if active:
        return {"gpu": " + ".join(dict.fromkeys(p.gpu for p in active)),
                "market": " + ".join(dict.fromkeys(p.market for p in active))}
    if job.plan is not None:
        return {"gpu": job.plan.gpu, "market": job.plan.market}
    return {"gpu": None, "market": None}


def _stopped_early(job: Job) -> bool:
    """Cancelled, expired or failed: the unfinished requests were counted as failed lines, not answered."""
    return job.status in (JobStatus.CANCELLED, JobStatus.EXPIRED, JobStatus.FAILED)


def answered(job: Job) -> int:
    """Requests answered so far: committed (completed or failed) plus those in running chunks; for a job
    stopped early, only those that completed."""
    c = job.request_counts
    if _stopped_early(job):
        return c.completed
    return c.completed + c.failed + (0 if job.status.terminal else job.progress.requests_uncommitted)


def fraction(job: Job) -> float:
    """Share of the job done, by requests when known (running chunks count), else by chunks."""
    total = job.request_counts.total
    if job.status is JobStatus.COMPLETED:
        return 1.0
    value = answered(job) / total if total else job.progress.fraction
    return min(1.0, max(0.0, value))


def unanswered_note(job: Job) -> str | None:
    """What the requests count leaves out: failed ones, or those a stopped job never finished."""
    failed = job.request_counts.failed
    if not failed:
        return None
    return f"{failed:,} failed or unfinished" if _stopped_early(job) else f"{failed:,} failed"


def job_row(job: Job, now: float, at_risk_fraction: float) -> dict:
    """One line of the jobs page."""
    c = job.request_counts
    return {
        "id": job.id, "status": job.status.value, "model": job.model, "fraction": fraction(job),
        "requests_done": answered(job), "requests_total": c.total, "requests_note": unanswered_note(job),
        "eta_s": job.eta_s, "deadline_at": job.deadline_at, "track": track(job, now, at_risk_fraction),
        "cost_usd": job.cost_usd, "projected_cost_usd": job.projected_cost_usd,
        **placement(job), "created_at": job.created_at,
    }


def plan_line(job: Job) -> dict | None:
    """The plan's uniform progress: 0 at the start of work, 1 at the planned finish (None before planning)."""
    if job.plan is None:
        return None
    start = job.in_progress_at or job.created_at
    return {"t0": start, "t1": start + job.plan.expected_finish_s, "cost_usd": job.plan.expected_cost_usd}


def filter_rows(rows: list[dict], status: str | None) -> list[dict]:
    """The rows whose status the filter ``status`` (a key of STATUS_FILTERS, or None for all) shows."""
    if not status:
        return rows
    wanted = STATUS_FILTERS.get(status)
    if wanted is None:
        return []
    return [r for r in rows if r["status"] in wanted]
