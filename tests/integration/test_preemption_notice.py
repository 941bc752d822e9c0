"""A spot notice on a running job: local workers watch a fake metadata server (real HTTP); on the
notice they keep what they answered, hand the rest back uncharged and exit; the controller records
the notice as the replicas' reason, and the job still completes with every request exactly once."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from orca.control.app import create_app
from orca.control.controller import Controller
from orca.control.service import OrcaService
from tests.fakes.metadata_server import FakeMetadataServer
from tests.integration.test_control_flow import batch, flow_settings, lines, run_until


def test_a_preemption_notice_is_recorded_and_charges_nothing(redis_url: str, tmp_path) -> None:
    with FakeMetadataServer() as meta:
        settings = flow_settings(redis_url, tmp_path, lease_s=60)
        settings.worker.preemption_notices = "aws"
        settings.worker.aws_metadata_url = meta.url
        settings.worker.preemption_poll_s = 0.1
        settings.worker.notice_margin_s = 119  # a 120 s notice leaves 1 s for in-flight requests
        svc = OrcaService.from_settings(settings, synchronous=True)
        controller = Controller(svc)
        client = TestClient(create_app(svc))
        client.headers["authorization"] = f"Bearer {svc.registry.create_token('alice')}"
        try:
            job = client.post("/api/jobs", files={"file": ("b.jsonl", batch(24, 0.6))}).json()
            run_until(controller, client, job["id"], lambda j: j["progress"]["chunks_leased"] >= 2)
            first = {r.replica_id for r in svc.registry.replicas(job["id"]) if r.state.live}
            meta.aws_notice(seconds=120)
            run_until(controller, client, job["id"],
                      lambda j: not any(r.state.live for r in svc.registry.replicas(job["id"]) if r.replica_id in first))
            meta.clear()  # the replacements run on a machine with no notice
            done = run_until(controller, client, job["id"], lambda j: j["status"] == "completed", timeout=60)
            assert done["request_counts"] == {"total": 24, "completed": 24, "failed": 0}
            out = lines(client, job["id"], "results")
            assert sorted(x["custom_id"] for x in out) == sorted(f"req-{i}" for i in range(24))
            replicas = {r.replica_id: r for r in svc.registry.replicas(job["id"])}
            # a worker that exited before the notice (nothing left for it) ends as usual; every one that saw it
            # is recorded as preempted, with the notice as its reason
            noticed = {w for w in first if svc.registry.worker_metrics(job["id"], w).get("notice")}
            assert noticed
            ended = {w: (replicas[w].state.value, replicas[w].message) for w in noticed}
            assert all(state == "preempted" and "preemption notice: aws spot instance-action" in message
                       for state, message in ended.values()), ended
            events = client.get(f"/api/jobs/{job['id']}/logs").json()
            # (a replacement started before the notice was cleared may have seen it too)
            assert {e["message"].split(":")[0] for e in events if e["kind"] == "preemption_notice"} >= noticed
            queue = svc.queue(job["id"])
            assert all(queue.chunk(c).attempts == 0 for c in queue.committed_generations())
            assert queue.dead_chunks() == {}
        finally:
            for r in svc.registry.replicas(job["id"]):
                if r.state.live:
                    controller.launcher("local").terminate(r)
            svc.close()
