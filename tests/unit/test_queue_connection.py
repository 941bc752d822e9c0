"""Redis client construction, retry and error translation, and the scripts' key discipline."""

from __future__ import annotations

import re
import time

import pytest
import redis

from orca.errors import ChunkNotFoundError, QueueError, QueueUnavailableError, StaleLeaseError
from orca.queue import ChunkQueue, keys
from orca.queue.connection import SCRIPT_NAMES, RedisConnection, _translate, script_source
from orca.queue.embedded import free_port
from orca.settings import QueueSettings


def test_error_replies_become_typed_errors() -> None:
    stale = _translate(redis.ResponseError("STALE a generation 1 (now leased at generation 2)"), "u")
    assert isinstance(stale, StaleLeaseError) and stale.context == {"detail": "a generation 1 (now leased at generation 2)"}
    missing = _translate(redis.ResponseError("NOCHUNK ghost"), "u")
    assert isinstance(missing, ChunkNotFoundError) and missing.context == {"chunk_id": "ghost"}
    other = _translate(redis.ResponseError("WRONGTYPE Operation against a key"), "u")
    assert type(other) is QueueError and "WRONGTYPE" in str(other)
    for exc in (redis.ConnectionError("refused"), redis.TimeoutError("slow"), redis.BusyLoadingError("loading")):
        assert isinstance(_translate(exc, "redis://x"), QueueUnavailableError)


def test_unreachable_redis_is_retried_then_unavailable() -> None:
    settings = QueueSettings(connect_retries=3, retry_backoff_s=0.05, socket_timeout_s=1)
    q = ChunkQueue(f"redis://127.0.0.1:{free_port()}/0", "job", settings)
    started = time.monotonic()
    with pytest.raises(QueueUnavailableError):
        q.counts()
    assert time.monotonic() - started >= 0.05  # attempt, immediate retry, backoff, last attempt
    with pytest.raises(QueueUnavailableError):
        q.claim("w", "p")


def test_connection_retries_only_connection_errors() -> None:
    conn = RedisConnection("redis://127.0.0.1:1/0", QueueSettings(connect_retries=5, retry_backoff_s=0.001))
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise redis.ConnectionError("reset")
        return "ok"

    assert conn.call(flaky) == "ok" and len(calls) == 3

    def refused() -> None:
        calls.append(1)
        raise redis.ResponseError("STALE x")

    calls.clear()
    with pytest.raises(StaleLeaseError):
        conn.call(refused)
    assert len(calls) == 1


def test_invalid_url_is_a_queue_error() -> None:
    with pytest.raises(QueueError):
        ChunkQueue("http://not-redis", "job")


KEY_COMMANDS = {"HGET", "HSET", "HSETNX", "HINCRBY", "RPUSH", "LPUSH", "LPOP", "ZADD", "ZREM",
                "ZRANGE", "ZRANGEBYSCORE", "SADD", "SREM", "SISMEMBER", "GET", "DEL", "PEXPIRE"}


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_scripts_touch_only_keys_passed_in_keys(name: str) -> None:
    source = script_source(name)
    assert keys.PREFIX + ":" not in source  # no key name built inside a script
    calls = re.findall(r"redis\.call\('(\w+)'(?:,\s*([^,)]+))?", source)
    assert calls and len(calls) == source.count("redis.call(")
    for command, first_arg in calls:
        if command == "TIME":
            continue
        assert command in KEY_COMMANDS, command
        assert re.fullmatch(r"KEYS\[\d\]", first_arg.strip()), (command, first_arg)


def test_every_job_key_carries_the_hash_tag() -> None:
    for key in keys.job_keys("j-1") + [keys.job_worker_metrics("j-1", "w"), keys.job_chunks("j-1")]:
        assert key.startswith(keys.job_prefix("j-1")) and "{j-1}" in key
