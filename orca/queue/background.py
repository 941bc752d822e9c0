"""Long control-plane steps (ingest, assembly) as RQ jobs, and the RQ worker.

RQ keeps each step in Redis, so a step enqueued before a server restart still runs after
it, and a failed or abandoned step is retried (RQ ``Retry``). Steps are named by a
stable id (``<step>-<job id>``): asking again for a step that is queued or running
does nothing, so the controller can re-request a step on every tick.

RQ pickles job payloads, so it gets its own client without response decoding.
"""

from __future__ import annotations

import logging
import time

import redis
from rq import Queue, Retry, Worker
from rq.job import Job, JobStatus as RQStatus
from rq.registry import StartedJobRegistry
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from orca.errors import QueueError, QueueUnavailableError
from orca.queue import keys
from orca.queue.connection import connect
from orca.settings import Settings

log = logging.getLogger("orca.background")

_PENDING = {RQStatus.QUEUED, RQStatus.STARTED, RQStatus.SCHEDULED, RQStatus.DEFERRED}


def _client(redis_url: str, settings: Settings) -> redis.Redis:
    return connect(redis_url, settings.queue, decode=False)


class Background:
    """Enqueue long steps. ``synchronous=True`` runs each step in the caller at once (tests)."""

    #: ``step_status`` values of a step that is queued or running (asking again does nothing).
    PENDING = frozenset(s.value for s in _PENDING)

    def __init__(self, redis_url: str, settings: Settings, synchronous: bool = False) -> None:
        self.settings = settings
        self.synchronous = synchronous
        self._redis = _client(redis_url, settings)
        self._queue = Queue(
            keys.RQ_QUEUE, connection=self._redis, is_async=not synchronous,
            default_timeout=settings.control.task_timeout_s,
        )

    def submit(self, step_id: str, func: str, *args: object) -> bool:
        """Run ``func(*args)`` (a dotted path) as step ``step_id`` unless that step is already pending.

        Returns True if the step was enqueued now.
        """
        try:
            if not self.synchronous:
                try:
                    existing = Job.fetch(step_id, connection=self._redis)
                except Exception:  # noqa: BLE001 - RQ raises NoSuchJobError or a deserialization error
                    existing = None
                if existing is not None and existing.get_status(refresh=False) in _PENDING:
                    return False
            control = self.settings.control
            retry = Retry(max=control.task_retries, interval=control.task_retry_backoff_s) if control.task_retries else None
            self._queue.enqueue_call(
                func, args=args, job_id=step_id, retry=retry,
                result_ttl=3600, failure_ttl=7 * 86400, description=step_id,
            )
            return True
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise QueueUnavailableError(reason=str(exc)) from exc
        except redis.RedisError as exc:
            raise QueueError("could not enqueue a background step", step=step_id, reason=str(exc)) from exc

    def step_status(self, step_id: str) -> str | None:
        """RQ status of a step (queued, started, finished, failed, ...) or None if unknown."""
        try:
            return Job.fetch(step_id, connection=self._redis).get_status(refresh=False).value
        except Exception:  # noqa: BLE001 - NoSuchJobError: the step was never enqueued or expired
            return None

    def close(self) -> None:
        self._redis.close()


def requeue_abandoned_steps(conn: redis.Redis) -> None:
    """Queue again every step a dead worker had dequeued but not started; retry (or fail, once out of
    retries) every step RQ still lists as started.

    Only for a deployment with a single RQ worker (the embedded stack), called as that worker
    (re)starts: nothing can be running then, so a started step belonged to a worker that was
    killed. RQ's own detection waits for the dead worker's heartbeat to expire (minutes).
    """
    queue = Queue(keys.RQ_QUEUE, connection=conn)
    StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + 10 * 365 * 86400)
    intermediate = queue.intermediate_queue  # dequeued (moved here) but not started when the worker died
    waiting = set(queue.get_job_ids())
    for step_id in intermediate.get_job_ids():
        intermediate.remove(step_id)
        step = queue.fetch_job(step_id)
        if step is not None and step.get_status(refresh=False) == RQStatus.QUEUED and step_id not in waiting:
            queue.push_job_id(step_id, at_front=True)


def _wait_for_redis(conn: redis.Redis, settings: Settings) -> None:
    """Block until Redis answers PING (tenacity backoff up to ``control.reconnect_backoff_max_s``)."""
    control = settings.control
    retrying = Retrying(
        retry=retry_if_exception_type((redis.ConnectionError, redis.TimeoutError)),
        wait=wait_exponential(multiplier=settings.queue.retry_backoff_s, max=control.reconnect_backoff_max_s),
        stop=stop_after_delay(control.reconnect_max_s),
        before_sleep=lambda state: log.warning("Redis unreachable (%s); reconnecting", state.outcome.exception()),
        reraise=True,
    )
    try:
        retrying(conn.ping)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise QueueUnavailableError(reason=str(exc)) from exc


def run_worker(redis_url: str, settings: Settings, name: str | None = None, burst: bool = False,
               sole_worker: bool = False) -> None:
    """Run an RQ worker on the control queue until SIGTERM (the embedded stack's worker process).

    The scheduler runs inside it so that retries with a backoff interval are re-enqueued. A lost
    Redis does not end it: RQ's loop quits on an unexpected error, so this waits for Redis
    (tenacity backoff, up to ``control.reconnect_max_s``) and runs a fresh loop. ``sole_worker``
    (the embedded stack): steps left started by a killed predecessor are retried at once.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    conn = _client(redis_url, settings)
    try:
        while True:
            _wait_for_redis(conn, settings)
            if sole_worker:
                requeue_abandoned_steps(conn)
            worker = Worker([Queue(keys.RQ_QUEUE, connection=conn)], connection=conn, name=name)
            worker.max_connection_wait_time = settings.control.reconnect_backoff_max_s
            worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
            if burst or worker._shutdown_requested_date is not None:  # SIGTERM/SIGINT, idle or busy
                return
            log.warning("RQ worker loop ended (Redis lost?); reconnecting")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise QueueUnavailableError(reason=str(exc)) from exc
