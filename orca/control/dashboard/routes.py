"""The dashboard's routes: HTML pages and the JSON the pages poll, over the API's own service calls.

Pages (sign-in needed, else a redirect to ``/login``):

    GET  /                 jobs page (?status= filter; every user's jobs for an admin)
    GET  /jobs/{id}        job page (404 page for a job that is not yours)
    GET  /plan             plan page: a JSONL file and a deadline in, the plan table out, then submit
    GET  /login, POST /login (form: token), POST /logout

JSON for the pages' scripts (session cookie; 401 without one; POSTs from this origin only):

    GET  /dashboard/api/jobs?status=            {"now", "all_users", "jobs": [row]} (the newest dashboard.jobs_shown;
                                                every user's, each row with its "user", for an admin)
    GET  /dashboard/api/jobs/{id}?since=T       job, track, pools, replicas, swaps, events, samples after T
    POST /dashboard/api/jobs/{id}/cancel        -> Job
    POST /dashboard/api/jobs/{id}/swap-preview  {"gpu", "market"} -> plan table for the work left
    POST /dashboard/api/jobs/{id}/swap          SwapRequest -> Job
    GET  /dashboard/api/jobs/{id}/results|errors?partial=true   file download
    POST /dashboard/api/plan                    multipart like POST /api/plan -> PlanList
    POST /dashboard/api/jobs                    multipart like POST /api/jobs -> Job (201)

Every call goes through ``OrcaService`` with the signed-in user, so a page shows and does
exactly what the API would let that user see and do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Annotated, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from orca import __version__
from orca.control.dashboard import session as sess
from orca.control.dashboard import swap_preview, views
from orca.control.schemas import Job, JobCreate, PlanList, PlanRequest, SwapRequest
from orca.control.service import OrcaService
from orca.errors import JobNotFoundError
from orca.fleet import Pool, Replica
from orca.planner.catalog import load_catalog

router = APIRouter(include_in_schema=False)

User = Annotated[str, Depends(sess.require_session_user)]
SameOrigin = Depends(sess.require_same_origin)

_templates = Environment(loader=PackageLoader("orca.control.dashboard", "templates"),
                         autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)

#: Headers on every dashboard page: scripts, styles and data from this origin only; never framed.
SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def service(request: Request) -> OrcaService:
    return request.app.state.service


def static_url(name: str) -> str:
    return f"/dashboard/static/{name}?v={__version__}"


def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    settings = service(request).settings.dashboard
    html = _templates.get_template(template).render(
        static=static_url, poll_ms=int(settings.poll_s * 1000),
        request_timeout_ms=int(settings.request_timeout_s * 1000), user=context.pop("user", None), **context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303, headers=SECURITY_HEADERS)


def visible_jobs(svc: OrcaService, user: str) -> tuple[list[Job], dict[str, str] | None]:
    """The jobs this user's jobs page lists, newest first, as ``GET /api/jobs`` returns them: their own,
    or every user's for an admin (then also job id -> owner)."""
    limit = svc.settings.dashboard.jobs_shown
    if not svc.registry.users.is_admin(user):
        return svc.list_jobs(user, limit=limit), None
    jobs = svc.list_jobs(user, limit=limit, all_users=True)
    records = {j.id: svc.registry.find(j.id) for j in jobs}
    return jobs, {job_id: r.user for job_id, r in records.items() if r is not None}


# -- sign-in -----------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    if sess.session_user(request):
        return RedirectResponse(sess.safe_next(next), status_code=303)
    return render(request, "login.html", page="login", next=sess.safe_next(next), error=None)


@router.post("/login", dependencies=[SameOrigin])
def login(request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    user = sess.token_user(request, token)
    if user is None:
        return render(request, "login.html", status_code=401, page="login", next=sess.safe_next(next),
                      error="That token is not valid. Paste the API token you use with the CLI (ORCA_API_TOKEN).")
    response = RedirectResponse(sess.safe_next(next), status_code=303, headers=SECURITY_HEADERS)
    sess.sign_in(request, response, user, token)
    return response


@router.post("/logout", dependencies=[SameOrigin])
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    sess.sign_out(request, response)
    return response


# -- pages ---------------------------------------------------------------------
@router.get("/")
def jobs_page(request: Request, status: str | None = None) -> Response:
    user = sess.session_user(request)
    if user is None:
        return to_login(request)
    return render(request, "jobs.html", page="jobs", user=user, filters=list(views.STATUS_FILTERS),
                  status=status if status in views.STATUS_FILTERS else "")


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    user = sess.session_user(request)
    if user is None:
        return to_login(request)
    svc = service(request)
    try:
        job = svc.get_job(user, job_id)
    except JobNotFoundError:
        return render(request, "not_found.html", status_code=404, page="not_found", user=user, job_id=job_id)
    record = svc.registry.get(job_id)
    choices = swap_preview.gpu_choices(record, svc.settings, load_catalog())
    return render(request, "job.html", page="job", user=user, job=job, choices=choices)


@router.get("/plan")
def plan_page(request: Request) -> Response:
    user = sess.session_user(request)
    if user is None:
        return to_login(request)
    settings = service(request).settings
    local = settings.control.default_launcher == "local"
    return render(request, "plan.html", page="plan", user=user, local=local,
                  markets=["local"] if local else list(swap_preview.CLOUD_MARKETS))


# -- JSON for the pages -------------------------------------------------------------
@router.get("/dashboard/api/jobs")
def jobs_data(request: Request, user: User, status: str | None = None) -> dict:
    svc = service(request)
    now = time.time()
    jobs, owners = visible_jobs(svc, user)
    rows = [views.job_row(j, now, svc.settings.dashboard.at_risk_fraction) for j in jobs]
    if owners is not None:
        for row in rows:
            row["user"] = owners.get(row["id"])
    return {"now": now, "all_users": owners is not None, "jobs": views.filter_rows(rows, status)}


@router.get("/dashboard/api/jobs/{job_id}")
def job_data(request: Request, job_id: str, user: User, since: float | None = Query(None)) -> dict:
    svc = service(request)
    settings = svc.settings.dashboard
    now = time.time()
    job = svc.get_job(user, job_id)  # 404 unless the user may see it
    record = svc.registry.get(job_id)
    replicas = svc.registry.replicas(job_id)
    metrics = svc.registry.workers_metrics(job_id, [r.replica_id for r in replicas])
    pools = {p.key: p for p in record.pools}
    samples = request.app.state.dashboard_series.read(job_id)
    if since is not None:
        samples = [s for s in samples if s["t"] > since]
    return {
        "now": now,
        "job": job.model_dump(mode="json"),
        "row": views.job_row(job, now, settings.at_risk_fraction),
        "plan_line": views.plan_line(job),
        "pools": [{**p.model_dump(mode="json"), "region": pools[p.key].region if p.key in pools else None,
                   "price_per_replica_hour": pools[p.key].price_per_replica_hour if p.key in pools else 0.0}
                  for p in job.pools],
        "replicas": [_replica(r, pools.get(r.pool), m) for r, m in zip(replicas, metrics)],
        "swaps": [dict(s) for s in getattr(record, "swaps", None) or []],
        "events": svc.job_events(user, job_id)[-settings.events_shown:],
        "samples": samples,
    }


def _replica(replica: Replica, pool: Pool | None, metrics: dict[str, str]) -> dict:
    return {
        "id": replica.replica_id, "pool": replica.pool, "gpu": pool.gpu if pool else None,
        "market": pool.market if pool else None, "region": pool.region if pool else None, "state": replica.state.value, "chunks_done": int(metrics.get("chunks_done") or 0),
        "requests_per_s": float(metrics.get("requests_per_s") or 0.0), "cost_usd": replica.cost_usd,
        "created_at": replica.created_at, "ended_at": replica.ended_at, "message": replica.message,
    }


@router.post("/dashboard/api/jobs/{job_id}/cancel", dependencies=[SameOrigin])
def cancel(request: Request, job_id: str, user: User) -> Job:
    return service(request).cancel_job(user, job_id)


@router.post("/dashboard/api/jobs/{job_id}/swap-preview", dependencies=[SameOrigin])
def swap_plan(request: Request, job_id: str, user: User, body: SwapRequest) -> dict:
    svc = service(request)
    job = svc.get_job(user, job_id)
    return swap_preview.preview(svc.registry.get(job_id), job, body.gpu, body.market, svc.settings, load_catalog())


@router.post("/dashboard/api/jobs/{job_id}/swap", dependencies=[SameOrigin])
def swap(request: Request, job_id: str, user: User, body: SwapRequest) -> Job:
    return service(request).swap(user, job_id, body)


def _stream(stack: ExitStack, f: BinaryIO, block: int) -> Iterator[bytes]:
    with stack:
        while data := f.read(block):
            yield data


def _download(request: Request, opener, name: str) -> StreamingResponse:
    stack = ExitStack()
    f = stack.enter_context(opener)
    block = service(request).settings.store.read_buffer_kb * 1024
    return StreamingResponse(_stream(stack, f, block), media_type="application/jsonl",
                             headers={"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"})


@router.get("/dashboard/api/jobs/{job_id}/results")
def results(request: Request, job_id: str, user: User, partial: bool = False) -> StreamingResponse:
    return _download(request, service(request).open_results(user, job_id, partial=partial),
                     f"{job_id}-{'partial-' if partial else ''}output.jsonl")


@router.get("/dashboard/api/jobs/{job_id}/errors")
def errors(request: Request, job_id: str, user: User, partial: bool = False) -> StreamingResponse:
    return _download(request, service(request).open_errors(user, job_id, partial=partial),
                     f"{job_id}-{'partial-' if partial else ''}errors.jsonl")


@router.post("/dashboard/api/plan", dependencies=[SameOrigin])
def plan(request: Request, user: User, file: Annotated[UploadFile, File()], deadline: Annotated[str, Form()] = "24h",
         model: Annotated[str | None, Form()] = None, gpu: Annotated[str | None, Form()] = None,
         markets: Annotated[list[str] | None, Form()] = None) -> PlanList:
    spec = PlanRequest(deadline=deadline, model=model or None, gpu=gpu or None, markets=markets or None)
    return service(request).plan(user, file.file, spec)


@router.post("/dashboard/api/jobs", status_code=201, dependencies=[SameOrigin])
def submit(request: Request, user: User, file: Annotated[UploadFile, File()], deadline: Annotated[str, Form()] = "24h",
           model: Annotated[str | None, Form()] = None, gpu: Annotated[str | None, Form()] = None) -> Job:
    spec = JobCreate(deadline=deadline, model=model or None, gpu=gpu or None)
    return service(request).create_job(user, file.file, spec, filename=file.filename or "input.jsonl")

