"""The control plane's service layer: job and file operations shared by the native `/api`
routes, the OpenAI-compatible `/v1` router and tests. No HTTP here.

Every method takes the acting ``user`` first; another user's job or file is
``JobNotFoundError`` (404), never a hint that it exists. Long steps are handed to RQ via
``Background``: creating a job stores its input and enqueues ingest, nothing more.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from orca.control import lifecycle
from orca.control.assembly import assemble_into, partial_key
from orca.control.retention import upload_expires_at
from orca.control.schemas import (
    Job, JobCreate, PlanList, PlanOut, PlanRequest, PoolOut, Progress, QuoteOut, RequestCounts, SwapOut, SwapRequest, Usage,
)
from orca.control.swap import SwapManager
from orca.control.transitions import move
from orca.control.validation import check_job_create, check_swap
from orca.durations import parse_duration
from orca.errors import InputValidationError, JobNotFoundError, JobStateError, ObjectNotFoundError, QuotaExceededError
from orca.launchers.base import ReplicaState
from orca.metadata import check_metadata
from orca.models import JobStatus, ValidationIssue
from orca.queue import ChunkQueue
from orca.queue.background import Background
from orca.queue.chunk_usage import ChunkUsageStore
from orca.queue.jobs import FileRecord, JobRecord, JobRegistry
from orca.settings import Settings
from orca.storage.base import ObjectStore
from orca.storage.layout import JobLayout

Upload = bytes | str | Path | IO[bytes]

FILE_PURPOSES = ("batch", "batch_output")


def store_url_for(settings: Settings) -> str:
    """The object store URL: configured, or the local store under ``settings.home``."""
    return settings.store_url or (settings.home / "store").resolve().as_uri()


def file_key(file_id: str) -> str:
    """Store key of an uploaded file (job inputs, outputs and errors live under JobLayout instead)."""
    return f"files/{file_id}.jsonl"


def new_job_id() -> str:
    return "batch_" + uuid.uuid4().hex[:24]


def new_file_id() -> str:
    return "file-" + uuid.uuid4().hex[:24]


class _LineCounter:
    """A binary reader that counts the lines passing through it (a quota needs them before ingest)."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.newlines = 0
        self.last = b"\n"

    def read(self, size: int = -1) -> bytes:
        block = self._f.read(size)
        if block:
            self.newlines += block.count(b"\n")
            self.last = block[-1:]
        return block

    @property
    def lines(self) -> int:
        return self.newlines + (self.last != b"\n")


def _write_upload(store: ObjectStore, key: str, data: Upload) -> tuple[int, int]:
    """Stream an upload into the store; returns its size in bytes and its number of lines."""
    if isinstance(data, bytes):
        store.put_bytes(key, data)
        lines = data.count(b"\n") + (not data.endswith(b"\n") and bool(data))
    elif isinstance(data, (str, Path)):
        store.put_file(key, str(data))
        with open(data, "rb") as f:
            counter = _LineCounter(f)
            while counter.read(1024 * 1024):
                pass
        lines = counter.lines
    else:
        counter = _LineCounter(data)
        with store.open_write(key) as out:
            shutil.copyfileobj(counter, out, 1024 * 1024)
        lines = counter.lines
    return store.size(key), lines


def _deadline_s(spec: JobCreate | PlanRequest, max_s: float | None = None) -> float:
    try:
        seconds = parse_duration(spec.deadline)
        if max_s is not None and seconds > max_s:
            from orca.durations import format_duration

            raise ValueError(f"deadline {spec.deadline!r} is beyond the longest allowed, {format_duration(max_s)} "
                             "(the server's ORCA_CONTROL__MAX_DEADLINE_S)")
        return seconds
    except ValueError as exc:
        raise InputValidationError(str(exc), errors=[ValidationIssue(code="invalid_deadline", message=str(exc), param="deadline")]) from None


class OrcaService:
    """Job and file operations over one registry, store and background queue."""

    def __init__(self, settings: Settings, registry: JobRegistry, background: Background, store: ObjectStore) -> None:
        self.settings = settings
        self.registry = registry
        self.background = background
        self.store = store

    @classmethod
    def from_settings(cls, settings: Settings, synchronous: bool = False) -> "OrcaService":
        """Build from ``settings`` (``redis_url`` must be set; the embedded stack sets it)."""
        from orca.storage import open_store

        if not settings.redis_url:
            from orca.errors import ConfigError

            raise ConfigError("the control plane needs a Redis URL (ORCA_REDIS_URL)")
        return cls(
            settings,
            JobRegistry(settings.redis_url, settings),
            Background(settings.redis_url, settings, synchronous=synchronous),
            open_store(store_url_for(settings), settings.store),
        )

    def close(self) -> None:
        self.registry.close()
        self.background.close()

    def queue(self, job_id: str) -> ChunkQueue:
        """The job's chunk queue: a light view over the process's shared Redis pool (nothing is kept per job)."""
        return ChunkQueue(self.registry.redis_url, job_id, self.settings.queue)

    def usage(self, record: JobRecord) -> Usage:
        """The job's token usage: summed at assembly, else live from its committed chunks."""
        if record.final_usage is not None:
            return Usage(**record.final_usage)
        if not record.chunks_total:
            return Usage()
        usage = ChunkUsageStore(self.registry.redis_url, self.settings.queue)  # a view over the shared pool
        return Usage(**usage.total(record.id, self.queue(record.id).committed_generations()).to_dict())

    # -- jobs -----------------------------------------------------------
    def create_job(self, user: str, data: Upload, spec: JobCreate, filename: str = "input.jsonl") -> Job:
        """Store the input file and start validating it (in the background). Returns the new job."""
        self._deadline(spec)  # a bad deadline or bad metadata stores nothing
        check_metadata(spec.metadata, self.settings.control)
        check_job_create(spec, self.settings)  # nor does a launcher, GPU or market orca cannot run
        self.check_quota(user)  # a user already at a limit uploads nothing
        input_file = self.create_file(user, data, filename, "batch")
        try:
            return self._start_job(user, input_file, spec)
        except QuotaExceededError:
            self.delete_file(user, input_file.id)  # the new file's requests are over the limit: keep nothing
            raise

    def create_job_from_file(self, user: str, file_id: str, spec: JobCreate) -> Job:
        """Start a job on a file uploaded before (OpenAI ``POST /v1/batches``)."""
        check_metadata(spec.metadata, self.settings.control)
        check_job_create(spec, self.settings)
        return self._start_job(user, self.get_file(user, file_id), spec)

    def _deadline(self, spec: JobCreate | PlanRequest) -> float:
        return _deadline_s(spec, self.settings.control.max_deadline_s)

    def check_quota(self, user: str, new_requests: int | None = None) -> None:
        """QuotaExceededError (429) if ``user`` may not start one more job of ``new_requests`` requests
        (None: not counted yet, so at least one)."""
        from orca.control import quotas

        record = self.registry.users.get(user)
        limits = quotas.limits_for(self.settings.quota, record.quotas if record else None)
        if limits == quotas.Limits():
            return  # unlimited: no need to read the user's jobs
        usage = quotas.usage_of(self.registry, user)
        reason = quotas.violation(user, usage, limits, new_jobs=1, new_requests=new_requests)
        if reason is not None:
            raise QuotaExceededError(reason)

    def _start_job(self, user: str, input_file: FileRecord, spec: JobCreate) -> Job:
        deadline_s = self._deadline(spec)
        self.check_quota(user, new_requests=input_file.lines or 0)
        launcher = spec.launcher or self.settings.control.default_launcher
        now = time.time()
        job_id = new_job_id()
        layout = JobLayout(job_id)
        with self.store.open_read(input_file.store_key) as src, self.store.open_write(layout.input) as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        record = JobRecord(
            id=job_id, user=user, status=JobStatus.VALIDATING, created_at=now, deadline_at=now + deadline_s,
            spec=spec.model_dump(mode="json"), model=spec.model, launcher=launcher,
            input_file_id=input_file.id, metadata=dict(spec.metadata), input_lines=input_file.lines or 0,
        )
        self.registry.create_job(record)
        self.registry.add_event(job_id, "created", f"job created from {input_file.filename} ({input_file.bytes} bytes)")
        self.background.submit(f"ingest-{job_id}", "orca.control.tasks.ingest_job", self._settings_json(), job_id)
        return self.to_job(self.registry.get(job_id))

    def _settings_json(self) -> str:
        """Settings handed to background steps (the client's own token stays out of Redis)."""
        return self.settings.model_dump_json(exclude={"api_token"})

    def _own(self, user: str, job_id: str) -> JobRecord:
        """The job if ``user`` owns it or is an admin; JobNotFoundError (404) otherwise."""
        record = self.registry.find(job_id)
        if record is None or (record.user != user and not self.registry.users.is_admin(user)):
            raise JobNotFoundError(job_id=job_id)
        return record

    def get_job(self, user: str, job_id: str) -> Job:
        return self.to_job(self._own(user, job_id))

    def list_jobs(self, user: str, limit: int | None = None, after: str | None = None, all_users: bool = False) -> list[Job]:
        """The user's jobs (every user's with ``all_users``, which the caller checks is an admin), newest first;
        ``after`` (a job id) pages past that job."""
        if all_users:
            records = [r for r in (self.registry.find(i) for i in self.registry.job_ids()) if r is not None]
            ids = [r.id for r in sorted(records, key=lambda r: r.created_at, reverse=True)]
        else:
            ids = self.registry.user_job_ids(user)
        if after is not None:
            if after not in ids:
                raise InputValidationError(f"after: no job {after!r} in this list (deleted or expired?)")
            ids = ids[ids.index(after) + 1:]
        if limit is not None:
            ids = ids[:limit]
        records = [self.registry.find(i) for i in ids]
        return [self.to_job(r) for r in records if r is not None]

    def cancel_job(self, user: str, job_id: str) -> Job:
        """Ask the controller to stop the job; it tears workers down, keeps partial results, ends cancelled.

        Cancelling a job that is already cancelling is a no-op; a finished job is JobStateError (409).
        """
        record = self._own(user, job_id)
        if record.status is JobStatus.CANCELLING:
            return self.to_job(record)
        return self.to_job(move(self.registry, job_id, JobStatus.CANCELLING, "cancel requested"))

    def job_events(self, user: str, job_id: str) -> list[dict]:
        self._own(user, job_id)
        return self.registry.events(job_id)

    @contextmanager
    def open_results(self, user: str, job_id: str, partial: bool = False) -> Iterator[BinaryIO]:
        """Stream ``output.jsonl``. Before the job ends, ``partial=True`` first assembles what is done."""
        with self._open_assembled(user, job_id, partial, errors=False) as f:
            yield f

    @contextmanager
    def open_errors(self, user: str, job_id: str, partial: bool = False) -> Iterator[BinaryIO]:
        """Stream ``errors.jsonl``, or the validation errors as JSONL when validation failed."""
        record = self._own(user, job_id)
        if record.validation_errors or (record.status is JobStatus.FAILED and not record.chunks_total):
            import io

            lines = [json.dumps(issue) + "\n" for issue in record.validation_errors]
            if not lines and record.message:
                lines = [json.dumps({"code": "failed", "line": None, "message": record.message, "param": None}) + "\n"]
            yield io.BytesIO("".join(lines).encode())
            return
        with self._open_assembled(user, job_id, partial, errors=True) as f:
            yield f

    @contextmanager
    def _open_assembled(self, user: str, job_id: str, partial: bool, errors: bool) -> Iterator[BinaryIO]:
        record = self._own(user, job_id)
        layout = JobLayout(job_id)
        if partial and not record.output_available:
            if not record.chunks_total:
                raise JobStateError("the job has no chunks yet", status=record.status.value)
            assemble_into(self.store, record, self.queue(job_id), partial=True)
            key = partial_key(layout, errors)
        else:
            if not record.output_available:
                raise JobStateError("results are not ready; pass partial=true for what is done so far", status=record.status.value)
            key = layout.errors if errors else layout.output
        try:
            with self.store.open_read(key) as f:
                yield f
        except ObjectNotFoundError:
            result_file = record.error_file_id if errors else record.output_file_id
            if not partial and result_file and self.registry.get_file(result_file) is None:
                raise JobNotFoundError("the job's result file was deleted (expired or deleted through /v1/files)",
                                       file_id=result_file) from None
            raise JobStateError("results are not ready", status=record.status.value) from None

    def swap(self, user: str, job_id: str, request: SwapRequest) -> Job:
        """Move a running job to another GPU type (or cancel a swap in flight) via the swap manager."""
        record = self._own(user, job_id)
        check_swap(request, record.launcher or self.settings.control.default_launcher, self.settings)
        if record.status is not JobStatus.IN_PROGRESS:
            raise JobStateError("only a running job can swap", status=record.status.value)
        SwapManager(self.settings, self.registry).request(record, request)
        return self.get_job(user, job_id)

    def plan(self, user: str, data: Upload, request: PlanRequest) -> PlanList:
        """Plans for a file without storing it or launching anything (``POST /api/plan``)."""
        import tempfile

        from orca.ingest import validate
        from orca.planner.render import plan_for_stats

        deadline_s = self._deadline(request)
        tmp_dir = self.settings.home / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".jsonl") as tmp:
            if isinstance(data, (str, Path)):
                path = Path(data)
            else:
                if isinstance(data, bytes):
                    tmp.write(data)
                else:
                    shutil.copyfileobj(data, tmp, 1024 * 1024)
                tmp.flush()
                path = Path(tmp.name)
            result = validate(str(path), self.settings.ingest, model=request.model)
        if not result.ok:
            raise InputValidationError(f"{result.error_count} validation error(s)", errors=result.errors,
                                       error_count=result.error_count)
        stats = result.stats
        plans = plan_for_stats(stats, deadline_s, model=request.model, markets=tuple(request.markets) if request.markets else None,
                               gpus=(request.gpu,) if request.gpu else (), settings=self.settings)
        return PlanList(
            data=[PlanOut(gpu=p.gpu, gpus_per_replica=p.gpus_per_replica, tp=p.tp, pp=p.pp, market=p.market, region=p.region,
                          replicas=p.replicas, expected_finish_s=p.expected_finish_s, expected_cost_usd=p.expected_cost_usd,
                          risk=p.risk, price_per_replica_hour=p.price_per_replica_hour, instance_type=p.instance_type)
                  for p in plans],
            n_requests=stats.n_requests, est_prompt_tokens=stats.prompt_tokens, est_output_tokens=stats.max_output_tokens,
        )

    # -- files ----------------------------------------------------------
    def create_file(self, user: str, data: Upload, filename: str = "input.jsonl", purpose: str = "batch",
                    expires_after_s: int | None = None) -> FileRecord:
        """Store an upload; it expires ``expires_after_s`` after now (None: ``retention.batch_file_s``)."""
        if purpose not in FILE_PURPOSES:
            raise InputValidationError(f"purpose must be one of {', '.join(FILE_PURPOSES)}",
                                       errors=[ValidationIssue(code="invalid_purpose", message=f"unknown purpose {purpose!r}", param="purpose")])
        file_id = new_file_id()
        key = file_key(file_id)
        size, lines = _write_upload(self.store, key, data)
        limit = self.settings.ingest.max_file_mb * 1024 * 1024
        if size > limit:
            self.store.delete(key)
            raise InputValidationError("file too large", errors=[ValidationIssue(code="too_large", message=f"file is {size} bytes; the limit is {limit}")])
        now = time.time()
        record = FileRecord(id=file_id, user=user, bytes=size, created_at=now, filename=Path(filename).name or "input.jsonl",
                            purpose=purpose, store_key=key, lines=lines,
                            expires_at=upload_expires_at(now, expires_after_s, purpose, self.settings.retention))
        return self.registry.put_file(record)

    def get_file(self, user: str, file_id: str) -> FileRecord:
        record = self.registry.get_file(file_id)
        if record is None or record.user != user:
            raise JobNotFoundError("no such file", file_id=file_id)
        return record

    def list_files(self, user: str, purpose: str | None = None) -> list[FileRecord]:
        records = [self.registry.get_file(i) for i in self.registry.user_file_ids(user)]
        return [r for r in records if r is not None and (purpose is None or r.purpose == purpose)]

    def delete_file(self, user: str, file_id: str) -> FileRecord:
        """Delete one of the user's files. A batch made from an input file keeps running on its own copy."""
        record = self.get_file(user, file_id)
        self.remove_file(record)
        return record

    def remove_file(self, record: FileRecord) -> None:
        """Delete a file's record and stored object (deleted by its owner, or expired). Once both result
        files of a job are gone, the job's stored data (input copy, chunks, chunk outputs) goes too."""
        self.store.delete(record.store_key)
        self.registry.delete_file(record)
        if record.job_id is not None:
            job = self.registry.find(record.job_id)
            if job is not None and not any(self.registry.get_file(f) for f in (job.output_file_id, job.error_file_id) if f):
                self.store.delete_prefix(JobLayout(job.id).root)

    @contextmanager
    def open_file(self, user: str, file_id: str) -> Iterator[BinaryIO]:
        record = self.get_file(user, file_id)
        try:
            with self.store.open_read(record.store_key) as f:
                yield f
        except ObjectNotFoundError:
            raise JobNotFoundError("file content is gone", file_id=file_id) from None

    # -- views ----------------------------------------------------------
    def to_job(self, record: JobRecord) -> Job:
        """The public view of a job: live progress, ETA and cost read from Redis now."""
        now = time.time()
        progress = Progress()
        eta = None
        if record.chunks_total:
            c = self.queue(record.id).counts()
            total = c.total or record.chunks_total
            progress = Progress(
                chunks_total=total, chunks_pending=c.pending, chunks_leased=c.leased,
                chunks_done=c.done, chunks_dead=c.dead,
                fraction=(c.done + c.dead) / total if total else 0.0,
            )
            if not record.status.terminal:
                rate = lifecycle.completion_rate(c.done, now, record.rate_done0, record.rate_t0)
                eta = lifecycle.eta_seconds(c.pending + c.leased, rate)
        if record.final_counts is not None:
            counts = RequestCounts(total=record.n_requests, **record.final_counts)
        else:
            done, failed = lifecycle.estimate_request_counts(record.n_requests, progress.chunks_total, progress.chunks_done, progress.chunks_dead)
            counts = RequestCounts(total=record.n_requests, completed=done, failed=failed)
        replicas = self.registry.replicas(record.id) if record.chunks_total else []
        if record.chunks_total and not record.status.terminal:
            # Requests answered inside running chunks: progress (and an ETA) before the first chunk commits.
            live = [r.replica_id for r in replicas if r.state.live]
            committed = counts.completed + counts.failed
            uncommitted, request_rate = lifecycle.live_progress(
                record.n_requests, committed, self.registry.workers_metrics(record.id, live))
            progress.requests_uncommitted = uncommitted
            if eta is None and progress.chunks_pending + progress.chunks_leased:
                eta = lifecycle.eta_seconds(record.n_requests - committed - uncommitted, request_rate)
        completions = self.queue(record.id).pool_completions() if record.pools else {}
        cost = sum(r.cost_usd for r in replicas)
        pools = []
        live_price = 0.0
        for pool in record.pools:
            states: dict[str, int] = {}
            for r in replicas:
                if r.pool == pool.key:
                    states[r.state.value] = states.get(r.state.value, 0) + 1
            n_live = sum(v for k, v in states.items() if ReplicaState(k).live)
            live_price += n_live * pool.price_per_replica_hour
            pools.append(PoolOut(
                key=pool.key, launcher=pool.launcher, gpu=pool.gpu, market=pool.market,
                state=pool.state.value, replicas=states,
                chunks_completed=int(completions.get(pool.key, 0)),
                cost_usd=sum(r.cost_usd for r in replicas if r.pool == pool.key),
            ))
        swaps = [SwapOut.model_validate(s) for s in getattr(record, "swaps", None) or []]
        return Job(
            id=record.id, status=record.status, model=record.model, endpoint=record.endpoint,
            created_at=record.created_at, deadline_at=record.deadline_at,
            in_progress_at=record.in_progress_at, finalizing_at=record.finalizing_at,
            completed_at=record.completed_at, failed_at=record.failed_at, cancelling_at=record.cancelling_at,
            cancelled_at=record.cancelled_at, expired_at=record.expired_at,
            request_counts=counts, usage=self.usage(record), progress=progress, eta_s=eta, cost_usd=cost,
            projected_cost_usd=lifecycle.projected_cost(cost, eta, live_price) if not record.status.terminal else cost,
            plan=PlanOut.model_validate(record.plan) if record.plan else None,
            quote=QuoteOut.model_validate(record.quote) if record.quote else None,
            pools=pools, swaps=swaps,
            validation_errors=[ValidationIssue.model_validate(v) for v in record.validation_errors],
            validation_error_count=record.validation_error_count,
            output_available=record.output_available, metadata=record.metadata,
            input_file_id=record.input_file_id, output_file_id=record.output_file_id,
            error_file_id=record.error_file_id, message=record.message or None,
        )
