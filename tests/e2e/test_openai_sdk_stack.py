"""The openai SDK over HTTP against a real control plane on the embedded stack (uvicorn server, RQ worker,
redis-server and local worker processes as separate processes). The workers run the fake engine, which
like llama.cpp serves chat completions only, so /v1/responses requests go through the worker's adapter
exactly as on the CPU engine; sample_jobs/responses.jsonl runs the same path on real SmolLM2."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest
from openai.types.responses import Response

from orca.control import embedded
from orca.queue.embedded import free_port
from orca.settings import Settings

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture
def sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for k in ("ORCA_REDIS_URL", "ORCA_STORE_URL", "ORCA_API_URL", "ORCA_API_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    for k, v in {"ORCA_HOME": str(tmp_path / "orca"), "ORCA_CONTROL__PORT": str(free_port()),
                 "ORCA_CONTROL__TICK_S": "0.3", "ORCA_LAUNCHER__LOCAL_ENGINE": "fake",
                 "ORCA_LAUNCHER__LOCAL_STOP_GRACE_S": "3", "ORCA_INGEST__MIN_CHUNK_REQUESTS": "1",
                 "ORCA_INGEST__MAX_CHUNK_REQUESTS": "4", "ORCA_RETENTION__MIN_EXPIRES_AFTER_S": "1",
                 "ORCA_RETENTION__EVERY_S": "0.5"}.items():
        monkeypatch.setenv(k, v)  # the stack's processes (and their workers) inherit these
    settings = Settings()
    status = embedded.up(settings)
    try:
        yield openai.OpenAI(base_url=status.api_url + "/v1", api_key=(settings.home / "token").read_text().strip(),
                            max_retries=0)
    finally:
        embedded.down(settings)


def lines(n: int, delay_s=lambda i: 0.0) -> bytes:
    rows = [{"custom_id": f"r-{i}", "method": "POST", "url": "/v1/responses",
             "body": {"model": MODEL, "input": f"say {i}", "instructions": "one word", "max_output_tokens": 4 + i,
                      "fake_delay_s": delay_s(i)}} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def wait_for(fetch, pred, timeout_s: float = 90.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if pred(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_responses_batch_usage_expiry_and_cancel(sdk: openai.OpenAI) -> None:
    f = sdk.files.create(file=("r.jsonl", lines(8)), purpose="batch")
    batch = sdk.batches.create(input_file_id=f.id, endpoint="/v1/responses", completion_window="1h",
                               output_expires_after={"anchor": "created_at", "seconds": 3}, metadata={"run": "e2e"})
    done = wait_for(lambda: sdk.batches.retrieve(batch.id), lambda b: b.status in ("completed", "failed", "expired"))
    assert done.status == "completed", done
    assert done.model == MODEL and done.completion_window == "1h" and done.metadata == {"run": "e2e"}
    bodies = [Response.model_validate(json.loads(x)["response"]["body"])
              for x in sdk.files.content(done.output_file_id).text.splitlines()]
    assert len(bodies) == 8 and all(b.object == "response" and b.output_text for b in bodies)
    assert done.usage.output_tokens == sum(4 + i for i in range(8)) == sum(b.usage.output_tokens for b in bodies)
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens > 0

    # output_expires_after: the controller's retention step deletes both result files after the window.
    out = sdk.files.retrieve(done.output_file_id)
    assert out.expires_at is not None and out.expires_at - out.created_at <= 4

    def gone() -> bool:
        try:
            sdk.files.retrieve(done.output_file_id)
        except openai.NotFoundError:
            return True
        return False

    assert wait_for(gone, bool, timeout_s=30), "output file did not expire"
    with pytest.raises(openai.NotFoundError):
        sdk.files.content(done.error_file_id)

    # Cancel while requests are in flight: cancelling (with cancelling_at), then cancelled (with cancelled_at).
    # The first requests answer at once, the rest take 120 s: the cancel lands while they run.
    slow = sdk.files.create(file=("slow.jsonl", lines(24, delay_s=lambda i: 0.0 if i < 6 else 120.0)), purpose="batch")
    b = sdk.batches.create(input_file_id=slow.id, endpoint="/v1/responses", completion_window="1h")
    running = wait_for(lambda: sdk.batches.retrieve(b.id), lambda x: x.request_counts.completed >= 1)
    assert running.status == "in_progress", running
    cancelling = sdk.batches.cancel(b.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at and cancelling.cancelled_at is None
    cancelled = wait_for(lambda: sdk.batches.retrieve(b.id), lambda x: x.status == "cancelled", timeout_s=60)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at >= cancelled.cancelling_at
    answered = sdk.files.content(cancelled.output_file_id).text.splitlines()
    assert len(answered) == cancelled.request_counts.completed >= 1
    assert cancelled.usage.output_tokens == sum(json.loads(x)["response"]["body"]["usage"]["output_tokens"] for x in answered)
