"""Shared fixtures. Services are real processes; a missing service fails the test loudly."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from orca.queue.embedded import EmbeddedRedis

_db_numbers = itertools.cycle(range(1, 16))
T = TypeVar("T")


def wait_until(pred: Callable[[], T], timeout_s: float = 10.0, what: str = "the condition", interval_s: float = 0.02) -> T:
    """Call ``pred`` until it returns something truthy, and return that; AssertionError naming ``what``
    after ``timeout_s``. Tests wait on events through this, never on fixed sleeps."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One real redis-server on a random loopback port for the whole session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """URL of an empty database on the session's redis-server (flushed before each test)."""
    import redis

    db = next(_db_numbers)
    url = f"redis://127.0.0.1:{redis_server.port}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url
