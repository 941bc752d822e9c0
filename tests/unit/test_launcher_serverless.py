"""Modal and RunPod launchers up to the SDK boundary, against FAKE ``modal``/``runpod`` modules;
the serverless call body and the RunPod handler with a FAKE ``run_until_empty``."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from orca.errors import ConfigError, TeardownError
from orca.launchers import modal as modal_launcher
from orca.launchers import runpod_handler, serverless_call
from orca.launchers.base import PoolSpec, ReplicaState, WorkerEnv
from orca.launchers.modal import ModalLauncher, function_name, invocation_kwargs
from orca.launchers.registry import launcher_class, launcher_for
from orca.launchers.runpod import RunPodLauncher
from orca.settings import LauncherSettings, RetrySettings, Settings

ENV = WorkerEnv(job_id="job_1", redis_url="redis://:pw@redis.example.com:6379/0", store_url="s3://b/p", model="m")
POOL = PoolSpec(key="H100-tp2-pp1-serverless", launcher="modal", gpu="H100", gpus_per_replica=2, tp=2,
                market="serverless", price_per_replica_hour=7.2, engine="vllm", engine_args={"max_model_len": 4096})


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# -- Modal -------------------------------------------------------------------
class OutputExpiredError(Exception):
    """Same name as modal.exception.OutputExpiredError."""


class FakeModal:
    """Stands in for ``modal``: Function.from_name(...).spawn(...) and FunctionCall.from_id(...)."""

    def __init__(self) -> None:
        self.calls: dict[str, dict] = {}      # call id -> {"kwargs", "outcome", "cancel_failures"}
        self.looked_up: list[tuple[str, str]] = []
        self.spawn_error: Exception | None = None
        ids = itertools.count(1)
        fake = self

        class FunctionCall:
            def __init__(self, call_id):
                self.object_id = call_id

            @staticmethod
            def from_id(call_id):
                return FunctionCall(call_id)

            def get(self, timeout=None):
                assert timeout == 0, "the launcher must never wait on a call"
                outcome = fake.calls[self.object_id]["outcome"]
                if outcome is None:
                    raise TimeoutError()
                if isinstance(outcome, BaseException):
                    raise outcome
                return outcome

            def cancel(self):
                call = fake.calls[self.object_id]
                if call["cancel_failures"]:
                    call["cancel_failures"] -= 1
                    raise ConnectionError("modal API unavailable")
                call["outcome"] = OutputExpiredError()
                call["cancelled"] = True

        class Function:
            def __init__(self, app, name):
                self.app, self.name = app, name

            @staticmethod
            def from_name(app, name):
                fake.looked_up.append((app, name))
                return Function(app, name)

            def spawn(self, **kwargs):
                if fake.spawn_error:
                    raise fake.spawn_error
                call_id = f"fc-{next(ids)}"
                fake.calls[call_id] = {"kwargs": kwargs, "outcome": None, "cancel_failures": 0, "fn": self.name}
                return FunctionCall(call_id)

        self.Function, self.FunctionCall = Function, FunctionCall


@pytest.fixture
def modal_rig():
    fake, clock, sleeps = FakeModal(), Clock(), []
    launcher = ModalLauncher(LauncherSettings(modal_retry=RetrySettings(attempts=3, backoff_s=2)), modal=fake, clock=clock,
                             sleep=sleeps.append)
    return SimpleNamespace(fake=fake, clock=clock, sleeps=sleeps, launcher=launcher)


def test_modal_spawn_runs_the_gpu_shaped_function_without_credentials(modal_rig):
    r = modal_rig.launcher.launch(ENV, POOL, "w-1")
    assert r.state is ReplicaState.STARTING and r.handle == "fc-1"
    assert modal_rig.fake.looked_up == [("orca-worker", "worker_h100_x2")]
    kwargs = modal_rig.fake.calls["fc-1"]["kwargs"]
    assert kwargs["redis_url"] is None  # carries a password: the Modal secret provides it
    assert kwargs["store_url"] == "s3://b/p" and kwargs["pool"] == POOL.key and kwargs["worker_id"] == "w-1"
    assert kwargs["time_budget_s"] == LauncherSettings().serverless_budget_s
    assert kwargs["engine_args"] == {"max_model_len": "4096"} and kwargs["tp"] == 2


def test_modal_running_then_finished_call_with_cost(modal_rig):
    r = modal_rig.launcher.launch(ENV, POOL, "w-1")
    modal_rig.clock.t += 1800
    r = modal_rig.launcher.poll(r)
    assert r.state is ReplicaState.RUNNING and r.cost_usd == pytest.approx(3.6)
    modal_rig.fake.calls["fc-1"]["outcome"] = {"exit_code": 0, "stop_reason": "empty"}
    r = modal_rig.launcher.poll(r)
    assert r.state is ReplicaState.TERMINATED and "empty" in r.message


def test_modal_call_error_is_failed_and_expired_output_is_terminated(modal_rig):
    a = modal_rig.launcher.launch(ENV, POOL, "w-1")
    b = modal_rig.launcher.launch(ENV, POOL, "w-2")
    modal_rig.fake.calls["fc-1"]["outcome"] = RuntimeError("container OOM")
    modal_rig.fake.calls["fc-2"]["outcome"] = OutputExpiredError()
    assert modal_rig.launcher.poll(a).state is ReplicaState.FAILED
    assert modal_rig.launcher.poll(b).state is ReplicaState.TERMINATED


def test_modal_spawn_failure_is_failed(modal_rig):
    modal_rig.fake.spawn_error = RuntimeError("app orca-worker not deployed")
    r = modal_rig.launcher.launch(ENV, POOL, "w-1")
    assert r.state is ReplicaState.FAILED and "not deployed" in r.message


def test_modal_drain_marks_draining_and_terminate_cancels_with_retries(modal_rig):
    r = modal_rig.launcher.drain(modal_rig.launcher.launch(ENV, POOL, "w-1"))
    assert r.state is ReplicaState.DRAINING
    assert modal_rig.launcher.poll(r).state is ReplicaState.DRAINING
    modal_rig.fake.calls["fc-1"]["cancel_failures"] = 1
    r = modal_rig.launcher.terminate(r)
    assert r.state is ReplicaState.TERMINATED and modal_rig.fake.calls["fc-1"]["cancelled"]
    assert modal_rig.sleeps == [2]


def test_modal_cancel_failing_every_time_raises(modal_rig):
    r = modal_rig.launcher.launch(ENV, POOL, "w-1")
    modal_rig.fake.calls["fc-1"]["cancel_failures"] = 5
    with pytest.raises(TeardownError):
        modal_rig.launcher.terminate(r)
    assert r.state.live


def test_function_names():
    assert function_name("A100-80GB", 1) == "worker_a100_80gb_x1"
    assert function_name("H100", 8) == "worker_h100_x8"


# -- RunPod ------------------------------------------------------------------
class FakeRunPod:
    """Stands in for ``runpod``: Endpoint(id).run(input) -> Job with status()/cancel()."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.run_error: Exception | None = None
        ids = itertools.count(1)
        fake = self

        class Job:
            def __init__(self, endpoint_id, job_id, client=None):
                self.endpoint_id, self.job_id = endpoint_id, job_id

            def status(self):
                return fake.jobs[self.job_id]["status"]

            def cancel(self):
                job = fake.jobs[self.job_id]
                if job["cancel_failures"]:
                    job["cancel_failures"] -= 1
                    raise ConnectionError("502")
                job["status"] = "CANCELLED"

        class Endpoint:
            def __init__(self, endpoint_id):
                self.endpoint_id = endpoint_id

            def run(self, request_input):
                if fake.run_error:
                    raise fake.run_error
                job_id = f"job-{next(ids)}"
                fake.jobs[job_id] = {"input": request_input, "status": "IN_QUEUE", "cancel_failures": 0,
                                     "endpoint": self.endpoint_id}
                return Job(self.endpoint_id, job_id)

        self.Endpoint = Endpoint
        self.endpoint = SimpleNamespace(runner=SimpleNamespace(Job=Job, RunPodClient=lambda: None))


@pytest.fixture
def runpod_rig():
    fake, clock, sleeps = FakeRunPod(), Clock(), []
    settings = LauncherSettings(runpod_endpoints={"H100": "ep-h100"}, runpod_retry=RetrySettings(attempts=2, backoff_s=1))
    launcher = RunPodLauncher(settings, runpod=fake, clock=clock, sleep=sleeps.append)
    return SimpleNamespace(fake=fake, clock=clock, sleeps=sleeps, launcher=launcher)


def test_runpod_job_lifecycle_queue_running_completed(runpod_rig):
    r = runpod_rig.launcher.launch(ENV, POOL, "w-1")
    assert r.state is ReplicaState.PROVISIONING and r.handle == "ep-h100/job-1"
    sent = runpod_rig.fake.jobs["job-1"]["input"]["input"]
    assert sent["redis_url"] is None and sent["job_id"] == "job_1" and sent["worker_id"] == "w-1"
    runpod_rig.clock.t += 60
    assert runpod_rig.launcher.poll(r).state is ReplicaState.PROVISIONING and r.cost_usd == 0
    runpod_rig.fake.jobs["job-1"]["status"] = "IN_PROGRESS"
    r = runpod_rig.launcher.poll(r)
    assert r.state is ReplicaState.RUNNING and r.started_at == 160.0
    runpod_rig.clock.t += 3600
    runpod_rig.fake.jobs["job-1"]["status"] = "COMPLETED"
    r = runpod_rig.launcher.poll(r)
    assert r.state is ReplicaState.TERMINATED and r.cost_usd == pytest.approx(7.2)


@pytest.mark.parametrize("status,state", [("FAILED", ReplicaState.FAILED), ("TIMED_OUT", ReplicaState.FAILED),
                                          ("CANCELLED", ReplicaState.TERMINATED)])
def test_runpod_terminal_statuses(runpod_rig, status, state):
    r = runpod_rig.launcher.launch(ENV, POOL, "w-1")
    runpod_rig.fake.jobs["job-1"]["status"] = status
    assert runpod_rig.launcher.poll(r).state is state


def test_runpod_follows_a_job_launched_by_another_process(runpod_rig):
    r = runpod_rig.launcher.launch(ENV, POOL, "w-1")
    fresh = RunPodLauncher(runpod_rig.launcher.settings, runpod=runpod_rig.fake, clock=runpod_rig.clock)
    runpod_rig.fake.jobs["job-1"]["status"] = "IN_PROGRESS"
    assert fresh.poll(r).state is ReplicaState.RUNNING


def test_runpod_terminate_retries_cancel_then_gives_up_loudly(runpod_rig):
    r = runpod_rig.launcher.launch(ENV, POOL, "w-1")
    runpod_rig.fake.jobs["job-1"]["cancel_failures"] = 1
    assert runpod_rig.launcher.terminate(r).state is ReplicaState.TERMINATED
    r2 = runpod_rig.launcher.launch(ENV, POOL, "w-2")
    runpod_rig.fake.jobs["job-2"]["cancel_failures"] = 9
    with pytest.raises(TeardownError):
        runpod_rig.launcher.terminate(r2)
    assert r2.state.live


def test_runpod_without_endpoint_for_the_gpu_fails_the_replica(runpod_rig):
    r = runpod_rig.launcher.launch(ENV, PoolSpec(key="k", launcher="runpod", gpu="L4"), "w-1")
    assert r.state is ReplicaState.FAILED and "no RunPod endpoint" in r.message


# -- the serverless call body ----------------------------------------------------
def test_run_invocation_builds_the_worker_config_and_reads_secret_urls_from_env(monkeypatch):
    seen = {}

    def fake_run_until_empty(job_id, redis_url, store_url, **kw):
        seen.update(job_id=job_id, redis_url=redis_url, store_url=store_url, **kw)
        return {"exit_code": 0, "stop_reason": "empty", "worker_id": kw["worker_id"]}

    monkeypatch.setattr("orca.worker.serverless.run_until_empty", fake_run_until_empty)
    args = invocation_kwargs(ENV, POOL, "w-9", 300.0)
    out = serverless_call.run_invocation(args, environ={"ORCA_REDIS_URL": "redis://:pw@redis.example.com:6379/0"},
                                         settings=Settings())
    assert out["worker_id"] == "w-9"
    assert seen["redis_url"] == "redis://:pw@redis.example.com:6379/0" and seen["store_url"] == "s3://b/p"
    assert seen["pool"] == POOL.key and seen["time_budget_s"] == 300.0
    spec = seen["engine"]
    assert (spec.kind, spec.model, spec.tp, spec.pp, spec.max_model_len) == ("vllm", "m", 2, 1, 4096)


def test_run_invocation_without_any_redis_url_is_a_config_error():
    with pytest.raises(ConfigError):
        serverless_call.run_invocation(invocation_kwargs(ENV, POOL, "w-1", 1.0), environ={})


def test_runpod_handler_passes_the_job_input(monkeypatch):
    monkeypatch.setattr(runpod_handler, "run_invocation", lambda args: {"got": args["worker_id"]})
    assert runpod_handler.handler({"id": "x", "input": {"worker_id": "w-3"}}) == {"got": "w-3"}


# -- registry ----------------------------------------------------------------------
def test_registry_maps_names_to_shared_instances():
    settings = Settings()
    assert launcher_class("modal") is modal_launcher.ModalLauncher
    a = launcher_for(PoolSpec(key="a", launcher="runpod", gpu="H100"), settings)
    assert a is launcher_for(PoolSpec(key="b", launcher="runpod", gpu="A100"), settings)
    assert isinstance(a, RunPodLauncher) and a.settings is settings.launcher
    assert launcher_for(PoolSpec(key="a", launcher="runpod", gpu="H100"), Settings()) is not a
    with pytest.raises(ConfigError):
        launcher_class("ec2")
