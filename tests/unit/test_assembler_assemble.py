"""The assembler on the in-memory and local stores: order, routing, dead and unfinished chunks, checks, idempotence."""

from __future__ import annotations

import json

import pytest

from orca.assembler import assemble, iter_manifests
from orca.errors import AssemblyError
from orca.ingest import ingest
from orca.settings import IngestSettings
from orca.storage import open_store
from orca.storage.layout import JobLayout

JOB = "job1"
L = JobLayout(JOB)


def req(i):
    return json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "m", "messages": [{"role": "system", "content": f"group {i % 3}" * 200},
                                                            {"role": "user", "content": f"q{i}"}]}})


def out_line(cid, status=200, error=None):
    response = None if status is None else {"status_code": status, "request_id": f"req-{cid}",
                                            "body": {"choices": [{"message": {"content": f"answer {cid}"}}]}}
    return json.dumps({"id": f"batch_req_{cid}", "custom_id": cid, "response": response, "error": error})


@pytest.fixture(params=["memory", "local"])
def job(request, tmp_path):
    """A job of 60 requests in several interleaved chunks (prefix groups), ingested for real."""
    store = open_store("memory://" if request.param == "memory" else (tmp_path / "s").as_uri())
    src = tmp_path / "in.jsonl"
    src.write_text("".join(req(i) + "\n" for i in range(60)))
    result = ingest(store, JOB, str(src), IngestSettings(target_chunk_s=0.4, reference_tokens_per_s=5000, min_chunk_requests=1))
    assert len(result.manifests) >= 4
    assert any(m.lines != list(range(m.lines[0], m.lines[0] + len(m.lines))) for m in result.manifests)  # interleaved
    return store, result.manifests


def commit(store, manifest, generation=1, bad=(), transform=None):
    lines = []
    for n in manifest.lines:
        cid = f"r{n - 1}"
        if n in bad:
            lines.append(out_line(cid, status=None, error={"code": "engine_error", "message": "boom"}))
        else:
            lines.append(out_line(cid))
    if transform:
        lines = transform(lines)
    store.put_bytes(L.chunk_output(manifest.chunk_id, generation), ("\n".join(lines) + "\n").encode() if lines else b"")
    return generation


def read_lines(store, key):
    return [json.loads(x) for x in store.get_bytes(key).decode().splitlines()]


def test_complete_job_one_line_per_request_in_input_order(job):
    store, manifests = job
    committed = {m.chunk_id: commit(store, m, generation=3, bad={5, 17}) for m in manifests}
    store.put_bytes(L.chunk_output(manifests[0].chunk_id, 1), b"stale generation, ignored\n")
    result = assemble(store, JOB, committed, {})
    assert (result.total, result.completed, result.failed, result.missing) == (60, 58, 2, 0)
    out, err = read_lines(store, L.output), read_lines(store, L.errors)
    assert [x["custom_id"] for x in out] == [f"r{i}" for i in range(60) if i not in (4, 16)]
    assert [x["custom_id"] for x in err] == ["r4", "r16"] and err[0]["error"]["code"] == "engine_error"
    # verbatim copy of the worker's lines
    assert store.get_bytes(L.output).decode().splitlines()[0] == out_line("r0")


def test_non_200_without_error_goes_to_errors(job):
    store, manifests = job
    committed = {m.chunk_id: commit(store, m) for m in manifests}
    m0 = manifests[0]
    commit(store, m0, transform=lambda ls: [ls[0].replace('"status_code": 200', '"status_code": 400')] + ls[1:])
    result = assemble(store, JOB, committed, {})
    assert result.failed == 1
    assert read_lines(store, L.errors)[0]["response"]["status_code"] == 400


def test_dead_chunks_get_error_lines_with_custom_ids(job):
    store, manifests = job
    dead_m = manifests[1]
    committed = {m.chunk_id: commit(store, m) for m in manifests if m is not dead_m}
    result = assemble(store, JOB, committed, {dead_m.chunk_id: "engine crashed"})
    assert result.failed == len(dead_m.lines) and result.completed == 60 - len(dead_m.lines)
    err = read_lines(store, L.errors)
    assert [e["custom_id"] for e in err] == [f"r{n - 1}" for n in dead_m.lines]
    assert all(e["error"]["code"] == "chunk_failed" and "engine crashed" in e["error"]["message"] and e["response"] is None
               for e in err)
    assert len({e["id"] for e in err}) == len(err)
    merged = sorted([(json.loads(x)["custom_id"]) for k in (L.output, L.errors) for x in store.get_bytes(k).splitlines()],
                    key=lambda c: int(c[1:]))
    assert merged == [f"r{i}" for i in range(60)]


def test_partial_and_unfinished(job):
    store, manifests = job
    committed = {manifests[0].chunk_id: commit(store, manifests[0])}
    partial = assemble(store, JOB, committed, {}, final=False, output_key="p/out", errors_key="p/err")
    assert partial.completed == len(manifests[0].lines) and partial.failed == 0
    assert partial.missing == 60 - len(manifests[0].lines)
    assert store.get_bytes("p/err") == b"" and not store.exists(L.output)
    expired = assemble(store, JOB, committed, {}, unfinished_code="batch_expired")
    assert expired.completed + expired.failed == 60
    assert {e["error"]["code"] for e in read_lines(store, L.errors)} == {"batch_expired"}
    with pytest.raises(AssemblyError, match="neither committed nor dead"):
        assemble(store, JOB, committed, {})


def test_assembling_twice_is_byte_identical(job):
    store, manifests = job
    committed = {m.chunk_id: commit(store, m, bad={3}) for m in manifests[1:]}
    dead = {manifests[0].chunk_id: "preempted 3 times"}
    assemble(store, JOB, committed, dead)
    first = (store.get_bytes(L.output), store.get_bytes(L.errors))
    assemble(store, JOB, committed, dead, manifests=list(iter_manifests(store, JOB)))
    assert (store.get_bytes(L.output), store.get_bytes(L.errors)) == first


@pytest.mark.parametrize("transform, match", [
    (lambda ls: ls[:-1], "fewer lines"),
    (lambda ls: ls + [ls[-1]], "more lines"),
    (lambda ls: [ls[1], ls[0]] + ls[2:], "custom_id does not match"),
    (lambda ls: ["not json"] + ls[1:], "not a valid output record"),
])
def test_bad_chunk_output_raises_and_writes_nothing(job, transform, match):
    store, manifests = job
    committed = {m.chunk_id: commit(store, m) for m in manifests}
    commit(store, manifests[2], transform=transform)
    with pytest.raises(AssemblyError, match=match):
        assemble(store, JOB, committed, {})
    assert not store.exists(L.output) and not store.exists(L.errors)


def test_missing_committed_object_and_unknown_chunk(job):
    store, manifests = job
    committed = {m.chunk_id: 1 for m in manifests}
    with pytest.raises(AssemblyError, match="missing from the store"):
        assemble(store, JOB, committed, {})
    committed = {m.chunk_id: commit(store, m) for m in manifests}
    with pytest.raises(AssemblyError, match="missing from the job's manifests"):
        assemble(store, JOB, {**committed, "chunk-999999": 1}, {})


def test_random_layouts_merge_in_input_order_for_any_window():
    """Random chunkings (any interleave), outcomes and window sizes give the same, input-ordered files."""
    import random

    from orca.models import ChunkManifest

    rng = random.Random(11)
    for case in range(12):
        store = open_store("memory://")
        n, k = rng.randrange(1, 200), rng.randrange(1, 12)
        owner = [rng.randrange(k) for _ in range(n)]
        manifests, committed, dead, expected_ok, expected_err = [], {}, {}, {}, {}
        for c in range(k):
            lines = [i + 1 for i in range(n) if owner[i] == c]
            if not lines:
                continue
            cid = f"chunk-{c:06d}"
            manifests.append(ChunkManifest.model_construct(job_id=JOB, chunk_id=cid, lines=lines, est_tokens=1))
            store.put_bytes(L.chunk(cid), "".join(req(i - 1) + "\n" for i in lines).encode())
            fate = rng.choice(["ok", "ok", "dead"])
            if fate == "dead":
                dead[cid] = "gone"
                expected_err.update({i: None for i in lines})
                continue
            outs = []
            for i in lines:
                good = rng.random() < 0.8
                outs.append(out_line(f"r{i - 1}") if good else out_line(f"r{i - 1}", status=500))
                (expected_ok if good else expected_err)[i] = outs[-1].encode() + b"\n"
            data = "\n".join(outs) + ("\n" if rng.random() < 0.5 else "")  # the last newline is optional
            store.put_bytes(L.chunk_output(cid, 2), data.encode())
            committed[cid] = 2
        results = []
        for window in (1, 3, 64, 4096):
            r = assemble(store, JOB, committed, dead, manifests=manifests, window_lines=window)
            results.append((store.get_bytes(L.output), store.get_bytes(L.errors), r))
        assert all(x == results[0] for x in results), f"case {case}: window size changed the result"
        out, err, r = results[0]
        assert out == b"".join(expected_ok[i] for i in sorted(expected_ok))
        assert [json.loads(x)["custom_id"] for x in err.splitlines()] == [f"r{i - 1}" for i in sorted(expected_err)]
        assert (r.total, r.completed, r.failed) == (n, len(expected_ok), len(expected_err))


def test_two_chunks_claiming_one_input_line_is_an_error(job):
    store, manifests = job
    committed = {m.chunk_id: commit(store, m) for m in manifests}
    bad = [manifests[0], manifests[1].model_copy(update={"lines": sorted(set(manifests[1].lines) | {manifests[0].lines[-1]})})]
    with pytest.raises(AssemblyError, match="same input line"):
        assemble(store, JOB, committed, {}, manifests=bad + manifests[2:])
