"""``SimLauncher``: the ``Launcher`` interface over the simulated cloud (``orca.sim.cloud``).

It behaves as the real launchers do at their boundary: ``launch`` returns at once with a
PROVISIONING replica (the cloud's answer, or its capacity error, shows up on a later ``poll``),
``poll`` reports the replica's state, zone, capacity errors, preemption notice and accrued cost,
``drain`` lets the worker finish its chunk, ``terminate`` ends it (safe to repeat). So it works
the same whether the controller calls launchers inline or from a background runner.
"""

from __future__ import annotations

from orca.fleet import PoolSpec, Replica, WorkerEnv
from orca.launchers.base import Launcher
from orca.sim.cloud import SimCloud, machine_state


class SimLauncher(Launcher):
    name = "sim"

    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud

    def launch(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> Replica:
        m = self.cloud.launch(env.job_id, pool, replica_id)
        return Replica(replica_id=replica_id, job_id=env.job_id, pool=pool.key, launcher=self.name, handle=replica_id,
                       created_at=m.launched_at, price_per_hour=pool.price_per_replica_hour, zone=m.zone,
                       message=f"launch requested in {m.zone or pool.market}")

    def poll(self, replica: Replica) -> Replica:
        m = self.cloud.machines.get(replica.handle)
        if m is None or not replica.state.live:
            return replica
        now = self.cloud.clock.time()
        replica.state = machine_state(m, now)
        replica.zone, replica.capacity_errors, replica.notice_at = m.zone, m.capacity_errors, m.notice_at
        replica.started_at, replica.ended_at = m.up_at, m.ended_at
        replica.message = m.message
        replica.cost_usd = m.cost(now)
        return replica

    def drain(self, replica: Replica) -> Replica:
        m = self.cloud.machines.get(replica.handle)
        if m is not None:
            self.cloud.drain(m)
        return self.poll(replica)

    def terminate(self, replica: Replica) -> Replica:
        m = self.cloud.machines.get(replica.handle)
        if m is not None:
            self.cloud.terminate(m)
        return self.poll(replica)
