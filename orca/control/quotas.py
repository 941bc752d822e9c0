"""Per-user quotas: how much of the fleet one user of a shared control plane may hold.

Three limits, each a setting (``QuotaSettings``, 0 = unlimited) that a user's record may
override (``orca users quota NAME ...``): unfinished jobs, requests queued across them, and
dollars spent over the last 24 hours (from the cost ledger of the user's replicas: each
replica's cost is spread evenly over the time it was billed, and only the part inside the
window counts, so a week-long job weighs one day of its spend).
``violation`` and ``spent_in_window`` are pure; ``usage_of`` reads the registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from orca.fleet import Replica
from orca.queue.jobs import JobRecord, JobRegistry
from orca.settings import QuotaSettings

DAY_S = 86400.0

#: quota field -> (what it counts, the CLI option that raises it).
DESCRIPTIONS = {
    "max_active_jobs": ("unfinished jobs", "--max-active-jobs"),
    "max_queued_requests": ("queued requests", "--max-queued-requests"),
    "max_usd_per_day": ("dollars spent in the last 24 hours", "--max-usd-per-day"),
}


@dataclass(frozen=True)
class Usage:
    active_jobs: int = 0
    queued_requests: int = 0
    usd_last_day: float = 0.0


@dataclass(frozen=True)
class Limits:
    max_active_jobs: float = 0
    max_queued_requests: float = 0
    max_usd_per_day: float = 0.0


def limits_for(settings: QuotaSettings, overrides: dict[str, float] | None = None) -> Limits:
    """The settings' limits with a user's overrides applied."""
    values = settings.model_dump() | dict(overrides or {})
    return Limits(**{k: float(values[k]) for k in DESCRIPTIONS})


def violation(user: str, usage: Usage, limits: Limits, new_jobs: int = 1, new_requests: int | None = None) -> str | None:
    """Why ``user`` may not start ``new_jobs`` more jobs with ``new_requests`` requests, or None if it may.

    ``new_requests`` None: not counted yet (before the upload is read), at least one.
    The message names the limit, the numbers, and how to raise it.
    """
    queued = (f"{usage.queued_requests} queued request(s)" if new_requests is None
              else f"{usage.queued_requests} queued request(s) plus {new_requests} in this file")
    checks = [
        ("max_active_jobs", usage.active_jobs + new_jobs, f"{usage.active_jobs} unfinished job(s)"),
        ("max_queued_requests", usage.queued_requests + (1 if new_requests is None else new_requests), queued),
    ]
    for field, wanted, have in checks:
        limit = getattr(limits, field)
        if limit > 0 and wanted > limit:
            return _message(user, field, have, limit)
    if limits.max_usd_per_day > 0 and usage.usd_last_day >= limits.max_usd_per_day:
        return _message(user, "max_usd_per_day", f"spent ${usage.usd_last_day:.2f}", limits.max_usd_per_day)
    return None


def _message(user: str, field: str, have: str, limit: float) -> str:
    what, option = DESCRIPTIONS[field]
    shown = f"${limit:.2f}" if field == "max_usd_per_day" else f"{limit:g}"
    return (f"quota exceeded: {user} has {have}; {field} ({what}) is {shown}. Wait for jobs to finish or cancel some; "
            f"an admin raises it with `orca users quota {user} {option} N` (default for everyone: ORCA_QUOTA__{field.upper()})")


def _ended_at(record: JobRecord) -> float | None:
    return record.completed_at or record.failed_at or record.cancelled_at or record.expired_at


def queued_requests(record: JobRecord) -> int:
    """Requests a job holds in the queue: its count once validated, its input's lines before."""
    return record.n_requests or int((record.model_extra or {}).get("input_lines", 0) or 0)


def spent_in_window(replicas: Iterable[Replica], since: float, now: float) -> float:
    """Dollars of ``replicas`` billed between ``since`` and ``now``: per-second billing at one price, so
    each replica's cost accrued evenly from its start (or its launch request) to its end (or now)."""
    total = 0.0
    for r in replicas:
        start = r.started_at or r.created_at
        end = r.ended_at if r.ended_at is not None else now
        if r.cost_usd <= 0 or end <= since:
            continue
        billed = end - start
        total += r.cost_usd if billed <= 0 else r.cost_usd * (end - max(start, since)) / billed
    return total


def usage_of(registry: JobRegistry, user: str, now: float | None = None) -> Usage:
    """What ``user``'s jobs hold now and spent over the last day."""
    now = time.time() if now is None else now
    active = queued = 0
    usd = 0.0
    for job_id in registry.user_job_ids(user):
        record = registry.find(job_id)
        if record is None:
            continue
        ended = _ended_at(record)
        if not record.status.terminal:
            active += 1
            queued += queued_requests(record)
        if not record.status.terminal or (ended is not None and ended >= now - DAY_S):
            usd += spent_in_window(registry.replicas(job_id), now - DAY_S, now)
    return Usage(active_jobs=active, queued_requests=queued, usd_last_day=usd)
