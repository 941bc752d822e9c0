"""HTTP auth and isolation: no token, a wrong token or another user's job get 401/404 and leak nothing."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from orca.control.app import create_app
from orca.control.service import OrcaService
from orca.models import JobStatus
from orca.queue.jobs import JobRecord
from orca.settings import Settings


@pytest.fixture
def service(redis_url: str, tmp_path):
    svc = OrcaService.from_settings(Settings(home=tmp_path, redis_url=redis_url, store_url="memory://"), synchronous=True)
    yield svc
    svc.close()


@pytest.fixture
def client(service: OrcaService) -> TestClient:
    return TestClient(create_app(service))


def _job(service: OrcaService, job_id: str, user: str, secret: str) -> None:
    service.registry.create_job(JobRecord(id=job_id, user=user, status=JobStatus.IN_PROGRESS, created_at=1.0,
                                          deadline_at=9e9, metadata={"secret": secret}))


PROTECTED = [
    ("GET", "/api/jobs"), ("GET", "/api/jobs/{id}"), ("POST", "/api/jobs/{id}/cancel"),
    ("GET", "/api/jobs/{id}/results"), ("GET", "/api/jobs/{id}/errors"), ("GET", "/api/jobs/{id}/logs"),
]


def _call(client: TestClient, method: str, path: str, job_id: str, token: str | None):
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return client.request(method, path.format(id=job_id), headers=headers)


@pytest.mark.parametrize("method,path", PROTECTED)
@pytest.mark.parametrize("token", [None, "", "orca_wrong", "Basic abc"])
def test_missing_or_wrong_token_is_401(client: TestClient, service: OrcaService, method: str, path: str, token) -> None:
    _job(service, "batch_alice", "alice", "alice-secret")
    service.registry.create_token("alice")
    headers = {} if token is None else {"authorization": token if token.startswith("Basic") else f"Bearer {token}"}
    r = client.request(method, path.format(id="batch_alice"), headers=headers)
    assert r.status_code == 401
    body = r.json()
    assert body["error"]["code"] == "unauthorized"
    assert "alice" not in r.text and "batch_alice" not in r.text


@pytest.mark.parametrize("method,path", [p for p in PROTECTED if "{id}" in p[1]])
def test_another_users_job_is_404_like_a_missing_one(client: TestClient, service: OrcaService, method: str, path: str) -> None:
    _job(service, "batch_alice", "alice", "alice-secret")
    bob = service.registry.create_token("bob")
    theirs = _call(client, method, path, "batch_alice", bob)
    missing = _call(client, method, path, "batch_nosuchjob", bob)
    assert theirs.status_code == missing.status_code == 404
    assert "alice" not in theirs.text and "secret" not in theirs.text
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    # Same body apart from the id the caller itself sent.
    assert theirs.text.replace("batch_alice", "X") == missing.text.replace("batch_nosuchjob", "X")
    assert service.registry.get("batch_alice").status is JobStatus.IN_PROGRESS  # bob's cancel did nothing


def test_owner_sees_own_jobs_only(client: TestClient, service: OrcaService) -> None:
    _job(service, "batch_alice", "alice", "a")
    _job(service, "batch_bob", "bob", "b")
    alice = service.registry.create_token("alice")
    r = client.get("/api/jobs", headers={"authorization": f"Bearer {alice}"})
    assert r.status_code == 200
    assert [j["id"] for j in r.json()["data"]] == ["batch_alice"]
    r = client.get("/api/jobs/batch_alice", headers={"authorization": f"Bearer {alice}"})
    assert r.status_code == 200 and r.json()["metadata"] == {"secret": "a"}
    r = client.post("/api/jobs/batch_alice/cancel", headers={"authorization": f"Bearer {alice}"})
    assert r.status_code == 200 and r.json()["status"] == "cancelling"
    r = client.post("/api/jobs/batch_alice/cancel", headers={"authorization": f"Bearer {alice}"})
    assert r.status_code == 200 and r.json()["status"] == "cancelling"  # repeat is harmless


def test_results_before_ready_is_409_and_healthz_is_open(client: TestClient, service: OrcaService) -> None:
    _job(service, "batch_alice", "alice", "a")
    alice = service.registry.create_token("alice")
    r = client.get("/api/jobs/batch_alice/results", headers={"authorization": f"Bearer {alice}"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert client.get("/healthz").json() == {"ok": True, "redis": True, "store": True}


def test_bad_form_input_is_400_in_the_error_shape(client: TestClient, service: OrcaService) -> None:
    alice = service.registry.create_token("alice")
    h = {"authorization": f"Bearer {alice}"}
    r = client.post("/api/jobs", headers=h, data={"deadline": "1h"})  # no file
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = client.post("/api/jobs", headers=h, files={"file": ("a.jsonl", b"{}\n")}, data={"metadata": "[1]"})
    assert r.status_code == 400
    r = client.post("/api/jobs", headers=h, files={"file": ("a.jsonl", b"{}\n")}, data={"deadline": "soon"})
    assert r.status_code == 400 and "duration" in json.dumps(r.json())
    assert service.registry.job_ids() == []
