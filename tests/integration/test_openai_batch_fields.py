"""Today's OpenAI Batch API on orca, over the real app (real redis-server, local store, RQ steps inline,
controller ticks launching local workers on the fake engine, whose /v1/responses requests go through
the same chat-completions adapter as llama.cpp's): Responses batches, usage and model, expiry and
retention, cancelling -> cancelled, metadata limits, list cursors and bounds, deleting files batches use.
"""

from __future__ import annotations

import json
import time

import openai
import pytest
from fastapi.testclient import TestClient
from openai.types.responses import Response

from orca.control.app import create_app
from orca.control.retention import purge_unassembled
from orca.control.controller import Controller
from orca.control.service import OrcaService
from orca.settings import (
    ControlSettings, IngestSettings, LauncherSettings, PlannerSettings, QueueSettings, RetentionSettings, Settings,
)
from orca.storage.layout import JobLayout
from tests.integration.test_openai_api import MODEL, assert_batch_object, batch_lines, create_batch, error_of, run_until, upload


def responses_lines(n: int, delay_s=lambda i: 0.0) -> bytes:
    rows = [{"custom_id": f"r-{i}", "method": "POST", "url": "/v1/responses",
             "body": {"model": MODEL, "input": f"say {i}" if i % 2 else [{"role": "user", "content": f"say {i}"}],
                      "instructions": "answer in one word", "max_output_tokens": 5 + i, "temperature": 0.2,
                      "fake_delay_s": delay_s(i)}} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def env(redis_url: str, tmp_path):
    settings = Settings(
        home=tmp_path, redis_url=redis_url, store_url=(tmp_path / "store").as_uri(),
        queue=QueueSettings(lease_s=3, renew_every_s=0.5, reap_every_s=0.2),
        ingest=IngestSettings(min_chunk_requests=1, max_chunk_requests=4),
        control=ControlSettings(tick_s=0.1, lock_ttl_s=5),
        launcher=LauncherSettings(local_engine="fake", local_stop_grace_s=3, local_max_workers=2),
        retention=RetentionSettings(min_expires_after_s=1, every_s=0.0),
        planner=PlannerSettings(local_start_s=1.0),  # the fake engine starts at once: short windows can be planned
    )
    svc = OrcaService.from_settings(settings, synchronous=True)
    client = TestClient(create_app(svc))
    token = svc.registry.create_token("alice")
    client.headers["authorization"] = f"Bearer {token}"
    controller = Controller(svc)
    sdk = openai.OpenAI(api_key=token, base_url=str(client.base_url) + "/v1", http_client=client, max_retries=0)
    yield svc, client, controller, sdk
    for job_id in svc.registry.job_ids():  # never leave workers behind
        for r in svc.registry.replicas(job_id):
            if r.state.live:
                controller.launcher("local").terminate(r)
    svc.close()


def test_responses_batch_returns_responses_with_usage_and_model(env) -> None:
    svc, client, controller, sdk = env
    f = sdk.files.create(file=("responses.jsonl", responses_lines(6)), purpose="batch")
    batch = sdk.batches.create(input_file_id=f.id, endpoint="/v1/responses", completion_window="24h")
    assert batch.endpoint == "/v1/responses"
    run_until(controller, client, batch.id, lambda b: b["status"] == "completed")
    done = sdk.batches.retrieve(batch.id)
    assert_batch_object(client.get(f"/v1/batches/{batch.id}").json())
    assert done.model == MODEL and done.request_counts.completed == 6
    lines = [json.loads(x) for x in sdk.files.content(done.output_file_id).text.splitlines()]
    bodies = [Response.model_validate(x["response"]["body"]) for x in lines]
    assert [b.output_text for b in bodies] == ["fake"] * 6 and all(b.object == "response" for b in bodies)
    assert [b.usage.output_tokens for b in bodies] == [5 + i for i in range(6)]  # max_output_tokens reached the engine
    assert all(b.status == "incomplete" and b.incomplete_details.reason == "max_output_tokens" for b in bodies)
    # The batch's usage is the sum of its requests' usage.
    assert done.usage.output_tokens == sum(b.usage.output_tokens for b in bodies)
    assert done.usage.input_tokens == sum(b.usage.input_tokens for b in bodies) > 0
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    assert done.usage.input_tokens_details.cached_tokens == 0 and done.usage.output_tokens_details.reasoning_tokens == 0


def test_untranslatable_responses_request_gets_an_error_line(env) -> None:
    _, client, controller, sdk = env
    rows = [{"custom_id": "ok", "method": "POST", "url": "/v1/responses", "body": {"model": MODEL, "input": "hi"}},
            {"custom_id": "tools", "method": "POST", "url": "/v1/responses",
             "body": {"model": MODEL, "input": "hi", "tools": [{"type": "web_search"}]}}]
    f = sdk.files.create(file=("r.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()), purpose="batch")
    b = sdk.batches.create(input_file_id=f.id, endpoint="/v1/responses", completion_window="1h")
    run_until(controller, client, b.id, lambda x: x["status"] == "completed")
    done = sdk.batches.retrieve(b.id)
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    err = json.loads(sdk.files.content(done.error_file_id).text)
    assert err["custom_id"] == "tools" and err["error"]["code"] == "unsupported_parameter"
    assert err["response"]["body"]["error"]["param"] == "tools"


def test_output_expires_after_deletes_the_results_after_the_window(env) -> None:
    svc, client, controller, sdk = env
    f = sdk.files.create(file=("b.jsonl", batch_lines(3)), purpose="batch", expires_after={"anchor": "created_at", "seconds": 3600})
    assert f.expires_at - f.created_at == 3600
    batch = sdk.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                               output_expires_after={"anchor": "created_at", "seconds": 2})
    run_until(controller, client, batch.id, lambda b: b["status"] == "completed")
    done = sdk.batches.retrieve(batch.id)
    out = sdk.files.retrieve(done.output_file_id)
    assert out.expires_at - out.created_at in (1, 2, 3)
    layout = JobLayout(batch.id)
    assert svc.store.exists(layout.output) and any(svc.store.list(layout.root + "outputs/"))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and svc.registry.get_file(done.output_file_id) is not None:
        controller.tick()
        time.sleep(0.2)
    for file_id in (done.output_file_id, done.error_file_id):
        with pytest.raises(openai.NotFoundError):
            sdk.files.retrieve(file_id)
        assert client.get(f"/v1/files/{file_id}/content").status_code == 404
    assert list(svc.store.list(layout.root)) == []  # the job's stored data went with its last result file
    assert sdk.files.retrieve(f.id).id == f.id  # the input file has its own, later expiry
    gone = client.get(f"/api/jobs/{batch.id}/results")
    assert gone.status_code == 404 and "deleted" in error_of(gone)["message"]
    assert any(e["kind"] == "file_expired" for e in client.get(f"/api/jobs/{batch.id}/logs").json())


@pytest.mark.parametrize("policy,param", [
    ({"anchor": "last_active_at", "seconds": 3600}, "anchor"),
    ({"anchor": "created_at", "seconds": 0}, "seconds"),
    ({"anchor": "created_at", "seconds": 2_592_001}, "seconds"),
])
def test_expiry_bounds(env, policy, param) -> None:
    _, client, _, sdk = env
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.files.create(file=("b.jsonl", batch_lines(1)), purpose="batch", expires_after=policy)
    assert exc.value.body["errors"][0]["param"] == f"expires_after.{param}"
    f = upload(client, batch_lines(1))
    r = client.post("/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                                         "completion_window": "24h", "output_expires_after": policy})
    assert r.status_code == 400 and error_of(r)["errors"][0]["param"] == f"output_expires_after.{param}"


def test_default_retention_sets_expires_at(env) -> None:
    svc, client, _, _ = env
    f = upload(client, batch_lines(1))
    assert f["expires_at"] - f["created_at"] == svc.settings.retention.batch_file_s


def test_cancel_shows_cancelling_then_cancelled_with_usage_of_committed_chunks(env) -> None:
    _, client, controller, sdk = env
    # The first chunks answer at once, the rest take 60 s: the cancel lands while they run.
    f = sdk.files.create(file=("slow.jsonl", responses_lines(40, delay_s=lambda i: 0.0 if i < 8 else 60.0)), purpose="batch")
    batch = sdk.batches.create(input_file_id=f.id, endpoint="/v1/responses", completion_window="24h")
    run_until(controller, client, batch.id, lambda b: b["request_counts"]["completed"] >= 4, timeout=60)
    cancelling = sdk.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None and cancelling.cancelled_at is None
    run_until(controller, client, batch.id, lambda b: b["status"] == "cancelled", timeout=60)
    done = sdk.batches.retrieve(batch.id)
    assert done.cancelled_at >= done.cancelling_at and done.status == "cancelled"
    answered = [json.loads(x) for x in sdk.files.content(done.output_file_id).text.splitlines()]
    not_run = [json.loads(x) for x in sdk.files.content(done.error_file_id).text.splitlines()]
    assert len(answered) == done.request_counts.completed >= 4 and len(answered) + len(not_run) == 40
    assert {x["error"]["code"] for x in not_run} <= {"batch_cancelled"}
    message = client.get(f"/api/jobs/{batch.id}").json()["message"]
    assert message == f"cancelled: {len(answered)} requests answered, {len(not_run)} not run (batch_cancelled lines in the error file)"
    # usage counts exactly the committed (answered) requests
    assert done.usage.output_tokens == sum(x["response"]["body"]["usage"]["output_tokens"] for x in answered)


def test_metadata_limits(env) -> None:
    _, client, _, sdk = env
    fid = upload(client, batch_lines(1))["id"]
    ok = {f"k{i}": "v" * 512 for i in range(15)} | {"k" * 64: "x"}
    assert sdk.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h", metadata=ok).metadata == ok
    for bad in ({f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}):
        with pytest.raises(openai.BadRequestError) as exc:
            sdk.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window="24h", metadata=bad)
        assert exc.value.body["code"] == "invalid_request" and exc.value.body["errors"][0]["code"] == "invalid_metadata"
        native = client.post("/api/jobs", files={"file": ("b.jsonl", batch_lines(1))}, data={"metadata": json.dumps(bad)})
        assert native.status_code == 400 and error_of(native)["errors"][0]["code"] == "invalid_metadata"
    assert len(sdk.batches.list().data) == 1  # nothing was created by the refused requests


def test_lists_page_with_cursors_and_bounds(env) -> None:
    _, client, _, sdk = env
    fid = upload(client, batch_lines(1))["id"]
    ids = [create_batch(client, fid)["id"] for _ in range(5)]
    walked = [b.id for b in sdk.batches.list(limit=2)]  # the SDK follows has_more/after cursors
    assert walked == ids[::-1]
    for params in ({"limit": 0}, {"limit": 101}, {"after": "batch_nope"}):
        r = client.get("/v1/batches", params=params)
        assert r.status_code == 400 and error_of(r)["errors"][0]["param"] in ("limit", "after")
    files = [upload(client, batch_lines(1))["id"] for _ in range(3)]
    assert [f.id for f in sdk.files.list(limit=1, order="asc")] == [fid] + files
    for params in ({"limit": 0}, {"limit": 10_001}, {"after": "file-nope"}):
        assert client.get("/v1/files", params=params).status_code == 400


def test_deleting_the_input_file_of_a_batch_leaves_the_batch_running(env) -> None:
    _, client, controller, sdk = env
    f = sdk.files.create(file=("b.jsonl", batch_lines(4)), purpose="batch")
    batch = sdk.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert sdk.files.delete(f.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        sdk.files.delete(f.id)
    run_until(controller, client, batch.id, lambda b: b["status"] == "completed")
    done = sdk.batches.retrieve(batch.id)
    assert done.input_file_id == f.id and done.request_counts.completed == 4
    assert sdk.files.delete(done.output_file_id).deleted is True
    assert client.get(f"/v1/files/{done.output_file_id}/content").status_code == 404
    assert sdk.files.content(done.error_file_id).text == ""  # the other result file is still there


def test_cli_jobs_show_their_real_completion_window(env) -> None:
    _, client, _, sdk = env
    r = client.post("/api/jobs", files={"file": ("b.jsonl", batch_lines(2))}, data={"deadline": "2h"})
    assert r.status_code == 201
    b = sdk.batches.retrieve(r.json()["id"])
    assert b.completion_window == "2h" and abs(b.expires_at - b.created_at - 7200) <= 1


def test_expired_batch_has_expired_at_and_the_completed_part(env) -> None:
    _, client, controller, sdk = env
    f = sdk.files.create(file=("slow.jsonl", responses_lines(16, delay_s=lambda i: 0.0 if i < 4 else 60.0)), purpose="batch")
    batch = sdk.batches.create(input_file_id=f.id, endpoint="/v1/responses", completion_window="8s")
    run_until(controller, client, batch.id, lambda b: b["status"] == "expired", timeout=60)
    done = run_until(controller, client, batch.id, lambda b: b["output_file_id"] is not None, timeout=60)
    assert_batch_object(done)
    assert type(done["expired_at"]) is int and done["expired_at"] >= done["expires_at"] and done["completion_window"] == "8s"
    answered = sdk.files.content(done["output_file_id"]).text.splitlines()
    not_run = [json.loads(x) for x in sdk.files.content(done["error_file_id"]).text.splitlines()]
    assert len(answered) + len(not_run) == 16 and len(answered) == done["request_counts"]["completed"]
    assert {x["error"]["code"] for x in not_run} == {"batch_expired"}
    assert done["usage"]["output_tokens"] == sum(json.loads(x)["response"]["body"]["usage"]["output_tokens"] for x in answered)


def test_a_job_that_failed_validation_has_its_input_copy_purged_after_the_retention(env) -> None:
    svc, client, controller, _ = env
    b = create_batch(client, upload(client, batch_lines(2) + b"not json\n")["id"])
    run_until(controller, client, b["id"], lambda x: x["status"] == "failed")
    root = JobLayout(b["id"]).root
    assert list(svc.store.list(root))  # the input copy is still there
    assert purge_unassembled(svc, set()) == []  # not yet: retention.output_file_s has not passed
    later = time.time() + svc.settings.retention.output_file_s + 1
    assert purge_unassembled(svc, set(), now=later) == [b["id"]]
    assert list(svc.store.list(root)) == []
    assert purge_unassembled(svc, set(), now=later) == []  # once
    errors = client.get(f"/api/jobs/{b['id']}/errors")  # validation errors live in Redis, not in the purged data
    assert errors.status_code == 200 and b'"line": 3' in errors.content
