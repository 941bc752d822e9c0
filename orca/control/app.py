"""The control plane's FastAPI app: native ``/api`` routes, ``/healthz``, Prometheus ``/metrics``,
and the OpenAI-compatible router (``orca.control.openai_api``).

Routes and bodies are the contract in ``orca/control/schemas.py``. Errors are
``{"error": {"code", "message", "type", "param", "errors"}}``; an unexpected failure is a
500 whose body says only that, never a traceback.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Annotated, BinaryIO

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from orca.control import dashboard, health
from orca.control.auth import Principal, get_service, require_principal, require_user
from orca.control.dashboard.session import cookie_credential
from orca.control.gate import AuthGate, bearer
from orca.control.schemas import Job, JobCreate, JobList, PlanList, PlanRequest, SwapRequest
from orca.control.service import OrcaService
from orca.control.users_api import router as users_router
from orca.errors import (
    ApiError, AuthError, ConfigError, InputValidationError, JobNotFoundError, JobStateError, OrcaError,
    PayloadTooLargeError, PermissionDeniedError, PlanInfeasibleError, QuotaExceededError, QueueUnavailableError,
    StoreUnavailableError,
)
from orca.launchers.base import ReplicaState
from orca.models import JobStatus

log = logging.getLogger(__name__)

User = Annotated[str, Depends(require_user)]
Service = Annotated[OrcaService, Depends(get_service)]

_STATUS_OF: list[tuple[type[OrcaError], int, str]] = [
    (PermissionDeniedError, 403, "forbidden"),
    (AuthError, 401, "unauthorized"),
    (PayloadTooLargeError, 413, "too_large"),
    (QuotaExceededError, 429, "quota_exceeded"),
    (JobNotFoundError, 404, "not_found"),
    (JobStateError, 409, "conflict"),
    (InputValidationError, 400, "invalid_request"),
    (PlanInfeasibleError, 400, "plan_infeasible"),
    (ConfigError, 400, "invalid_request"),
    (ApiError, 400, "invalid_request"),
]


class ErrorDetail(BaseModel):
    code: str
    message: str
    type: str
    param: str | None = None
    errors: list = Field(default_factory=list)
    error_count: int | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


#: Error answers every route may give (documented in the OpenAPI schema, so clients and the fuzz test know them).
ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorBody, "description": description} for status, description in (
        (400, "Invalid request"), (401, "Missing or unknown token"), (403, "Needs an admin token"),
        (404, "No such object (or not yours)"), (409, "Conflict with the object's state"),
        (413, "Request body over the upload limit"), (429, "Per-user quota exceeded"), (500, "Internal error"),
    )
}


def _body_of(media_type: str, description: str) -> dict:
    """OpenAPI ``responses`` of a route whose 200 body is not JSON."""
    return {200: {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}}


def error_body(code: str, message: str, errors: list | None = None, param: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "type": "invalid_request_error" if code != "server_error" else "server_error",
                      "param": param, "errors": errors or []}}


def _orca_error_response(exc: OrcaError) -> JSONResponse:
    for cls, status, code in _STATUS_OF:
        if isinstance(exc, cls):
            # The message only: context may hold ids of other users' objects.
            errors = [e.model_dump() if hasattr(e, "model_dump") else e for e in getattr(exc, "errors", [])]
            body = error_body(code, exc.message, errors)
            if isinstance(exc, InputValidationError):
                body["error"]["error_count"] = int(exc.context.get("error_count", len(errors)))
            return JSONResponse(body, status_code=status)
    log.exception("control plane error", exc_info=exc)
    return JSONResponse(error_body("server_error", "internal error"), status_code=500)


class JobsCollector:
    """Prometheus collector reading Redis at scrape time, so values survive server restarts."""

    def __init__(self, service: OrcaService) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        registry = self.service.registry
        statuses = registry.statuses()
        jobs = GaugeMetricFamily("orca_jobs", "Jobs by status.", labels=["status"])
        by_status = {s.value: 0 for s in JobStatus}
        for status in statuses.values():
            by_status[status.value] += 1
        for status, n in by_status.items():
            jobs.add_metric([status], n)
        chunks_done = 0
        chunks_total = 0
        requests_done = 0
        replicas = {s.value: 0 for s in ReplicaState}
        for job_id in statuses:
            record = registry.find(job_id)
            if record is None or not record.chunks_total:
                continue
            counts = self.service.queue(job_id).counts()
            chunks_done += counts.done
            chunks_total += counts.total
            if record.final_counts is not None:
                requests_done += int(record.final_counts.get("completed", 0))
            else:
                requests_done += round(record.n_requests * counts.done / counts.total) if counts.total else 0
            for r in registry.replicas(job_id):
                replicas[r.state.value] += 1
        yield jobs
        g = GaugeMetricFamily("orca_chunks_done", "Chunks completed, all jobs.")
        g.add_metric([], chunks_done)
        yield g
        g = GaugeMetricFamily("orca_chunks", "Chunks, all jobs.")
        g.add_metric([], chunks_total)
        yield g
        g = GaugeMetricFamily("orca_requests_completed", "Requests completed, all jobs (exact once a job is assembled).")
        g.add_metric([], requests_done)
        yield g
        g = GaugeMetricFamily("orca_replicas", "Worker replicas by state, all jobs.", labels=["state"])
        for state, n in replicas.items():
            g.add_metric([state], n)
        yield g


def _stream(stack: ExitStack, f: BinaryIO, chunk: int) -> Iterator[bytes]:
    with stack:
        while True:
            block = f.read(chunk)
            if not block:
                return
            yield block


def _split_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


def _job_create_form(
    deadline: Annotated[str, Form()] = "24h",
    model: Annotated[str | None, Form()] = None,
    allow_multiple_models: Annotated[bool, Form()] = False,
    launcher: Annotated[str | None, Form()] = None,
    gpu: Annotated[str | None, Form()] = None,
    markets: Annotated[list[str] | None, Form()] = None,
    metadata: Annotated[str | None, Form(description="JSON object of string -> string")] = None,
) -> JobCreate:
    try:
        meta = json.loads(metadata) if metadata else {}
        if not isinstance(meta, dict):
            raise ValueError
    except ValueError:
        raise InputValidationError("metadata must be a JSON object") from None
    return JobCreate(deadline=deadline, model=model or None, allow_multiple_models=allow_multiple_models,
                     launcher=launcher or None, gpu=gpu or None, markets=_split_list(markets),
                     metadata={str(k): str(v) for k, v in meta.items()})


def create_app(service: OrcaService) -> FastAPI:
    """The control plane app over ``service`` (the caller owns the service's lifetime)."""
    app = FastAPI(title="orca control plane", version="0.1.0", responses=ERROR_RESPONSES)
    app.state.service = service
    outage = health.OutageAnswer(service.settings)

    def respond(exc: OrcaError) -> JSONResponse:
        if isinstance(exc, (QueueUnavailableError, StoreUnavailableError)):
            return outage(exc)
        return _orca_error_response(exc)

    api_token = bearer(service)
    app.add_middleware(AuthGate, service=service, respond=respond,
                       credentials={"/api/": api_token, "/v1/": api_token, "/dashboard/api/": cookie_credential(app)},
                       prechecks={("POST", "/api/jobs"): service.check_quota, ("POST", "/dashboard/api/jobs"): service.check_quota})
    metrics = CollectorRegistry(auto_describe=False)
    metrics.register(JobsCollector(service))
    read_block = service.settings.store.read_buffer_kb * 1024

    @app.exception_handler(OrcaError)
    async def _orca_error(_: Request, exc: OrcaError) -> JSONResponse:
        return _orca_error_response(exc)

    @app.exception_handler(QueueUnavailableError)
    @app.exception_handler(StoreUnavailableError)
    async def _unavailable(_: Request, exc: OrcaError) -> JSONResponse:
        return outage(exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"code": "invalid_field", "param": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
                  for e in exc.errors()]
        return JSONResponse(error_body("invalid_request", "invalid request", errors), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                413: "too_large", 429: "quota_exceeded"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected control plane error", exc_info=exc)
        return JSONResponse(error_body("server_error", "internal error"), status_code=500)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return health.healthz(service)

    @app.get("/metrics", response_class=Response, responses=_body_of("text/plain", "Prometheus text exposition format"))
    def prometheus() -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.post("/api/jobs", status_code=201, response_model=Job)
    def create_job(user: User, svc: Service, file: Annotated[UploadFile, File()],
                   spec: Annotated[JobCreate, Depends(_job_create_form)]) -> Job:
        return svc.create_job(user, file.file, spec, filename=file.filename or "input.jsonl")

    @app.get("/api/jobs", response_model=JobList)
    def list_jobs(principal: Annotated[Principal, Depends(require_principal)], svc: Service,
                  limit: int | None = Query(None, ge=1), after: str | None = None,
                  all: bool = Query(False, description="Every user's jobs (admins only).")) -> JobList:
        if all and not principal.admin:
            raise PermissionDeniedError("listing every user's jobs needs an admin token")
        return JobList(data=svc.list_jobs(principal.name, limit=limit, after=after, all_users=all))

    @app.get("/api/jobs/{job_id}", response_model=Job)
    def get_job(job_id: str, user: User, svc: Service) -> Job:
        return svc.get_job(user, job_id)

    @app.post("/api/jobs/{job_id}/cancel", response_model=Job)
    def cancel_job(job_id: str, user: User, svc: Service) -> Job:
        return svc.cancel_job(user, job_id)

    def _file_response(opener, name: str) -> StreamingResponse:
        stack = ExitStack()
        f = stack.enter_context(opener)
        return StreamingResponse(_stream(stack, f, read_block), media_type="application/jsonl",
                                 headers={"content-disposition": f'attachment; filename="{name}"'})

    @app.get("/api/jobs/{job_id}/results", response_class=StreamingResponse, responses=_body_of("application/jsonl", "output.jsonl"))
    def results(job_id: str, user: User, svc: Service, partial: bool = False) -> StreamingResponse:
        return _file_response(svc.open_results(user, job_id, partial=partial), "output.jsonl")

    @app.get("/api/jobs/{job_id}/errors", response_class=StreamingResponse, responses=_body_of("application/jsonl", "errors.jsonl"))
    def errors(job_id: str, user: User, svc: Service, partial: bool = False) -> StreamingResponse:
        return _file_response(svc.open_errors(user, job_id, partial=partial), "errors.jsonl")

    @app.get("/api/jobs/{job_id}/logs")
    def logs(job_id: str, user: User, svc: Service) -> list[dict]:
        return svc.job_events(user, job_id)

    @app.post("/api/jobs/{job_id}/swap", response_model=Job)
    def swap(job_id: str, request: SwapRequest, user: User, svc: Service) -> Job:
        return svc.swap(user, job_id, request)

    @app.post("/api/plan", response_model=PlanList)
    def plan(user: User, svc: Service, file: Annotated[UploadFile, File()],
             deadline: Annotated[str, Form()] = "24h", model: Annotated[str | None, Form()] = None,
             gpu: Annotated[str | None, Form()] = None, markets: Annotated[list[str] | None, Form()] = None) -> PlanList:
        request = PlanRequest(deadline=deadline, model=model or None, gpu=gpu or None, markets=_split_list(markets))
        return svc.plan(user, file.file, request)

    app.include_router(users_router)
    dashboard.mount(app)

    try:
        openai_api = importlib.import_module("orca.control.openai_api")
    except ModuleNotFoundError as exc:  # the OpenAI router is optional until it is installed
        if exc.name != "orca.control.openai_api":
            raise
    else:
        app.include_router(openai_api.router)
    return app
