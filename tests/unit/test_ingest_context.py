"""Every request's prompt tokens plus max_tokens against its model's context length (the catalog's)."""

from __future__ import annotations

import json

from orca.ingest import validate
from orca.ingest.scan import scan_file
from orca.planner.catalog import context_length

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"  # context 8192


def write(tmp_path, bodies: list[dict], name: str = "b.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": b}) + "\n"
                            for i, b in enumerate(bodies)))
    return str(path)


def chat(text: str, model: str = SMOL, max_tokens: int = 16) -> dict:
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}


def test_catalog_knows_context_lengths() -> None:
    assert context_length(SMOL) == 8192
    assert context_length("smollm2") == 8192  # the CPU engine's alias
    assert context_length("meta-llama/Llama-3.1-8B-Instruct") == 131072
    assert context_length("some/unknown-model") is None


def test_a_10_mb_prompt_is_refused_with_its_line_and_both_numbers(tmp_path) -> None:
    path = write(tmp_path, [chat("hi"), chat("x" * 10_000_000), chat("hi")])
    result = validate(path)
    assert not result.ok and result.error_count == 1
    issue = result.errors[0]
    assert issue.code == "context_length_exceeded" and issue.line == 2
    assert "8192" in issue.message and "2500" in issue.message and SMOL in issue.message


def test_max_tokens_counts_too(tmp_path) -> None:
    result = validate(write(tmp_path, [chat("hi", max_tokens=8000), chat("hi", max_tokens=9000)]))
    assert [(e.code, e.line) for e in result.errors] == [("context_length_exceeded", 2)]
    assert "max_tokens 9000" in result.errors[0].message


def test_model_override_and_multiple_models(tmp_path) -> None:
    path = write(tmp_path, [chat("x" * 40_000, model="meta-llama/Llama-3.1-8B-Instruct")])
    assert validate(path).ok  # 10k tokens fit Llama's 128k
    assert not validate(path, model="smollm2").ok
    multi = write(tmp_path, [chat("x" * 40_000, model="meta-llama/Llama-3.1-8B-Instruct"), chat("x" * 40_000)], "m.jsonl")
    result = validate(multi, allow_multiple_models=True)
    assert [(e.code, e.line) for e in result.errors] == [("context_length_exceeded", 2)]


def test_unknown_models_and_no_lookup_are_not_checked(tmp_path) -> None:
    assert validate(write(tmp_path, [chat("x" * 100_000, model="my/private-model")])).ok
    assert scan_file(write(tmp_path, [chat("x" * 100_000)], "n.jsonl"), context_length=None).ok


def test_many_over_long_requests_are_counted_beyond_the_reported(tmp_path) -> None:
    from orca.settings import IngestSettings

    result = validate(write(tmp_path, [chat("x" * 40_000)] * 5), IngestSettings(max_errors_reported=2))
    assert result.error_count == 5 and [e.line for e in result.errors] == [1, 2]
