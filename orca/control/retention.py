"""File expiry and retention: when files expire, and the controller's step that deletes expired ones.

A file's ``expires_at`` is set when it is made: an upload's ``expires_after`` (anchor ``created_at``,
seconds within ``retention.min_expires_after_s``..``max_expires_after_s``, OpenAI's 1 hour..30 days)
or ``retention.batch_file_s``; a batch's output and error files get the batch's
``output_expires_after`` or ``retention.output_file_s`` (0: never). The controller calls
``Retention.tick`` every tick; every ``retention.every_s`` it queues ``retention_step`` (RQ), which
deletes the expired files (record, stored object, and for a job's last result file the job's
stored data) through ``OrcaService.remove_file``, so an expired file is gone exactly as if its owner had deleted it;
a job that ended without chunks (so without result files) has its stored input copy deleted
``retention.output_file_s`` after it ended.
"""

from __future__ import annotations

import logging
import time

from orca.errors import InputValidationError, OrcaError
from orca.models import ValidationIssue
from orca.queue.jobs import JobRecord
from orca.settings import RetentionSettings
from orca.storage.layout import JobLayout

log = logging.getLogger("orca.retention")


def expires_after_seconds(policy: dict | None, param: str, settings: RetentionSettings) -> int | None:
    """The seconds of an OpenAI ``expires_after``/``output_expires_after`` object (None when absent); 400 if invalid."""
    if policy is None:
        return None

    def bad(message: str, where: str) -> InputValidationError:
        return InputValidationError(message, errors=[ValidationIssue(code="invalid_expires_after", message=message, param=where)])

    if policy.get("anchor") != "created_at":
        raise bad(f"{param}.anchor must be 'created_at', not {policy.get('anchor')!r}", f"{param}.anchor")
    seconds = policy.get("seconds")
    if isinstance(seconds, str) and seconds.isdigit():  # multipart form fields arrive as text
        seconds = int(seconds)
    lo, hi = settings.min_expires_after_s, settings.max_expires_after_s
    if type(seconds) is not int or not lo <= seconds <= hi:
        raise bad(f"{param}.seconds must be an integer between {lo} and {hi}, not {seconds!r}", f"{param}.seconds")
    return seconds


def upload_expires_at(created_at: float, seconds: int | None, purpose: str, settings: RetentionSettings) -> float | None:
    """``expires_at`` of a file uploaded with ``expires_after`` seconds (None: the default for its purpose)."""
    if seconds is None:
        seconds = settings.batch_file_s if purpose == "batch" else 0
    return created_at + seconds if seconds else None


def output_expires_at(record: JobRecord, created_at: float, settings: RetentionSettings) -> float | None:
    """``expires_at`` of a job's output or error file created at ``created_at``."""
    seconds = record.output_expires_after_s if record.output_expires_after_s is not None else settings.output_file_s
    return created_at + seconds if seconds else None


def delete_expired(service, now: float | None = None) -> list[str]:  # service: orca.control.service.OrcaService
    """Delete every file expired by ``now`` (at most ``retention.batch_size``); returns their ids."""
    now = time.time() if now is None else now
    registry = service.registry
    deleted = []
    for file_id in registry.expired_file_ids(now, service.settings.retention.batch_size):
        record = registry.get_file(file_id)
        if record is None:
            registry.forget_expiry(file_id)
            continue
        service.remove_file(record)
        deleted.append(file_id)
        if record.job_id is not None:
            registry.add_event(record.job_id, "file_expired", f"{record.filename} ({file_id}) expired and was deleted")
    return deleted


def _ended_at(record: JobRecord) -> float | None:
    return record.completed_at or record.failed_at or record.expired_at or record.cancelled_at


def purge_unassembled(service, seen: set[str], now: float | None = None) -> list[str]:
    """Delete the stored data (the input copy) of jobs that ended before they had chunks (failed validation,
    cancelled or expired while validating), ``retention.output_file_s`` after they ended: such a job has
    no result files to expire with. ``seen``: job ids already settled here (skipped). Returns the purged ids."""
    now = time.time() if now is None else now
    keep_s = service.settings.retention.output_file_s
    purged = []
    for job_id, status in service.registry.statuses().items():
        if job_id in seen or not status.terminal:
            continue
        record = service.registry.find(job_id)
        ended = _ended_at(record) if record is not None else None
        if record is None or record.chunks_total or record.data_purged or not keep_s or ended is None:
            seen.add(job_id)  # results expire with their files, or kept for good
            continue
        if ended + keep_s <= now:
            service.store.delete_prefix(JobLayout(job_id).root)
            service.registry.update(job_id, data_purged=True)
            service.registry.add_event(job_id, "data_expired", "the job's stored input copy expired and was deleted")
            seen.add(job_id)
            purged.append(job_id)
    return purged


def retention_step(settings_json: str) -> None:
    """The background step (RQ) that deletes expired files: deleting a job's stored data can take long on S3,
    so it runs off the controller thread. Idempotent: a repeated step finds nothing left to delete."""
    from orca.control.service import OrcaService
    from orca.settings import Settings

    service = OrcaService.from_settings(Settings.model_validate_json(settings_json))
    try:
        deleted = delete_expired(service)
        if deleted:
            log.info("retention: deleted %d expired file(s)", len(deleted))
    finally:
        service.close()


class Retention:
    """The controller's hook: every ``retention.every_s`` it asks for the retention step (a background step,
    not queued twice) and purges the data of jobs that ended without chunks (a few small objects each)."""

    def __init__(self, service) -> None:
        self.service = service
        self._last = float("-inf")
        self._settled: set[str] = set()  # jobs purge_unassembled need not look at again

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last < self.service.settings.retention.every_s:
            return
        self._last = now
        try:
            self.service.background.submit("retention", "orca.control.retention.retention_step",
                                           self.service._settings_json())
            purge_unassembled(self.service, self._settled)
        except OrcaError as exc:  # Redis or the store briefly away: the next period retries
            log.warning("retention step failed: %s", exc)
