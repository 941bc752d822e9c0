"""The worker with the real llama.cpp server and the packaged SmolLM2 model: chat, completions, embeddings,
and Responses requests through the worker's chat-completions adapter; per-chunk usage recorded with each commit."""

from __future__ import annotations

from openai.types.responses import Response

from orca.queue import ChunkQueue
from orca.queue.chunk_usage import ChunkUsageStore
from orca.storage import open_store
from tests.fakes.worker_job import read_committed, request, spawn_worker, write_chunks

CHAT = [request(f"chat-{i}", "/v1/chat/completions",
                {"model": "smollm2", "messages": [{"role": "user", "content": f"Name a colour. ({i})"}],
                 "max_tokens": 8, "temperature": 0, "seed": i}) for i in range(20)]
COMPLETIONS = [request(f"cmpl-{i}", "/v1/completions",
                       {"model": "smollm2", "prompt": f"{i} plus {i} equals", "max_tokens": 8, "temperature": 0.7,
                        "top_p": 0.9, "stop": ["\n"]}) for i in range(20)]
EMBEDDINGS = [request(f"emb-{i}", "/v1/embeddings", {"model": "smollm2", "input": [f"text {i}", "another"]})
              for i in range(5)]
RESPONSES = [request(f"resp-{i}", "/v1/responses",
                     {"model": "smollm2", "instructions": "Answer in a few words.", "max_output_tokens": 8,
                      "input": f"Name a fruit. ({i})" if i % 2 else [{"role": "user", "content": [{"type": "input_text", "text": f"Name a tree. ({i})"}]}]})
             for i in range(4)]


def test_real_llamacpp_engine_answers_chat_completions_and_embeddings(redis_url, tmp_path):
    job = "job-llamacpp"
    store_url = f"file://{tmp_path}/store"
    store = open_store(store_url)
    ids = write_chunks(store, job, [CHAT[:10], CHAT[10:] + COMPLETIONS[:5], COMPLETIONS[5:] + EMBEDDINGS, RESPONSES])
    with ChunkQueue(redis_url, job) as queue:
        queue.enqueue_many(ids)
        proc = spawn_worker(job, redis_url, store_url, "w-cpu", "--engine", "llamacpp", "--model", "smollm2",
                            "--burst", log_dir=tmp_path)
        try:
            assert proc.wait(300) == 0, (tmp_path / "w-cpu.log").read_text()[-3000:]
        finally:
            proc.kill()
        lines = {line["custom_id"]: line for out in read_committed(store, queue, job).values() for line in out}
        usage = ChunkUsageStore(redis_url).total(job, queue.committed_generations())
    assert sorted(lines) == sorted(r["custom_id"] for r in CHAT + COMPLETIONS + EMBEDDINGS + RESPONSES)
    for line in lines.values():
        assert line["error"] is None and line["response"]["status_code"] == 200, line
        assert line["id"].startswith("batch_req_") and line["response"]["request_id"]
    for r in CHAT:
        body = lines[r["custom_id"]]["response"]["body"]
        assert body["object"] == "chat.completion" and body["model"] == "smollm2"
        assert isinstance(body["choices"][0]["message"]["content"], str) and body["choices"][0]["message"]["content"]
        assert 0 < body["usage"]["completion_tokens"] <= 8
    for r in COMPLETIONS:
        body = lines[r["custom_id"]]["response"]["body"]
        assert body["object"] == "text_completion" and isinstance(body["choices"][0]["text"], str)
        assert 0 < body["usage"]["completion_tokens"] <= 8
    for r in EMBEDDINGS:
        data = lines[r["custom_id"]]["response"]["body"]["data"]
        assert [d["index"] for d in data] == [0, 1]
        assert all(len(d["embedding"]) == 576 and all(isinstance(x, float) for x in d["embedding"]) for d in data)
    for r in RESPONSES:
        body = Response.model_validate(lines[r["custom_id"]]["response"]["body"])
        assert body.object == "response" and body.output_text and body.status in ("completed", "incomplete")
        assert 0 < body.usage.output_tokens <= 8 and body.usage.input_tokens > 0
    generated = [lines[r["custom_id"]]["response"]["body"]["usage"] for r in CHAT + COMPLETIONS + RESPONSES]
    assert usage.output_tokens == sum(u.get("completion_tokens", u.get("output_tokens")) for u in generated)
