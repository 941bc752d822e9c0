"""The one place orca builds a Redis client, loads its Lua scripts and retries calls.

* ``connect(url, settings)`` builds a client with the socket timeout from settings and
  redis-py's own retry switched off: tenacity here is the only retry layer. Every client of
  one process shares one connection pool per (URL, timeout, decoding): a job's queue, the job
  registry and the background steps are cheap views over it, made and dropped freely.
* ``RedisConnection.script(name)`` runs ``orca/queue/scripts/<name>.lua`` by EVALSHA,
  loading it on NOSCRIPT (redis-py ``register_script``), so a restarted Redis that lost
  its script cache is served transparently.
* Every call goes through ``RedisConnection.call``: connection and timeout errors are
  retried with exponential backoff, then become ``QueueUnavailableError``; script error
  replies ``STALE ...`` become ``StaleLeaseError`` and ``NOCHUNK ...`` become
  ``ChunkNotFoundError``; any other Redis error becomes ``QueueError``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from orca.errors import ChunkNotFoundError, QueueError, QueueUnavailableError, StaleLeaseError
from orca.redact import redact_url
from orca.settings import QueueSettings

T = TypeVar("T")

SCRIPT_NAMES = ("enqueue_many", "claim", "renew", "complete", "fail", "release", "reap", "reclaim", "drain", "unlock", "relock",
                "split")


@cache
def script_source(name: str) -> str:
    """Text of one Lua script shipped in ``orca/queue/scripts``."""
    return resources.files("orca.queue").joinpath("scripts", f"{name}.lua").read_text()


_pools: dict[tuple, redis.ConnectionPool] = {}
_clients: dict[tuple, tuple[redis.Redis, dict]] = {}   # pool key -> (client, its registered scripts)
_pools_lock = threading.Lock()


def shared_pool(url: str, settings: QueueSettings, decode: bool = True) -> redis.ConnectionPool:
    """This process's connection pool for ``url`` (one per timeout and decoding; a forked child gets its own)."""
    key = (os.getpid(), url, settings.socket_timeout_s, decode)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            try:
                pool = redis.ConnectionPool.from_url(
                    url, decode_responses=decode, socket_timeout=settings.socket_timeout_s,
                    socket_connect_timeout=settings.socket_timeout_s, retry=Retry(NoBackoff(), 0))
            except ValueError as exc:  # malformed URL
                raise QueueError("invalid Redis URL", url=redact_url(url), reason=str(exc)) from exc
            _pools[key] = pool
        return pool


def connect(url: str, settings: QueueSettings, decode: bool = True) -> redis.Redis:
    """A client for ``url`` over the process's shared pool (str replies unless ``decode`` is off,
    settings' socket timeout, no hidden retries). Closing it leaves the pool open."""
    return redis.Redis(connection_pool=shared_pool(url, settings, decode))


def _shared_client(url: str, settings: QueueSettings) -> tuple[redis.Redis, dict]:
    """The process's one decoding client for ``url`` and orca's scripts registered on it (a redis-py
    client is thread-safe), so a queue or registry view costs nothing to make."""
    key = (os.getpid(), url, settings.socket_timeout_s)
    with _pools_lock:
        held = _clients.get(key)
    if held is None:
        client = connect(url, settings)
        held = (client, {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES})
        with _pools_lock:
            held = _clients.setdefault(key, held)
    return held


def _translate(exc: redis.RedisError, url: str) -> QueueError:
    url = redact_url(url)
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return QueueUnavailableError(url=url, reason=str(exc))
    text = str(exc)
    if isinstance(exc, redis.ResponseError):
        if text.startswith("STALE"):
            return StaleLeaseError(detail=text[len("STALE "):])
        if text.startswith("NOCHUNK"):
            return ChunkNotFoundError(chunk_id=text[len("NOCHUNK "):])
    return QueueError("Redis refused a queue operation", reason=text)


class RedisConnection:
    """A Redis client plus orca's registered scripts, with retry and error translation."""

    def __init__(self, url: str, settings: QueueSettings) -> None:
        self.url = url
        self.settings = settings
        self.client, self._scripts = _shared_client(url, settings)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (one Redis round trip or pipeline), retrying connection errors.

        The first attempt runs bare (no tenacity bookkeeping on the hot path). After a
        connection error the next attempt is immediate (a pooled socket may simply be
        stale after a Redis restart), then backoff doubles from ``retry_backoff_s``,
        ``connect_retries`` attempts in all.
        """
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError):
            if self.settings.connect_retries <= 1:
                raise QueueUnavailableError(url=redact_url(self.url)) from None
        except redis.RedisError as exc:
            raise _translate(exc, self.url) from exc
        retrying = Retrying(
            retry=retry_if_exception_type((redis.ConnectionError, redis.TimeoutError)),
            stop=stop_after_attempt(self.settings.connect_retries - 1),
            wait=wait_exponential(multiplier=self.settings.retry_backoff_s, max=self.settings.retry_max_wait_s),
            reraise=True,
        )
        try:
            return retrying(fn)
        except redis.RedisError as exc:
            raise _translate(exc, self.url) from exc

    def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of orca's Lua scripts (EVALSHA, NOSCRIPT fallback) through ``call``."""
        script = self._scripts[name]
        return self.call(lambda: script(keys=list(keys), args=list(args)))

    def queue_script(self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        """Queue one of orca's Lua scripts on a pipeline (EVALSHA; the pipeline loads it on NOSCRIPT)."""
        self._scripts[name](keys=list(keys), args=list(args), client=pipe)

    def close(self) -> None:
        """Nothing to free: the client and its pool are the process's, shared by every view."""
