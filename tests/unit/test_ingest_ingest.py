"""ingest() end to end on the in-memory and local stores: chunks verbatim, manifests, estimates, limits."""

from __future__ import annotations

import json
import time

import pytest

from orca.errors import InputValidationError
from orca.ingest import ingest, iter_manifests, validate
from orca.settings import IngestSettings
from orca.storage import open_store
from orca.storage.layout import JobLayout

L = JobLayout("job1")


def req(cid, model="m1", content="hello", url="/v1/chat/completions", system="be brief", **body):
    b = {"model": model, "messages": [{"role": "system", "content": system}, {"role": "user", "content": content}]}
    if url == "/v1/embeddings":
        b = {"model": model, "input": content}
    b.update(body)
    return json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": b})


def write(tmp_path, lines, name="in.jsonl", end="\n"):
    p = tmp_path / name
    p.write_bytes((end.join(lines) + end).encode() if isinstance(lines[0], str) else end.encode().join(lines) + end.encode())
    return p


def chunk_lines(store, manifest):
    return store.get_bytes(L.chunk(manifest.chunk_id)).decode().splitlines()


@pytest.mark.parametrize("backend", ["memory", "local"])
def test_chunks_are_verbatim_and_cover_every_line(tmp_path, backend):
    store = open_store("memory://" if backend == "memory" else (tmp_path / "s").as_uri())
    lines = [req(f"r{i}", content="x" * (i % 7 * 300), system=f"system {i % 3}" * 100, max_tokens=64) for i in range(500)]
    src = write(tmp_path, lines)
    settings = IngestSettings(target_chunk_s=1.0, reference_tokens_per_s=5000, min_chunk_requests=4)
    result = ingest(store, "job1", str(src), settings)
    assert result.ok and result.n_requests == 500 and result.model == "m1"
    assert result.endpoint == "/v1/chat/completions"
    assert store.get_bytes(L.input) == src.read_bytes()
    assert len(result.manifests) > 5
    seen = []
    for m in result.manifests:
        assert m.lines == sorted(m.lines)
        assert chunk_lines(store, m) == [lines[n - 1] for n in m.lines]
        seen.extend(m.lines)
    assert sorted(seen) == list(range(1, 501))
    assert [m.model_dump() for m in iter_manifests(store, "job1")] == [m.model_dump() for m in result.manifests]
    assert sum(m.est_tokens for m in result.manifests) == result.prompt_tokens + result.max_output_tokens
    assert result.max_output_tokens == 500 * 64
    stats = result.stats
    assert (stats.n_requests, stats.model, stats.endpoint) == (500, "m1", "/v1/chat/completions")
    assert result.chunk_ids == [m.chunk_id for m in result.manifests]


def test_input_already_in_store_and_rerun_is_identical():
    store = open_store("memory://")
    body = ("\n".join(req(f"r{i}", max_completion_tokens=10) for i in range(100)) + "\n").encode()
    store.put_bytes(L.input, body)
    first = ingest(store, "job1", settings=IngestSettings(target_chunk_s=0.1, min_chunk_requests=1))
    snapshot = {k: store.get_bytes(k) for k in store.list(L.root)}
    second = ingest(store, "job1", settings=IngestSettings(target_chunk_s=0.1, min_chunk_requests=1))
    assert {k: store.get_bytes(k) for k in store.list(L.root)} == snapshot
    assert first.chunk_ids == second.chunk_ids and first.max_output_tokens == 1000


def test_chunk_budget_follows_the_planned_replica_rate():
    from orca.ingest import chunk_budget
    from orca.planner.types import JobStats

    settings = IngestSettings(target_chunk_s=100.0, reference_tokens_per_s=5000)
    stats = JobStats(n_requests=10, prompt_tokens=3000, max_output_tokens=1000, model="m", endpoint="/v1/completions")
    assert chunk_budget(settings) == chunk_budget(settings, stats, None) == 500_000
    # 100 s of a replica making 40 output tokens/s: 4,000 output tokens, i.e. 16,000 prompt + output tokens here.
    assert chunk_budget(settings, stats, 40.0) == 16_000
    assert chunk_budget(settings, stats, 0.0) == 500_000


def test_a_slower_planned_replica_gets_more_smaller_chunks():
    store = open_store("memory://")
    body = ("\n".join(req(f"r{i}", content="q" * 400, max_tokens=100) for i in range(400)) + "\n").encode()
    store.put_bytes(L.input, body)
    settings = IngestSettings(target_chunk_s=60.0, min_chunk_requests=1)
    asked = []

    def rate(stats):
        asked.append(stats)
        return 50.0  # output tokens/s: 3,000 output tokens (30 requests) per chunk

    reference = ingest(store, "job1", settings=settings)
    sized = ingest(store, "job1", settings=settings, replica_rate=rate)
    assert len(reference.manifests) == 1
    assert [(s.n_requests, s.max_output_tokens) for s in asked] == [(400, 40_000)]
    assert 13 <= len(sized.manifests) <= 14
    assert (reference.sized_for_tokens_per_s, sized.sized_for_tokens_per_s) == (None, 50.0)
    assert sorted(n for m in sized.manifests for n in m.lines) == list(range(1, 401))


def test_estimates_follow_settings(tmp_path):
    src = write(tmp_path, [req("a", content="y" * 4000), req("b", content="y" * 4000, max_tokens=10)])
    r = validate(str(src), IngestSettings(default_max_tokens=100, chars_per_token=4.0))
    assert r.max_output_tokens == 110
    assert 2000 <= r.prompt_tokens <= 2100  # 8000 content chars / 4 plus JSON framing


def test_embeddings_have_no_output_tokens(tmp_path):
    src = write(tmp_path, [req(f"e{i}", url="/v1/embeddings") for i in range(3)])
    r = validate(str(src))
    assert r.ok and r.max_output_tokens == 0 and r.endpoint == "/v1/embeddings"


def test_crlf_and_missing_final_newline(tmp_path):
    lines = [req("a"), req("b"), req("c")]
    crlf = write(tmp_path, lines, "crlf.jsonl", end="\r\n")
    store = open_store("memory://")
    r = ingest(store, "job1", str(crlf), IngestSettings(min_chunk_requests=1))
    assert r.ok and r.n_requests == 3
    no_nl = tmp_path / "nonl.jsonl"
    no_nl.write_text("\n".join(lines))
    store = open_store("memory://")
    r = ingest(store, "job1", str(no_nl), IngestSettings(min_chunk_requests=1))
    assert r.ok and r.n_requests == 3
    assert store.get_bytes(L.chunk(r.manifests[0].chunk_id)) == ("\n".join(lines) + "\n").encode()


def test_model_rules(tmp_path):
    mixed = write(tmp_path, [req("a", model="m1"), req("b", model="m2"), req("c", model="m2")])
    assert validate(str(mixed)).errors[0].code == "model_mismatch"
    r = validate(str(mixed), allow_multiple_models=True)
    assert r.ok and r.model is None and r.models == {"m1": 1, "m2": 2} and r.stats.model == "m2"
    r = validate(str(mixed), model="override")  # the job names the model: requests' own model is ignored
    assert r.ok and r.model == "override"
    nomodel = tmp_path / "nomodel.jsonl"
    nomodel.write_text(json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}}) + "\n")
    assert validate(str(nomodel)).errors[0].code == "missing_required_parameter"
    assert validate(str(nomodel), model="m").ok


def test_endpoint_rules(tmp_path):
    mixed = write(tmp_path, [req("a"), req("b", url="/v1/embeddings")])
    assert validate(str(mixed)).errors[0].code == "url_mismatch"
    r = validate(str(mixed), allow_multiple_models=True)
    assert r.ok and r.endpoint is None
    assert validate(str(write(tmp_path, [req("a")], "one.jsonl")), endpoint="/v1/embeddings").errors[0].code == "url_mismatch"


def test_error_cap_and_total_count(tmp_path):
    lines = [req(f"r{i}") for i in range(50)] + ["not json"] * 30 + [req("r0")] * 40
    r = validate(str(write(tmp_path, lines)), IngestSettings(max_errors_reported=10))
    assert r.error_count == 70 and len(r.errors) == 10
    assert [e.line for e in r.errors] == sorted(e.line for e in r.errors)
    assert {e.code for e in r.errors} == {"invalid_json_line"}


def test_duplicate_reports_first_occurrence(tmp_path):
    r = validate(str(write(tmp_path, [req("x"), req("y"), req("x"), req("x")])))
    assert [(e.code, e.line) for e in r.errors] == [("duplicate_custom_id", 3), ("duplicate_custom_id", 4)]
    assert "line 1" in r.errors[0].message and r.error_count == 2


def test_long_lines_are_rejected_or_accepted_without_unbounded_memory(tmp_path):
    big = req("big", content="z" * (3 * 1024 * 1024))  # ~3 MB line
    src = write(tmp_path, [req("a"), big, req("b")])
    r = validate(str(src), IngestSettings(max_line_mb=1))
    assert [(e.code, e.line) for e in r.errors] == [("too_large", 2)]
    store = open_store("memory://")
    ok = ingest(store, "job1", str(src), IngestSettings(max_line_mb=4, min_chunk_requests=1))
    assert ok.ok and ok.n_requests == 3
    assert big in store.get_bytes(L.chunk(ok.manifests[-1].chunk_id)).decode()


def test_file_limits(tmp_path):
    src = write(tmp_path, [req(f"r{i}") for i in range(5)])
    assert validate(str(src), IngestSettings(max_requests=3)).errors[0].code == "too_large"
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as f:
        f.truncate(2 * 1024 * 1024)
    r = validate(str(big), IngestSettings(max_file_mb=1))
    assert [(e.code, e.line) for e in r.errors] == [("too_large", None)]


def test_raise_on_invalid_false_returns_result(tmp_path):
    store = open_store("memory://")
    r = ingest(store, "job1", str(write(tmp_path, ["{}"])), raise_on_invalid=False)
    assert not r.ok and r.errors[0].code == "missing_required_parameter"
    with pytest.raises(InputValidationError):
        ingest(store, "job1", str(write(tmp_path, ["{}"])))


def test_one_million_ids(tmp_path):
    """1,000,000 requests validate in seconds with compact per-request state; a late duplicate is found."""
    src = tmp_path / "million.jsonl"
    n = 1_000_000
    with open(src, "w") as f:
        f.writelines(f'{{"custom_id":"q{i}","method":"POST","url":"/v1/embeddings","body":{{"model":"e","input":"t"}}}}\n'
                     for i in range(n))
        f.write('{"custom_id":"q12345","method":"POST","url":"/v1/embeddings","body":{"model":"e","input":"t"}}\n')
    t0 = time.perf_counter()
    r = validate(str(src))
    assert time.perf_counter() - t0 < 25
    assert [(e.code, e.line) for e in r.errors] == [("duplicate_custom_id", n + 1)]
    assert "line 12346" in r.errors[0].message
