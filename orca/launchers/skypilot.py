"""SkyPilot launcher: one SkyPilot cluster per replica, running the vLLM worker template.

The only module that imports ``sky`` (lazily, on first use; tests inject a fake module).
Everything goes through the SkyPilot client SDK, whose calls return request ids:

* ``launch`` renders ``vllm_worker.yaml.j2``, builds the task with
  ``sky.Task.from_yaml_config(config, secrets_overrides=...)`` (secret values are sent with
  the request, never written into YAML) and submits ``sky.launch`` (autodown after
  ``sky_autodown_idle_minutes`` idle, so a cluster whose worker exited goes away even if
  orca's control plane is gone). It returns at once: PROVISIONING.
* ``poll`` never blocks on a running launch: it asks ``sky.api_status([request_id])`` and
  reads the result with ``sky.get`` only once the request finished. A
  ``ResourcesUnavailableError`` (no capacity) counts on the replica (``capacity_errors``, which
  the controller's availability estimate reads per zone and market), tears the half-made cluster down and retries
  after ``launch_backoff_s * 2**n`` (capped by ``launch_backoff_max_s``), up to
  ``launch_retries`` times, then FAILED. Any other launch error: teardown, FAILED.
  Once launched, ``sky.status`` gives the cluster state and ``sky.job_status`` the worker's:

  =====================================  ==========================================
  cluster / worker job                   replica
  =====================================  ==========================================
  UP, job INIT/PENDING/SETTING_UP        STARTING
  UP, job RUNNING                        RUNNING (DRAINING stays DRAINING)
  UP, job SUCCEEDED                      torn down -> TERMINATED (worker finished)
  UP, job FAILED*/CANCELLED              torn down -> FAILED
  STOPPED or INIT (after it was UP)      torn down -> PREEMPTED
  gone                                   PREEMPTED (TERMINATED if it was draining)
  =====================================  ==========================================

* ``drain`` runs ``drain.yaml.j2`` with ``sky.exec`` (SIGTERM to the worker's pid); a
  replica that is not up yet has nothing in flight and is torn down instead.
* ``terminate`` cancels a pending launch request and ``sky.down``s the cluster, waiting
  for the result and retrying per ``launcher.skypilot_retry``; a cluster that does not
  exist counts as down. If every attempt fails it raises ``TeardownError`` and leaves the
  replica live, so the caller tries again (a leaked GPU cluster is the costliest bug).
  Teardown waits for the cloud (tens of seconds): the controller calls it off its tick.

Cost: ``price_per_replica_hour`` from the time the launch request succeeded (cluster UP)
to teardown (``orca.launchers.costs``); provisioning minutes before UP are not counted.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from orca.errors import ConfigError, LaunchError, TeardownError
from orca.launchers import costs, templates
from orca.launchers.base import Launcher, PoolSpec, Replica, ReplicaState, WorkerEnv
from orca.launchers.retry import retrying
from orca.launchers.worker_env import secret_values, worker_environment
from orca.settings import LauncherSettings, get_settings

WORKER_TEMPLATE = "vllm_worker.yaml.j2"
DRAIN_TEMPLATE = "drain.yaml.j2"
#: Port of the Ray cluster vLLM uses for multi-node pipeline parallelism (SkyPilot's own Ray uses 6380).
RAY_PORT = 6379
#: Longest cluster name: short enough for every cloud's instance-name limits after SkyPilot's suffixes.
MAX_CLUSTER_NAME = 40

_FINISHED_REQUEST = {"SUCCEEDED", "FAILED", "CANCELLED"}
_JOB_STARTING = {"INIT", "PENDING", "SETTING_UP"}
_JOB_FAILED = {"FAILED", "FAILED_SETUP", "FAILED_DRIVER", "CANCELLED"}


def cluster_name_for(job_id: str, replica_id: str) -> str:
    """A SkyPilot cluster name for one replica: lowercase letters, digits and dashes, starting
    with a letter, at most ``MAX_CLUSTER_NAME`` characters, unique per (job, replica)."""
    def clean(text: str) -> str:
        return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")

    name = f"orca-{clean(job_id)}-{clean(replica_id)}".rstrip("-")
    if len(name) > MAX_CLUSTER_NAME:
        digest = hashlib.sha256(f"{job_id}\0{replica_id}".encode()).hexdigest()[:8]
        name = f"{name[:MAX_CLUSTER_NAME - 9].rstrip('-')}-{digest}"
    return name


def worker_task_variables(env: WorkerEnv, pool: PoolSpec, replica_id: str, settings: LauncherSettings) -> dict:
    """Variables of ``vllm_worker.yaml.j2`` for one replica of ``pool``."""
    if pool.gpus_per_replica % pool.pp:
        raise ConfigError("gpus_per_replica must be a multiple of pp", pool=pool.key)
    plain, secret_names = worker_environment(env, pool, replica_id)
    num_nodes = pool.pp if pool.pp > 1 else 1
    gpus_per_node = pool.gpus_per_replica // num_nodes
    return {
        "cluster_name": cluster_name_for(env.job_id, replica_id),
        "num_nodes": num_nodes,
        "accelerators": f"{pool.gpu}:{gpus_per_node}",
        "use_spot": pool.market == "spot",
        "disk_size_gb": settings.sky_disk_size_gb,
        "any_of": [{"region": region} for region in (pool.region.split(",") if pool.region else [])],
        "envs": {**plain, "ORCA_WORKER__PREEMPTION_NOTICES": "auto"} if pool.market == "spot" else plain,
        "secret_names": list(secret_names),
        "worker_package": settings.worker_package,
        "engine": pool.engine,
        "tp": pool.tp,
        "pp": pool.pp,
        "engine_args": {str(k): str(v) for k, v in pool.engine_args.items()},
        "ray_port": RAY_PORT,
    }


def _field(record: Any, name: str) -> Any:
    """A field of an SDK record, whether it is a pydantic response or a plain dict."""
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def _enum_value(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


@dataclass
class _Track:
    """What the launcher remembers about one replica between polls (in memory)."""

    cluster: str
    config: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)
    request_id: Any = None          # pending sky.launch request
    retry_at: float | None = None   # next launch attempt after a capacity error
    capacity_errors: int = 0
    job_id: int | None = None       # the worker's SkyPilot job on the cluster
    next_query_at: float = 0.0      # status queries are rate-limited per replica (sky_poll_every_s)


class SkyPilotLauncher(Launcher):
    name = "skypilot"

    def __init__(self, settings: LauncherSettings | None = None, *, sky: ModuleType | Any = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings or get_settings().launcher
        self._sky = sky
        self._clock = clock
        self._sleep = sleep
        self._environ = environ
        self._tracks: dict[str, _Track] = {}

    # -- SDK access ----------------------------------------------------------
    @property
    def sky(self) -> Any:
        if self._sky is None:
            try:
                import sky  # the only import of SkyPilot in orca
            except ImportError as exc:
                raise LaunchError("SkyPilot is not installed: pip install 'orca[skypilot]'") from exc
            self._sky = sky
        return self._sky

    def _is(self, exc: BaseException, name: str) -> bool:
        cls = getattr(self.sky.exceptions, name, None)
        return cls is not None and isinstance(exc, cls)

    # -- Launcher interface --------------------------------------------------
    def launch(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> Replica:
        now = self._clock()
        variables = worker_task_variables(env, pool, replica_id, self.settings)
        replica = Replica(replica_id=replica_id, job_id=env.job_id, pool=pool.key, launcher=self.name,
                          handle=variables["cluster_name"], created_at=now,
                          price_per_hour=pool.price_per_replica_hour, zone=pool.region or "")
        config = templates.render_config(WORKER_TEMPLATE, **variables)
        secrets = secret_values(env, tuple(variables["secret_names"]), self._environ)
        track = _Track(cluster=replica.handle, config=config, secrets=secrets)
        self._tracks[replica_id] = track
        return self._submit_launch(replica, track)

    def planned_handle(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> str:
        return cluster_name_for(env.job_id, replica_id)

    def poll(self, replica: Replica) -> Replica:
        if not replica.state.live:
            return replica
        now = self._clock()
        track = self._tracks.get(replica.replica_id)
        if track is None:  # launched by an earlier control plane process: follow its cluster
            track = self._tracks[replica.replica_id] = _Track(cluster=replica.handle)
        if track.retry_at is not None:
            if now >= track.retry_at:
                return self._submit_launch(replica, track)
            return replica
        if now >= track.next_query_at:
            track.next_query_at = now + self.settings.sky_poll_every_s
            if track.request_id is not None:
                self._advance_launch(replica, track, now)
            else:
                self._follow_cluster(replica, track, now)
        return costs.with_cost(replica, now)

    def drain(self, replica: Replica) -> Replica:
        if not replica.state.live:
            return replica
        track = self._tracks.get(replica.replica_id)
        if replica.state == ReplicaState.PROVISIONING or (track and (track.request_id or track.retry_at)):
            return self.terminate(replica)
        task = self.sky.Task.from_yaml_config(templates.render_config(DRAIN_TEMPLATE, cluster_name=replica.handle))
        try:
            self.sky.exec(task, cluster_name=replica.handle)
        except Exception as exc:  # noqa: BLE001 - translated: the replica still drains via the queue
            replica.message = f"drain signal not sent: {exc}"
        replica.state = ReplicaState.DRAINING
        return replica

    def terminate(self, replica: Replica) -> Replica:
        if replica.state == ReplicaState.TERMINATED:
            return replica
        track = self._tracks.get(replica.replica_id)
        if track is not None and track.request_id is not None:
            try:
                self.sky.api_cancel(track.request_id)
            except Exception:  # noqa: BLE001 - the down below is what counts
                pass
            track.request_id = None
        if track is not None:
            track.retry_at = None
        self._teardown(replica.handle)  # raises TeardownError, leaving the replica live
        now = self._clock()
        if replica.state.live:
            replica.state = ReplicaState.TERMINATED
            replica.ended_at = replica.ended_at or now
        return costs.with_cost(replica, now)

    # -- launch attempts -----------------------------------------------------
    def _submit_launch(self, replica: Replica, track: _Track) -> Replica:
        track.retry_at = None
        try:
            task = self.sky.Task.from_yaml_config(dict(track.config), secrets_overrides=list(track.secrets.items()))
            track.request_id = self.sky.launch(
                task, cluster_name=track.cluster, retry_until_up=False,
                idle_minutes_to_autostop=self.settings.sky_autodown_idle_minutes, down=True)
        except Exception as exc:  # noqa: BLE001 - translated into the replica's state
            return self._failed(replica, track, f"launch not submitted: {exc}", teardown=False)
        replica.state = ReplicaState.PROVISIONING
        return replica

    def _advance_launch(self, replica: Replica, track: _Track, now: float) -> None:
        try:
            payloads = self.sky.api_status([track.request_id])
        except Exception as exc:  # noqa: BLE001 - API server hiccup: ask again next poll
            replica.message = f"launch status unknown: {exc}"
            return
        statuses = {_enum_value(_field(p, "status")) for p in payloads}
        if not statuses & _FINISHED_REQUEST:
            return
        request_id, track.request_id = track.request_id, None
        try:
            job_id, _handle = self.sky.get(request_id)
        except Exception as exc:  # noqa: BLE001 - classified below
            if self._is(exc, "ResourcesUnavailableError"):
                self._capacity_error(replica, track, exc, now)
            else:
                self._failed(replica, track, f"launch failed: {exc}")
            return
        track.job_id = job_id
        track.capacity_errors = 0
        replica.state = ReplicaState.STARTING
        replica.started_at = now
        replica.message = ""

    def _capacity_error(self, replica: Replica, track: _Track, exc: BaseException, now: float) -> None:
        track.capacity_errors += 1
        replica.capacity_errors += 1  # the controller's availability estimate counts these per zone and market
        try:
            self._teardown(track.cluster)
        except TeardownError as down_exc:
            self._failed(replica, track, f"no capacity, and the partial cluster was not torn down: {down_exc}",
                         teardown=False)
            return
        if track.capacity_errors > self.settings.launch_retries:
            self._failed(replica, track, f"no capacity after {track.capacity_errors} attempts: {exc}", teardown=False)
            return
        wait = min(self.settings.launch_backoff_s * 2 ** (track.capacity_errors - 1), self.settings.launch_backoff_max_s)
        track.retry_at = now + wait
        replica.message = f"no capacity (attempt {track.capacity_errors}); retrying in {wait:.0f}s: {exc}"

    def _failed(self, replica: Replica, track: _Track, message: str, teardown: bool = True) -> Replica:
        """FAILED, after tearing the cluster down (always: a failed cluster still bills)."""
        if teardown:
            try:
                self._teardown(track.cluster)
            except TeardownError as exc:
                message = f"{message}; teardown failed: {exc}"
        replica.state = ReplicaState.FAILED
        replica.ended_at = self._clock()
        replica.message = message
        return replica

    # -- a launched cluster --------------------------------------------------
    def _follow_cluster(self, replica: Replica, track: _Track, now: float) -> None:
        try:
            records = self.sky.get(self.sky.status([track.cluster], refresh=self._refresh_mode()))
        except Exception as exc:  # noqa: BLE001 - API server hiccup: ask again next poll
            replica.message = f"cluster status unknown: {exc}"
            return
        record = next((r for r in records if _field(r, "name") == track.cluster), None)
        if record is None:
            if replica.state == ReplicaState.DRAINING:
                self._ended(replica, ReplicaState.TERMINATED, now, "cluster gone after drain")
            else:
                self._ended(replica, ReplicaState.PREEMPTED, now, "cluster disappeared (preempted)")
            return
        status = _enum_value(_field(record, "status"))
        if status != "UP":
            self._ended(replica, ReplicaState.PREEMPTED, now, f"cluster {status} after it was up (preempted)",
                        cluster=track.cluster)
            return
        job_status = self._job_status(track)
        if job_status is None:
            return
        if job_status == "SUCCEEDED":
            self._ended(replica, ReplicaState.TERMINATED, now, "worker finished", cluster=track.cluster)
        elif job_status in _JOB_FAILED:
            self._ended(replica, ReplicaState.FAILED, now, f"worker job {job_status}", cluster=track.cluster)
        elif replica.state != ReplicaState.DRAINING:
            replica.state = ReplicaState.STARTING if job_status in _JOB_STARTING else ReplicaState.RUNNING

    def _job_status(self, track: _Track) -> str | None:
        job_ids = [track.job_id] if track.job_id is not None else None
        try:
            statuses = self.sky.get(self.sky.job_status(track.cluster, job_ids))
        except Exception:  # noqa: BLE001 - cluster going down; the next status poll tells
            return None
        if track.job_id is not None:
            return _enum_value(statuses.get(track.job_id))
        return _enum_value(next(iter(statuses.values()), None))

    def _ended(self, replica: Replica, state: ReplicaState, now: float, message: str,
               cluster: str | None = None) -> None:
        if cluster is not None:
            try:
                self._teardown(cluster)
            except TeardownError as exc:
                message = f"{message}; teardown failed: {exc}"
        replica.state = state
        replica.ended_at = now
        replica.message = message

    def _refresh_mode(self) -> Any:
        return self.sky.StatusRefreshMode[self.settings.sky_status_refresh.upper()]

    def _teardown(self, cluster: str) -> None:
        """``sky.down`` until it succeeds or the cluster does not exist; TeardownError when ``skypilot_retry`` runs out."""
        def down() -> None:
            try:
                self.sky.get(self.sky.down(cluster))
            except Exception as exc:  # noqa: BLE001 - classified
                if not self._is(exc, "ClusterDoesNotExist"):
                    raise

        policy = self.settings.skypilot_retry
        try:
            retrying(policy, self._sleep)(down)
        except Exception as exc:  # noqa: BLE001 - every try failed: translated
            raise TeardownError(f"cluster not torn down after {policy.attempts} attempts: {exc}", cluster=cluster) from exc
