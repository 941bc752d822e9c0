"""The OpenAI-compatible /v1/files and /v1/batches against OpenAI's documented Batch API shapes,
over the real control plane app (real redis-server, local object store, RQ steps inline,
controller ticks launching local workers on the fake engine).

Shapes checked: File object (id, object="file", bytes, created_at, filename, purpose, status,
status_details, expires_at), Batch object (every documented field, integer unix timestamps,
request_counts, errors {object: list, data}), list objects (object, data, first_id, last_id,
has_more) and OpenAI's error body. The official ``openai`` SDK drives the happy path.
"""

from __future__ import annotations

import json
import time

import openai
import pytest
from fastapi.testclient import TestClient

from orca.control.app import create_app
from orca.control.controller import Controller
from orca.control.service import OrcaService
from orca.settings import ControlSettings, IngestSettings, LauncherSettings, QueueSettings, Settings

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

FILE_KEYS = {"id", "object", "bytes", "created_at", "filename", "purpose", "status", "status_details", "expires_at"}
BATCH_KEYS = {
    "id", "object", "endpoint", "model", "errors", "input_file_id", "completion_window", "status", "output_file_id",
    "error_file_id", "created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
    "expired_at", "cancelling_at", "cancelled_at", "request_counts", "metadata", "usage",
}
OPENAI_STATUSES = {"validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"}
TIMESTAMPS = ("created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
              "expired_at", "cancelling_at", "cancelled_at")


def batch_lines(n: int, url: str = "/v1/chat/completions", delay_s: float = 0.0) -> bytes:
    rows = []
    for i in range(n):
        body = ({"model": MODEL, "input": f"text {i}"} if url == "/v1/embeddings" else
                {"model": MODEL, "max_tokens": 8, "fake_delay_s": delay_s, "messages": [{"role": "user", "content": f"q{i}"}]})
        rows.append({"custom_id": f"req-{i}", "method": "POST", "url": url, "body": body})
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def env(redis_url: str, tmp_path):
    settings = Settings(
        home=tmp_path, redis_url=redis_url, store_url=(tmp_path / "store").as_uri(),
        queue=QueueSettings(lease_s=3, renew_every_s=0.5, reap_every_s=0.2),
        ingest=IngestSettings(min_chunk_requests=1, max_chunk_requests=4),
        control=ControlSettings(tick_s=0.1, lock_ttl_s=5),
        launcher=LauncherSettings(local_engine="fake", local_stop_grace_s=3, local_max_workers=2),
    )
    svc = OrcaService.from_settings(settings, synchronous=True)
    client = TestClient(create_app(svc))
    token = svc.registry.create_token("alice")
    client.headers["authorization"] = f"Bearer {token}"
    controller = Controller(svc)
    yield svc, client, controller, token
    for job_id in svc.registry.job_ids():  # never leave workers behind
        for r in svc.registry.replicas(job_id):
            if r.state.live:
                controller.launcher("local").terminate(r)
    svc.close()


def upload(client: TestClient, data: bytes, name: str = "batch.jsonl", purpose: str = "batch") -> dict:
    r = client.post("/v1/files", files={"file": (name, data, "application/jsonl")}, data={"purpose": purpose})
    assert r.status_code == 200, r.text
    return r.json()


def create_batch(client: TestClient, file_id: str, endpoint: str = "/v1/chat/completions", window: str = "24h", **extra) -> dict:
    r = client.post("/v1/batches", json={"input_file_id": file_id, "endpoint": endpoint, "completion_window": window, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def run_until(controller: Controller, client: TestClient, batch_id: str, pred, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        controller.tick()
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if pred(batch):
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch stuck: {batch}")


def assert_file_object(obj: dict) -> None:
    assert set(obj) == FILE_KEYS
    assert obj["object"] == "file" and obj["id"].startswith("file-")
    assert isinstance(obj["bytes"], int) and isinstance(obj["created_at"], int)
    assert obj["status"] in ("uploaded", "processed", "error")


def assert_batch_object(obj: dict) -> None:
    assert set(obj) == BATCH_KEYS
    assert obj["object"] == "batch" and obj["status"] in OPENAI_STATUSES
    for key in TIMESTAMPS:
        assert obj[key] is None or type(obj[key]) is int, key
    assert set(obj["request_counts"]) == {"total", "completed", "failed"}
    assert all(type(v) is int for v in obj["request_counts"].values())
    usage = obj["usage"]
    assert set(usage) == {"input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details", "total_tokens"}
    assert usage["input_tokens_details"].keys() == {"cached_tokens"} and usage["output_tokens_details"].keys() == {"reasoning_tokens"}
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    if obj["errors"] is not None:
        assert obj["errors"]["object"] == "list" and isinstance(obj["errors"]["data"], list)
        for e in obj["errors"]["data"]:
            assert {"code", "message", "line", "param"} <= set(e)


def assert_list(obj: dict) -> None:
    assert set(obj) == {"object", "data", "first_id", "last_id", "has_more"}
    assert obj["object"] == "list" and isinstance(obj["has_more"], bool)
    ids = [x["id"] for x in obj["data"]]
    assert obj["first_id"] == (ids[0] if ids else None) and obj["last_id"] == (ids[-1] if ids else None)


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


def test_files(env) -> None:
    _, client, _, _ = env
    data = batch_lines(3)
    f = upload(client, data, "in.jsonl")
    assert_file_object(f)
    assert (f["bytes"], f["filename"], f["purpose"]) == (len(data), "in.jsonl", "batch")
    assert client.get(f"/v1/files/{f['id']}").json() == f
    content = client.get(f"/v1/files/{f['id']}/content")
    assert content.status_code == 200 and content.content == data

    others = [upload(client, batch_lines(1), f"{i}.jsonl") for i in range(3)]
    listing = client.get("/v1/files").json()
    assert_list(listing)
    assert [x["id"] for x in listing["data"]] == [o["id"] for o in reversed(others)] + [f["id"]]
    page = client.get("/v1/files", params={"limit": 2}).json()
    assert_list(page)
    assert page["has_more"] and len(page["data"]) == 2
    rest = client.get("/v1/files", params={"limit": 2, "after": page["last_id"]}).json()
    assert [x["id"] for x in rest["data"]] == [others[0]["id"], f["id"]] and not rest["has_more"]
    asc = client.get("/v1/files", params={"order": "asc"}).json()
    assert asc["first_id"] == f["id"]

    deleted = client.delete(f"/v1/files/{f['id']}")
    assert deleted.json() == {"id": f["id"], "object": "file", "deleted": True}
    missing = client.get(f"/v1/files/{f['id']}")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"

    bad = client.post("/v1/files", files={"file": ("x.jsonl", data)}, data={"purpose": "fine-tune"})
    assert bad.status_code == 400 and error_of(bad)["errors"][0]["param"] == "purpose"


def test_batch_with_the_openai_sdk(env) -> None:
    svc, client, controller, token = env
    sdk = openai.OpenAI(api_key=token, base_url=str(client.base_url) + "/v1", http_client=client, max_retries=0)
    uploaded = sdk.files.create(file=("batch.jsonl", batch_lines(10)), purpose="batch")
    assert uploaded.object == "file" and uploaded.purpose == "batch"
    batch = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
                               metadata={"run": "nightly"})
    assert batch.object == "batch" and batch.input_file_id == uploaded.id and batch.metadata == {"run": "nightly"}
    assert batch.completion_window == "24h" and batch.endpoint == "/v1/chat/completions"
    assert batch.expires_at - batch.created_at in (86399, 86400)
    raw = client.get(f"/v1/batches/{batch.id}").json()
    assert_batch_object(raw)
    assert raw["status"] in ("validating", "in_progress")

    run_until(controller, client, batch.id, lambda b: b["status"] == "completed")
    done = sdk.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (10, 10, 0)
    assert done.in_progress_at is not None and done.completed_at >= done.in_progress_at
    assert done.output_file_id and done.error_file_id and done.errors is None
    assert_batch_object(client.get(f"/v1/batches/{batch.id}").json())

    out = [json.loads(line) for line in sdk.files.content(done.output_file_id).text.splitlines()]
    assert sorted(x["custom_id"] for x in out) == sorted(f"req-{i}" for i in range(10))
    assert all(x["response"]["status_code"] == 200 and x["error"] is None for x in out)
    assert sdk.files.content(done.error_file_id).text == ""
    out_file = sdk.files.retrieve(done.output_file_id)
    assert out_file.purpose == "batch_output" and out_file.bytes > 0

    listed = sdk.batches.list(limit=5)
    assert [b.id for b in listed.data] == [batch.id] and not listed.has_more


def test_invalid_input_fails_with_line_numbers(env) -> None:
    _, client, controller, _ = env
    bad = batch_lines(2) + b"not json\n" + b'{"custom_id": "x", "method": "POST", "url": "/v1/chat/completions"}\n'
    b = create_batch(client, upload(client, bad)["id"])
    b = run_until(controller, client, b["id"], lambda x: x["status"] == "failed")
    assert_batch_object(b)
    assert b["failed_at"] is not None and b["output_file_id"] is None
    lines = {e["line"] for e in b["errors"]["data"]}
    assert {3, 4} <= lines


def test_list_batches_pages_newest_first(env) -> None:
    _, client, _, _ = env
    fid = upload(client, batch_lines(2))["id"]
    ids = [create_batch(client, fid)["id"] for _ in range(3)]
    page = client.get("/v1/batches", params={"limit": 2}).json()
    assert_list(page)
    assert [b["id"] for b in page["data"]] == ids[::-1][:2] and page["has_more"]
    for b in page["data"]:
        assert_batch_object(b)
    rest = client.get("/v1/batches", params={"limit": 2, "after": page["last_id"]}).json()
    assert [b["id"] for b in rest["data"]] == [ids[0]] and not rest["has_more"]
    assert client.get("/v1/batches", params={"limit": 0}).status_code == 400


def test_cancel_batch(env) -> None:
    _, client, controller, _ = env
    b = create_batch(client, upload(client, batch_lines(40, delay_s=0.5))["id"])
    r = client.post(f"/v1/batches/{b['id']}/cancel")
    assert r.status_code == 200
    assert_batch_object(r.json())
    assert r.json()["status"] == "cancelling" and type(r.json()["cancelling_at"]) is int
    done = run_until(controller, client, b["id"], lambda x: x["status"] == "cancelled")
    assert type(done["cancelled_at"]) is int


def test_completion_window_is_the_deadline(env) -> None:
    _, client, _, _ = env
    b = create_batch(client, upload(client, batch_lines(2, url="/v1/embeddings"))["id"], endpoint="/v1/embeddings", window="2h")
    assert b["completion_window"] == "2h" and b["endpoint"] == "/v1/embeddings"
    assert abs(b["expires_at"] - b["created_at"] - 7200) <= 1


@pytest.mark.parametrize("change,status,param", [
    ({"endpoint": "/v1/images/generations"}, 400, "endpoint"),
    ({"endpoint": "/v1/embeddings"}, 400, "endpoint"),          # the file's requests go to chat completions
    ({"completion_window": "soon"}, 400, "completion_window"),
    ({"input_file_id": "file-nope"}, 404, None),
])
def test_bad_batch_requests(env, change, status, param) -> None:
    _, client, _, _ = env
    body = {"input_file_id": upload(client, batch_lines(2))["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    r = client.post("/v1/batches", json={**body, **change})
    assert r.status_code == status, r.text
    err = error_of(r)
    if param:
        assert err["errors"][0]["param"] == param
    assert client.get("/v1/batches").json()["data"] == []


def test_users_and_tokens(env) -> None:
    svc, client, _, _ = env
    f = upload(client, batch_lines(2))
    b = create_batch(client, f["id"])
    other = TestClient(client.app, headers={"authorization": f"Bearer {svc.registry.create_token('bob')}"})
    assert other.get(f"/v1/batches/{b['id']}").status_code == 404
    assert other.get(f"/v1/files/{f['id']}/content").status_code == 404
    assert other.get("/v1/batches").json()["data"] == []
    anonymous = TestClient(client.app)
    r = anonymous.get("/v1/batches")
    assert r.status_code == 401 and error_of(r)["code"] == "unauthorized"
