"""The embedded stack's RQ worker, restarted after a kill -9, picks up the steps its predecessor held."""

from __future__ import annotations

import redis
from rq import Queue

from orca.queue import keys
from orca.queue.background import Background, requeue_abandoned_steps
from orca.settings import Settings


def test_a_step_dequeued_by_a_killed_worker_is_queued_again(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url)
    background = Background(redis_url, settings)
    conn = redis.Redis.from_url(redis_url)
    try:
        assert background.submit("ingest-job1", "orca.control.tasks.ingest_job", "{}", "job1")
        queue = Queue(keys.RQ_QUEUE, connection=conn)
        # what RQ's dequeue does before a worker starts the step: move it to the intermediate list
        conn.lmove(queue.key, queue.intermediate_queue.key)
        assert queue.get_job_ids() == [] and queue.intermediate_queue.get_job_ids() == ["ingest-job1"]
        requeue_abandoned_steps(conn)
        assert queue.get_job_ids() == ["ingest-job1"] and queue.intermediate_queue.get_job_ids() == []
        assert background.step_status("ingest-job1") == "queued"
        requeue_abandoned_steps(conn)  # nothing abandoned now: nothing queued twice
        assert queue.get_job_ids() == ["ingest-job1"]

        # killed after registering the execution but before marking the step started
        conn.lmove(queue.key, queue.intermediate_queue.key)
        conn.zadd(queue.started_job_registry.key, {"ingest-job1:exec1": 1})
        requeue_abandoned_steps(conn)
        assert queue.get_job_ids() == ["ingest-job1"] and queue.intermediate_queue.get_job_ids() == []
    finally:
        background.close()
        conn.close()
