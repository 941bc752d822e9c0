"""OpenAI-compatible ``/v1/files`` and ``/v1/batches``, so OpenAI Batch client code runs on orca by
changing its base URL. Shapes follow OpenAI's File and Batch objects:

    POST   /v1/files                  multipart file=<jsonl>, purpose=batch, expires_after[anchor|seconds] -> File
    GET    /v1/files[?purpose&limit&after&order]   limit 1..10000 (default 10000) -> list of File
    GET    /v1/files/{id}                                                        -> File
    GET    /v1/files/{id}/content     the bytes (a batch's output/error files: its output.jsonl/errors.jsonl)
    DELETE /v1/files/{id}                                                        -> {id, object: "file", deleted}
    POST   /v1/batches                {input_file_id, endpoint, completion_window, metadata, output_expires_after} -> Batch
    GET    /v1/batches[?after&limit]  newest first, limit 1..100 (default 20)    -> list of Batch (has_more, first_id, last_id)
    GET    /v1/batches/{id}                                                      -> Batch
    POST   /v1/batches/{id}/cancel                                               -> Batch

A batch is an orca job: ``completion_window`` (OpenAI's "24h", or any orca duration such as
"2h") is the job's deadline; a job submitted through the CLI or ``/api`` shows its own deadline
there. Timestamps are integer unix seconds. orca's ``planning`` state (validated, choosing GPUs)
is reported as OpenAI's ``validating``: work has not started. ``usage`` sums the engine-reported
tokens of the committed requests. An ``after`` cursor that names no object of the caller is a 400
(a page walk never silently restarts). Deleting a batch's input file leaves the batch running on
its own copy; deleting (or the expiry of) its output or error file deletes the stored results.
Errors use the app's ``{"error": {...}}`` body, a superset of OpenAI's.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from orca.control.auth import get_service, require_user
from orca.control.retention import expires_after_seconds
from orca.control.schemas import Job, JobCreate
from orca.control.service import OrcaService
from orca.durations import parse_duration
from orca.errors import InputValidationError
from orca.models import ENDPOINTS, JobStatus, ValidationIssue
from orca.queue.jobs import FileRecord

router = APIRouter(prefix="/v1", tags=["openai"])

User = Annotated[str, Depends(require_user)]
Service = Annotated[OrcaService, Depends(get_service)]

#: orca status -> OpenAI batch status (OpenAI has no planning state).
OPENAI_STATUS: dict[JobStatus, str] = {s: s.value for s in JobStatus} | {JobStatus.PLANNING: "validating"}


class ExpiresAfter(BaseModel):
    anchor: str
    seconds: int


class BatchCreate(BaseModel):
    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = Field(None, description="Up to 16 key-value pairs.")
    output_expires_after: ExpiresAfter | None = Field(None, description="Expiry of the output and error files, from their creation.")


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def file_object(record: FileRecord) -> dict[str, Any]:
    """OpenAI's File object."""
    return {
        "id": record.id, "object": "file", "bytes": record.bytes, "created_at": _ts(record.created_at),
        "filename": record.filename, "purpose": record.purpose, "status": "processed",
        "status_details": None, "expires_at": _ts(record.expires_at),
    }


def usage_object(job: Job) -> dict[str, Any]:
    """OpenAI's Batch ``usage``."""
    u = job.usage
    return {"input_tokens": u.input_tokens, "input_tokens_details": {"cached_tokens": u.cached_tokens},
            "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.total_tokens}


def batch_object(job: Job, endpoint: str | None, completion_window: str | None) -> dict[str, Any]:
    """OpenAI's Batch object for an orca job (``endpoint``/``completion_window`` as requested, if known)."""
    issues = [v.model_dump() for v in job.validation_errors]
    if job.status is JobStatus.FAILED and not issues and job.message:
        issues = [{"code": "failed", "line": None, "message": job.message, "param": None}]
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.endpoint or endpoint,
        "model": job.model,
        "errors": {"object": "list", "data": issues} if issues else None,
        "input_file_id": job.input_file_id,
        "completion_window": completion_window or "24h",
        "status": OPENAI_STATUS[job.status],
        "output_file_id": job.output_file_id,
        "error_file_id": job.error_file_id,
        "created_at": _ts(job.created_at),
        "in_progress_at": _ts(job.in_progress_at),
        "expires_at": _ts(job.deadline_at),
        "finalizing_at": _ts(job.finalizing_at),
        "completed_at": _ts(job.completed_at),
        "failed_at": _ts(job.failed_at),
        "expired_at": _ts(job.expired_at),
        "cancelling_at": _ts(job.cancelling_at),
        "cancelled_at": _ts(job.cancelled_at),
        "request_counts": job.request_counts.model_dump(),
        "usage": usage_object(job),
        "metadata": job.metadata or None,
    }


def _batch(svc: OrcaService, job: Job) -> dict[str, Any]:
    record = svc.registry.find(job.id)
    extra = (record.model_extra or {}) if record is not None else {}
    window = extra.get("completion_window") or (record.spec.get("deadline") if record is not None else None)
    return batch_object(job, extra.get("openai_endpoint"), window)


def _page(items: list[dict], limit: int) -> dict[str, Any]:
    """OpenAI list object from ``limit + 1`` fetched items."""
    data = items[:limit]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(items) > limit}


def _invalid(message: str, param: str, code: str = "invalid_request") -> InputValidationError:
    return InputValidationError(message, errors=[ValidationIssue(code=code, message=message, param=param)])


def _check_limit(limit: int, most: int) -> None:
    if not 1 <= limit <= most:
        raise _invalid(f"limit must be between 1 and {most}, not {limit}", "limit", "invalid_limit")


def _after(ids: list[str], after: str | None) -> int:
    """Index of the first object past the ``after`` cursor in ``ids`` (400 if the cursor is none of them)."""
    if after is None:
        return 0
    if after not in ids:
        raise _invalid(f"after: no object {after!r} in this list (deleted or expired?)", "after", "invalid_cursor")
    return ids.index(after) + 1


def _first_url(svc: OrcaService, user: str, file_id: str) -> str | None:
    """The ``url`` of the file's first request, or None when its first line is not a JSON request."""
    with svc.open_file(user, file_id) as f:
        line = f.readline()
    try:
        url = json.loads(line).get("url")
    except (ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


# -- files -------------------------------------------------------------------
@router.post("/files")
def create_file(user: User, svc: Service, file: Annotated[UploadFile, File()],
                purpose: Annotated[str, Form()] = "batch",
                expires_anchor: Annotated[str | None, Form(alias="expires_after[anchor]")] = None,
                expires_seconds: Annotated[str | None, Form(alias="expires_after[seconds]")] = None) -> dict:
    if purpose != "batch":
        raise _invalid(f"purpose must be 'batch' (orca stores batch input files only), not {purpose!r}", "purpose", "invalid_purpose")
    policy = None if expires_anchor is None and expires_seconds is None else {"anchor": expires_anchor, "seconds": expires_seconds}
    seconds = expires_after_seconds(policy, "expires_after", svc.settings.retention)
    return file_object(svc.create_file(user, file.file, file.filename or "input.jsonl", purpose, expires_after_s=seconds))


@router.get("/files")
def list_files(user: User, svc: Service, purpose: str | None = None, limit: int | None = None,
               after: str | None = None, order: Literal["asc", "desc"] = "desc") -> dict:
    most = svc.settings.control.openai_max_file_page
    limit = most if limit is None else limit
    _check_limit(limit, most)
    records = svc.list_files(user, purpose)  # newest first
    if order == "asc":
        records.reverse()
    records = records[_after([r.id for r in records], after):]
    return _page([file_object(r) for r in records[: limit + 1]], limit)


@router.get("/files/{file_id}")
def retrieve_file(file_id: str, user: User, svc: Service) -> dict:
    return file_object(svc.get_file(user, file_id))


def content_disposition(filename: str) -> str:
    """``attachment`` with the name as RFC 6266: an ASCII fallback (quotes, backslashes and controls
    replaced) plus the exact UTF-8 name percent-encoded (RFC 5987 ``filename*``)."""
    from urllib.parse import quote

    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename) or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get("/files/{file_id}/content", response_class=StreamingResponse,
            responses={200: {"description": "The file's bytes", "content": {"application/octet-stream": {"schema": {"type": "string"}}}}})
def file_content(file_id: str, user: User, svc: Service) -> StreamingResponse:
    record = svc.get_file(user, file_id)
    stack = ExitStack()
    f = stack.enter_context(svc.open_file(user, file_id))
    block = svc.settings.store.read_buffer_kb * 1024

    def stream():
        with stack:
            while chunk := f.read(block):
                yield chunk

    return StreamingResponse(stream(), media_type="application/octet-stream",
                             headers={"content-disposition": content_disposition(record.filename)})


@router.delete("/files/{file_id}")
def delete_file(file_id: str, user: User, svc: Service) -> dict:
    record = svc.delete_file(user, file_id)
    return {"id": record.id, "object": "file", "deleted": True}


# -- batches -----------------------------------------------------------------
@router.post("/batches")
def create_batch(body: BatchCreate, user: User, svc: Service) -> dict:
    if body.endpoint not in ENDPOINTS:
        raise _invalid(f"endpoint must be one of {', '.join(ENDPOINTS)}, not {body.endpoint!r}", "endpoint", "invalid_endpoint")
    try:
        parse_duration(body.completion_window)
    except ValueError as exc:
        raise _invalid(str(exc), "completion_window", "invalid_completion_window") from None
    record = svc.get_file(user, body.input_file_id)
    if record.purpose != "batch":
        raise _invalid(f"file {record.id} has purpose {record.purpose!r}; a batch needs a file uploaded with purpose 'batch'",
                       "input_file_id", "invalid_input_file")
    url = _first_url(svc, user, record.id)
    if url is not None and url != body.endpoint:
        raise _invalid(f"the input file's requests go to {url}, but the batch endpoint is {body.endpoint}",
                       "endpoint", "mismatched_endpoint")
    output_s = expires_after_seconds(body.output_expires_after.model_dump() if body.output_expires_after else None,
                                     "output_expires_after", svc.settings.retention)
    job = svc.create_job_from_file(user, record.id, JobCreate(deadline=body.completion_window, metadata=body.metadata or {}))
    svc.registry.update(job.id, openai_endpoint=body.endpoint, completion_window=body.completion_window,
                        output_expires_after_s=output_s)
    return batch_object(job, body.endpoint, body.completion_window)


@router.get("/batches")
def list_batches(user: User, svc: Service, after: str | None = None, limit: int = 20) -> dict:
    _check_limit(limit, svc.settings.control.openai_max_page)
    if after is not None:
        _after(svc.registry.user_job_ids(user), after)  # an unknown cursor is a 400
    jobs = svc.list_jobs(user, limit=limit + 1, after=after)
    return _page([_batch(svc, j) for j in jobs], limit)


@router.get("/batches/{batch_id}")
def retrieve_batch(batch_id: str, user: User, svc: Service) -> dict:
    return _batch(svc, svc.get_job(user, batch_id))


@router.post("/batches/{batch_id}/cancel")
def cancel_batch(batch_id: str, user: User, svc: Service) -> dict:
    return _batch(svc, svc.cancel_job(user, batch_id))
