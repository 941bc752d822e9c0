"""``orca.Client``: the control plane's native ``/api`` over HTTP, for notebooks, scripts and the CLI.

    import orca
    client = orca.Client()                      # ORCA_API_URL, or the embedded stack (started if needed)
    job = client.submit("batch.jsonl", deadline="2h")
    job.wait()                                  # tqdm progress bar (Jupyter or terminal)
    for record in job.results(): ...
    df = job.to_pandas()

Every call returns the contract's models (``orca.control.schemas``); every failure is an
``orca.errors.OrcaError`` (HTTP errors are translated here, the one owner of this httpx client).
"""

from __future__ import annotations

import html
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

from urllib.parse import quote

import httpx

from orca.cli_format import progress_text
from orca.control.schemas import Job, JobList, PlanList, SwapRequest
from orca.durations import format_duration
from orca.errors import (
    ApiError, AuthError, ConfigError, InputValidationError, JobNotFoundError, JobStateError, OrcaError, PayloadTooLargeError,
    PermissionDeniedError, QuotaExceededError,
)
from orca.models import ValidationIssue
from orca.settings import Settings, get_settings

JsonRecord = dict[str, Any]


# -- where the control plane is ------------------------------------------
def embedded_connection(settings: Settings, start: bool = True, notice: Callable[[str], None] | None = None) -> tuple[str, str]:
    """(api_url, token) of the embedded stack under ``settings.home``, starting it if needed and ``start``.

    ``notice`` is told, in one line, when the stack had to be started.
    """
    from orca.control import embedded

    status = embedded.status(settings)
    if not (status.running and _answers(status.api_url)):
        if not start:
            raise ConfigError("no control plane: ORCA_API_URL is unset and the embedded stack is not running (run `orca up`)")
        status = embedded.up(settings)
        if notice is not None:
            notice(f"orca: started the embedded stack (home {status.home}, API {status.api_url}); stop it with `orca down`")
    return status.api_url, _read_token(Path(status.token_file))


def _answers(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise ConfigError("no API token: set ORCA_API_TOKEN or run `orca up`", token_file=str(path)) from None
    if not token:
        raise ConfigError("the API token file is empty", token_file=str(path))
    return token


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- HTTP errors -> orca errors --------------------------------------------
_ERRORS_BY_STATUS: dict[int, type[OrcaError]] = {401: AuthError, 403: PermissionDeniedError, 404: JobNotFoundError, 409: JobStateError,
                                                  413: PayloadTooLargeError, 429: QuotaExceededError}


def segment(value: str) -> str:
    """One URL path segment for an id or name, percent-encoded (``x/../id`` stays one segment, never another object)."""
    if not isinstance(value, str) or value.strip() in ("", ".", ".."):
        raise InputValidationError(f"invalid id {value!r}: expected an id such as batch_... or a user name")
    return quote(value, safe="")


def error_from_response(response: httpx.Response) -> OrcaError:
    """The orca error a non-2xx control plane response stands for (body ``{"error": {...}}``)."""
    try:
        body = response.json()
        err = body.get("error") or {}
        message = err.get("message") or response.reason_phrase
        issues = err.get("errors") or []
        error_count = err.get("error_count")
    except (ValueError, AttributeError):
        message, issues, error_count = (response.text.strip()[:200] or response.reason_phrase), [], None
    status = response.status_code
    if status == 400 and issues:
        parsed = []
        for item in issues:
            try:
                parsed.append(ValidationIssue.model_validate(item))
            except ValueError:
                parsed.append(ValidationIssue(code="invalid", message=str(item)))
        if isinstance(error_count, int) and error_count > len(parsed):
            return InputValidationError(message, errors=parsed, error_count=error_count)
        return InputValidationError(message, errors=parsed)
    cls = _ERRORS_BY_STATUS.get(status, ApiError)
    return cls(message) if cls is not ApiError else ApiError(message, status=status)


# -- the client --------------------------------------------------------------
class Client:
    """A connection to one orca control plane as one user.

    ``api_url``/``token`` default to the settings (``ORCA_API_URL``, ``ORCA_API_TOKEN``); with no
    URL configured the embedded stack under ``ORCA_HOME`` is used, and started if it is not
    running (``start=False`` raises instead). ``http`` replaces the HTTP client (an
    ``httpx.Client``, e.g. FastAPI's ``TestClient``), for tests.
    """

    def __init__(self, api_url: str | None = None, token: str | None = None, *, settings: Settings | None = None,
                 start: bool = True, http: httpx.Client | None = None,
                 notice: Callable[[str], None] | None = _stderr) -> None:
        self.settings = settings or get_settings()
        api_url = api_url or self.settings.api_url
        token = token or self.settings.api_token
        if api_url is None and http is None:
            api_url, embedded_token = embedded_connection(self.settings, start=start, notice=notice)
            token = token or embedded_token
        elif token is None and (self.settings.home / "token").exists():
            token = _read_token(self.settings.home / "token")
        self.api_url = (api_url or "http://testserver").rstrip("/")
        self.token = token
        self._own_http = http is None
        self._http = http or httpx.Client(timeout=self.settings.control.http_timeout_s)

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"orca.Client({self.api_url!r})"

    # -- raw HTTP -----------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, self.api_url + path, headers=self._headers(), **kwargs)
        except httpx.TimeoutException:
            raise ApiError("the control plane did not answer in time", url=self.api_url) from None
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the control plane: {exc}", url=self.api_url) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    @contextmanager
    def _stream(self, path: str, params: dict | None = None) -> Iterator[httpx.Response]:
        try:
            with self._http.stream("GET", self.api_url + path, headers=self._headers(), params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                yield response
        except httpx.TimeoutException:
            raise ApiError("the control plane did not answer in time", url=self.api_url) from None
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the control plane: {exc}", url=self.api_url) from None

    # -- jobs -----------------------------------------------------------------
    def submit(self, source: str | os.PathLike | Iterable[JsonRecord], deadline: str = "24h", model: str | None = None, *,
               launcher: str | None = None, gpu: str | None = None, markets: list[str] | None = None,
               metadata: dict[str, str] | None = None, allow_multiple_models: bool = False,
               progress: bool = True, file: IO[str] | None = None) -> "JobHandle":
        """Submit a batch: a JSONL path, or request records (dicts), written to a temporary JSONL first.

        ``progress``: a tqdm upload bar (on ``file``, default stderr) for inputs of at least
        ``control.upload_progress_min_mb``.
        """
        data: dict[str, Any] = {"deadline": deadline, "allow_multiple_models": str(allow_multiple_models).lower()}
        for name, value in (("model", model), ("launcher", launcher), ("gpu", gpu)):
            if value:
                data[name] = value
        if markets:
            data["markets"] = list(markets)
        if metadata:
            data["metadata"] = json.dumps(metadata)
        with _jsonl_source(source) as (path, name):
            size = os.path.getsize(path)
            with open(path, "rb") as f, ExitStack() as stack:
                body: Any = f
                if progress and size >= self.settings.control.upload_progress_min_mb * 1e6:
                    from tqdm.auto import tqdm

                    bar = stack.enter_context(tqdm(total=size, unit="B", unit_scale=True, desc="uploading",
                                                   file=file or sys.stderr, dynamic_ncols=True, leave=True))
                    body = _ProgressReader(f, lambda pos: bar.update(pos - bar.n))
                response = self._request("POST", "/api/jobs", data=data, files={"file": (name, body, "application/jsonl")})
        return JobHandle(self, Job.model_validate(response.json()))

    def job(self, job_id: str) -> "JobHandle":
        """A handle on an existing job (fetched now, so an unknown id fails here)."""
        return JobHandle(self, self.get_job(job_id))

    def jobs(self, limit: int | None = None) -> list["JobHandle"]:
        """Your jobs, newest first."""
        return [JobHandle(self, j) for j in self.list_jobs(limit=limit)]

    def get_job(self, job_id: str) -> Job:
        return Job.model_validate(self._request("GET", f"/api/jobs/{segment(job_id)}").json())

    def list_jobs(self, limit: int | None = None, after: str | None = None, all_users: bool = False) -> list[Job]:
        """Your jobs, newest first (every user's with ``all_users``: admins only)."""
        params: dict[str, Any] = {k: v for k, v in (("limit", limit), ("after", after)) if v is not None}
        if all_users:
            params["all"] = "true"
        return JobList.model_validate(self._request("GET", "/api/jobs", params=params).json()).data

    def cancel(self, job_id: str) -> Job:
        return Job.model_validate(self._request("POST", f"/api/jobs/{segment(job_id)}/cancel").json())

    def swap(self, job_id: str, request: SwapRequest) -> Job:
        return Job.model_validate(self._request("POST", f"/api/jobs/{segment(job_id)}/swap", json=request.model_dump()).json())

    def logs(self, job_id: str) -> list[dict]:
        return list(self._request("GET", f"/api/jobs/{segment(job_id)}/logs").json())

    def plan(self, source: str | os.PathLike | Iterable[JsonRecord], deadline: str = "24h", model: str | None = None,
             gpu: str | None = None, markets: list[str] | None = None) -> PlanList:
        """The server's plans for a file (launches nothing). ``orca plan`` plans locally instead."""
        data: dict[str, Any] = {"deadline": deadline}
        if model:
            data["model"] = model
        if gpu:
            data["gpu"] = gpu
        if markets:
            data["markets"] = list(markets)
        with _jsonl_source(source) as (path, name), open(path, "rb") as f:
            response = self._request("POST", "/api/plan", data=data, files={"file": (name, f, "application/jsonl")})
        return PlanList.model_validate(response.json())

    # -- users ------------------------------------------------------------------
    def me(self) -> dict:
        """Who this client's token is: name, role, the quotas in force and current usage."""
        return self._request("GET", "/api/me").json()

    def users(self) -> list[dict]:
        """Every user (admins only)."""
        return list(self._request("GET", "/api/users").json()["data"])

    def add_user(self, name: str, admin: bool = False, reclaim_jobs: bool = False) -> dict:
        """Create a user (admins only); returns ``{"user": ..., "token": ...}``: the token is shown only here.
        ``reclaim_jobs``: needed to reuse a revoked user's name, whose jobs and files then go to the new user."""
        return self._request("POST", "/api/users", json={"name": name, "admin": admin, "reclaim_jobs": reclaim_jobs}).json()

    def revoke_user(self, name: str) -> dict:
        """Remove a user (admins only): their tokens stop working at once; their jobs stay."""
        return self._request("DELETE", f"/api/users/{segment(name)}").json()

    def rotate_token(self, name: str | None = None) -> dict:
        """A new token for yourself (or, for an admin, for ``name``); the old one stops working at once."""
        path = "/api/token/rotate" if name is None else f"/api/users/{segment(name)}/rotate"
        return self._request("POST", path).json()

    def set_quota(self, name: str, **quotas: float | None) -> dict:
        """Set per-user quota overrides (admins only): max_active_jobs, max_queued_requests, max_usd_per_day; None clears."""
        return self._request("PATCH", f"/api/users/{segment(name)}/quota", json=quotas).json()

    # -- output files -----------------------------------------------------------
    def iter_lines(self, job_id: str, kind: str = "results", partial: bool = False) -> Iterator[bytes]:
        """The lines (bytes, newline stripped) of a job's ``results`` or ``errors`` file."""
        with self._stream(f"/api/jobs/{segment(job_id)}/{_kind(kind)}", params={"partial": "true"} if partial else None) as r:
            buffer = b""
            for block in r.iter_bytes():
                buffer += block
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield line
            if buffer.strip():
                yield buffer

    def download(self, job_id: str, out: IO[bytes], kind: str = "results", partial: bool = False) -> int:
        """Copy a job's ``results`` or ``errors`` file into ``out``; returns the number of lines."""
        n = 0
        with self._stream(f"/api/jobs/{segment(job_id)}/{_kind(kind)}", params={"partial": "true"} if partial else None) as r:
            for block in r.iter_bytes():
                out.write(block)
                n += block.count(b"\n")
        return n

    # -- waiting ------------------------------------------------------------------
    def wait(self, job_id: str, progress: bool = True, poll_s: float | None = None, file: IO[str] | None = None,
             on_update: Callable[[Job], None] | None = None, timeout_s: float | None = None) -> Job:
        """Poll until the job ends; shows a tqdm bar (requests done / total, ETA) when ``progress``."""
        poll = poll_s if poll_s is not None else self.settings.control.wait_poll_s
        give_up = None if timeout_s is None else time.monotonic() + timeout_s
        bar = _progress_bar(file) if progress else None
        try:
            while True:
                job = self.get_job(job_id)
                if bar is not None:
                    _update_bar(bar, job)
                if on_update is not None:
                    on_update(job)
                if job.status.terminal:
                    return job
                if give_up is not None and time.monotonic() >= give_up:
                    raise JobStateError("the job did not finish in time", job_id=job_id, status=job.status.value)
                time.sleep(poll)
        finally:
            if bar is not None:
                bar.close()


def _kind(kind: str) -> str:
    if kind not in ("results", "errors"):
        raise ValueError(f"kind must be 'results' or 'errors', not {kind!r}")
    return kind


@contextmanager
def _jsonl_source(source: str | os.PathLike | Iterable[JsonRecord]) -> Iterator[tuple[str, str]]:
    """(path, filename) of a JSONL file for ``source``: the path itself, or a temporary file of the records."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InputValidationError(f"no such file: {path}", errors=[ValidationIssue(code="file_not_found", message=f"no such file: {path}")])
        yield str(path), path.name
        return
    fd, tmp = tempfile.mkstemp(prefix="orca-batch-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for record in source:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        yield tmp, "records.jsonl"
    finally:
        os.unlink(tmp)


class _ProgressReader:
    """A binary file that reports its position after each read or seek (the upload bar); the rest is the file's."""

    def __init__(self, f: BinaryIO, at: Callable[[int], Any]) -> None:
        self._f, self._at = f, at

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self._at(self._f.tell())
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        pos = self._f.seek(offset, whence)
        self._at(pos)
        return pos

    def __getattr__(self, name: str) -> Any:  # fileno, tell, name: the upload length comes from the file itself
        return getattr(self._f, name)


def _progress_bar(file: IO[str] | None):
    from tqdm.auto import tqdm

    return tqdm(total=0, unit="req", desc="validating", file=file or sys.stderr, dynamic_ncols=True, leave=True)


def _update_bar(bar, job: Job) -> None:
    counts = job.request_counts
    if counts.total and bar.total != counts.total:
        bar.total = counts.total
    done = counts.completed + counts.failed
    if not job.status.terminal:
        done += job.progress.requests_uncommitted  # answered in running chunks: the bar moves before a chunk commits
    if done != bar.n:
        bar.n = done
    bar.set_description_str(job.status.value, refresh=False)  # set_description adds a second ": " while the total is unknown
    postfix = {}
    if job.eta_s is not None and not job.status.terminal:
        postfix["eta"] = format_duration(job.eta_s)
    if job.cost_usd:
        postfix["cost"] = f"${job.cost_usd:.2f}"
    if counts.failed:
        postfix["failed"] = counts.failed
    bar.set_postfix(postfix, refresh=False)
    key = (job.status, done, counts.total, counts.failed)
    if getattr(bar, "_orca_last", None) != key:  # redraw on news only: a piped stderr gets one line per change
        bar._orca_last = key
        bar.refresh()


# -- a job handle --------------------------------------------------------------
class JobHandle:
    """One job seen through a client: refreshes on ``status()``, renders as a small table in Jupyter."""

    def __init__(self, client: Client, job: Job) -> None:
        self.client = client
        self.job = job

    @property
    def id(self) -> str:
        return self.job.id

    def status(self) -> Job:
        """Refresh and return the job (``orca.control.schemas.Job``)."""
        self.job = self.client.get_job(self.id)
        return self.job

    def wait(self, progress: bool = True, poll_s: float | None = None, timeout_s: float | None = None) -> Job:
        """Block until the job ends (completed, failed, expired or cancelled); returns the final job."""
        self.job = self.client.wait(self.id, progress=progress, poll_s=poll_s, timeout_s=timeout_s)
        return self.job

    def results(self, partial: bool = False) -> Iterator[JsonRecord]:
        """Output records (OpenAI batch output lines). Before the job ends pass ``partial=True``."""
        return (json.loads(line) for line in self.client.iter_lines(self.id, "results", partial=partial))

    def errors(self, partial: bool = False) -> Iterator[JsonRecord]:
        """Error records: failed requests, or the input file's validation errors."""
        return (json.loads(line) for line in self.client.iter_lines(self.id, "errors", partial=partial))

    def cancel(self) -> Job:
        self.job = self.client.cancel(self.id)
        return self.job

    def swap(self, gpu: str, tp: int = 1, pp: int = 1, market: str = "spot", cancel: bool = False) -> Job:
        self.job = self.client.swap(self.id, SwapRequest(gpu=gpu, tp=tp, pp=pp, market=market, cancel=cancel))
        return self.job

    def logs(self) -> list[dict]:
        return self.client.logs(self.id)

    def to_pandas(self, errors: bool = True, partial: bool = False):
        """A DataFrame, one row per request: custom_id, status_code, output (text or embedding), error, response.

        Needs pandas (``pip install 'orca[pandas]'``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError("to_pandas needs pandas: pip install 'orca[pandas]'") from None
        records = list(self.results(partial=partial))
        if errors:
            records += [r for r in self.errors(partial=partial) if "custom_id" in r]
        return pd.DataFrame([_row(r) for r in records], columns=["custom_id", "status_code", "output", "error", "response"])

    def __repr__(self) -> str:
        j = self.job
        return f"<orca job {j.id} {j.status.value} {progress_text(j)}>"

    def _repr_html_(self) -> str:
        j = self.job
        cells = [
            ("id", j.id), ("status", j.status.value), ("progress", progress_text(j)),
            ("ETA", format_duration(j.eta_s) if not j.status.terminal else "-"),
            ("cost", f"${j.cost_usd:.2f}" + (f" (projected ${j.projected_cost_usd:.2f})"
                                            if j.projected_cost_usd is not None and not j.status.terminal else "")),
        ]
        head = "".join(f"<th>{html.escape(k)}</th>" for k, _ in cells)
        row = "".join(f"<td>{html.escape(str(v))}</td>" for _, v in cells)
        return f"<table><thead><tr>{head}</tr></thead><tbody><tr>{row}</tr></tbody></table>"


def _row(record: JsonRecord) -> dict:
    response = record.get("response") or {}
    body = response.get("body") or {}
    error = record.get("error")
    return {
        "custom_id": record.get("custom_id"),
        "status_code": response.get("status_code"),
        "output": _output_of(body) if not error else None,
        "error": (error.get("message") if isinstance(error, dict) else str(error)) if error else None,
        "response": body or None,
    }


def _output_of(body: dict) -> Any:
    """The useful part of a response body: chat message text, completion text or the embedding."""
    choices = body.get("choices")
    if choices:
        first = choices[0]
        if isinstance(first.get("message"), dict):
            return first["message"].get("content")
        return first.get("text")
    data = body.get("data")
    if data and isinstance(data[0], dict) and "embedding" in data[0]:
        return data[0]["embedding"]
    return None
