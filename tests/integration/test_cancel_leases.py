"""A stopping job's final assembly waits for chunks still leased by a worker no replica tracks.

Such a worker exists when a launch was lost with its controller on a launcher that names no
handle before launching (Modal, RunPod): every replica record has ended, yet the worker still
holds a chunk and may commit it. Assembling then would write its requests off as never run.

Real redis-server and controller ticks; the cloud is a stand-in whose replicas never start
(``QuietCloud``), and the untracked worker is this test holding a lease through the real queue.
"""

from __future__ import annotations

import dataclasses
import json
import time

from orca.control.calls import InlineCalls
from orca.control.controller import Controller
from orca.fleet import Replica, ReplicaState
from orca.launchers.base import Launcher
from orca.queue import ChunkQueue
from tests.integration.test_control_fleet import fleet, repoint, submit, tick_until  # noqa: F401 - fixture


class QuietCloud(Launcher):
    """A stand-in cloud: launches stay provisioning until torn down, which ends them at once."""

    name = "modal"

    def launch(self, env, pool, replica_id: str) -> Replica:
        return Replica(replica_id=replica_id, job_id=env.job_id, pool=pool.key, launcher=self.name,
                       handle=f"fc-{replica_id}", created_at=time.time())

    def poll(self, replica: Replica) -> Replica:
        return replica

    def drain(self, replica: Replica) -> Replica:
        return self.terminate(replica)

    def terminate(self, replica: Replica) -> Replica:
        return dataclasses.replace(replica, state=ReplicaState.TERMINATED, ended_at=time.time())


def test_a_cancel_assembles_only_once_no_chunk_is_leased(fleet) -> None:
    svc, client = fleet
    controller = Controller(svc, launchers={"modal": QuietCloud()}, calls=InlineCalls())
    job_id = submit(client, 8)["id"]
    repoint(svc, job_id, "modal", target=1)
    tick_until(controller, lambda: svc.registry.replicas(job_id), what="a launch")
    pool = svc.registry.get(job_id).pools[0].key
    with ChunkQueue(svc.settings.redis_url, job_id, svc.settings.queue) as queue:
        [lease] = queue.claim("w-untracked", pool)  # a worker whose launch record was lost
        assert client.post(f"/api/jobs/{job_id}/cancel").json()["status"] == "cancelling"
        until = time.monotonic() + 2 * svc.settings.queue.lease_s
        while time.monotonic() < until:  # the untracked worker keeps its lease alive
            lease = queue.renew(lease)
            controller.tick()
            time.sleep(0.1)
        assert all(not r.state.live for r in svc.registry.replicas(job_id))
        assert svc.registry.get(job_id).status.value == "cancelling"  # not assembled under a live lease
        assert "waiting_for_leases" in [e["kind"] for e in svc.registry.events(job_id)]
    # the worker stops renewing: its lease expires, is reaped, and the cancel completes
    tick_until(controller, lambda: svc.registry.get(job_id).output_available, what="the cancel to assemble")
    assert svc.registry.get(job_id).status.value == "cancelled"
    err = [json.loads(x) for x in client.get(f"/api/jobs/{job_id}/errors").text.splitlines() if x.strip()]
    assert len(err) == 8 and {e["error"]["code"] for e in err} == {"batch_cancelled"}
