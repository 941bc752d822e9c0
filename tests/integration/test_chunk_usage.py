"""Per-chunk token usage in Redis: only each chunk's committed generation counts."""

from __future__ import annotations

from orca.queue import ChunkQueue
from orca.queue.chunk_usage import ChunkUsageStore
from orca.usage import TokenUsage


def test_only_committed_generations_count(redis_url: str) -> None:
    store = ChunkUsageStore(redis_url)
    queue = ChunkQueue(redis_url, "job-u")
    try:
        queue.enqueue_many(["c1", "c2", "c3"])
        first = queue.claim("w1", "p", 1)[0]  # c1, generation g
        store.record("job-u", first.chunk_id, first.generation, TokenUsage(10, 5, 15))
        queue.release(first)                  # not committed: its usage must not count
        again = queue.claim("w2", "p", 1)[0]   # c1 again, a new generation
        assert again.chunk_id == first.chunk_id and again.generation != first.generation
        store.record("job-u", again.chunk_id, again.generation, TokenUsage(11, 6, 17, cached_tokens=3))
        queue.complete(again)
        other = queue.claim("w2", "p", 1)[0]
        store.record("job-u", other.chunk_id, other.generation, TokenUsage(1, 1, 2))
        queue.complete(other)
        total = store.total("job-u", queue.committed_generations())
        assert total == TokenUsage(12, 7, 19, cached_tokens=3)
        assert store.total("job-u", {}) == TokenUsage()
        queue.delete()
        assert store.total("job-u", {"c1": again.generation}) == TokenUsage()  # deleted with the job's keys
    finally:
        store.close()
        queue.close()
