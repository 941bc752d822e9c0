"""The chunk queue: Redis (``ChunkQueue``) and its in-memory twin (``MemoryChunkQueue``)."""

from orca.queue.chunk_queue import ChunkQueue
from orca.queue.memory import ManualClock, MemoryChunkQueue, MemoryQueueServer, SystemClock
from orca.queue.types import ChunkInfo, ChunkState, Lease, QueueCounts

__all__ = [
    "ChunkInfo", "ChunkQueue", "ChunkState", "Lease", "ManualClock", "MemoryChunkQueue",
    "MemoryQueueServer", "QueueCounts", "SystemClock",
]
