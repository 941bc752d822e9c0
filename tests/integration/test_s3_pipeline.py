"""Ingest and assembly with the job's objects on S3 (moto server): the same results as on the local store."""

from __future__ import annotations

import json

from orca.assembler import assemble
from orca.ingest import ingest, iter_manifests
from orca.settings import IngestSettings
from orca.storage import open_store
from orca.storage.layout import JobLayout


def test_ingest_then_assemble_on_s3(s3_url, tmp_path):
    store = open_store(s3_url)
    layout = JobLayout("job-s3")
    lines = [json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/completions",
                         "body": {"model": "m", "prompt": f"prompt {i % 4} " * 50, "max_tokens": 8}}) for i in range(200)]
    store.put_bytes(layout.input, ("\n".join(lines) + "\n").encode())
    result = ingest(store, "job-s3", settings=IngestSettings(target_chunk_s=0.2, min_chunk_requests=1))
    assert result.ok and result.n_requests == 200 and len(result.manifests) > 3
    manifests = list(iter_manifests(store, "job-s3"))
    assert [m.chunk_id for m in manifests] == result.chunk_ids
    committed = {}
    for m in manifests[1:]:
        data = store.get_bytes(layout.chunk(m.chunk_id)).decode().splitlines()
        assert data == [lines[n - 1] for n in m.lines]
        out = [json.dumps({"id": f"x{n}", "custom_id": f"r{n - 1}", "response": {"status_code": 200, "request_id": "q", "body": {}},
                           "error": None}) for n in m.lines]
        store.put_bytes(layout.chunk_output(m.chunk_id, 2), ("\n".join(out) + "\n").encode())
        committed[m.chunk_id] = 2
    res = assemble(store, "job-s3", committed, {manifests[0].chunk_id: "gone"})
    assert (res.total, res.completed, res.failed) == (200, 200 - len(manifests[0].lines), len(manifests[0].lines))
    out_ids = [json.loads(x)["custom_id"] for x in store.get_bytes(layout.output).splitlines()]
    assert out_ids == [f"r{n - 1}" for n in range(1, 201) if n not in set(manifests[0].lines)]
