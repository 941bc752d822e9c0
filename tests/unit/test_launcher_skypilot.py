"""SkyPilot launcher up to the SDK boundary, against a FAKE ``sky`` module with recorded-style responses.

The fake keeps SkyPilot's real ``Task`` (so every task the launcher builds is validated by
SkyPilot itself), ``exceptions`` and enums, and replaces the client calls that would reach
an API server: launch/exec/down/status/job_status return request ids, ``api_status`` and
``get`` answer for them.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import sky

from orca.errors import ConfigError, TeardownError
from orca.launchers.base import PoolSpec, ReplicaState, WorkerEnv
from orca.launchers.skypilot import MAX_CLUSTER_NAME, SkyPilotLauncher, cluster_name_for
from orca.settings import LauncherSettings, RetrySettings


class FakeSky:
    """Stands in for the ``sky`` client SDK (no API server, no cloud)."""

    Task = sky.Task
    exceptions = sky.exceptions
    StatusRefreshMode = sky.StatusRefreshMode
    ClusterStatus = sky.ClusterStatus

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.results: dict[str, object] = {}      # request id -> value or exception
        self.pending: set[str] = set()            # request ids still running
        self.clusters: dict[str, str] = {}        # name -> UP / INIT / STOPPED
        self.jobs: dict[str, str] = {}            # cluster -> status of job 1
        self.launch_outcomes: list[object] = []   # per launch: "ok" or an exception
        self.down_failures = 0                    # next downs that fail
        self.launched_tasks: list[sky.Task] = []
        self.calls: list[tuple] = []

    def _request(self, result: object) -> str:
        rid = f"req-{next(self._ids)}"
        self.results[rid] = result
        return rid

    # client SDK ---------------------------------------------------------
    def launch(self, task, cluster_name, **kw):
        self.calls.append(("launch", cluster_name, kw))
        self.launched_tasks.append(task)
        outcome = self.launch_outcomes.pop(0) if self.launch_outcomes else "ok"
        if outcome == "ok":
            self.clusters[cluster_name] = "UP"
            self.jobs[cluster_name] = "SETTING_UP"
            return self._request((1, object()))
        self.clusters[cluster_name] = "INIT"  # a half-made cluster
        return self._request(outcome)

    def api_status(self, request_ids):
        return [SimpleNamespace(request_id=r, status="RUNNING" if r in self.pending else "SUCCEEDED")
                for r in request_ids]

    def get(self, request_id):
        result = self.results[request_id]
        if isinstance(result, BaseException):
            raise result
        return result() if callable(result) else result

    def status(self, cluster_names, refresh):
        self.calls.append(("status", tuple(cluster_names), refresh))
        return self._request(lambda: [{"name": n, "status": sky.ClusterStatus[self.clusters[n]]}
                                      for n in cluster_names if n in self.clusters])

    def job_status(self, cluster_name, job_ids):
        def answer():
            if self.clusters.get(cluster_name) != "UP":
                raise sky.exceptions.ClusterNotUpError("not up", cluster_status=None)
            return {1: sky.JobStatus[self.jobs[cluster_name]]}
        return self._request(answer)

    def down(self, cluster_name):
        self.calls.append(("down", cluster_name))

        def answer():
            if self.down_failures:
                self.down_failures -= 1
                raise RuntimeError("cloud API error while terminating")
            if cluster_name not in self.clusters:
                raise sky.exceptions.ClusterDoesNotExist(cluster_name)
            del self.clusters[cluster_name]
        return self._request(answer)

    def exec(self, task, cluster_name):
        self.calls.append(("exec", cluster_name, task.run))
        return self._request((2, object()))

    def api_cancel(self, request_ids):
        self.calls.append(("api_cancel", request_ids))

    def downs(self) -> int:
        return sum(1 for c in self.calls if c[0] == "down")


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


ENV = WorkerEnv(job_id="job_1", redis_url="redis://10.0.0.5:6379/0", store_url="s3://b/p", model="m",
                secret_env_names=("HF_TOKEN",))
POOL = PoolSpec(key="H100-tp1-pp1-spot", launcher="skypilot", gpu="H100", market="spot", price_per_replica_hour=3.6,
                engine="vllm")


@pytest.fixture
def rig():
    fake, clock, sleeps = FakeSky(), Clock(), []
    settings = LauncherSettings(launch_retries=2, launch_backoff_s=30, launch_backoff_max_s=45,
                                skypilot_retry=RetrySettings(attempts=3, backoff_s=1), sky_poll_every_s=0)
    launcher = SkyPilotLauncher(settings, sky=fake, clock=clock, sleep=sleeps.append, environ={"HF_TOKEN": "hf_x"})
    return SimpleNamespace(fake=fake, clock=clock, sleeps=sleeps, launcher=launcher)


def test_launch_ok_then_running_accrues_cost_and_finished_worker_is_torn_down(rig):
    r = rig.launcher.launch(ENV, POOL, "w-1")
    assert r.state is ReplicaState.PROVISIONING and r.handle == cluster_name_for("job_1", "w-1")
    task = rig.fake.launched_tasks[0]
    assert task.secrets["HF_TOKEN"].get_secret_value() == "hf_x"  # sent with the request, not in YAML
    launch_kw = rig.fake.calls[0][2]
    assert launch_kw["down"] is True and launch_kw["retry_until_up"] is False

    rig.fake.pending.add("req-1")
    assert rig.launcher.poll(r).state is ReplicaState.PROVISIONING  # request still running: no blocking get
    rig.fake.pending.clear()
    r = rig.launcher.poll(r)
    assert r.state is ReplicaState.STARTING and r.started_at == 1_000.0
    assert rig.launcher.poll(r).state is ReplicaState.STARTING  # job still setting up: engine loading
    rig.fake.jobs[r.handle] = "RUNNING"
    rig.clock.t += 3600
    r = rig.launcher.poll(r)
    assert r.state is ReplicaState.RUNNING
    assert r.cost_usd == pytest.approx(3.6)
    rig.fake.jobs[r.handle] = "SUCCEEDED"
    rig.clock.t += 1800
    r = rig.launcher.poll(r)
    assert r.state is ReplicaState.TERMINATED and r.handle not in rig.fake.clusters
    assert r.cost_usd == pytest.approx(5.4)
    assert rig.launcher.poll(r).cost_usd == pytest.approx(5.4)  # frozen after the end


def test_capacity_error_then_success_tears_down_and_backs_off(rig):
    rig.fake.launch_outcomes = [sky.exceptions.ResourcesUnavailableError("no H100 spot in us-east-1"), "ok"]
    r = rig.launcher.launch(ENV, POOL, "w-1")
    r = rig.launcher.poll(r)
    assert r.state is ReplicaState.PROVISIONING and "no capacity" in r.message
    assert r.capacity_errors == 1  # what the controller's availability estimate counts
    assert rig.fake.downs() == 1 and r.handle not in rig.fake.clusters  # the half-made cluster is gone
    rig.clock.t += 29
    rig.launcher.poll(r)
    assert sum(1 for c in rig.fake.calls if c[0] == "launch") == 1  # still backing off
    rig.clock.t += 1
    r = rig.launcher.poll(r)
    assert sum(1 for c in rig.fake.calls if c[0] == "launch") == 2
    r = rig.launcher.poll(r)
    assert r.state is ReplicaState.STARTING and r.message == ""


def test_capacity_errors_exhaust_retries_then_failed_with_cluster_gone(rig):
    rig.fake.launch_outcomes = [sky.exceptions.ResourcesUnavailableError("none")] * 3
    r = rig.launcher.launch(ENV, POOL, "w-1")
    waits = []
    for _ in range(3):
        r = rig.launcher.poll(r)
        if r.state is ReplicaState.FAILED:
            break
        waits.append(rig.launcher._tracks["w-1"].retry_at - rig.clock.t)
        rig.clock.t += 1_000
        r = rig.launcher.poll(r)
    assert r.state is ReplicaState.FAILED and "no capacity after 3 attempts" in r.message and r.capacity_errors == 3
    assert waits == [30, 45]  # 30, then 60 capped at 45
    assert r.handle not in rig.fake.clusters and rig.fake.downs() == 3


def test_other_launch_error_fails_and_tears_down(rig):
    rig.fake.launch_outcomes = [RuntimeError("setup script failed")]
    r = rig.launcher.poll(rig.launcher.launch(ENV, POOL, "w-1"))
    assert r.state is ReplicaState.FAILED and "setup script failed" in r.message
    assert r.handle not in rig.fake.clusters


def _running(rig, replica_id="w-1"):
    r = rig.launcher.poll(rig.launcher.launch(ENV, POOL, replica_id))
    rig.fake.jobs[r.handle] = "RUNNING"
    return rig.launcher.poll(r)


@pytest.mark.parametrize("after", ["STOPPED", "INIT"])
def test_preemption_cluster_not_up_after_up(rig, after):
    r = _running(rig)
    assert r.state is ReplicaState.RUNNING
    rig.fake.clusters[r.handle] = after
    r = rig.launcher.poll(r)
    assert r.state is ReplicaState.PREEMPTED and "preempted" in r.message and r.ended_at is not None
    assert r.handle not in rig.fake.clusters  # the stopped remains are torn down


def test_preemption_cluster_gone(rig):
    r = _running(rig)
    del rig.fake.clusters[r.handle]
    r = rig.launcher.poll(r)
    assert r.state is ReplicaState.PREEMPTED and "disappeared" in r.message


def test_worker_job_failure_is_failed_and_torn_down(rig):
    r = _running(rig)
    rig.fake.jobs[r.handle] = "FAILED"
    r = rig.launcher.poll(r)
    assert r.state is ReplicaState.FAILED and r.handle not in rig.fake.clusters


def test_down_failure_is_retried_then_terminated(rig):
    r = _running(rig)
    rig.fake.down_failures = 2
    r = rig.launcher.terminate(r)
    assert r.state is ReplicaState.TERMINATED and r.handle not in rig.fake.clusters
    assert rig.sleeps == [1, 2]
    assert rig.launcher.terminate(r).state is ReplicaState.TERMINATED  # repeat is safe


def test_down_failing_every_time_raises_and_leaves_replica_live(rig):
    r = _running(rig)
    rig.fake.down_failures = 10
    with pytest.raises(TeardownError):
        rig.launcher.terminate(r)
    assert r.state is ReplicaState.RUNNING and r.handle in rig.fake.clusters
    rig.fake.down_failures = 0
    assert rig.launcher.terminate(r).state is ReplicaState.TERMINATED


def test_terminate_of_a_cluster_that_is_already_gone_is_fine(rig):
    r = _running(rig)
    del rig.fake.clusters[r.handle]
    assert rig.launcher.terminate(r).state is ReplicaState.TERMINATED


def test_drain_sends_sigterm_through_exec_then_finished_worker_terminates(rig):
    r = _running(rig)
    r = rig.launcher.drain(r)
    assert r.state is ReplicaState.DRAINING
    exec_call = next(c for c in rig.fake.calls if c[0] == "exec")
    assert exec_call[1] == r.handle and "kill -TERM" in exec_call[2]
    assert rig.launcher.poll(r).state is ReplicaState.DRAINING  # job still running: stays draining
    rig.fake.jobs[r.handle] = "SUCCEEDED"
    assert rig.launcher.poll(r).state is ReplicaState.TERMINATED


def test_drain_before_up_cancels_the_launch_and_tears_down(rig):
    r = rig.launcher.launch(ENV, POOL, "w-1")
    rig.fake.pending.add("req-1")
    r = rig.launcher.drain(r)
    assert r.state is ReplicaState.TERMINATED
    assert ("api_cancel", "req-1") in rig.fake.calls and r.handle not in rig.fake.clusters


def test_a_restarted_control_plane_follows_the_cluster_by_name(rig):
    r = _running(rig)
    fresh = SkyPilotLauncher(rig.launcher.settings, sky=rig.fake, clock=rig.clock, sleep=rig.sleeps.append)
    rig.clock.t += 360
    r = fresh.poll(r)
    assert r.state is ReplicaState.RUNNING and r.cost_usd == pytest.approx(0.36)
    rig.fake.clusters[r.handle] = "STOPPED"
    assert fresh.poll(r).state is ReplicaState.PREEMPTED


def test_missing_secret_is_a_config_error_before_anything_launches():
    launcher = SkyPilotLauncher(LauncherSettings(), sky=FakeSky(), environ={})
    with pytest.raises(ConfigError, match="secrets"):
        launcher.launch(ENV, POOL, "w-1")
    assert launcher.sky.calls == []


def test_submission_error_is_failed_without_a_cluster(rig):
    def broken(*a, **k):
        raise sky.exceptions.ApiServerConnectionError("http://127.0.0.1:46580")
    rig.fake.launch = broken
    r = rig.launcher.launch(ENV, POOL, "w-1")
    assert r.state is ReplicaState.FAILED and "not submitted" in r.message


@pytest.mark.parametrize("job,replica", [("job_1", "w-1"), ("JOB__weird..ID", "--x--"), ("j" * 80, "w-" + "9" * 40),
                                         ("9starts-with-digit", "r")])
def test_cluster_names_follow_skypilot_rules(job, replica):
    from sky.utils import common_utils

    name = cluster_name_for(job, replica)
    common_utils.check_cluster_name_is_valid(name)
    assert name[0].isalpha() and len(name) <= MAX_CLUSTER_NAME and name == name.lower()
    assert name == cluster_name_for(job, replica)
    assert name != cluster_name_for(job, replica + "x")


def test_status_queries_are_rate_limited_per_replica(rig):
    rig.launcher.settings.sky_poll_every_s = 15
    r = rig.launcher.launch(ENV, POOL, "w-1")
    r = rig.launcher.poll(r)
    assert r.state is ReplicaState.STARTING
    statuses = lambda: sum(1 for c in rig.fake.calls if c[0] == "status")  # noqa: E731
    rig.clock.t += 1
    r = rig.launcher.poll(r)  # within the interval: no query, cost still accrues
    assert statuses() == 0 and r.state is ReplicaState.STARTING and r.cost_usd > 0
    rig.clock.t += 14
    rig.fake.clusters[r.handle] = "STOPPED"  # preempted meanwhile
    r = rig.launcher.poll(r)
    assert statuses() == 1 and r.state is ReplicaState.PREEMPTED
