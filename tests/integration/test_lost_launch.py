"""A local worker whose launch was lost with its controller (killed after starting the worker,
before recording its pid) keeps every answer it gave, with or without a cancel.

The staged interleaving, deterministic: controller A ticks until it has launched the job's one
worker, then never ticks again (as if killed -9: its launch result is never written). The
worker runs chunks whose last request is slow, so it holds answered, uncommitted requests when
controller B takes A's launch over (``control.controller_ttl_s`` after A's last heartbeat).
B must find that worker by its replica id and let it go by a partial commit before its chunks
are reclaimed; with ``cancel`` the job is cancelled right after the takeover, and its final
assembly must wait for that worker. Every answer the fake engine gave (its answer log) must be
in the output, and no worker may outlive the job.

Real parts: redis-server, local worker subprocesses on the fake engine, the controller's thread
calls (B); the RQ steps run inline.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orca.control.app import create_app
from orca.control.calls import InlineCalls
from orca.control.controller import Controller
from orca.control.service import OrcaService
from orca.settings import ControlSettings, IngestSettings, LauncherSettings, QueueSettings, Settings, WorkerSettings
from tests.conftest import wait_until

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
N = 24  # 6 chunks of 4; the last request of each chunk takes SLOW_S
SLOW_S = 6.0


def batch() -> bytes:
    rows = [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": MODEL, "max_tokens": 8, "user": f"req-{i}", "fake_delay_s": SLOW_S if i % 4 == 3 else 0.02,
                      "messages": [{"role": "user", "content": f"q{i}"}]}} for i in range(N)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def worker_pids(replica_id: str) -> list[int]:
    """Pids of live ``orca.worker`` processes started for ``replica_id`` (read from /proc, not from orca)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0] if argv else "X"
        except OSError:
            continue
        if b"orca.worker" in argv and replica_id.encode() in argv and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def answers(log_dir: Path) -> dict[str, set[str]]:
    """custom_id -> ids of the answers the fake engines gave it."""
    out: dict[str, set[str]] = {}
    for f in log_dir.glob("*.jsonl"):
        for line in f.read_text().splitlines():
            e = json.loads(line)
            if e["ev"] == "done":
                out.setdefault(e["user"], set()).add(e["id"])
    return out


@pytest.mark.parametrize("cancel", [False, True])
def test_a_lost_launchs_worker_keeps_its_answers(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 cancel: bool) -> None:
    log_dir = tmp_path / "answers"
    log_dir.mkdir()
    monkeypatch.setenv("ORCA_FAKE_ANSWER_LOG", str(log_dir))  # the workers inherit it
    settings = Settings(
        home=tmp_path, redis_url=redis_url, store_url=(tmp_path / "store").as_uri(),
        queue=QueueSettings(lease_s=30, renew_every_s=0.5, reap_every_s=0.2),
        ingest=IngestSettings(min_chunk_requests=1, max_chunk_requests=4),
        control=ControlSettings(tick_s=0.1, lock_ttl_s=5, controller_ttl_s=1.0),
        launcher=LauncherSettings(local_engine="fake", local_engine_args={"fake_slots": "4"}, local_stop_grace_s=15,
                                  local_max_workers=1),
        worker=WorkerSettings(drain_grace_s=0.5, metrics_every_s=0.5, idle_poll_s=0.2),
    )
    svc = OrcaService.from_settings(settings, synchronous=True)
    client = TestClient(create_app(svc))
    client.headers["authorization"] = f"Bearer {svc.registry.create_token('alice')}"
    doomed = Controller(svc, controller_id="ctl-doomed", calls=InlineCalls())
    job_id = client.post("/api/jobs", files={"file": ("b.jsonl", batch())}).json()["id"]
    try:
        def launched() -> list:
            doomed.tick()
            return svc.registry.replicas(job_id)

        [lost] = wait_until(launched, 30, "controller A to launch the worker", interval_s=0.1)
        assert lost.call == "launch" and worker_pids(lost.replica_id)
        # A is gone now: its launch result is never written. Its worker answers the fast requests.
        wait_until(lambda: sum(len(v) for v in answers(log_dir).values()) >= 3, 30, "the lost launch's worker to answer")
        survivor = Controller(svc, controller_id="ctl-survivor")

        def taken_over() -> bool:
            survivor.tick()
            r = next(x for x in svc.registry.replicas(job_id) if x.replica_id == lost.replica_id)
            return "lost with controller ctl-doomed" in r.message

        wait_until(taken_over, 30, "the survivor to take the lost launch over", interval_s=0.1)
        if cancel:
            assert client.post(f"/api/jobs/{job_id}/cancel").json()["status"] == "cancelling"

        def settled() -> bool:
            survivor.tick()
            job = client.get(f"/api/jobs/{job_id}").json()
            assert job["status"] != "failed", job
            return job["output_available"]

        wait_until(settled, 60, "the job to settle", interval_s=0.1)
        job = client.get(f"/api/jobs/{job_id}").json()
        assert job["status"] == ("cancelled" if cancel else "completed")
        assert not worker_pids(lost.replica_id)  # the lost launch's worker did not outlive the job
        out = [json.loads(x) for x in client.get(f"/api/jobs/{job_id}/results").text.splitlines() if x.strip()]
        err = [json.loads(x) for x in client.get(f"/api/jobs/{job_id}/errors").text.splitlines() if x.strip()]
        assert sorted(x["custom_id"] for x in out + err) == sorted(f"req-{i}" for i in range(N))  # once each
        kept = {x["custom_id"]: x["response"]["body"]["id"] for x in out}
        given = answers(log_dir)
        discarded = {cid: ids - {kept.get(cid)} for cid, ids in given.items() if ids - {kept.get(cid)}}
        assert not discarded, f"answers given but not in the output: {discarded}"
        if cancel:
            assert {e["error"]["code"] for e in err} <= {"batch_cancelled"}
            assert all(cid not in given for cid in (e["custom_id"] for e in err))  # cancelled lines: never answered
        else:
            assert len(out) == N
    finally:  # never leave a worker behind, tracked or not
        for r in svc.registry.replicas(job_id):
            for pid in worker_pids(r.replica_id):
                os.killpg(pid, signal.SIGKILL)
        svc.close()
