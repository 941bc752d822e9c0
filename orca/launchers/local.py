"""The local launcher: orca workers as subprocesses of this machine (the embedded default).

Each replica is ``python -m orca.worker ... --burst`` in its own session, so it outlives a
killed control plane. Its handle is ``"<pid>:<start time>"`` (the start time from
``/proc/<pid>/stat`` guards against a recycled pid); the controller stores it in Redis, so a
restarted control plane adopts running workers and polls them by pid. Before the launch the
handle is ``"replica:<replica id>"`` (``planned_handle``): a launch lost with its control plane
(killed between starting the worker and recording its pid) is still found, by the
``--worker-id`` on its command line, and torn down like any other. Logs go to
``settings.home/logs/<job>/<replica>.log``. Workers inherit the launcher's queue, worker,
engine and store settings (as ``ORCA_*`` variables), so leases and timeouts agree.

State mapping: alive -> STARTING until the worker reports that it runs, then RUNNING
(DRAINING after ``drain``); exit code 0 -> TERMINATED, non-zero or a signal -> FAILED.
A worker that ended while no process of ours was its parent leaves no exit code: it is
TERMINATED if it was draining or its last report says it stopped cleanly, else FAILED. Cost accrues at the pool's price (0 for the local market).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from orca.errors import LaunchError
from orca.launchers.base import Launcher, PoolSpec, Replica, ReplicaState, WorkerEnv
from orca.launchers.costs import accrued_cost
from orca.launchers.worker_env import REDIS_URL, STORE_URL, has_credentials
from orca.settings import Settings, get_settings

#: (job id, replica id) -> the worker's last metrics report (``state``: starting | running | draining | stopped), or None.
ReportFn = Callable[[str, str], dict | None]


#: Prefix of a handle named before the launch (``planned_handle``): the worker is found by its replica id.
PLANNED = "replica:"


def process_start_time(pid: int) -> str | None:
    """Start time of ``pid`` (clock ticks since boot), or None if no such live process.

    A zombie (exited, not yet reaped by its parent) counts as gone. Without procfs the
    start time is "0" for any pid that accepts signal 0.
    """
    if not Path("/proc").is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return "0"
        return "0"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat.rsplit(")", 1)[-1].split()
    # rest[0] is the state (field 3); the start time is field 22, i.e. rest[19].
    if rest[0] in ("Z", "X"):
        return None
    return rest[19]


def find_worker(replica_id: str) -> tuple[int, str] | None:
    """(pid, start time) of the live ``python -m orca.worker ... --worker-id replica_id`` process, if any
    (read from ``/proc/*/cmdline``; None without procfs)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    want = replica_id.encode()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"orca.worker" in argv and any(a == b"--worker-id" and b == want for a, b in zip(argv, argv[1:])):
            start = process_start_time(int(entry.name))
            if start is not None:
                return int(entry.name), start
    return None


#: Settings sections a local worker inherits from the control plane that launched it.
WORKER_SECTIONS = ("queue", "worker", "engine", "store")


def worker_settings_env(settings: Settings) -> dict[str, str]:
    """``ORCA_<SECTION>__<FIELD>`` variables that give a worker the launcher's timings and limits.

    A CPU engine left at every core (``llamacpp_threads`` -1) gets its share of the cores
    instead: up to ``local_max_workers`` engines run at once, and more threads than cores
    makes all of them slower.
    """
    env = {}
    for section in WORKER_SECTIONS:
        for name, value in getattr(settings, section).model_dump(mode="json").items():
            env[f"ORCA_{section.upper()}__{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    if settings.engine.llamacpp_threads < 0:
        share = (os.cpu_count() or 1) // max(1, settings.launcher.local_max_workers)
        env["ORCA_ENGINE__LLAMACPP_THREADS"] = str(max(1, share))
    return env


def worker_command(env: WorkerEnv, pool: PoolSpec, replica_id: str, python: str = sys.executable) -> list[str]:
    """The worker command line for one replica (engine kind and extra arguments from the pool).

    A Redis or store URL with a password is left out: any local user can read a command line, so
    ``worker_secret_env`` passes it in the worker's environment (``ORCA_REDIS_URL``/``ORCA_STORE_URL``).
    """
    cmd = [python, "-m", "orca.worker", "--job", env.job_id]
    for flag, url in (("--redis-url", env.redis_url), ("--store-url", env.store_url)):
        if not has_credentials(url):
            cmd += [flag, url]
    cmd += ["--pool", pool.key, "--worker-id", replica_id, "--engine", pool.engine, "--burst"]
    if env.model:
        cmd += ["--model", env.model]
    for name, value in sorted(pool.engine_args.items()):
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    return cmd


def worker_secret_env(env: WorkerEnv) -> dict[str, str]:
    """The URLs ``worker_command`` leaves out because they carry a password, as the worker's environment."""
    return {name: url for name, url in ((REDIS_URL, env.redis_url), (STORE_URL, env.store_url)) if has_credentials(url)}


class LocalLauncher(Launcher):
    name = "local"

    def __init__(self, settings: Settings | None = None, report: ReportFn | None = None, python: str = sys.executable) -> None:
        self.settings = settings or get_settings()
        self.report = report
        self.python = python
        self._children: dict[int, subprocess.Popen] = {}

    def planned_handle(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> str:
        return f"{PLANNED}{replica_id}"

    def log_path(self, job_id: str, replica_id: str) -> Path:
        return self.settings.home / "logs" / job_id / f"{replica_id}.log"

    def launch(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> Replica:
        now = time.time()
        replica = Replica(replica_id=replica_id, job_id=env.job_id, pool=pool.key, launcher=self.name, created_at=now,
                          price_per_hour=pool.price_per_replica_hour)
        log_file = self.log_path(env.job_id, replica_id)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = worker_command(env, pool, replica_id, self.python)
        try:
            with open(log_file, "ab") as log:
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, **worker_settings_env(self.settings), **worker_secret_env(env)},
                    start_new_session=True,  # survives a killed control plane; its own process group
                )
        except OSError as exc:
            replica.state = ReplicaState.FAILED
            replica.ended_at = now
            replica.message = f"could not start the worker: {exc}"
            return replica
        start = process_start_time(proc.pid)
        if start is None:  # exited before we could look (e.g. bad interpreter)
            proc.wait()
            start = "0"
        self._children[proc.pid] = proc
        replica.handle = f"{proc.pid}:{start}"
        replica.started_at = now
        replica.message = f"pid {proc.pid}, log {log_file}"
        return replica

    def _parse(self, replica: Replica) -> tuple[int, str] | None:
        """(pid, start time) of the replica's worker; None for a planned handle whose worker does not run
        (then the handle becomes the found worker's pid handle)."""
        if replica.handle.startswith(PLANNED):
            found = find_worker(replica.handle.removeprefix(PLANNED))
            if found is not None:
                replica.handle = f"{found[0]}:{found[1]}"
            return found
        try:
            pid_s, start = replica.handle.split(":", 1)
            return int(pid_s), start
        except ValueError:
            raise LaunchError("local replica has no valid pid handle", replica_id=replica.replica_id, handle=replica.handle) from None

    def _exit_code(self, pid: int, start: str) -> tuple[bool, int | None]:
        """(alive, exit code if known)."""
        proc = self._children.get(pid)
        if proc is not None:
            code = proc.poll()
            if code is None:
                return True, None
            return False, code
        return process_start_time(pid) == start, None

    def poll(self, replica: Replica) -> Replica:
        if not replica.state.live:
            return replica
        if not replica.handle:
            return replica
        parsed = self._parse(replica)
        if parsed is None:  # a planned handle (never polled while its launch runs): no worker to find
            replica.state, replica.ended_at = ReplicaState.TERMINATED, replica.ended_at or time.time()
            replica.message = "no worker process: its launch was lost with the control plane"
            return replica
        pid, start = parsed
        alive, code = self._exit_code(pid, start)
        if alive:
            if replica.state is not ReplicaState.DRAINING:
                state = self._reported_state(replica)
                replica.state = ReplicaState.RUNNING if state in ("running", "draining") else ReplicaState.STARTING
            replica.cost_usd = accrued_cost(replica.price_per_hour, replica.started_at, None, time.time())
            return replica
        replica.ended_at = replica.ended_at or time.time()
        draining = replica.state is ReplicaState.DRAINING
        if code == 0:
            replica.state, replica.message = ReplicaState.TERMINATED, "worker exited (0)"
        elif draining and code in (None, -signal.SIGTERM):
            replica.state, replica.message = ReplicaState.TERMINATED, "worker stopped after drain"
        elif code is None and self._reported_state(replica) == "stopped":
            replica.state, replica.message = ReplicaState.TERMINATED, "worker stopped (its last report; not our child)"
        elif code is not None:
            replica.state = ReplicaState.FAILED
            replica.message = f"worker killed by signal {-code}" if code < 0 else f"worker exited with code {code}"
        else:
            replica.state, replica.message = ReplicaState.FAILED, "worker exited; exit status unknown (not our child)"
        replica.cost_usd = accrued_cost(replica.price_per_hour, replica.started_at, replica.ended_at, replica.ended_at)
        return replica

    def _reported_state(self, replica: Replica) -> str | None:
        report = self.report(replica.job_id, replica.replica_id) if self.report is not None else None
        return (report or {}).get("state")

    def _signal(self, pid: int, sig: int, group: bool = False) -> None:
        try:
            if group:
                os.killpg(pid, sig)  # the worker leads its own process group: engine children die with it
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def drain(self, replica: Replica) -> Replica:
        replica = self.poll(replica)
        parsed = self._parse(replica) if replica.state.live and replica.handle else None
        if parsed is not None:
            self._signal(parsed[0], signal.SIGTERM)
            replica.state = ReplicaState.DRAINING
        return replica

    def terminate(self, replica: Replica) -> Replica:
        replica = self.poll(replica)
        parsed = self._parse(replica) if replica.state.live and replica.handle else None
        if parsed is not None:
            pid, start = parsed
            self._signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.settings.launcher.local_stop_grace_s
            while time.monotonic() < deadline and self._exit_code(pid, start)[0]:
                time.sleep(0.05)
            message = "worker terminated"
            if self._exit_code(pid, start)[0]:
                self._signal(pid, signal.SIGKILL, group=True)
                message = f"worker killed (SIGKILL): still running {self.settings.launcher.local_stop_grace_s:g} s after SIGTERM"
                end = time.monotonic() + 5.0
                while time.monotonic() < end and self._exit_code(pid, start)[0]:
                    time.sleep(0.05)
            if self._exit_code(pid, start)[0]:
                raise LaunchError("local worker survived SIGKILL", replica_id=replica.replica_id, pid=pid)
            replica.state, replica.message = ReplicaState.TERMINATED, message
            replica.ended_at = time.time()
        elif replica.state.live:  # never started a process (or a lost launch's worker is gone)
            replica.state, replica.ended_at = ReplicaState.TERMINATED, time.time()
        return replica
