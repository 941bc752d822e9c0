"""Modal launcher: serverless burst workers, one replica = one invocation of the deployed app.

The only module (with ``modal_app``) that imports ``modal``, lazily; tests inject a fake.
Deploy the app once per Modal workspace: ``modal deploy -m orca.launchers.modal_app``
(module mode, so ``orca/launchers`` is not put on ``sys.path`` where this file would
shadow the ``modal`` package). The app has one function per GPU shape
(:func:`function_name`); each call runs ``orca.worker.serverless.run_until_empty`` on the
job's queue for at most ``serverless_budget_s``, so scale = number of concurrent calls.

State mapping (Modal exposes a call's result, not its progress):

* ``launch``: ``Function.from_name(app, fn).spawn(...)`` -> STARTING (billing assumed from
  here: a cold start is billed as soon as the container boots); a spawn error -> FAILED.
* ``poll``: ``FunctionCall.from_id(id).get(timeout=0)``: no result yet -> RUNNING; a result
  -> TERMINATED (queue empty, pool drained or budget spent); ``OutputExpiredError`` ->
  TERMINATED; any other error (the function raised, or its container died) -> FAILED.
* ``drain``: DRAINING only: the queue's drain stops the call's claims and the burst worker
  returns after its in-flight chunk (there is no signal channel into a running call).
* ``terminate``: ``FunctionCall.cancel()`` -> TERMINATED; retried by ``launcher.modal_retry``, then
  ``TeardownError`` with the replica left live.

Credentials: a Redis or store URL with a password is not sent as an argument; the function
reads it from the Modal secret ``modal_secret_name`` (``ORCA_REDIS_URL``/``ORCA_STORE_URL``),
like the store keys and HF token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from orca.errors import LaunchError, TeardownError
from orca.launchers import costs
from orca.launchers.base import Launcher, PoolSpec, Replica, ReplicaState, WorkerEnv
from orca.launchers.retry import retrying
from orca.launchers.worker_env import has_credentials
from orca.settings import LauncherSettings, get_settings


def function_name(gpu: str, count: int = 1) -> str:
    """The Modal function serving ``count`` x ``gpu``, e.g. ``worker_h100_x2``."""
    slug = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
    return f"worker_{slug}_x{count}"


def invocation_kwargs(env: WorkerEnv, pool: PoolSpec, replica_id: str, budget_s: float) -> dict[str, Any]:
    """Arguments of one serverless call (shared by Modal and RunPod; credentials left out)."""
    return {
        "job_id": env.job_id,
        "redis_url": None if has_credentials(env.redis_url) else env.redis_url,
        "store_url": None if has_credentials(env.store_url) else env.store_url,
        "pool": pool.key,
        "worker_id": replica_id,
        "engine": pool.engine,
        "model": env.model,
        "tp": pool.tp,
        "pp": pool.pp,
        "engine_args": {str(k): str(v) for k, v in pool.engine_args.items()},
        "time_budget_s": budget_s,
    }


class ModalLauncher(Launcher):
    name = "modal"

    def __init__(self, settings: LauncherSettings | None = None, *, modal: Any = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings or get_settings().launcher
        self._modal = modal
        self._clock = clock
        self._sleep = sleep

    @property
    def modal(self) -> Any:
        if self._modal is None:
            try:
                import modal  # the launcher-side import of Modal
            except ImportError as exc:
                raise LaunchError("Modal is not installed: pip install 'orca[modal]'") from exc
            self._modal = modal
        return self._modal

    def launch(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> Replica:
        now = self._clock()
        replica = Replica(replica_id=replica_id, job_id=env.job_id, pool=pool.key, launcher=self.name,
                          created_at=now, price_per_hour=pool.price_per_replica_hour)
        fn_name = function_name(pool.gpu, pool.gpus_per_replica)
        try:
            fn = self.modal.Function.from_name(self.settings.modal_app_name, fn_name)
            call = fn.spawn(**invocation_kwargs(env, pool, replica_id, self.settings.serverless_budget_s))
        except Exception as exc:  # noqa: BLE001 - translated into the replica's state
            replica.state, replica.ended_at = ReplicaState.FAILED, now
            replica.message = f"modal spawn of {self.settings.modal_app_name}/{fn_name} failed: {exc}"
            return replica
        replica.handle = call.object_id
        replica.state, replica.started_at = ReplicaState.STARTING, now
        replica.message = f"modal call {call.object_id}"
        return replica

    def poll(self, replica: Replica) -> Replica:
        if not replica.state.live:
            return replica
        now = self._clock()
        try:
            result = self.modal.FunctionCall.from_id(replica.handle).get(timeout=0)
        except TimeoutError:
            if replica.state != ReplicaState.DRAINING:
                replica.state = ReplicaState.RUNNING
            return costs.with_cost(replica, now)
        except Exception as exc:  # noqa: BLE001 - classified below
            if type(exc).__name__ == "OutputExpiredError":
                self._ended(replica, ReplicaState.TERMINATED, now, "call finished (result expired)")
            else:
                self._ended(replica, ReplicaState.FAILED, now, f"call failed: {exc}")
            return costs.with_cost(replica, now)
        self._ended(replica, ReplicaState.TERMINATED, now, f"call finished: {result}")
        return costs.with_cost(replica, now)

    def drain(self, replica: Replica) -> Replica:
        if replica.state.live:
            replica.state = ReplicaState.DRAINING
        return replica

    def terminate(self, replica: Replica) -> Replica:
        if not replica.state.live or not replica.handle:
            if replica.state.live:
                self._ended(replica, ReplicaState.TERMINATED, self._clock(), "never started")
            return replica
        try:
            retrying(self.settings.modal_retry, self._sleep)(self.modal.FunctionCall.from_id(replica.handle).cancel)
        except Exception as exc:  # noqa: BLE001 - every try failed: translated
            raise TeardownError(f"modal call not cancelled: {exc}", call=replica.handle) from exc
        now = self._clock()
        self._ended(replica, ReplicaState.TERMINATED, now, "call cancelled")
        return costs.with_cost(replica, now)

    @staticmethod
    def _ended(replica: Replica, state: ReplicaState, now: float, message: str) -> None:
        replica.state, replica.ended_at, replica.message = state, now, message
