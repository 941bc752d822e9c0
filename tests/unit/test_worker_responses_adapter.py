"""/v1/responses on a chat-only engine: the adapter's translation both ways, and the forwarder using it
against the fake OpenAI server (which serves chat completions only, like llama.cpp)."""

from __future__ import annotations

import asyncio

import pytest
from openai.types.responses import Response

from orca.settings import EngineSettings, WorkerSettings
from orca.usage import TokenUsage
from orca.worker.engines import EngineSpec
from orca.worker.engines.external import ExternalEngine
from orca.worker.engines.fake_server import FakeOpenAIServer
from orca.worker.forwarder import Forwarder
from orca.worker.meter import Meter
from orca.worker.output import RequestLine
from orca.worker.responses_adapter import Untranslatable, from_chat, to_chat


def test_string_input_instructions_and_sampling_become_a_chat_request():
    chat = to_chat({"model": "m", "input": "hi", "instructions": "be terse", "max_output_tokens": 12,
                    "temperature": 0.3, "top_p": 0.9, "text": {"format": {"type": "text"}}, "metadata": {"k": "v"},
                    "store": False, "seed": 7})
    assert chat == {"model": "m", "max_tokens": 12, "temperature": 0.3, "top_p": 0.9, "seed": 7,
                    "messages": [{"role": "system", "content": "be terse"}, {"role": "user", "content": "hi"}]}


def test_message_list_with_text_parts_and_developer_role():
    chat = to_chat({"model": "m", "input": [
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "c"}]},
        {"role": "user", "content": "d"}]})
    assert chat["messages"] == [{"role": "system", "content": "rules"}, {"role": "user", "content": "ab"},
                                {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"}]


@pytest.mark.parametrize("body,param", [
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0].type"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]}, "input[0].type"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools"),
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "x", "reasoning": {"effort": "high"}}, "reasoning"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "s", "schema": {}}}}, "text.format"),
    ({"input": "x", "stream": True}, "stream"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": []}, "input"),
])
def test_what_cannot_be_translated_names_the_field(body, param):
    with pytest.raises(Untranslatable) as exc:
        to_chat({"model": "m", **body})
    assert exc.value.param == param and exc.value.code in ("unsupported_parameter", "invalid_value")


def test_chat_answer_becomes_a_response_object_the_sdk_parses():
    chat = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "m",
            "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Hello"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                      "prompt_tokens_details": {"cached_tokens": 2}}}
    body = from_chat(chat, {"model": "m", "input": "hi", "max_output_tokens": 3, "instructions": "x"}, "resp_abc")
    r = Response.model_validate(body)
    assert (r.id, r.object, r.model, r.output_text) == ("resp_abc", "response", "m", "Hello")
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.input_tokens == 5 and r.usage.output_tokens == 3 and r.usage.total_tokens == 8
    assert r.usage.input_tokens_details.cached_tokens == 2
    assert r.max_output_tokens == 3 and r.instructions == "x"
    done = from_chat({**chat, "choices": [{"finish_reason": "stop", "message": {"content": "Hi"}}]}, {"input": "hi"}, "resp_x")
    assert done["status"] == "completed" and done["incomplete_details"] is None


def test_token_usage_reads_both_namings():
    assert TokenUsage.of({"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}).openai() == {
        "input_tokens": 4, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 6}
    u = TokenUsage.of({"input_tokens": 4, "output_tokens": 2, "total_tokens": 6, "input_tokens_details": {"cached_tokens": 1},
                       "output_tokens_details": {"reasoning_tokens": 1}})
    assert (u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens) == (4, 2, 1, 1)
    assert TokenUsage.of(None) == TokenUsage() and TokenUsage.of({"prompt_tokens": "x"}).input_tokens == 0


def _forward(url: str, requests: list[RequestLine], native: bool) -> tuple[list[dict], Meter]:
    engine = ExternalEngine(EngineSpec(kind="external", url=url), EngineSettings())
    engine.serves_responses = native
    meter = Meter()

    async def run() -> list[dict]:
        fw = Forwarder(engine, "job1", 4, WorkerSettings(retry_backoff_s=0.01), EngineSettings(), meter)
        try:
            tasks = [await fw.submit("c1", r) for r in requests]
            return list(await asyncio.gather(*tasks))
        finally:
            await fw.aclose()

    return asyncio.run(run()), meter


def test_forwarder_adapts_responses_for_a_chat_only_engine():
    with FakeOpenAIServer(keep_log=True) as fake:
        reqs = [RequestLine(0, "r-0", "POST", "/v1/responses",
                            {"model": "m", "input": "hi", "instructions": "sys", "max_output_tokens": 7, "temperature": 0.5}),
                RequestLine(1, "r-1", "POST", "/v1/responses", {"model": "m", "input": "x", "tools": [{"type": "web_search"}]})]
        lines, meter = _forward(fake.url, reqs, native=False)
        assert fake.stats.by_path == {"/v1/chat/completions": 1}  # the untranslatable one never reached the engine
        sent = fake.stats.log[0][3]
        assert sent["max_tokens"] == 7 and sent["messages"][0] == {"role": "system", "content": "sys"}
    ok, bad = lines
    body = ok["response"]["body"]
    assert ok["error"] is None and body["object"] == "response" and body["id"].startswith("resp_")
    assert Response.model_validate(body).output_text == "fake" and body["usage"]["output_tokens"] == 7
    assert bad["error"]["code"] == "unsupported_parameter" and "tools" in bad["error"]["message"]
    assert bad["response"]["status_code"] == 400 and bad["response"]["body"]["error"]["param"] == "tools"
    snap = meter.snapshot()
    assert (snap.requests, snap.errors, snap.completion_tokens) == (2, 1, 7)


def test_forwarder_sends_responses_verbatim_to_an_engine_that_serves_them():
    with FakeOpenAIServer() as fake:
        lines, _ = _forward(fake.url, [RequestLine(0, "r-0", "POST", "/v1/responses", {"model": "m", "input": "hi"})], native=True)
        assert fake.stats.requests == 0
    # The fake server has no /v1/responses route: the raw body went there and got its 404.
    assert lines[0]["response"]["status_code"] == 404
    assert "POST /v1/responses" in lines[0]["response"]["body"]["error"]["message"]
