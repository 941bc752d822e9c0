"""Prometheus /metrics reads Redis at scrape time: a fresh app over the same Redis reports the same values."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from orca.control.app import create_app
from orca.control.service import OrcaService
from orca.launchers.base import Replica, ReplicaState
from orca.models import JobStatus
from orca.queue import ChunkQueue
from orca.queue.jobs import JobRecord
from orca.settings import Settings


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def settings(redis_url: str, tmp_path) -> Settings:
    return Settings(home=tmp_path, redis_url=redis_url, store_url="memory://")


def test_metrics_expose_jobs_chunks_requests_and_replicas(settings: Settings, redis_url: str) -> None:
    svc = OrcaService.from_settings(settings, synchronous=True)
    reg = svc.registry
    for i, status in enumerate([JobStatus.IN_PROGRESS, JobStatus.IN_PROGRESS, JobStatus.COMPLETED, JobStatus.FAILED]):
        reg.create_job(JobRecord(id=f"batch_{i}", user="u", status=status, created_at=i, deadline_at=9e9))
    reg.update("batch_0", chunks_total=3, n_requests=30)
    q = ChunkQueue(redis_url, "batch_0", settings.queue)
    q.enqueue_many(["c1", "c2", "c3"])
    for lease in q.claim("w-1", "pool", n=2):
        q.complete(lease)
    reg.update("batch_2", chunks_total=1, n_requests=5, final_counts={"completed": 4, "failed": 1})
    ChunkQueue(redis_url, "batch_2", settings.queue).enqueue_many(["c1"])
    reg.put_replica(Replica("w-1", "batch_0", "pool", "local", ReplicaState.RUNNING))
    reg.put_replica(Replica("w-2", "batch_0", "pool", "local", ReplicaState.FAILED))

    text = TestClient(create_app(svc)).get("/metrics").text
    svc.close()
    s = _samples(text)
    assert s[("orca_jobs", (("status", "in_progress"),))] == 2
    assert s[("orca_jobs", (("status", "completed"),))] == 1
    assert s[("orca_jobs", (("status", "failed"),))] == 1
    assert s[("orca_jobs", (("status", "cancelled"),))] == 0
    assert s[("orca_chunks_done", ())] == 2
    assert s[("orca_chunks", ())] == 4
    assert s[("orca_requests_completed", ())] == 20 + 4  # 2/3 of 30 estimated, plus 4 exact
    assert s[("orca_replicas", (("state", "running"),))] == 1
    assert s[("orca_replicas", (("state", "failed"),))] == 1

    # A new app (a restarted server) over the same Redis reports the same numbers.
    again = OrcaService.from_settings(settings, synchronous=True)
    assert _samples(TestClient(create_app(again)).get("/metrics").text) == s
    again.close()
