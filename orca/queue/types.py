"""Plain records returned by the chunk queue (no Redis types leak out)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ChunkState(str, Enum):
    PENDING = "pending"
    LEASED = "leased"
    DONE = "done"
    DEAD = "dead"
    SPLIT = "split"    # partially committed: replaced by its two children (see ``split_children``)


@dataclass(frozen=True)
class Lease:
    """A worker's hold on one chunk. ``generation`` is the fencing token."""

    job_id: str
    chunk_id: str
    generation: int
    worker_id: str
    pool: str
    expires_at_ms: int
    attempt: int


@dataclass(frozen=True)
class QueueCounts:
    pending: int
    leased: int
    done: int
    dead: int
    total: int

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.done + self.dead == self.total


#: Fields of a job's counts hash (``keys.job_counts``), in ``QueueCounts`` order.
COUNT_FIELDS = ("pending", "leased", "done", "dead", "total")


@dataclass(frozen=True)
class ChunkInfo:
    chunk_id: str
    state: ChunkState
    attempts: int
    generation: int
    committed_generation: int | None
    owner: str | None
    pool: str | None
    last_error: str | None
    split: str | None = None  # tag of its accepted partial commit


def split_children(chunk_id: str, tag: str) -> tuple[str, str]:
    """The two chunks a partial commit tagged ``tag`` replaces ``chunk_id`` with: (answered, rest).

    The tag is the lease generation plus a random suffix, so two holders of one generation (a
    claim lost with an AOF tail) never write to the same child objects."""
    return f"{chunk_id}.{tag}a", f"{chunk_id}.{tag}r"
