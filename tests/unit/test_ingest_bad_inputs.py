"""Every file in tests/data/bad_inputs fails validation with the expected code, line and param."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orca.errors import InputValidationError
from orca.ingest import ingest, validate
from orca.storage import open_store
from orca.storage.layout import JobLayout

DATA = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"
EXPECTED = json.loads((DATA / "expected.json").read_text())


def test_corpus_and_expectations_match():
    assert sorted(EXPECTED) == sorted(p.name for p in DATA.glob("*.jsonl"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_input(name):
    code, line, *param = EXPECTED[name]
    result = validate(str(DATA / name))
    assert not result.ok
    first = result.errors[0]
    assert (first.code, first.line) == (code, line), result.errors
    if param:
        assert first.param == param[0]
    assert result.error_count >= 1 and result.n_requests == 0


@pytest.mark.parametrize("name", ["duplicate_id.jsonl", "latin1.jsonl", "empty.jsonl"])
def test_ingest_raises_and_records_errors(name):
    store = open_store("memory://")
    with pytest.raises(InputValidationError) as info:
        ingest(store, "job1", str(DATA / name))
    assert info.value.errors[0].code == EXPECTED[name][0]
    assert info.value.context["error_count"] >= 1
    layout = JobLayout("job1")
    saved = json.loads(store.get_bytes(layout.validation_errors))
    assert saved["errors"][0]["code"] == EXPECTED[name][0]
    assert store.get_bytes(layout.input) == (DATA / name).read_bytes()
    assert not store.exists(layout.manifests) and list(store.list(layout.root + "chunks/")) == []
