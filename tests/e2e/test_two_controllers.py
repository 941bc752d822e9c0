"""Two controller processes on one Redis; one is killed with SIGKILL right after it asked for a
launch (the call may still be in flight). The other takes the jobs over, adopts the killed one's
local workers by pid, takes over its orphaned launch, and every job completes with each
custom_id exactly once.

Real processes throughout: redis-server, an RQ worker for ingest and assembly, two
``python -m orca.control.server_main --controller-only``, local workers on the fake engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orca.control.schemas import JobCreate
from orca.control.service import OrcaService
from orca.launchers.local import LocalLauncher
from orca.settings import Settings
from tests.conftest import wait_until
from tests.e2e.stack import FAST, batch

N_JOBS, N_REQUESTS = 4, 24


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def launches_by(svc: OrcaService, job_ids: list[str]) -> dict[str, int]:
    """Controller id -> replicas it asked to launch (from the jobs' events)."""
    out: dict[str, int] = {}
    for job_id in job_ids:
        for e in svc.registry.events(job_id):
            if e["kind"] == "replica_launched":
                by = e["message"].rsplit(" by ", 1)[-1]
                out[by] = out.get(by, 0) + 1
    return out


def test_kill_9_of_one_of_two_controllers_loses_no_job(redis_url: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**FAST, "ORCA_HOME": str(tmp_path / "home"), "ORCA_REDIS_URL": redis_url,
                       "ORCA_STORE_URL": (tmp_path / "store").as_uri(), "ORCA_CONTROL__CONTROLLER_TTL_S": "1.5",
                       "ORCA_LAUNCHER__LOCAL_MAX_WORKERS": "2"}.items():
        monkeypatch.setenv(key, value)  # this process submits (its settings go with the ingest step) and checks
    for key in ("ORCA_API_URL", "ORCA_API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    env = dict(os.environ)
    settings = Settings()
    (tmp_path / "home").mkdir()
    svc = OrcaService.from_settings(settings)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(spawn(["orca.control.embedded", "rq-worker"], env, tmp_path / "rq.log"))
        doomed = spawn(["orca.control.server_main", "--controller-only"], env, tmp_path / "ctl-doomed.log")
        procs.append(doomed)
        jobs = [svc.create_job("alice", batch(N_REQUESTS, 0.3), JobCreate(deadline="1h")).id for _ in range(N_JOBS)]
        first = wait_until(lambda: launches_by(svc, jobs), 60, "the first controller to ask for a launch")
        survivor = spawn(["orca.control.server_main", "--controller-only"], env, tmp_path / "ctl-survivor.log")
        procs.append(survivor)
        os.kill(doomed.pid, signal.SIGKILL)  # right after its launch request: the call may still be in flight
        doomed.wait()

        def all_completed() -> bool:
            statuses = [svc.registry.get(j).status.value for j in jobs]
            assert "failed" not in statuses, [svc.registry.get(j).message for j in jobs]
            return all(s == "completed" for s in statuses)

        wait_until(all_completed, 120, "every job to complete on the surviving controller", interval_s=0.5)
        by = launches_by(svc, jobs)
        [doomed_id] = first
        assert by.get(doomed_id, 0) >= 1 and set(by) - {doomed_id}, by  # both controllers worked
        for job_id in jobs:
            with svc.open_results("alice", job_id) as f:
                ids = [json.loads(line)["custom_id"] for line in f.read().splitlines() if line.strip()]
            assert sorted(ids) == sorted(f"req-{i}" for i in range(N_REQUESTS)), job_id
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        local = LocalLauncher(settings)
        for job_id in svc.registry.job_ids():
            for replica in svc.registry.replicas(job_id):
                if replica.state.live and replica.handle:
                    local.terminate(replica)
        svc.close()
