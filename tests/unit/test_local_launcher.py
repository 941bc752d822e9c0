"""LocalLauncher against real subprocesses (a shell script stands in for the worker's interpreter)."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from orca.launchers.base import PoolSpec, ReplicaState, WorkerEnv
from orca.launchers.local import LocalLauncher, process_start_time, worker_command, worker_settings_env
from orca.settings import EngineSettings, LauncherSettings, QueueSettings, Settings
from tests.conftest import wait_until

ENV = WorkerEnv(job_id="batch_t", redis_url="redis://127.0.0.1:1/0", store_url="file:///tmp/x", model="m")
POOL = PoolSpec(key="cpu-tp1-pp1-local", launcher="local", gpu="cpu", engine="fake", engine_args={"fake_latency_s": "0.01"})

# Stands in for `python -m orca.worker ...`: behaviour chosen by FAKE_WORKER_MODE.
SCRIPT = """#!/bin/sh
echo "args: $*"
echo "lease: $ORCA_QUEUE__LEASE_S"
case "$FAKE_WORKER_MODE" in
  exit0) exit 0 ;;
  exit3) exit 3 ;;
  stubborn) trap '' TERM; while true; do sleep 0.05; done ;;
  *) trap 'exit 0' TERM; while true; do sleep 0.05; done ;;
esac
"""


@pytest.fixture
def fake_python(tmp_path: Path) -> str:
    path = tmp_path / "fake-python"
    path.write_text(SCRIPT)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def launcher(tmp_path: Path, fake_python: str, report=None, grace: float = 5.0) -> LocalLauncher:
    settings = Settings(home=tmp_path / "home", launcher=LauncherSettings(local_stop_grace_s=grace), queue=QueueSettings(lease_s=7))
    return LocalLauncher(settings, report=report, python=fake_python)


def wait_state(l: LocalLauncher, replica, states, timeout: float = 10.0):
    return wait_until(lambda: (r := l.poll(replica)).state in states and r, timeout, f"{replica.replica_id} to reach {states}")


def test_worker_command_carries_engine_and_burst() -> None:
    cmd = worker_command(ENV, POOL, "w-1", python="py")
    assert cmd[:3] == ["py", "-m", "orca.worker"]
    for flag, value in [("--job", "batch_t"), ("--pool", POOL.key), ("--worker-id", "w-1"), ("--engine", "fake"),
                        ("--fake-latency-s", "0.01"), ("--model", "m"), ("--redis-url", ENV.redis_url)]:
        assert cmd[cmd.index(flag) + 1] == value
    assert "--burst" in cmd


@pytest.mark.parametrize("cores,workers,threads,expected", [
    (8, 2, -1, "4"), (2, 2, -1, "1"), (2, 4, -1, "1"), (16, 1, -1, "16"), (8, 2, 3, "3"),
])
def test_cpu_engines_share_the_cores(monkeypatch: pytest.MonkeyPatch, cores, workers, threads, expected) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    settings = Settings(launcher=LauncherSettings(local_max_workers=workers), engine=EngineSettings(llamacpp_threads=threads))
    env = worker_settings_env(settings)
    assert env["ORCA_ENGINE__LLAMACPP_THREADS"] == expected
    assert env["ORCA_QUEUE__LEASE_S"] == str(settings.queue.lease_s)


def test_launch_poll_starting_then_running(tmp_path: Path, fake_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_WORKER_MODE", "run")
    reported: dict = {}
    l = launcher(tmp_path, fake_python, report=lambda job, worker: reported.get(worker))
    r = l.launch(ENV, POOL, "w-1")
    try:
        assert r.state is ReplicaState.PROVISIONING
        pid, start = r.handle.split(":")
        assert process_start_time(int(pid)) == start
        assert l.poll(r).state is ReplicaState.STARTING
        reported["w-1"] = {"state": "starting"}  # engine still loading
        assert l.poll(r).state is ReplicaState.STARTING
        reported["w-1"] = {"state": "running"}
        assert l.poll(r).state is ReplicaState.RUNNING
        log = l.log_path("batch_t", "w-1")
        assert log.parent == tmp_path / "home" / "logs" / "batch_t"
        deadline = time.monotonic() + 5
        while "args:" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "--engine fake" in log.read_text()
        assert "lease: 7.0" in log.read_text()  # the launcher's settings reach the worker
    finally:
        r = l.terminate(r)
    assert r.state is ReplicaState.TERMINATED
    assert l.terminate(r).state is ReplicaState.TERMINATED  # repeatable


@pytest.mark.parametrize("mode,state", [("exit0", ReplicaState.TERMINATED), ("exit3", ReplicaState.FAILED)])
def test_exit_code_maps_to_state(tmp_path: Path, fake_python: str, monkeypatch: pytest.MonkeyPatch, mode: str, state) -> None:
    monkeypatch.setenv("FAKE_WORKER_MODE", mode)
    l = launcher(tmp_path, fake_python)
    r = wait_state(l, l.launch(ENV, POOL, "w-1"), {ReplicaState.TERMINATED, ReplicaState.FAILED})
    assert r.state is state
    assert r.ended_at is not None
    if mode == "exit3":
        assert "code 3" in r.message


def test_kill_9_is_failed(tmp_path: Path, fake_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_WORKER_MODE", "run")
    l = launcher(tmp_path, fake_python)
    r = l.launch(ENV, POOL, "w-1")
    os.kill(int(r.handle.split(":")[0]), signal.SIGKILL)
    r = wait_state(l, r, {ReplicaState.FAILED, ReplicaState.TERMINATED})
    assert r.state is ReplicaState.FAILED and "signal 9" in r.message


def test_drain_sends_sigterm_and_ends_terminated(tmp_path: Path, fake_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_WORKER_MODE", "run")
    l = launcher(tmp_path, fake_python)
    r = l.drain(l.launch(ENV, POOL, "w-1"))
    assert r.state is ReplicaState.DRAINING
    r = wait_state(l, r, {ReplicaState.TERMINATED, ReplicaState.FAILED})
    assert r.state is ReplicaState.TERMINATED


def test_terminate_kills_a_worker_that_ignores_sigterm(tmp_path: Path, fake_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_WORKER_MODE", "stubborn")
    l = launcher(tmp_path, fake_python, grace=0.5)
    r = l.launch(ENV, POOL, "w-1")
    time.sleep(0.2)  # let the script install its trap
    t0 = time.monotonic()
    r = l.terminate(r)
    assert r.state is ReplicaState.TERMINATED
    assert 0.4 < time.monotonic() - t0 < 5
    assert process_start_time(int(r.handle.split(":")[0])) is None


def test_another_launcher_adopts_by_pid(tmp_path: Path, fake_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted control plane has only the handle from Redis: it polls and stops the worker by pid."""
    monkeypatch.setenv("FAKE_WORKER_MODE", "run")
    parent = launcher(tmp_path, fake_python)
    r = parent.launch(ENV, POOL, "w-1")
    adopter = launcher(tmp_path, fake_python)
    assert adopter.poll(r).state is ReplicaState.STARTING
    os.kill(int(r.handle.split(":")[0]), signal.SIGKILL)
    # Our test process is the parent, so the dead worker is a zombie: it must still read as gone.
    r = wait_state(adopter, r, {ReplicaState.FAILED, ReplicaState.TERMINATED})
    assert r.state is ReplicaState.FAILED and "unknown" in r.message
    parent.poll(r)  # reap


def test_adopted_worker_that_reported_stopped_is_terminated(tmp_path: Path, fake_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_WORKER_MODE", "exit0")
    parent = launcher(tmp_path, fake_python)
    r = parent.launch(ENV, POOL, "w-1")
    adopter = launcher(tmp_path, fake_python, report=lambda job, worker: {"state": "stopped"})
    r = wait_state(adopter, r, {ReplicaState.FAILED, ReplicaState.TERMINATED})
    assert r.state is ReplicaState.TERMINATED
    parent.poll(r)  # reap


def test_recycled_pid_is_not_ours(tmp_path: Path, fake_python: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_WORKER_MODE", "run")
    l = launcher(tmp_path, fake_python)
    r = l.launch(ENV, POOL, "w-1")
    try:
        other = launcher(tmp_path, fake_python)
        fake = type(r).from_dict({**r.to_dict(), "handle": f"{os.getpid()}:1"})  # live pid, wrong start time
        assert other.poll(fake).state is ReplicaState.FAILED
    finally:
        l.terminate(r)


def test_a_lost_launch_is_found_by_its_planned_handle_and_torn_down(tmp_path: Path, fake_python: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A control plane killed after starting a worker, before recording its pid: another one, knowing only the
    handle named before the launch, finds that worker by its --worker-id and stops it (SIGTERM)."""
    from orca.fleet import Replica

    monkeypatch.delenv("FAKE_WORKER_MODE", raising=False)
    parent, adopter = launcher(tmp_path, fake_python), launcher(tmp_path, fake_python)
    started = parent.launch(ENV, POOL, "w-lost")  # its result never reaches Redis
    pid = int(started.handle.split(":")[0])
    planned = adopter.planned_handle(ENV, POOL, "w-lost")
    assert planned == "replica:w-lost"
    lost = Replica("w-lost", ENV.job_id, POOL.key, "local", ReplicaState.PROVISIONING, handle=planned)
    done = adopter.terminate(lost)
    assert done.state is ReplicaState.TERMINATED and done.message == "worker terminated"
    assert done.handle == started.handle  # the handle the lost launch made, found
    assert process_start_time(pid) is None and parent.poll(started).message == "worker exited (0)"  # on its SIGTERM
    never = Replica("w-never", ENV.job_id, POOL.key, "local", ReplicaState.PROVISIONING, handle="replica:w-never")
    gone = adopter.poll(never)  # a lost launch that started nothing
    assert gone.state is ReplicaState.TERMINATED and "no worker process" in gone.message
