"""Records shared across orca's parts: the batch request formats, chunk manifests and jobs."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field

Endpoint = Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
ENDPOINTS: tuple[str, ...] = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")


class JobStatus(str, Enum):
    """OpenAI Batch lifecycle states."""

    VALIDATING = "validating"
    FAILED = "failed"
    PLANNING = "planning"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.FAILED, JobStatus.COMPLETED, JobStatus.EXPIRED, JobStatus.CANCELLED)


class ChunkManifest(BaseModel):
    """One chunk of a job: which input lines it holds, in the order they appear in its data object."""

    job_id: str
    chunk_id: str
    lines: list[int] = Field(description="1-based input line numbers, ascending, one per request in the chunk data object.")
    est_tokens: int = Field(description="Estimated prompt plus output tokens of the chunk.")

    @property
    def n_requests(self) -> int:
        return len(self.lines)


class SplitPart(BaseModel):
    chunk_id: str
    positions: list[int] = Field(description="0-based positions in the parent chunk (ascending) of this part's requests.")


class ChunkSplit(BaseModel):
    """A partial commit of a chunk (``JobLayout.split``): the answered part and the rest replace it."""

    chunk_id: str
    tag: str
    answered: SplitPart
    rest: SplitPart


class ValidationIssue(BaseModel):
    """One input-file problem, shaped like an OpenAI batch error."""

    code: str
    line: int | None = None
    message: str
    param: str | None = None
