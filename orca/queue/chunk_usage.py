"""Token usage per committed chunk, in Redis: workers record it, the control plane sums it.

A worker records the usage of a chunk output under ``"{chunk}:{generation}"`` in
``keys.job_usage(job)`` after uploading the output and before completing the lease. The sum
counts an entry only if its generation is the chunk's committed one
(``ChunkQueue.committed_generations``), so a fenced-off or uncommitted attempt never counts,
a retried chunk is not counted twice, and a commit always has its usage recorded.
"""

from __future__ import annotations

import json

from orca.queue import keys
from orca.queue.connection import RedisConnection
from orca.settings import QueueSettings, get_settings
from orca.usage import TokenUsage


class ChunkUsageStore:
    """Per-chunk token usage of jobs, over one Redis connection."""

    def __init__(self, redis_url: str, settings: QueueSettings | None = None) -> None:
        self._conn = RedisConnection(redis_url, settings or get_settings().queue)

    def close(self) -> None:
        self._conn.close()

    def record(self, job_id: str, chunk_id: str, generation: int, usage: TokenUsage) -> None:
        """Store one chunk output's usage (idempotent: the same output always has the same usage)."""
        value = json.dumps(usage.to_dict())
        self._conn.call(lambda: self._conn.client.hset(keys.job_usage(job_id), f"{chunk_id}:{generation}", value))

    def total(self, job_id: str, committed: dict[str, int]) -> TokenUsage:
        """Summed usage of the job's committed chunk outputs (``committed``: chunk id -> committed generation)."""
        raw = self._conn.call(lambda: self._conn.client.hgetall(keys.job_usage(job_id)))
        total = TokenUsage()
        for field, value in raw.items():
            chunk_id, _, gen = field.rpartition(":")
            if committed.get(chunk_id) == int(gen):
                total = total + TokenUsage.from_dict(json.loads(value))
        return total
