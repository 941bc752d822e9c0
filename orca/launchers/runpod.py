"""RunPod launcher: serverless burst workers, one replica = one job on a RunPod serverless endpoint.

The only module (with ``runpod_handler``) that imports ``runpod``, lazily; tests inject a fake.
Each GPU type has an endpoint (``settings.launcher.runpod_endpoints``: GPU name ->
endpoint id) whose workers run ``python -m orca.launchers.runpod_handler``; a job's input
is ``orca.launchers.modal.invocation_kwargs`` (the same call as on Modal), and the
handler runs a burst worker for at most ``serverless_budget_s``. Scale = number of
concurrent jobs (set the endpoint's max workers at least as high as the plan's replicas).
The API key comes from ``RUNPOD_API_KEY`` in the launcher's environment (read by the SDK).

State mapping from ``Job.status()``:

==========================  ===========================================================
IN_QUEUE                    PROVISIONING
IN_PROGRESS                 RUNNING (billing from the first poll that sees it running)
COMPLETED                   TERMINATED (queue empty, pool drained or budget spent)
FAILED                      FAILED
TIMED_OUT                   FAILED (the endpoint's execution timeout is below the budget)
CANCELLED                   TERMINATED
==========================  ===========================================================

``drain`` only marks DRAINING (the queue's drain ends the burst worker after its
in-flight chunk); ``terminate`` cancels the job, retried by ``launcher.runpod_retry``, then
``TeardownError`` with the replica left live.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from orca.errors import ConfigError, LaunchError, TeardownError
from orca.launchers import costs
from orca.launchers.base import Launcher, PoolSpec, Replica, ReplicaState, WorkerEnv
from orca.launchers.modal import invocation_kwargs
from orca.launchers.retry import retrying
from orca.settings import LauncherSettings, get_settings

_STATES = {
    "IN_QUEUE": ReplicaState.PROVISIONING,
    "IN_PROGRESS": ReplicaState.RUNNING,
    "COMPLETED": ReplicaState.TERMINATED,
    "CANCELLED": ReplicaState.TERMINATED,
    "FAILED": ReplicaState.FAILED,
    "TIMED_OUT": ReplicaState.FAILED,
}


class RunPodLauncher(Launcher):
    name = "runpod"

    def __init__(self, settings: LauncherSettings | None = None, *, runpod: Any = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings or get_settings().launcher
        self._runpod = runpod
        self._clock = clock
        self._sleep = sleep
        self._jobs: dict[str, Any] = {}  # replica id -> runpod Job (rebuilt from the handle if missing)

    @property
    def runpod(self) -> Any:
        if self._runpod is None:
            try:
                import runpod  # the launcher-side import of RunPod
            except ImportError as exc:
                raise LaunchError("RunPod is not installed: pip install 'orca[runpod]'") from exc
            self._runpod = runpod
        return self._runpod

    def endpoint_id(self, gpu: str) -> str:
        try:
            return self.settings.runpod_endpoints[gpu]
        except KeyError:
            raise ConfigError("no RunPod endpoint for this GPU (settings.launcher.runpod_endpoints)", gpu=gpu) from None

    def launch(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> Replica:
        now = self._clock()
        replica = Replica(replica_id=replica_id, job_id=env.job_id, pool=pool.key, launcher=self.name,
                          created_at=now, price_per_hour=pool.price_per_replica_hour)
        try:
            endpoint_id = self.endpoint_id(pool.gpu)
            job = self.runpod.Endpoint(endpoint_id).run(
                {"input": invocation_kwargs(env, pool, replica_id, self.settings.serverless_budget_s)})
        except Exception as exc:  # noqa: BLE001 - translated into the replica's state
            replica.state, replica.ended_at = ReplicaState.FAILED, now
            replica.message = f"runpod run failed: {exc}"
            return replica
        self._jobs[replica_id] = job
        replica.handle = f"{endpoint_id}/{job.job_id}"
        replica.message = f"runpod job {replica.handle}"
        return replica

    def _job(self, replica: Replica) -> Any:
        job = self._jobs.get(replica.replica_id)
        if job is None:  # launched by an earlier control plane process
            runner = self.runpod.endpoint.runner
            endpoint_id, job_id = replica.handle.split("/", 1)
            job = self._jobs[replica.replica_id] = runner.Job(endpoint_id, job_id, runner.RunPodClient())
        return job

    def poll(self, replica: Replica) -> Replica:
        if not replica.state.live:
            return replica
        now = self._clock()
        try:
            status = str(self._job(replica).status())
        except Exception as exc:  # noqa: BLE001 - API hiccup: ask again next poll
            replica.message = f"runpod status unknown: {exc}"
            return costs.with_cost(replica, now)
        state = _STATES.get(status)
        if state is None:
            replica.message = f"runpod status {status}"
        elif not state.live:
            replica.state, replica.ended_at, replica.message = state, now, f"runpod job {status}"
        elif state == ReplicaState.RUNNING:
            if replica.started_at is None:
                replica.started_at = now
            if replica.state != ReplicaState.DRAINING:
                replica.state = state
        return costs.with_cost(replica, now)

    def drain(self, replica: Replica) -> Replica:
        if replica.state.live:
            replica.state = ReplicaState.DRAINING
        return replica

    def terminate(self, replica: Replica) -> Replica:
        if not replica.state.live:
            return replica
        if not replica.handle:
            replica.state, replica.ended_at = ReplicaState.TERMINATED, self._clock()
            return replica
        try:
            retrying(self.settings.runpod_retry, self._sleep)(lambda: self._job(replica).cancel())
        except Exception as exc:  # noqa: BLE001 - every try failed: translated
            raise TeardownError(f"runpod job not cancelled: {exc}", job=replica.handle) from exc
        now = self._clock()
        replica.state, replica.ended_at, replica.message = ReplicaState.TERMINATED, now, "runpod job cancelled"
        return costs.with_cost(replica, now)
