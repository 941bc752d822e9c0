"""A control plane shared by a team, over HTTP against a real Redis: users A and B and an admin,
revoke and rotate taking effect at once, admins seeing every job, each per-user quota refusing
with 429 (and keeping nothing), and the auth gate answering before the body is read.
"""

from __future__ import annotations

import json
import time

import anyio
import pytest
from fastapi.testclient import TestClient

from orca.control.app import create_app
from orca.control.service import OrcaService
from orca.launchers.base import Replica, ReplicaState
from orca.models import JobStatus
from orca.queue import keys
from orca.queue.jobs import JobRecord
from orca.settings import ControlSettings, IngestSettings, QuotaSettings, Settings

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def batch(n: int) -> bytes:
    rows = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": f"q{i}"}]}} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def make_service(redis_url: str, tmp_path, **quota) -> OrcaService:
    settings = Settings(home=tmp_path, redis_url=redis_url, store_url=(tmp_path / "store").as_uri(),
                        ingest=IngestSettings(min_chunk_requests=1, max_chunk_requests=4),
                        control=ControlSettings(max_upload_mb=1), quota=QuotaSettings(**quota))
    return OrcaService.from_settings(settings, synchronous=True)


@pytest.fixture
def team(redis_url: str, tmp_path):
    """(service, http client, {name: token}) with an admin 'root' and plain users alice and bob made over the API."""
    svc = make_service(redis_url, tmp_path)
    http = TestClient(create_app(svc))
    tokens = {"root": svc.registry.users.add("root", admin=True)}
    for name in ("alice", "bob"):
        r = http.post("/api/users", json={"name": name}, headers=auth(tokens["root"]))
        assert r.status_code == 201, r.text
        assert r.json()["user"] == {"name": name, "admin": False, "created_at": r.json()["user"]["created_at"], "quota_overrides": {}}
        tokens[name] = r.json()["token"]
    yield svc, http, tokens
    svc.close()


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def submit(http: TestClient, token: str, n: int = 3, **data):
    return http.post("/api/jobs", files={"file": ("b.jsonl", batch(n))}, data={"deadline": "1h", **data}, headers=auth(token))


def test_users_see_their_own_jobs_and_admins_see_every_job(team) -> None:
    svc, http, t = team
    a = submit(http, t["alice"]).json()["id"]
    b = submit(http, t["bob"]).json()["id"]
    assert [j["id"] for j in http.get("/api/jobs", headers=auth(t["alice"])).json()["data"]] == [a]
    assert http.get(f"/api/jobs/{b}", headers=auth(t["alice"])).status_code == 404
    r = http.get("/api/jobs", params={"all": "true"}, headers=auth(t["alice"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert {j["id"] for j in http.get("/api/jobs", params={"all": "true"}, headers=auth(t["root"])).json()["data"]} == {a, b}
    assert http.get(f"/api/jobs/{a}", headers=auth(t["root"])).status_code == 200
    # User management is admin-only.
    for method, path, body in (("GET", "/api/users", None), ("POST", "/api/users", {"name": "eve", "admin": True}),
                               ("DELETE", "/api/users/bob", None), ("POST", "/api/users/bob/rotate", None),
                               ("PATCH", "/api/users/alice/quota", {"max_active_jobs": 100})):
        r = http.request(method, path, json=body, headers=auth(t["alice"]))
        assert r.status_code == 403, (method, path, r.text)
    assert [u["name"] for u in http.get("/api/users", headers=auth(t["root"])).json()["data"]] == ["alice", "bob", "root"]
    assert http.get("/api/me", headers=auth(t["alice"])).json()["admin"] is False
    assert http.get("/api/me", headers=auth(t["root"])).json()["admin"] is True


def test_tokens_are_stored_hashed(team) -> None:
    svc, _, t = team
    raw = svc.registry._r
    stored = json.dumps([raw.hgetall(keys.TOKENS), raw.hgetall(keys.USERS)])
    assert all(token not in stored for token in t.values())


def test_revoke_takes_effect_at_once(team) -> None:
    svc, http, t = team
    job = submit(http, t["bob"]).json()["id"]
    assert http.get("/api/jobs", headers=auth(t["bob"])).status_code == 200
    r = http.delete("/api/users/bob", headers=auth(t["root"]))
    assert r.status_code == 200 and r.json()["name"] == "bob"
    for path in ("/api/jobs", f"/api/jobs/{job}", "/v1/files", "/api/me"):
        assert http.get(path, headers=auth(t["bob"])).status_code == 401, path
    assert http.delete("/api/users/bob", headers=auth(t["root"])).status_code == 404
    assert svc.registry.get(job).user == "bob"  # the job stays; an admin still sees it
    r = http.delete("/api/users/root", headers=auth(t["root"]))
    assert r.status_code == 409 and "last admin" in r.json()["error"]["message"]


def test_a_revoked_name_comes_back_only_with_its_jobs_on_purpose(team) -> None:
    _, http, t = team
    job = submit(http, t["bob"]).json()["id"]
    assert http.delete("/api/users/bob", headers=auth(t["root"])).status_code == 200
    r = http.post("/api/users", json={"name": "bob"}, headers=auth(t["root"]))
    assert r.status_code == 409 and "--reclaim-jobs" in r.json()["error"]["message"]
    r = http.post("/api/users", json={"name": "bob", "reclaim_jobs": True}, headers=auth(t["root"]))
    assert r.status_code == 201, r.text
    assert [j["id"] for j in http.get("/api/jobs", headers=auth(r.json()["token"])).json()["data"]] == [job]
    assert http.delete("/api/users/bob", headers=auth(t["root"])).status_code == 200  # retired again
    assert http.post("/api/users", json={"name": "bob"}, headers=auth(t["root"])).status_code == 409


def test_rotate_invalidates_the_old_token(team) -> None:
    _, http, t = team
    r = http.post("/api/token/rotate", headers=auth(t["alice"]))
    assert r.status_code == 200 and r.json()["user"]["name"] == "alice"
    new = r.json()["token"]
    assert new != t["alice"]
    assert http.get("/api/jobs", headers=auth(t["alice"])).status_code == 401
    assert http.get("/api/jobs", headers=auth(new)).status_code == 200
    newer = http.post("/api/users/alice/rotate", headers=auth(t["root"])).json()["token"]  # an admin rotates it
    assert http.get("/api/jobs", headers=auth(new)).status_code == 401
    assert http.get("/api/jobs", headers=auth(newer)).status_code == 200


def test_user_names_are_checked(team) -> None:
    _, http, t = team
    for name in ("", "../x", "a b", "x" * 65, "é"):
        r = http.post("/api/users", json={"name": name}, headers=auth(t["root"]))
        assert r.status_code == 400, name
    assert http.post("/api/users", json={"name": "alice"}, headers=auth(t["root"])).status_code == 409


def _nothing_new(svc: OrcaService, user: str, jobs: int, files: int) -> None:
    assert len(svc.registry.user_job_ids(user)) == jobs
    assert len(svc.registry.user_file_ids(user)) == files
    assert len(list(svc.store.list("files/"))) == sum(len(svc.registry.user_file_ids(u)) for u in ("alice", "bob", "root"))


def test_quota_on_active_jobs(team) -> None:
    svc, http, t = team
    assert http.patch("/api/users/alice/quota", json={"max_active_jobs": 1}, headers=auth(t["root"])).status_code == 200
    assert submit(http, t["alice"]).status_code == 201
    r = submit(http, t["alice"])
    assert r.status_code == 429
    message = r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "quota_exceeded"
    assert "max_active_jobs" in message and "1 unfinished job" in message and "orca users quota alice --max-active-jobs" in message
    _nothing_new(svc, "alice", jobs=1, files=1)
    assert submit(http, t["bob"]).status_code == 201  # bob has no override and the default is unlimited
    http.patch("/api/users/alice/quota", json={"max_active_jobs": 2}, headers=auth(t["root"]))
    assert submit(http, t["alice"]).status_code == 201


def test_quota_on_queued_requests(team) -> None:
    svc, http, t = team
    http.patch("/api/users/alice/quota", json={"max_queued_requests": 10}, headers=auth(t["root"]))
    assert submit(http, t["alice"], n=8).status_code == 201
    r = submit(http, t["alice"], n=5)
    assert r.status_code == 429
    message = r.json()["error"]["message"]
    assert "max_queued_requests" in message and "8 queued request(s) plus 5 in this file" in message
    _nothing_new(svc, "alice", jobs=1, files=1)  # the upload was dropped again
    assert submit(http, t["alice"], n=2).status_code == 201
    status, pulled, _ = _call(http.app, _scope("/api/jobs", t["alice"], 1000), chunks=1, chunk_size=1000)
    assert status == 429 and pulled == 0  # the queue is full: refused before the upload is read
    # Over the OpenAI route too: the file is uploaded, the batch is refused.
    f = http.post("/v1/files", files={"file": ("c.jsonl", batch(1))}, data={"purpose": "batch"}, headers=auth(t["alice"])).json()
    r = http.post("/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions"}, headers=auth(t["alice"]))
    assert r.status_code == 429 and "max_queued_requests" in r.json()["error"]["message"]


def test_quota_on_dollars_per_day(team) -> None:
    svc, http, t = team
    http.patch("/api/users/alice/quota", json={"max_usd_per_day": 5}, headers=auth(t["root"]))
    now = time.time()
    # A job that ended two days ago does not count; one that ended an hour ago does.
    for job_id, ended, cost in (("batch_old", now - 2 * 86400, 100.0), ("batch_recent", now - 3600, 6.0)):
        svc.registry.create_job(JobRecord(id=job_id, user="alice", status=JobStatus.COMPLETED, created_at=ended - 60,
                                          deadline_at=ended + 3600, completed_at=ended))
        svc.registry.put_replica(Replica(replica_id=f"{job_id}-r", job_id=job_id, pool="p", launcher="local",
                                         created_at=ended - 60, state=ReplicaState.TERMINATED, cost_usd=cost))
    r = submit(http, t["alice"])
    assert r.status_code == 429
    assert "max_usd_per_day" in r.json()["error"]["message"] and "$6.00" in r.json()["error"]["message"]
    _nothing_new(svc, "alice", jobs=2, files=0)
    http.patch("/api/users/alice/quota", json={"max_usd_per_day": None}, headers=auth(t["root"]))  # back to the default
    assert submit(http, t["alice"]).status_code == 201


def test_quota_defaults_come_from_settings(redis_url: str, tmp_path) -> None:
    svc = make_service(redis_url, tmp_path, max_active_jobs=1)
    try:
        http = TestClient(create_app(svc))
        token = svc.registry.create_token("carol")  # a token without a user record is a plain user
        assert submit(http, token).status_code == 201
        r = submit(http, token)
        assert r.status_code == 429 and "ORCA_QUOTA__MAX_ACTIVE_JOBS" in r.json()["error"]["message"]
    finally:
        svc.close()


# -- the gate: nothing of the body is read before the caller is known and within limits ----------------
def _scope(path: str, token: str | None, length: int | None) -> dict:
    headers = [(b"content-type", b"multipart/form-data; boundary=xyz")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 1234), "server": ("testserver", 80)}


def _call(app, scope: dict, chunks: int, chunk_size: int = 1024 * 1024) -> tuple[int, int, bytes]:
    """Run one request through the ASGI app; returns (status, body chunks the app pulled, response body)."""
    pulled = 0
    status = 0
    body = b""

    head = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n'
            b"Content-Type: application/jsonl\r\n\r\n")

    async def receive() -> dict:
        nonlocal pulled
        if pulled >= chunks:
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": (head if pulled == 1 else b"") + b"x" * chunk_size, "more_body": pulled < chunks}

    async def send(message: dict) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    anyio.run(app, scope, receive, send)
    return status, pulled, body


@pytest.mark.parametrize("token", [None, "orca_wrong"])
def test_a_large_unauthenticated_upload_is_not_read(team, token) -> None:
    _, http, _ = team
    status, pulled, body = _call(http.app, _scope("/api/jobs", token, 100 * 1024 * 1024), chunks=100)
    assert status == 401 and pulled == 0
    assert json.loads(body)["error"]["code"] == "unauthorized"
    status, pulled, _ = _call(http.app, _scope("/v1/files", token, None), chunks=100)
    assert status == 401 and pulled == 0
    status, pulled, _ = _call(http.app, _scope("/dashboard/api/jobs", token, 100 * 1024 * 1024), chunks=100)  # no session cookie
    assert status == 401 and pulled == 0


def test_open_paths_and_dashboard_pages_pass_the_gate(team) -> None:
    _, http, _ = team
    assert http.get("/healthz").status_code == 200 and http.get("/openapi.json").status_code == 200
    assert http.get("/", follow_redirects=False).status_code == 303  # the dashboard sends a stranger to its sign-in
    assert http.get("/no/such/page").status_code == 404


def test_upload_limit_is_413_before_or_while_reading(team) -> None:
    svc, http, t = team
    status, pulled, body = _call(http.app, _scope("/api/jobs", t["alice"], 100 * 1024 * 1024), chunks=100)
    assert status == 413 and pulled == 0
    assert "upload limit of 1 MB" in json.loads(body)["error"]["message"]
    # No Content-Length (chunked): counted as it arrives, refused once past the limit.
    status, pulled, body = _call(http.app, _scope("/v1/files", t["alice"], None), chunks=100, chunk_size=256 * 1024)
    assert status == 413 and pulled <= 5
    assert svc.registry.user_file_ids("alice") == []
    r = http.post("/v1/files", files={"file": ("big.jsonl", b"x" * (2 * 1024 * 1024))}, data={"purpose": "batch"},
                  headers=auth(t["alice"]))
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_a_user_at_quota_uploads_nothing(team) -> None:
    _, http, t = team
    http.patch("/api/users/alice/quota", json={"max_active_jobs": 1}, headers=auth(t["root"]))
    assert submit(http, t["alice"]).status_code == 201
    status, pulled, body = _call(http.app, _scope("/api/jobs", t["alice"], 1000), chunks=1, chunk_size=1000)
    assert status == 429 and pulled == 0
    assert "max_active_jobs" in json.loads(body)["error"]["message"]


@pytest.mark.parametrize("name", ["日本.jsonl", 'say "hi".jsonl', "a\\b;c.jsonl", "naïve résumé.jsonl"])
def test_file_content_names_use_rfc_6266(team, name: str) -> None:
    from urllib.parse import unquote

    svc, http, t = team
    f = svc.create_file("alice", batch(1), name)  # as stored from any client (httpx itself would escape '"' as %22)
    assert f.filename == name
    r = http.get(f"/v1/files/{f.id}/content", headers=auth(t["alice"]))
    assert r.status_code == 200 and r.content == batch(1)
    header = r.headers["content-disposition"]
    assert header.isascii()
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert '"' not in fallback and "\\" not in fallback
    assert unquote(header.split("filename*=UTF-8''", 1)[1]) == name


def test_deadlines_are_bounded(team) -> None:
    svc, http, t = team
    for deadline in ("99999999999w", "31d"):
        r = submit(http, t["alice"], deadline=deadline)
        assert r.status_code == 400 and "longest allowed" in r.json()["error"]["message"], r.text
    f = http.post("/v1/files", files={"file": ("c.jsonl", batch(1))}, data={"purpose": "batch"}, headers=auth(t["alice"])).json()
    r = http.post("/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "5000w"},
                  headers=auth(t["alice"]))
    assert r.status_code == 400
    assert svc.registry.user_job_ids("alice") == []
    assert submit(http, t["alice"], deadline="30d").status_code == 201


def test_a_prompt_over_the_context_length_fails_validation_with_its_line(team) -> None:
    _, http, t = team
    rows = batch(2) + json.dumps({"custom_id": "big", "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": MODEL, "messages": [{"role": "user", "content": "x" * 1_000_000}]}}).encode() + b"\n"
    r = http.post("/api/jobs", files={"file": ("b.jsonl", rows)}, data={"deadline": "1h"}, headers=auth(t["alice"]))
    job = r.json()
    assert job["status"] == "failed" and job["plan"] is None
    issue = job["validation_errors"][0]
    assert issue["code"] == "context_length_exceeded" and issue["line"] == 3 and "8192" in issue["message"]


def test_job_list_pages_with_a_cursor_and_refuses_an_unknown_one(team) -> None:
    _, http, t = team
    ids = [submit(http, t["alice"]).json()["id"] for _ in range(3)]  # newest first in the list
    page = http.get("/api/jobs", params={"after": ids[2], "limit": 1}, headers=auth(t["alice"])).json()["data"]
    assert [j["id"] for j in page] == [ids[1]]
    for cursor in ("job-nope", submit(http, t["bob"]).json()["id"]):  # unknown, or another user's
        r = http.get("/api/jobs", params={"after": cursor}, headers=auth(t["alice"]))
        assert r.status_code == 400 and "after" in r.json()["error"]["message"], r.text
