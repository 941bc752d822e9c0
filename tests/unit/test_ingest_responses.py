"""Validation and estimates of /v1/responses batch lines: input as a string or items, max_output_tokens."""

from __future__ import annotations

import json

import pytest

from orca.ingest import validate
from orca.settings import IngestSettings


def line(cid: str, **body) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/responses", "body": {"model": "m", **body}})


def run(tmp_path, lines: list[str]):
    p = tmp_path / "in.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return validate(str(p), IngestSettings(default_max_tokens=100))


def test_string_and_message_inputs_with_max_output_tokens(tmp_path):
    r = run(tmp_path, [line("a", input="hello there", max_output_tokens=40),
                       line("b", input=[{"role": "user", "content": "hi"}], max_output_tokens=60),
                       line("c", input="no cap")])
    assert r.ok, r.errors
    assert r.endpoint == "/v1/responses" and r.n_requests == 3
    assert r.max_output_tokens == 40 + 60 + 100  # max_output_tokens, else the default


def test_max_tokens_is_not_the_responses_cap(tmp_path):
    r = run(tmp_path, [line("a", input="x", max_tokens=5)])
    assert r.ok and r.max_output_tokens == 100


@pytest.mark.parametrize("body,param", [
    ({}, "body.input"),
    ({"input": ""}, "body.input"),
    ({"input": []}, "body.input"),
    ({"input": 5}, "body.input"),
    ({"input": "x", "max_output_tokens": -1}, "body.max_output_tokens"),
    ({"input": "x", "max_output_tokens": 2.5}, "body.max_output_tokens"),
])
def test_bad_responses_lines_name_the_field(tmp_path, body, param):
    r = run(tmp_path, [line("ok", input="fine"), line("bad", **body)])
    assert not r.ok
    assert [(e.line, e.param) for e in r.errors] == [(2, param)]
