"""ReplicaCalls: results land only on the revision they were made for; calls of a dead controller
are taken over; what a lost launch made is torn down. In-memory registry, inline calls."""

from __future__ import annotations

from types import SimpleNamespace

from orca.control.calls import InlineCalls
from orca.control.replicas import ReplicaCalls
from orca.fleet import Pool, Replica, ReplicaState, WorkerEnv
from orca.queue import MemoryChunkQueue, MemoryQueueServer
from orca.settings import Settings

JOB = "job_1"


class Registry:
    def __init__(self) -> None:
        self.map: dict[str, Replica] = {}
        self.events: list[tuple[str, str]] = []
        self.fields: dict = {}

    def replicas(self, job_id):
        return list(self.map.values())

    def put_replica(self, r):
        self.map[r.replica_id] = r

    def put_replicas(self, rs):
        for r in rs:
            self.put_replica(r)

    def update(self, job_id, **fields):
        self.fields.update(fields)

    def add_event(self, job_id, kind, message):
        self.events.append((kind, message))

    def add_events(self, job_id, events):
        self.events.extend(events)

    def worker_metrics(self, job_id, worker_id):
        return None  # no worker here reports a preemption notice


class Cloud:
    """Records launcher calls; the replica's handle is known before the launch, as SkyPilot's is."""

    name = "cloud"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def planned_handle(self, env, pool, replica_id):
        return f"c-{replica_id}"

    def launch(self, env, pool, replica_id):
        self.calls.append(("launch", replica_id))
        return Replica(replica_id, env.job_id, pool.key, "cloud", ReplicaState.STARTING, handle=f"c-{replica_id}")

    def poll(self, r):
        self.calls.append(("poll", r.replica_id))
        r.state = ReplicaState.RUNNING
        return r

    def terminate(self, r):
        self.calls.append(("terminate", r.handle))
        r.state = ReplicaState.TERMINATED
        return r

    drain = terminate


def rig(controller_id: str = "ctl-a"):
    registry, cloud, calls = Registry(), Cloud(), InlineCalls()
    queue = MemoryChunkQueue(JOB, server=MemoryQueueServer())
    settings = Settings()
    settings.control.poll_every_s = 0
    rc = ReplicaCalls(controller_id, settings, registry, lambda name: cloud, calls, lambda job_id: queue, clock=lambda: 5.0)
    return SimpleNamespace(registry=registry, cloud=cloud, calls=calls, rc=rc, queue=queue,
                           record=SimpleNamespace(id=JOB, replica_failures=0))


def test_a_launch_is_recorded_before_the_call_and_its_result_lands_on_the_next_follow() -> None:
    r = rig()
    env = WorkerEnv(job_id=JOB, redis_url="redis://x", store_url="file:///x", model="m")
    [new] = r.rc.launch(r.record, Pool(key="p", launcher="cloud", gpu="H100"), env, 1)
    assert (new.call, new.call_by, new.handle, new.rev) == ("launch", "ctl-a", f"c-{new.replica_id}", 1)
    [after] = r.rc.follow(r.record, {"ctl-a"})
    assert after.state is ReplicaState.STARTING and after.call == "" and after.rev == 2
    r.rc.poll_due(r.record, [after])
    assert r.cloud.calls == [("launch", new.replica_id), ("poll", new.replica_id)]  # then polled, off the tick


def test_a_result_for_an_older_revision_is_dropped() -> None:
    r = rig()
    r.registry.put_replica(Replica("w-1", JOB, "p", "cloud", ReplicaState.RUNNING, handle="c-w-1", rev=3))
    r.calls.submit(JOB, "w-1", "poll", 2, lambda: Replica("w-1", JOB, "p", "cloud", ReplicaState.FAILED, handle="c-w-1"))
    [kept] = r.rc.follow(r.record, {"ctl-a"})
    assert kept.state is ReplicaState.RUNNING and kept.rev == 3 and r.registry.fields == {}


def test_a_dead_controllers_launch_is_taken_over_and_what_it_made_torn_down_before_its_chunks_are_reclaimed() -> None:
    r = rig()
    r.queue.enqueue_many(["c1"])
    r.queue.claim("w-1", "p")  # the worker the lost launch started holds a chunk
    r.registry.put_replica(Replica("w-1", JOB, "p", "cloud", ReplicaState.PROVISIONING, handle="c-w-1", rev=1,
                                   call="launch", call_by="ctl-dead", call_at=1.0))
    r.registry.put_replica(Replica("w-2", JOB, "p", "cloud", ReplicaState.RUNNING, handle="c-w-2", rev=4,
                                   call="drain", call_by="ctl-alive", call_at=1.0))
    replicas = {x.replica_id: x for x in r.rc.follow(r.record, {"ctl-a", "ctl-alive"})}
    w1 = replicas["w-1"]
    assert w1.state is ReplicaState.PROVISIONING and "lost with controller ctl-dead" in w1.message
    assert (w1.call, w1.call_by, w1.rev) == ("terminate", "ctl-a", 2)  # a teardown in flight, taken over by ctl-a
    assert ("terminate", "c-w-1") in r.cloud.calls                 # the cluster the lost launch may have made
    assert r.queue.chunk("c1").owner == "w-1"                       # its worker may still commit: not reclaimed yet
    assert replicas["w-2"].call == "drain"                          # a live controller's call is left alone
    r.rc.poll_due(r.record, list(replicas.values()))
    assert not any(c in (("poll", "w-1"), ("poll", "w-2")) for c in r.cloud.calls)
    r.rc.follow(r.record, {"ctl-a", "ctl-alive"})                   # the teardown lands: now the chunk comes back
    assert (r.registry.map["w-1"].state, r.registry.map["w-1"].rev) == (ReplicaState.TERMINATED, 3)
    assert r.queue.chunk("c1").state.value == "pending" and r.queue.chunk("c1").attempts == 0  # uncharged
    assert [k for k, _ in r.registry.events] == ["reclaimed"]


def test_a_failed_replica_is_counted_once_and_its_chunks_reclaimed_charged() -> None:
    r = rig()
    r.queue.enqueue_many(["c1"])
    r.queue.claim("w-1", "p")
    r.registry.put_replica(Replica("w-1", JOB, "p", "cloud", ReplicaState.RUNNING, handle="c-w-1", rev=1))
    r.calls.submit(JOB, "w-1", "poll", 1, lambda: Replica("w-1", JOB, "p", "cloud", ReplicaState.FAILED, handle="c-w-1",
                                                          message="worker exited with code 1"))
    r.rc.follow(r.record, {"ctl-a"})
    assert r.record.replica_failures == 1 and r.registry.fields == {"replica_failures": 1}
    assert r.queue.chunk("c1").attempts == 1
    assert [k for k, _ in r.registry.events] == ["replica_failed", "reclaimed"]


def test_a_lost_launch_without_a_planned_handle_leaves_its_workers_leases_to_run_out() -> None:
    r = rig()
    r.queue.enqueue_many(["c1"])
    r.queue.claim("w-1", "p")  # a serverless worker the lost launch started: nothing names it
    r.registry.put_replica(Replica("w-1", JOB, "p", "cloud", ReplicaState.PROVISIONING, handle="", rev=1,
                                   call="launch", call_by="ctl-dead", call_at=1.0))
    [w1] = r.rc.follow(r.record, {"ctl-a"})
    assert w1.state is ReplicaState.TERMINATED and "runs untracked" in w1.message and w1.call == ""
    assert r.cloud.calls == []                                   # nothing to tear down by name
    assert r.queue.chunk("c1").owner == "w-1" and r.queue.chunk("c1").state.value == "leased"  # it may still commit
    assert r.registry.events == []                               # no reclaim
