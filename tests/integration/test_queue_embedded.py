"""The embedded redis-server: start, adopt, stop, kill, restart on the same data dir."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

from orca.errors import EmbeddedRedisError
from orca.queue.embedded import EmbeddedRedis


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def test_start_adopt_stop_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    try:
        assert server.ping() and server.pid and _alive(server.pid)
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert (tmp_path / "redis.log").exists()
        _client(server).set("k", "v")

        again = EmbeddedRedis(tmp_path).start()  # e.g. a second CLI process
        assert (again.pid, again.port) == (server.pid, server.port)
        with pytest.raises(EmbeddedRedisError):
            EmbeddedRedis(tmp_path, port=server.port + 1).start()  # never two servers on one dir

        pid = server.pid
        again.stop()  # an adopted server stops too
        assert not _alive(pid) and not server.ping()
        assert not (tmp_path / "orca-redis.state").exists()
        again.stop()  # stopping a stopped server is a no-op

        server = EmbeddedRedis(tmp_path).start()
        assert server.pid != pid
        assert _client(server).get("k") == "v"  # graceful stop flushed the AOF
    finally:
        server.stop()


def test_kill_and_restart_on_same_dir_and_port(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    port, pid = server.port, server.pid
    try:
        _client(server).set("old", "1")
        time.sleep(1.2)  # appendfsync everysec
        server.kill()
        assert not _alive(pid) and not server.ping()
        server.start()
        assert server.port == port and server.pid != pid
        assert _client(server).get("old") == "1"
    finally:
        server.stop()


def test_start_failure_is_loud(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "a").start()
    try:
        with pytest.raises(EmbeddedRedisError) as info:
            EmbeddedRedis(tmp_path / "b", port=first.port).start()  # port taken
        assert "exited during start" in str(info.value)
    finally:
        first.stop()


def test_an_older_servers_open_redis_is_restarted_locked_down(tmp_path: Path) -> None:
    old = EmbeddedRedis(tmp_path).start()  # as an orca from before requirepass left it: no password
    _client(old).set("k", "v")
    new = EmbeddedRedis(tmp_path, requirepass=True).start()
    try:
        assert new.port == old.port and new.pid != old.pid and not _alive(old.pid)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=new.port).get("k")
        assert _client(new).get("k") == "v"  # its data came along through the flushed AOF
        assert EmbeddedRedis(tmp_path, requirepass=True).start().pid == new.pid  # and it is adopted from then on
    finally:
        new.stop()
