"""The engine interface and the supervisor of engine server subprocesses.

An engine is an OpenAI-compatible HTTP server. The worker only needs to know
where to send a request (:meth:`Engine.url_for`), whether the engine is up
(:attr:`Engine.ready`) and whether it is gone for good (:attr:`Engine.failure`).
:class:`ServerProcess` starts one server command, waits for its health URL,
restarts it when it crashes (at most ``max_restarts`` times) and stops it
(SIGTERM to its process group, SIGKILL after ``stop_timeout_s``). A server started from the
main thread or from the restart monitor is tethered (``orca.worker.engines.tether``): it gets
SIGTERM if the worker dies without stopping it (kill -9), instead of running on orphaned.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

import httpx

from orca.errors import EngineError, EngineStartError
from orca.settings import EngineSettings
from orca.worker.engines.tether import tethered


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine(ABC):
    """An OpenAI-compatible server the worker forwards requests to."""

    kind: str = ""
    #: Whether the server answers ``/v1/responses`` itself; if not, the worker adapts those requests to
    #: chat completions (``orca.worker.responses_adapter``).
    serves_responses: bool = True

    @abstractmethod
    def start(self) -> None:
        """Bring the engine up; returns once it answers its health check. Raises EngineStartError."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the engine (idempotent)."""

    @abstractmethod
    def url_for(self, endpoint: str) -> str:
        """Absolute URL of a request's endpoint (e.g. ``/v1/chat/completions``) on this engine."""

    @property
    def ready(self) -> bool:
        """True while the engine is believed to answer requests (False while it restarts)."""
        return True

    @property
    def failure(self) -> str | None:
        """Why the engine is gone for good (restarts exhausted), or None."""
        return None

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers for every request (e.g. an API key of an external endpoint)."""
        return {}

    def __enter__(self) -> "Engine":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess:
    """One supervised server subprocess on a loopback port."""

    def __init__(self, name: str, command: list[str], port: int, settings: EngineSettings,
                 health_path: str = "/health", env: dict[str, str] | None = None,
                 log_path: Path | None = None) -> None:
        self.name, self.command, self.port = name, command, port
        self.settings, self.health_path = settings, health_path
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"orca-engine-{name}-{port}.log"
        self.restarts = 0
        self.failure: str | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._monitor: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ready(self) -> bool:
        """Healthy and still running (checked directly, so a crash counts before the monitor notices it)."""
        proc = self._proc
        return self._ready.is_set() and proc is not None and proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self._spawn_and_wait()
        self._monitor = threading.Thread(target=self._watch, name=f"engine-{self.name}", daemon=True)
        self._monitor.start()

    def _spawn_and_wait(self) -> None:
        command = self.command
        thread = threading.current_thread()
        if thread is threading.main_thread() or thread is self._monitor:  # threads that live as long as the server should
            command = tethered(command, os.getpid())
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=self.env, start_new_session=True)
        deadline = time.monotonic() + self.settings.start_timeout_s
        with httpx.Client(timeout=self.settings.health_poll_s * 4) as client:
            while time.monotonic() < deadline and not self._stopping.is_set():
                code = self._proc.poll()
                if code is not None:
                    raise EngineStartError(f"{self.name} exited during start", code=code, log=self.log_tail())
                try:
                    if client.get(self.url + self.health_path).status_code == 200:
                        self._ready.set()
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(self.settings.health_poll_s)
        self._kill()
        raise EngineStartError(f"{self.name} did not become healthy in time",
                               timeout_s=self.settings.start_timeout_s, log=self.log_tail())

    def _watch(self) -> None:
        """Restart the server when it dies unexpectedly; give up after max_restarts."""
        while not self._stopping.wait(self.settings.health_poll_s):
            proc = self._proc
            if proc is None or proc.poll() is None:
                continue
            self._ready.clear()
            while not self._stopping.is_set():
                self.restarts += 1
                if self.restarts > self.settings.max_restarts:
                    self.failure = f"{self.name} crashed {self.restarts} times (last exit code {proc.returncode})"
                    return
                try:
                    self._spawn_and_wait()
                    break
                except EngineStartError:
                    continue

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        self._stopping.set()
        self._ready.clear()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(self.settings.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self._kill()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)


class SubprocessEngine(Engine):
    """An engine made of one or more supervised server processes."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.servers: list[ServerProcess] = []

    @abstractmethod
    def build_servers(self) -> list[ServerProcess]:
        """The server processes of this engine (command lines built, ports chosen)."""

    def start(self) -> None:
        self.servers = self.build_servers()
        try:
            for server in self.servers:
                server.start()
        except EngineError:
            self.stop()
            raise

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    @property
    def ready(self) -> bool:
        return bool(self.servers) and all(s.ready for s in self.servers)

    @property
    def failure(self) -> str | None:
        return next((s.failure for s in self.servers if s.failure), None)

    def url_for(self, endpoint: str) -> str:
        return self.servers[0].url + endpoint
