"""The per-job progress and cost samples behind the dashboard's charts, taken by the controller.

The controller calls ``ProgressSampler.sample(record)`` once per job per tick; a sample is
written only when one is due: the job's status changed since the last sample, or the gap
has passed. The gap is ``dashboard.sample_every_s``, widened so that the span from start
to deadline fits in ``dashboard.series_max_points`` samples (a bounded list, whatever the
deadline). ``sample_gap_s``, ``due`` and ``sample_of`` are pure.
"""

from __future__ import annotations

import logging
import time

from orca.control.schemas import Job
from orca.errors import OrcaError
from orca.queue.jobs import JobRecord
from orca.queue.series import ProgressSeries
from orca.settings import DashboardSettings

log = logging.getLogger(__name__)


def sample_gap_s(start: float, deadline_at: float, settings: DashboardSettings) -> float:
    """Least time between two samples of a job that started at ``start`` and must end by ``deadline_at``."""
    return max(settings.sample_every_s, (deadline_at - start) / max(1, settings.series_max_points))


def due(last: dict | None, now: float, status: str, gap_s: float) -> bool:
    """Whether to sample now: never sampled, the status changed, or ``gap_s`` passed."""
    return last is None or last.get("status") != status or now - float(last.get("t", 0.0)) >= gap_s


def sample_of(job: Job, now: float) -> dict:
    """One point: progress (requests answered, committed or not, over all) and cost, as JSON-able numbers."""
    c = job.request_counts
    answered = c.completed + c.failed + job.progress.requests_uncommitted
    fraction = answered / c.total if c.total else job.progress.fraction
    return {
        "t": round(now, 3), "status": job.status.value, "fraction": round(min(1.0, max(0.0, fraction)), 6),
        "requests_done": c.completed + c.failed, "requests_uncommitted": job.progress.requests_uncommitted,
        "cost_usd": round(job.cost_usd, 6),
        "projected_cost_usd": None if job.projected_cost_usd is None else round(job.projected_cost_usd, 6),
        "eta_s": None if job.eta_s is None else round(job.eta_s, 1),
    }


class ProgressSampler:
    """Writes a job's samples through ``service`` (its registry's Redis); the controller owns one."""

    def __init__(self, service) -> None:
        self.svc = service
        self.settings = service.settings.dashboard
        self.series = ProgressSeries(service.registry.redis_url, service.settings)
        self._last: dict[str, dict] = {}  # job id -> the last sample this process saw (saves a read per tick)

    def close(self) -> None:
        self.series.close()

    def sample(self, record: JobRecord, now: float | None = None) -> None:
        """Append a sample of ``record``'s job if one is due (jobs with chunks only: before that there is nothing to plot)."""
        if not record.chunks_total:
            return
        now = time.time() if now is None else now
        try:
            gap = sample_gap_s(record.in_progress_at or record.created_at, record.deadline_at, self.settings)
            seen = self._last.get(record.id)
            if seen is not None and not due(seen, now, record.status.value, gap):
                return  # not due even by what this process last saw; Redis can only hold a newer sample
            last = self._last[record.id] = self.series.last(record.id) or {}
            if due(last or None, now, record.status.value, gap):
                point = sample_of(self.svc.to_job(record), now)
                self.series.append(record.id, point)
                self._last[record.id] = point
        except OrcaError as exc:  # a missed sample leaves a gap in a chart; the tick goes on
            log.warning("progress sample of %s failed: %s", record.id, exc)
