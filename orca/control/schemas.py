"""The control plane's HTTP contract: request and response bodies of the native `/api` routes.

Native routes (all need `Authorization: Bearer <token>`; a user sees only their own jobs):

    POST /api/jobs                    multipart: file=<jsonl>, plus form fields of JobCreate -> Job (201)
    GET  /api/jobs                    -> JobList (newest first)
    GET  /api/jobs/{id}               -> Job
    POST /api/jobs/{id}/cancel        -> Job
    GET  /api/jobs/{id}/results       -> output.jsonl (streamed; ?partial=true assembles what is done so far)
    GET  /api/jobs/{id}/errors        -> errors.jsonl, or validation errors as JSONL when validation failed
    GET  /api/jobs/{id}/logs          -> JSON list of events
    POST /api/jobs/{id}/swap          SwapRequest -> Job
    POST /api/plan                    multipart file + PlanRequest fields -> PlanList (launches nothing)
    GET  /healthz                     -> {"ok": true} (no auth)
    GET  /metrics                     Prometheus text (no auth)

OpenAI-compatible routes live under `/v1` (`/v1/files`, `/v1/batches`) with OpenAI's own shapes.
Errors: `{"error": {"code": ..., "message": ..., "errors": [...]}}` with 400/401/404/409.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from orca.models import JobStatus, ValidationIssue


class JobCreate(BaseModel):
    deadline: str = Field("24h", description="Duration from now: '90m', '2h', '1d', or seconds.")
    model: str | None = Field(None, description="Override the model named in the requests.")
    allow_multiple_models: bool = False
    launcher: str | None = Field(None, description="Force a launcher (local, skypilot, modal, runpod); default from server config.")
    gpu: str | None = Field(None, description="Restrict the planner to one GPU type.")
    markets: list[str] | None = Field(None, description="Restrict the planner's markets.")
    metadata: dict[str, str] = Field(default_factory=dict)


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class Usage(BaseModel):
    """Tokens of the committed successful requests, as their engines reported them (0 where not reported)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = Field(0, description="Input tokens served from the engine's prefix cache (where reported).")
    reasoning_tokens: int = Field(0, description="Output tokens spent on reasoning (where reported).")


class Progress(BaseModel):
    chunks_total: int = 0
    chunks_pending: int = 0
    chunks_leased: int = 0
    chunks_done: int = 0
    chunks_dead: int = 0
    fraction: float = 0.0
    requests_uncommitted: int = Field(0, description="Requests answered in chunks still running: not in request_counts "
                                      "until their chunk commits, and redone if their worker is lost.")


class PlanOut(BaseModel):
    gpu: str
    gpus_per_replica: int
    tp: int
    pp: int
    market: str
    region: str | None
    replicas: int
    expected_finish_s: float
    expected_cost_usd: float
    risk: float
    price_per_replica_hour: float
    instance_type: str | None = None


class PoolOut(BaseModel):
    key: str
    launcher: str
    gpu: str
    market: str
    state: str = Field(description="active | draining | drained | cancelled")
    replicas: dict[str, int] = Field(default_factory=dict, description="replica state -> count")
    chunks_completed: int = 0
    cost_usd: float = 0.0


class SwapOut(BaseModel):
    state: str = Field(description="launching | draining | done | cancelled")
    from_pool: str
    to_pool: str
    started_at: float
    finished_at: float | None = None


class QuoteOut(BaseModel):
    """The deadline quote made when the job was planned (simulated runs of its plan over bundled spot traces)."""

    expected_cost_usd: float
    p_deadline_met: float
    runs: int


class Job(BaseModel):
    id: str
    object: str = "orca.job"
    status: JobStatus
    model: str | None = None
    endpoint: str | None = None
    created_at: float
    deadline_at: float
    in_progress_at: float | None = None
    finalizing_at: float | None = None
    completed_at: float | None = None
    failed_at: float | None = None
    cancelling_at: float | None = None
    cancelled_at: float | None = None
    expired_at: float | None = None
    request_counts: RequestCounts = RequestCounts()
    usage: Usage = Usage()
    progress: Progress = Progress()
    eta_s: float | None = Field(None, description="Seconds until all chunks are done at the measured rate.")
    cost_usd: float = 0.0
    projected_cost_usd: float | None = None
    plan: PlanOut | None = None
    quote: QuoteOut | None = None
    pools: list[PoolOut] = Field(default_factory=list)
    swaps: list[SwapOut] = Field(default_factory=list)
    validation_errors: list[ValidationIssue] = Field(default_factory=list)
    validation_error_count: int = 0
    output_available: bool = False
    metadata: dict[str, str] = Field(default_factory=dict)
    input_file_id: str | None = Field(None, description="The stored input file (OpenAI /v1/files id).")
    output_file_id: str | None = Field(None, description="output.jsonl as a file, once assembled.")
    error_file_id: str | None = Field(None, description="errors.jsonl as a file, once assembled.")
    message: str | None = Field(None, description="Why the job failed, expired or was cancelled, in one line.")


class JobList(BaseModel):
    object: str = "list"
    data: list[Job]


class SwapRequest(BaseModel):
    gpu: str
    tp: int = 1
    pp: int = 1
    market: str = "spot"
    launcher: str | None = None
    cancel: bool = False


class PlanRequest(BaseModel):
    deadline: str = "24h"
    model: str | None = None
    gpu: str | None = None
    markets: list[str] | None = None


class PlanList(BaseModel):
    object: str = "list"
    data: list[PlanOut]
    n_requests: int
    est_prompt_tokens: int
    est_output_tokens: int
