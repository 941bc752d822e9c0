"""The forwarder against the fake OpenAI server: verbatim bodies, error lines, retries, concurrency."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from orca.settings import EngineSettings, WorkerSettings
from orca.worker.engines import EngineSpec
from orca.worker.engines.external import ExternalEngine
from orca.worker.engines.fake_server import FakeOpenAIServer
from orca.worker.forwarder import Forwarder
from orca.worker.meter import Meter
from orca.worker.output import RequestLine, output_id

FAST = WorkerSettings(retry_backoff_s=0.01, request_retries=3, request_timeout_s=5)


@pytest.fixture
def fake():
    with FakeOpenAIServer(slots=64, keep_log=True) as server:
        yield server


def forward_all(url: str, requests: list[RequestLine], concurrency: int = 8, settings: WorkerSettings = FAST,
                meter: Meter | None = None) -> list[dict]:
    engine = ExternalEngine(EngineSpec(kind="external", url=url), EngineSettings())

    async def run() -> list[dict]:
        fw = Forwarder(engine, "job1", concurrency, settings, EngineSettings(), meter or Meter())
        try:
            tasks = [await fw.submit("chunk1", r) for r in requests]
            return list(await asyncio.gather(*tasks))
        finally:
            await fw.aclose()

    return asyncio.run(run())


CHAT = {"model": "smollm2", "messages": [{"role": "system", "content": "be terse"}, {"role": "user", "content": "hi"}],
        "temperature": 0.37, "top_p": 0.91, "max_tokens": 11, "seed": 1234, "stop": ["\n\n"], "n": 1,
        "presence_penalty": 0.25, "frequency_penalty": -0.5, "logit_bias": {"42": -100}, "user": "u-1",
        "response_format": {"type": "json_object"}, "logprobs": True, "top_logprobs": 3}
COMPLETION = {"model": "smollm2", "prompt": ["a", "b"], "max_tokens": 5, "temperature": 0, "echo": False,
              "best_of": 1, "suffix": None}
EMBEDDING = {"model": "smollm2", "input": ["x", "y", "z"], "encoding_format": "float", "dimensions": 3}


def test_every_parameter_and_endpoint_reaches_the_engine_verbatim(fake):
    reqs = [RequestLine(0, "chat-1", "POST", "/v1/chat/completions", CHAT),
            RequestLine(1, "cmpl-1", "POST", "/v1/completions", COMPLETION),
            RequestLine(2, "emb-1", "POST", "/v1/embeddings", EMBEDDING)]
    lines = forward_all(fake.url, reqs)
    assert [line["custom_id"] for line in lines] == ["chat-1", "cmpl-1", "emb-1"]
    for line, req in zip(lines, reqs):
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["fake_request"] == req.body  # the engine saw exactly the input body
        assert line["id"] == output_id("job1", "chunk1", req.index)
        assert line["response"]["request_id"]
    assert dict(fake.stats.by_path) == {"/v1/chat/completions": 1, "/v1/completions": 1, "/v1/embeddings": 1}
    assert lines[2]["response"]["body"]["object"] == "list"


def test_output_ids_are_deterministic_and_distinct():
    assert output_id("j", "c", 0) == output_id("j", "c", 0)
    assert len({output_id("j", "c", i) for i in range(1000)} | {output_id("j", "d", 0), output_id("k", "c", 0)}) == 1002
    assert output_id("j", "c", 0).startswith("batch_req_")


def test_a_4xx_becomes_an_error_line_with_the_engine_response_and_is_not_retried(fake):
    body = {**CHAT, "fake_fail": {"status": 400}}
    [line] = forward_all(fake.url, [RequestLine(0, "bad", "POST", "/v1/chat/completions", body)])
    assert line["custom_id"] == "bad"
    assert line["response"]["status_code"] == 400
    assert line["response"]["body"]["error"]["code"] == "injected"
    assert line["error"] == {"code": "injected", "message": "injected failure"}
    assert sum(fake.stats.failures_served.values()) == 1


def test_503s_are_retried_until_the_engine_answers(fake):
    body = {**CHAT, "fake_fail": {"status": 503, "times": 2}}
    meter = Meter()
    [line] = forward_all(fake.url, [RequestLine(0, "flaky", "POST", "/v1/chat/completions", body)], meter=meter)
    assert line["error"] is None and line["response"]["status_code"] == 200
    assert line["response"]["body"]["fake_request"] == body
    assert sum(fake.stats.failures_served.values()) == 2
    snap = meter.snapshot()
    assert (snap.requests, snap.errors, snap.completion_tokens) == (1, 0, 11)


def test_a_request_that_keeps_failing_ends_as_an_error_line_after_the_retries(fake):
    body = {**CHAT, "fake_fail": {"status": 500}}
    [line] = forward_all(fake.url, [RequestLine(0, "down", "POST", "/v1/chat/completions", body)])
    assert line["response"]["status_code"] == 500 and line["error"]["code"] == "injected"
    assert sum(fake.stats.failures_served.values()) == FAST.request_retries + 1


def test_an_unreachable_engine_gives_error_lines_without_a_response():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    [line] = forward_all(f"http://127.0.0.1:{port}", [RequestLine(0, "x", "POST", "/v1/completions", COMPLETION)])
    assert line["response"] is None
    assert line["error"]["code"] == "engine_unreachable"


def test_an_unknown_model_is_a_final_error_line():
    with FakeOpenAIServer(models=("smollm2",)) as server:
        [line] = forward_all(server.url, [RequestLine(0, "m", "POST", "/v1/completions", {**COMPLETION, "model": "gpt-9"})])
    assert line["response"]["status_code"] == 404 and line["error"]["code"] == "model_not_found"


def test_concurrency_never_exceeds_the_slots_and_fills_them():
    with FakeOpenAIServer(slots=64, latency_s=0.05, keep_log=True) as server:
        reqs = [RequestLine(i, f"r{i}", "POST", "/v1/completions", COMPLETION) for i in range(60)]
        lines = forward_all(server.url, reqs, concurrency=6)
        assert server.stats.max_in_flight == 6
    assert [line["custom_id"] for line in lines] == [f"r{i}" for i in range(60)]


def test_a_request_slower_than_the_timeout_ends_as_a_timeout_error_line(fake):
    settings = WorkerSettings(request_timeout_s=0.2, request_retries=1, retry_backoff_s=0.01)
    body = {**COMPLETION, "fake_delay_s": 5}
    [line] = forward_all(fake.url, [RequestLine(0, "slow", "POST", "/v1/completions", body)], settings=settings)
    assert line["response"] is None and line["error"]["code"] == "timeout"


def test_429_is_transient(fake):
    body = {**COMPLETION, "fake_fail": {"status": 429, "times": 1}}
    [line] = forward_all(fake.url, [RequestLine(0, "busy", "POST", "/v1/completions", body)])
    assert line["error"] is None and sum(fake.stats.failures_served.values()) == 1


def test_a_cancelled_request_is_aborted_at_the_engine(tmp_path, monkeypatch):
    """A worker that lets a chunk go cancels its requests in flight; the connection ends and the engine aborts
    them (vLLM does so for a client that disconnects; the fake engine does the same): nothing is answered or
    logged as given after the cancel, and the slot is free again."""
    monkeypatch.setenv("ORCA_FAKE_ANSWER_LOG", str(tmp_path))
    body = {**COMPLETION, "user": "slow-one", "fake_delay_s": 1.0}
    with FakeOpenAIServer(slots=4, keep_log=True) as server:
        engine = ExternalEngine(EngineSpec(kind="external", url=server.url), EngineSettings())

        async def run() -> None:
            fw = Forwarder(engine, "job1", 4, FAST, EngineSettings(), Meter())
            try:
                task = await fw.submit("chunk1", RequestLine(0, "slow", "POST", "/v1/completions", body))
                await asyncio.sleep(0.3)
                assert server.stats.in_flight == 1
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await asyncio.sleep(1.2)  # past the request's own latency
            finally:
                await fw.aclose()

        asyncio.run(run())
        assert server.stats.in_flight == 0 and server.stats.log == []
    events = [json.loads(line)["ev"] for f in tmp_path.glob("*.jsonl") for line in f.read_text().splitlines()]
    assert events == ["start"]
