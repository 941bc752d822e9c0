"""The dashboard's HTTP side without a browser: sign-in cookie, sessions in Redis, same-origin guard,
per-user isolation, the progress series the controller records, downloads equal to the API's."""

from __future__ import annotations

import hashlib
import time

import pytest
import redis
from fastapi.testclient import TestClient

from orca.control.app import create_app
from orca.control.controller import Controller
from orca.control.dashboard.session import COOKIE
from orca.control.service import OrcaService
from orca.models import JobStatus
from orca.queue import keys
from orca.queue.jobs import JobRecord
from orca.queue.series import ProgressSeries
from orca.queue.sessions import SessionStore
from orca.settings import DashboardSettings, Settings
from tests.integration.test_control_flow import batch, flow_settings, run_until


@pytest.fixture
def service(redis_url: str, tmp_path):
    svc = OrcaService.from_settings(Settings(home=tmp_path, redis_url=redis_url, store_url="memory://"), synchronous=True)
    yield svc
    svc.close()


@pytest.fixture
def client(service: OrcaService) -> TestClient:
    return TestClient(create_app(service), follow_redirects=False)


def sign_in(client: TestClient, token: str) -> None:
    r = client.post("/login", data={"token": token, "next": "/"})
    assert r.status_code == 303, r.text
    client.cookies.set(COOKIE, r.cookies[COOKIE])


def _job(service: OrcaService, job_id: str, user: str) -> None:
    service.registry.create_job(JobRecord(id=job_id, user=user, status=JobStatus.IN_PROGRESS, created_at=time.time(),
                                          deadline_at=time.time() + 3600, metadata={"secret": f"{user}-secret"}))


def test_pages_need_sign_in(client: TestClient) -> None:
    for path in ("/", "/plan", "/jobs/batch_x?x=1"):
        r = client.get(path)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login?next=/")
    assert client.get("/dashboard/api/jobs").status_code == 401
    assert client.get("/login").status_code == 200


def test_sign_in_cookie_is_httponly_strict_and_log_out_ends_the_session(client: TestClient, service: OrcaService,
                                                                          redis_url: str) -> None:
    token = service.registry.create_token("alice")
    bad = client.post("/login", data={"token": "orca_wrong"})
    assert bad.status_code == 401 and "not valid" in bad.text and COOKIE not in bad.cookies

    r = client.post("/login", data={"token": token, "next": "/jobs/batch_1"})
    assert r.status_code == 303 and r.headers["location"] == "/jobs/batch_1"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert f"Max-Age={int(service.settings.dashboard.session_ttl_s)}" in cookie
    assert "Secure" not in cookie  # plain http on loopback; https sets it
    session_id = r.cookies[COOKIE]
    assert token not in cookie and session_id != token

    # Redis holds only the hash of the session id, with a TTL.
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    name = keys.session(hashlib.sha256(session_id.encode()).hexdigest())
    assert raw.get(name) is not None and 0 < raw.pttl(name) <= service.settings.dashboard.session_ttl_s * 1000
    assert not list(raw.scan_iter(match=f"*{session_id}*"))

    client.cookies.set(COOKIE, session_id)
    page = client.get("/")
    assert page.status_code == 200 and "alice" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/dashboard/api/jobs").json()["jobs"] == []

    out = client.post("/logout")
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert raw.get(name) is None
    client.cookies.set(COOKIE, session_id)  # a copy of the old cookie is worthless now
    assert client.get("/dashboard/api/jobs").status_code == 401
    assert client.get("/").status_code == 303


def test_next_never_leaves_the_site(client: TestClient, service: OrcaService) -> None:
    token = service.registry.create_token("alice")
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        r = client.post("/login", data={"token": token, "next": target})
        assert r.headers["location"] == "/", target


def test_cross_site_posts_are_refused(client: TestClient, service: OrcaService) -> None:
    token = service.registry.create_token("alice")
    _job(service, "batch_a", "alice")
    assert client.post("/login", data={"token": token}, headers={"origin": "http://evil.example"}).status_code == 403
    assert client.post("/login", data={"token": token}, headers={"sec-fetch-site": "cross-site"}).status_code == 403
    sign_in(client, token)
    r = client.post("/dashboard/api/jobs/batch_a/cancel", headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    assert service.registry.get("batch_a").status is JobStatus.IN_PROGRESS
    r = client.post("/dashboard/api/jobs/batch_a/cancel", headers={"origin": "http://testserver"})
    assert r.status_code == 200 and r.json()["status"] == "cancelling"


def test_another_users_job_is_404_everywhere(client: TestClient, service: OrcaService) -> None:
    _job(service, "batch_alice", "alice")
    service.registry.create_token("alice")
    sign_in(client, service.registry.create_token("bob"))
    page = client.get("/jobs/batch_alice")
    assert page.status_code == 404 and "Job not found" in page.text and "alice-secret" not in page.text
    for method, path in [("GET", "/dashboard/api/jobs/batch_alice"), ("POST", "/dashboard/api/jobs/batch_alice/cancel"),
                         ("GET", "/dashboard/api/jobs/batch_alice/results?partial=true"),
                         ("GET", "/dashboard/api/jobs/batch_alice/errors"),
                         ("POST", "/dashboard/api/jobs/batch_alice/swap-preview"),
                         ("POST", "/dashboard/api/jobs/batch_alice/swap")]:
        kwargs = {"json": {"gpu": "fast"}} if "swap" in path else {}
        r = client.request(method, path, **kwargs)
        assert r.status_code == 404, (path, r.text)
        assert "alice-secret" not in r.text
    assert client.get("/dashboard/api/jobs").json()["jobs"] == []
    assert service.registry.get("batch_alice").status is JobStatus.IN_PROGRESS


def test_static_assets_ship_in_the_package(client: TestClient) -> None:
    for name, kind in [("vendor/uPlot.iife.min.js", "javascript"), ("vendor/uPlot.min.css", "css"), ("job.js", "javascript"),
                       ("dashboard.css", "css"), ("favicon.svg", "svg")]:
        r = client.get(f"/dashboard/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"], name
    assert "MIT" in client.get("/dashboard/static/vendor/uPlot.LICENSE.txt").text


def test_session_expires_after_its_ttl(redis_url: str, service: OrcaService) -> None:
    store = SessionStore(redis_url, Settings(dashboard=DashboardSettings(session_ttl_s=0.3)))
    try:
        sid = store.create("alice", service.registry.create_token("alice"))
        assert store.user(sid) == "alice" and store.user(sid + "x") is None
        time.sleep(0.5)
        assert store.user(sid) is None
    finally:
        store.close()


def test_revoking_the_token_ends_its_sessions(client: TestClient, service: OrcaService) -> None:
    token = service.registry.create_token("alice")
    other = service.registry.create_token("alice")
    sign_in(client, token)
    assert client.get("/dashboard/api/jobs").status_code == 200
    service.registry.revoke_token(token)
    assert client.get("/dashboard/api/jobs").status_code == 401
    assert client.get("/").status_code == 303
    sign_in(client, other)  # the user's other token still signs in
    assert client.get("/dashboard/api/jobs").status_code == 200


def test_series_is_capped(redis_url: str) -> None:
    series = ProgressSeries(redis_url, Settings(dashboard=DashboardSettings(series_max_points=5)))
    try:
        for i in range(12):
            series.append("batch_s", {"t": float(i), "status": "in_progress"})
        assert [s["t"] for s in series.read("batch_s")] == [7.0, 8.0, 9.0, 10.0, 11.0]
        assert series.last("batch_s")["t"] == 11.0 and series.last("batch_none") is None
    finally:
        series.close()


def test_controller_records_the_series_and_downloads_match_the_api(redis_url: str, tmp_path) -> None:
    """A real job (local workers, fake engine): samples reach 100 % with the final status; the dashboard's
    download has the same bytes as GET /api/jobs/{id}/results."""
    settings = flow_settings(redis_url, tmp_path)
    settings = settings.model_copy(update={"dashboard": DashboardSettings(sample_every_s=0.2)})
    svc = OrcaService.from_settings(settings, synchronous=True)
    api = TestClient(create_app(svc))
    token = svc.registry.create_token("alice")
    api.headers["authorization"] = f"Bearer {token}"
    controller = Controller(svc)
    try:
        job = api.post("/api/jobs", files={"file": ("b.jsonl", batch(24, 0.05))}, data={"deadline": "1h"}).json()
        run_until(controller, api, job["id"], lambda j: j["status"] == "completed", timeout=60)
        for _ in range(3):  # the settling ticks sample the final status
            controller.tick()
        ui = TestClient(create_app(svc), follow_redirects=False)
        sign_in(ui, token)
        detail = ui.get(f"/dashboard/api/jobs/{job['id']}").json()
        samples = detail["samples"]
        assert len(samples) >= 2
        assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
        assert samples[-1]["status"] == "completed" and samples[-1]["fraction"] == 1.0
        assert all(0.0 <= s["fraction"] <= 1.0 for s in samples)
        assert detail["row"]["track"]["state"] == "done" and detail["row"]["fraction"] == 1.0
        assert detail["plan_line"]["t1"] > detail["plan_line"]["t0"]
        assert {e["kind"] for e in detail["events"]} >= {"created", "completed"}
        assert detail["replicas"] and detail["pools"][0]["gpu"] == "cpu"
        since = ui.get(f"/dashboard/api/jobs/{job['id']}", params={"since": samples[-1]["t"]}).json()["samples"]
        assert since == []
        for kind in ("results", "errors"):
            mine = ui.get(f"/dashboard/api/jobs/{job['id']}/{kind}")
            assert mine.status_code == 200 and "attachment" in mine.headers["content-disposition"]
            assert mine.content == api.get(f"/api/jobs/{job['id']}/{kind}").content
        assert mine.content == b""  # no errors
    finally:
        for job_id in svc.registry.job_ids():
            for r in svc.registry.replicas(job_id):
                if r.state.live:
                    controller.launcher("local").terminate(r)
        svc.close()


def test_an_admin_sees_every_users_jobs(client: TestClient, service: OrcaService) -> None:
    _job(service, "batch_alice", "alice")
    _job(service, "batch_bob", "bob")
    sign_in(client, service.registry.users.add("root", admin=True))
    data = client.get("/dashboard/api/jobs").json()
    assert data["all_users"] is True
    assert {(r["id"], r["user"]) for r in data["jobs"]} == {("batch_alice", "alice"), ("batch_bob", "bob")}
    assert client.get("/jobs/batch_alice").status_code == 200
    client.cookies.clear()
    sign_in(client, service.registry.create_token("bob"))
    data = client.get("/dashboard/api/jobs").json()
    assert data["all_users"] is False and [r["id"] for r in data["jobs"]] == ["batch_bob"]



def test_the_gate_takes_the_session_cookie_on_dashboard_paths_only(redis_url: str, tmp_path) -> None:
    from orca.settings import ControlSettings

    svc = OrcaService.from_settings(Settings(home=tmp_path, redis_url=redis_url, store_url="memory://",
                                             control=ControlSettings(max_upload_mb=1)), synchronous=True)
    try:
        client = TestClient(create_app(svc), follow_redirects=False)
        sign_in(client, svc.registry.create_token("alice"))
        assert client.get("/dashboard/api/jobs").status_code == 200
        assert client.get("/api/jobs").status_code == 401  # the API takes bearer tokens only
        assert client.get("/v1/batches").status_code == 401
        big = client.post("/dashboard/api/plan", files={"file": ("b.jsonl", b"x" * (2 * 1024 * 1024))}, data={"deadline": "1h"})
        assert big.status_code == 413  # the upload limit holds for the dashboard too
        client.cookies.clear()
        assert client.post("/dashboard/api/plan", files={"file": ("b.jsonl", b"{}\n")}).status_code == 401
        assert client.get("/").status_code == 303 and client.get("/dashboard/static/job.js").status_code == 200
    finally:
        svc.close()
