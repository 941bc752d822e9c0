"""ReplicaCalls submits one poll per replica; each call must poll its own replica even when the
runner runs it after the submitting loop has moved on (as the thread pool does)."""

from __future__ import annotations

import dataclasses

from orca.control.calls import CallRunner
from orca.control.replicas import ReplicaCalls
from orca.fleet import Replica, ReplicaState
from orca.models import JobStatus
from orca.queue.jobs import JobRecord
from orca.settings import Settings


class DeferredCalls(CallRunner):
    """Keeps every submitted call; ``run`` calls them afterwards, like a busy thread pool."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def submit(self, job_id, replica_id, op, rev, fn) -> None:
        self.calls.append((replica_id, fn))

    def busy(self, job_id):
        return set()

    def collect(self, job_id):
        return []


class EchoLauncher:
    def poll(self, replica: Replica) -> Replica:
        return dataclasses.replace(replica, state=ReplicaState.RUNNING)


def test_each_poll_call_polls_its_own_replica() -> None:
    runner = DeferredCalls()
    calls = ReplicaCalls("ctl-1", Settings(), registry=None, launchers=lambda name: EchoLauncher(), runner=runner,
                         queue_for=lambda job_id: None)
    record = JobRecord(id="batch_1", user="u", status=JobStatus.IN_PROGRESS, created_at=0.0, deadline_at=1.0)
    replicas = [Replica(replica_id=f"w-{i}", job_id="batch_1", pool="p", launcher="local", handle=f"{i}:1", rev=1)
                for i in range(3)]
    calls._poll_due(record, replicas, set())
    assert [(submitted, fn().replica_id) for submitted, fn in runner.calls] == [("w-0", "w-0"), ("w-1", "w-1"), ("w-2", "w-2")]
