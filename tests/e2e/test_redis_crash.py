"""kill -9 the embedded redis-server mid-job: nothing acknowledged a second before is lost.

The AOF runs with ``appendfsync everysec``; the queue's client rides out the restart
(tenacity retries), and every chunk can still be finished afterwards.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from orca.errors import StaleLeaseError
from orca.queue import ChunkQueue, ChunkState
from orca.queue.embedded import EmbeddedRedis
from orca.settings import QueueSettings
from tests.integration.test_queue_contract import assert_consistent
from tests.integration.test_queue_redis import assert_redis_structure


def test_kill_restart_loses_nothing_older_than_a_second(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    port = server.port
    settings = QueueSettings(lease_s=60, max_attempts=3, connect_retries=8, retry_backoff_s=0.1)
    chunk_ids = [f"c{i:03d}" for i in range(200)]
    try:
        q = ChunkQueue(server.url, "job", settings)
        q.enqueue_many(chunk_ids)
        # Acknowledged long before the crash.
        early = q.claim("w1", "spot", n=32) + q.claim("w2", "spot", n=28)
        for lease in early[:40]:
            q.complete(lease)
        for lease in early[40:45]:
            q.fail(lease, "transient")
        for lease in early[45:50]:
            q.release(lease)
        held = early[50:]
        q.drain("old")
        before = {cid: q.chunk(cid) for cid in chunk_ids}
        counts_before = q.counts()
        time.sleep(1.5)  # > appendfsync everysec
        # Acknowledged just before the crash: may or may not survive.
        late = q.claim("w3", "spot", n=20)
        for lease in late[:10]:
            q.complete(lease)
        server.kill()
        assert not server.ping()

        # A call made while Redis is down waits for the restart (tenacity), it does not fail.
        seen: list = []
        waiter = threading.Thread(target=lambda: seen.append(q.counts()))
        waiter.start()
        time.sleep(0.3)
        server = EmbeddedRedis(tmp_path / "redis", port=port).start()
        waiter.join(timeout=30)
        assert len(seen) == 1

        assert_consistent(q)
        assert_redis_structure(server.url, "job")
        late_ids = {lease.chunk_id for lease in late}
        for cid in chunk_ids:
            if cid not in late_ids:
                assert q.chunk(cid) == before[cid], cid
        counts = q.counts()
        assert counts.total == 200 and counts.done >= counts_before.done == 40
        assert q.draining() == {"old"} and q.claim("w9", "old") == []

        # Every chunk can still be finished.
        for lease in held + late:
            try:
                q.complete(lease)
            except StaleLeaseError:  # its claim was lost with the crash: the chunk is pending again
                assert lease in late and q.chunk(lease.chunk_id).state is ChunkState.PENDING
        while leases := q.claim("w4", "spot", n=32):
            for lease in leases:
                q.complete(lease)
        counts = q.counts()
        assert counts.finished and counts.done == 200 and counts.dead == 0
        assert_consistent(q)
        q.close()
    finally:
        server.stop()
