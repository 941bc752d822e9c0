"""The one way a job's status changes: checked, stamped and logged together.

``move`` checks the step against the lifecycle table (``orca.control.lifecycle``), sets the
state's timestamp field, any other fields, and appends the job event, all in one Redis
transaction (``JobRegistry.transition``): a job never changes status without its event, and a
racing change (a user's cancel during a tick) retries against the new status or is refused.
"""

from __future__ import annotations

from typing import Any

from orca.control import lifecycle
from orca.models import JobStatus
from orca.queue.jobs import JobRecord


def move(registry: Any, job_id: str, target: JobStatus, event: str = "", *, message: str | None = None,
         kind: str | None = None, now: float | None = None, **fields: Any) -> JobRecord:
    """Move ``job_id`` to ``target`` (JobStateError if the lifecycle forbids it); returns the new record.

    ``event``: the log line (default "job is <status>"), logged as ``kind`` (default the status).
    ``message``: the job's one-line "why" shown to the user (failed, expired, cancelled); ``fields``:
    other attributes set in the same transaction. ``now``: the time stamped (default: the registry's clock).
    """
    if message is not None:
        fields["message"] = message
    return registry.transition(job_id, target, lifecycle.can_transition, stamp=lifecycle.TIMESTAMP_FIELD.get(target), now=now,
                               event=(kind or target.value, event or message or f"job is {target.value}"), **fields)
