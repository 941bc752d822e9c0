"""The job lifecycle (OpenAI Batch states) as a pure transition table, plus pure progress math.

    validating -> planning -> in_progress -> finalizing -> completed
         |            |            |              |
         +-> failed   +-> failed   +-> expired    +-> failed
                                   +-> failed (workers kept crashing)
    validating, planning, in_progress -> cancelling -> cancelled
    validating, planning -> expired (deadline passed before any work started)

Terminal states (failed, completed, expired, cancelled) have no way out.
"""

from __future__ import annotations

from orca.errors import JobStateError
from orca.models import JobStatus

S = JobStatus

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.VALIDATING: frozenset({S.PLANNING, S.FAILED, S.CANCELLING, S.EXPIRED}),
    S.PLANNING: frozenset({S.IN_PROGRESS, S.FAILED, S.CANCELLING, S.EXPIRED}),
    S.IN_PROGRESS: frozenset({S.FINALIZING, S.FAILED, S.CANCELLING, S.EXPIRED}),
    S.FINALIZING: frozenset({S.COMPLETED, S.FAILED}),
    S.CANCELLING: frozenset({S.CANCELLED, S.FAILED}),
    S.FAILED: frozenset(),
    S.COMPLETED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: The job field stamped with the time of entering each state (states without one stamp nothing).
TIMESTAMP_FIELD: dict[JobStatus, str] = {
    S.IN_PROGRESS: "in_progress_at",
    S.FINALIZING: "finalizing_at",
    S.COMPLETED: "completed_at",
    S.FAILED: "failed_at",
    S.CANCELLING: "cancelling_at",
    S.CANCELLED: "cancelled_at",
    S.EXPIRED: "expired_at",
}

#: States in which the job's workers should be running.
RUNNING_STATES = frozenset({S.IN_PROGRESS})
#: States a user may cancel from.
CANCELLABLE = frozenset(s for s, nxt in TRANSITIONS.items() if S.CANCELLING in nxt)


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise JobStateError unless ``current -> target`` is in the table."""
    if not can_transition(current, target):
        raise JobStateError(f"a {current.value} job cannot become {target.value}", status=current.value)


def completion_rate(done_now: int, now_s: float, done_then: int | None, then_s: float | None) -> float | None:
    """Chunks per second measured since the sample (``done_then`` at ``then_s``); None before any evidence."""
    if done_then is None or then_s is None or now_s <= then_s or done_now <= done_then:
        return None
    return (done_now - done_then) / (now_s - then_s)


def eta_seconds(remaining: float, rate_per_s: float | None) -> float | None:
    """Seconds until the remaining chunks (or requests) are done at the measured rate (0 when nothing remains)."""
    if remaining <= 0:
        return 0.0
    if not rate_per_s:
        return None
    return remaining / rate_per_s


def live_progress(n_requests: int, committed: int, reports: list[dict[str, str]]) -> tuple[int, float]:
    """(requests answered in uncommitted chunks, requests/s) from the live workers' latest metrics reports.

    The uncommitted count is capped so that it and the ``committed`` requests never exceed the job.
    """
    uncommitted = sum(int(r.get("requests_uncommitted") or 0) for r in reports)
    rate = sum(float(r.get("requests_per_s") or 0.0) for r in reports)
    return max(0, min(uncommitted, n_requests - committed)), rate


def projected_cost(cost_so_far: float, eta_s: float | None, live_price_per_hour: float) -> float | None:
    """Cost so far plus the live replicas' hourly price over the ETA; None without an ETA."""
    if eta_s is None:
        return None
    return cost_so_far + live_price_per_hour * eta_s / 3600.0


def estimate_request_counts(n_requests: int, chunks_total: int, chunks_done: int, chunks_dead: int) -> tuple[int, int]:
    """(completed, failed) while a job runs: requests in done and dead chunks, pro rata by chunk count.

    Exact counts replace these once the assembler has written the output files.
    """
    if chunks_total <= 0:
        return 0, 0
    completed = round(n_requests * chunks_done / chunks_total)
    failed = min(n_requests - completed, round(n_requests * chunks_dead / chunks_total))
    return completed, failed
