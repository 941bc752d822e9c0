"""The embedded stack: everything orca needs on one machine, as background processes under ``settings.home``.

``up()`` starts or adopts, in order: a redis-server (``home/redis``; or the Redis at
``settings.redis_url``), the RQ worker that runs long steps, the control plane server
(API + controller loop), and a supervisor (``orca.control.supervisor``) that runs ``up()``
every ``control.supervise_every_s``: a killed process comes back by itself, the redis-server on
its own port with its AOF replayed, and the server and RQ worker reconnect to it. ``up()`` on a
half-dead stack repairs it the same way. Each process runs in its own session with a pid file in
``home/run`` (pid and start time, so a recycled pid is never mistaken for ours) and a log in
``home/logs``. On first ``up`` a bearer token for ``control.default_user`` is created and
written to ``home/token`` (mode 0600). ``down()`` stops the server, the RQ worker, the local
workers and the embedded redis-server; ``status()`` reports each.

    python -m orca.control.embedded rq-worker   # the RQ worker process (started by up())
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from orca.control.service import store_url_for
from orca.errors import ConfigError, OrcaError
from orca.launchers.local import LocalLauncher, process_start_time
from orca.queue.embedded import EmbeddedRedis
from orca.queue.jobs import JobRegistry
from orca.redact import redact_url
from orca.settings import Settings, get_settings

PROCESSES = ("rq-worker", "server")
SUPERVISOR = "supervisor"  # orca.control.supervisor: restarts whatever of the stack dies


@dataclass
class StackStatus:
    home: str
    api_url: str
    redis_url: str
    store_url: str
    token_file: str
    processes: dict[str, int | None]   # name -> pid if running

    @property
    def running(self) -> bool:
        return all(self.processes.get(name) for name in PROCESSES)

    def to_dict(self) -> dict:
        return {**asdict(self), "running": self.running}


def _run_dir(settings: Settings) -> Path:
    return settings.home / "run"


def _pid_file(settings: Settings, name: str) -> Path:
    return _run_dir(settings) / f"{name}.pid"


def _log_file(settings: Settings, name: str) -> Path:
    return settings.home / "logs" / f"{name}.log"


def token_file(settings: Settings) -> Path:
    return settings.home / "token"


def _state_file(settings: Settings) -> Path:
    return _run_dir(settings) / "stack.json"


def api_url_for(settings: Settings) -> str:
    return f"http://{settings.control.host}:{settings.control.port}"


def _running_pid(settings: Settings, name: str) -> int | None:
    """The pid in ``name``'s pid file if that very process still runs."""
    try:
        pid_s, start = _pid_file(settings, name).read_text().split()
        pid = int(pid_s)
    except (FileNotFoundError, ValueError):
        return None
    return pid if process_start_time(pid) == start else None


def _redis(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    if settings.redis_url:
        return settings.redis_url, None
    server = _embedded_redis(settings).start()
    return server.url, server


def _embedded_redis(settings: Settings) -> EmbeddedRedis:
    """The stack's own redis-server: loopback only, password required (``home/redis/password``, 0600)."""
    return EmbeddedRedis(settings.home / "redis", settings=settings.embedded_redis, requirepass=True)


def _private_dir(path: Path) -> Path:
    """Make ``path`` (0700): the stack's state, logs and store are its owner's alone."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def redis_url(settings: Settings) -> str:
    """The URL (with its password) of the Redis the stack uses: configured, or the live embedded one."""
    url = settings.redis_url or _embedded_redis(settings).running_url()
    if url is None:
        raise ConfigError("the embedded Redis is not running (run `orca up`)", home=str(settings.home))
    return url


def _child_env(settings: Settings, redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ORCA_HOME": str(settings.home),
        "ORCA_REDIS_URL": redis_url,
        "ORCA_STORE_URL": store_url_for(settings),
        "ORCA_CONTROL__HOST": settings.control.host,
        "ORCA_CONTROL__PORT": str(settings.control.port),
    })
    env.pop("ORCA_API_TOKEN", None)
    return env


def _spawn(settings: Settings, name: str, argv: list[str], env: dict[str, str]) -> int:
    log_path = _log_file(settings, name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True, cwd=str(settings.home),
            umask=0o077,  # everything the stack writes (store objects, worker logs) is its owner's alone
        )
    start = process_start_time(proc.pid)
    if start is None:
        proc.wait()
        raise OrcaError(f"embedded {name} exited at once; see {log_path}", code=proc.returncode)
    _run_dir(settings).mkdir(parents=True, exist_ok=True)
    _pid_file(settings, name).write_text(f"{proc.pid} {start}\n")
    return proc.pid


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _up_or_waiting_for_redis(api_url: str) -> bool:
    """The server is healthy, or up and missing only Redis (which the next ``up`` restarts); a store it
    cannot reach is a configuration matter that ``up`` keeps reporting."""
    try:
        r = httpx.get(f"{api_url}/healthz", timeout=2.0)
        return r.status_code == 200 or (r.status_code == 503 and r.json().get("redis") is False)
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def ensure_token(settings: Settings, registry: JobRegistry) -> str:
    """The first admin's token from ``home/token``, created (and stored hashed in Redis) if missing or unknown.

    ``control.default_user`` is the stack's first admin: it adds the other users (``orca users add``).
    """
    path = token_file(settings)
    users = registry.users
    name = settings.control.default_user
    if path.exists():
        token = path.read_text().strip()
        if token and registry.user_for_token(token) == name:
            users.adopt(name, token, admin=True)  # a home from before users had roles
            return token
    if users.get(name) is None:
        token = users.add(name, admin=True)
    else:
        token = users.rotate(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def up(settings: Settings | None = None) -> StackStatus:
    """Start (or adopt) the embedded stack and wait until the API answers; repairs a half-dead one.

    Everything it writes under ``settings.home`` (pid files, logs, the token, Redis data) is its
    owner's alone: directories 0700, files 0600. One ``up`` at a time per home (a file lock): the
    supervisor runs it every second, and two at once could each start a server or redis-server.
    """
    settings = settings or get_settings()
    previous = os.umask(0o077)
    try:
        _private_dir(settings.home)
        _private_dir(_run_dir(settings))
        with open(_run_dir(settings) / "up.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return _up(settings)
    finally:
        os.umask(previous)


def _up(settings: Settings) -> StackStatus:
    for path in (settings.home, settings.home / "logs", _run_dir(settings), settings.home / "store"):
        _private_dir(path)
    redis_url, _ = _redis(settings)
    registry = JobRegistry(redis_url, settings)
    try:
        ensure_token(settings, registry)
    finally:
        registry.close()
    env = _child_env(settings, redis_url)
    if _running_pid(settings, "rq-worker") is None:
        _spawn(settings, "rq-worker", ["-m", "orca.control.embedded", "rq-worker"], env)
    api_url = api_url_for(settings)
    if _running_pid(settings, "server") is None:
        if _healthy(api_url):
            raise ConfigError("another process already serves the control plane port", url=api_url)
        pid = _spawn(settings, "server", ["-m", "orca.control.server_main"], env)
        deadline = time.monotonic() + settings.control.stack_start_timeout_s
        # Not healthy while Redis is down: waiting for that would hold the supervisor here, unable to
        # restart a redis-server that died meanwhile (the server answers 503 until Redis is back).
        while not _up_or_waiting_for_redis(api_url):
            if process_start_time(pid) is None or time.monotonic() > deadline:
                tail = _log_file(settings, "server").read_text()[-2000:]
                raise OrcaError("the control plane server did not come up", log=tail)
            time.sleep(0.1)
    fd = os.open(_state_file(settings), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:  # the Redis password stays in home/redis/password only
        f.write(json.dumps({"api_url": api_url, "redis_url": redact_url(redis_url), "store_url": store_url_for(settings)}))
    ensure_supervisor(settings)
    return status(settings)


def ensure_supervisor(settings: Settings) -> None:
    """Start the stack's supervisor unless it runs (it calls ``up`` itself, so this is a no-op there).

    It gets no ``ORCA_REDIS_URL`` unless the user set one: like ``orca up``, it then owns the
    embedded redis-server and restarts it on its own port.
    """
    if _running_pid(settings, SUPERVISOR) is not None:
        return
    env = _child_env(settings, settings.redis_url or "")
    if not settings.redis_url:
        env.pop("ORCA_REDIS_URL", None)
    _spawn(settings, SUPERVISOR, ["-m", "orca.control.supervisor"], env)


def status(settings: Settings | None = None) -> StackStatus:
    settings = settings or get_settings()
    try:
        state = json.loads(_state_file(settings).read_text())
    except (FileNotFoundError, ValueError):
        state = {}
    return StackStatus(
        home=str(settings.home), api_url=state.get("api_url", api_url_for(settings)),
        redis_url=state.get("redis_url", redact_url(settings.redis_url or "")), store_url=state.get("store_url", store_url_for(settings)),
        token_file=str(token_file(settings)),
        processes={name: _running_pid(settings, name) for name in (*PROCESSES, SUPERVISOR)},
    )


def _stop_pid(pid: int, timeout_s: float) -> None:
    start = process_start_time(pid)
    if start is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process_start_time(pid) == start:
        time.sleep(0.05)
    if process_start_time(pid) == start:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_process(settings: Settings, name: str) -> None:
    pid = _running_pid(settings, name)
    if pid is not None:
        _stop_pid(pid, settings.control.stack_stop_timeout_s)
    _pid_file(settings, name).unlink(missing_ok=True)


def down(settings: Settings | None = None, keep_redis: bool = False) -> None:
    """Stop the server, the RQ worker and every live local worker, then the embedded redis-server."""
    settings = settings or get_settings()
    stop_process(settings, SUPERVISOR)  # first: it would restart what follows
    stop_process(settings, "server")
    stop_process(settings, "rq-worker")
    redis_url = settings.redis_url or _embedded_redis(settings).running_url()
    if redis_url:
        try:
            _stop_local_workers(settings, redis_url)
        except OrcaError:
            pass  # Redis already gone: nothing left to read the workers from
    if not settings.redis_url and not keep_redis:
        _embedded_redis(settings).stop()
    _state_file(settings).unlink(missing_ok=True)


def _stop_local_workers(settings: Settings, redis_url: str) -> None:
    registry = JobRegistry(redis_url, settings)
    try:
        launcher = LocalLauncher(settings)
        live = [r for job_id in registry.job_ids() for r in registry.replicas(job_id)
                if r.launcher == "local" and r.state.live]
        for replica in live:
            registry.put_replica(launcher.drain(replica))
        for replica in live:
            registry.put_replica(launcher.terminate(replica))
        _reclaim_uncharged(settings, registry, live, "stopped by orca down")
    finally:
        registry.close()


def _reclaim_uncharged(settings: Settings, registry: JobRegistry, replicas: list, reason: str) -> None:
    """Chunks still leased to workers the stack itself stopped go back to the head of their queue
    now, with no attempt charged: the stack's restart is not the chunks' fault (dead-lettering
    counts only failures a chunk can cause)."""
    from orca.queue import ChunkQueue

    for replica in replicas:
        with ChunkQueue(registry.redis_url, replica.job_id, settings.queue) as queue:
            taken = queue.reclaim(replica.replica_id, reason, charge=False)
        if taken:
            registry.add_event(replica.job_id, "reclaimed", f"{len(taken)} chunk(s) of {replica.replica_id} "
                               f"returned to the queue uncharged ({reason})")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args != ["rq-worker"]:
        raise SystemExit("usage: python -m orca.control.embedded rq-worker")
    settings = get_settings()
    if not settings.redis_url:
        raise SystemExit("ORCA_REDIS_URL is not set")
    from orca.queue.background import run_worker

    run_worker(settings.redis_url, settings, sole_worker=True)


if __name__ == "__main__":
    main()
