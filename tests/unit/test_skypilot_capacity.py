"""Production behaviour on capacity errors as SkyPilot reports them: the real SkyPilotLauncher and Controller
on the simulated cloud, through a FAKE ``sky`` SDK whose answers come from that cloud.

The fake keeps SkyPilot's real ``Task`` (validated by SkyPilot), exceptions and enums; ``sky.launch``
is one attempt in the simulated cloud, which answers after its API delay with a cluster or with
``sky.exceptions.ResourcesUnavailableError``. Whatever the launcher and the controller do with
those errors is production code: its retries, the availability estimate, the policy's choice.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import sky

from orca.fleet import PoolSpec, Replica, ReplicaState, WorkerEnv
from orca.launchers.base import Launcher
from orca.launchers.skypilot import SkyPilotLauncher, cluster_name_for
from orca.settings import Settings
from orca.sim.cloud import CloudFacts, Machine, SimCloud
from orca.sim.run import Scenario, simulate
from orca.sim.scenarios import constant_zone, option

S = Settings()
R = 1000.0


class SkyOverSimCloud:
    """Stands in for the ``sky`` client SDK; every answer comes from the simulated cloud."""

    Task = sky.Task
    exceptions = sky.exceptions
    StatusRefreshMode = sky.StatusRefreshMode
    ClusterStatus = sky.ClusterStatus

    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.targets: dict[str, tuple[str, PoolSpec, str]] = {}   # cluster -> (job, pool, replica id)
        self.clusters: dict[str, Machine] = {}
        self.requests: dict[str, tuple] = {}
        self._ids = itertools.count(1)

    def _request(self, result, ready=lambda: True) -> str:
        rid = f"req-{next(self._ids)}"
        self.requests[rid] = (result, ready)
        return rid

    def launch(self, task, cluster_name, **kw):
        job_id, pool, replica_id = self.targets[cluster_name]
        m = self.clusters[cluster_name] = self.cloud.launch(job_id, pool, replica_id, retry=False)

        def result():
            if m.up_at is None:
                raise sky.exceptions.ResourcesUnavailableError(f"Failed to acquire resources in {m.zone}")
            return (1, object())
        return self._request(result, ready=lambda: m.up_at is not None or m.ended)

    def api_status(self, request_ids):
        return [SimpleNamespace(request_id=r, status="SUCCEEDED" if self.requests[r][1]() else "RUNNING")
                for r in request_ids]

    def get(self, request_id):
        return self.requests[request_id][0]()

    def status(self, cluster_names, refresh):
        def answer():
            return [{"name": n, "status": sky.ClusterStatus.UP} for n in cluster_names
                    if n in self.clusters and self.clusters[n].up_at is not None
                    and self.clusters[n].end_state is not ReplicaState.PREEMPTED]
        return self._request(answer)

    def job_status(self, cluster_name, job_ids):
        m = self.clusters[cluster_name]
        now = self.cloud.clock.time()
        if m.end_state is ReplicaState.TERMINATED:
            status = "SUCCEEDED"
        elif m.end_state is ReplicaState.FAILED:
            status = "FAILED"
        else:
            status = "RUNNING" if m.ready_at is not None and now >= m.ready_at else "SETTING_UP"
        return self._request(lambda: {1: sky.JobStatus[status]})

    def down(self, cluster_name):
        def answer():
            m = self.clusters.pop(cluster_name, None)
            if m is None:
                raise sky.exceptions.ClusterDoesNotExist(cluster_name)
            self.cloud.terminate(m)
        return self._request(answer)

    def exec(self, task, cluster_name):
        self.cloud.drain(self.clusters[cluster_name])
        return self._request((2, object()))

    def api_cancel(self, request_ids):
        pass


class ToCluster(Launcher):
    """Tells the fake SDK which pool and replica each cluster name is for, then hands over to the real launcher."""

    name = "skypilot"

    def __init__(self, inner: SkyPilotLauncher, fake: SkyOverSimCloud) -> None:
        self.inner, self.fake = inner, fake

    def launch(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> Replica:
        self.fake.targets[cluster_name_for(env.job_id, replica_id)] = (env.job_id, pool, replica_id)
        return self.inner.launch(env, pool, replica_id)

    def poll(self, replica: Replica) -> Replica:
        return self.inner.poll(replica)

    def drain(self, replica: Replica) -> Replica:
        return self.inner.drain(replica)

    def terminate(self, replica: Replica) -> Replica:
        return self.inner.terminate(replica)


def skypilot(cloud: SimCloud) -> dict[str, Launcher]:
    fake = SkyOverSimCloud(cloud)
    real = SkyPilotLauncher(S.launcher, sky=fake, clock=cloud.clock.time, sleep=lambda s: None, environ={})
    return {"skypilot": ToCluster(real, fake)}


SPOT_Z1 = option("spot", 0.4, 300, R, 8, region="z1", replicas=2)
SPOT_Z2 = option("spot", 0.45, 300, R, 8, region="z2")
OD = option("on_demand", 0.8, 300, R, 8)


def run(zones, options):
    sc = Scenario("sky", tuple(options), options[0], 2 * R * 2 * 3600, 4 * 3600, tuple(zones))
    return simulate(sc, settings=S, launchers=skypilot)


def z1_attempts(r) -> list[Replica]:
    return [x for x in r.replicas if x.pool == SPOT_Z1["key"]]


def test_capacity_errors_in_one_zone_move_spot_to_another_zone():
    r = run([constant_zone("z1", False), constant_zone("z2", True)], (SPOT_Z1, SPOT_Z2, OD))
    assert r.met and r.stats.capacity_errors > 0
    # the controller stopped waiting on z1: its replicas were released long before the launcher's own
    # retries ran out (5 capacity errors each), and spot ran in z2 instead of on-demand
    assert all(x.capacity_errors < S.launcher.launch_retries for x in z1_attempts(r))
    assert not any(x.state is ReplicaState.FAILED for x in r.replicas)
    assert r.cost_by_market.get("on_demand", 0.0) == 0.0 and r.cost_by_market["spot"] > 0
    assert {x.zone for x in r.replicas if x.started_at is not None} == {"z2"}


def test_no_spot_anywhere_meets_the_deadline_on_demand():
    r = run([constant_zone("z1", False)], (SPOT_Z1, OD))
    assert r.met and r.cost_by_market.get("spot", 0.0) == 0.0 and r.cost_by_market["on_demand"] > 0
    assert all(x.capacity_errors < S.launcher.launch_retries for x in z1_attempts(r))
    # probing again with a doubling backoff: at most one probe (the spot replicas the job wants, here its plan's
    # two) per longest backoff plus the refusal's delay over four hours, not one per tick
    probes = 4 * 3600 / (S.planner.availability_backoff_max_s + CloudFacts().capacity_error_s) + 3
    assert r.stats.capacity_errors <= SPOT_Z1["replicas"] * probes
