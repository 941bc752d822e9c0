"""The ObjectStore contract, run against the local and in-memory backends.

``tests/integration/test_s3_contract.py`` imports these test functions and runs them
against the S3 backend on a moto server, so all backends answer the same questions.
"""

from __future__ import annotations

import pytest

from orca.errors import ObjectNotFoundError, StoreError
from orca.storage import open_store


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    if request.param == "local":
        return open_store((tmp_path / "store").as_uri())
    return open_store("memory://")


def test_put_get_roundtrip(store):
    store.put_bytes("jobs/a/input.jsonl", b"hello\n")
    assert store.get_bytes("jobs/a/input.jsonl") == b"hello\n"
    assert store.size("jobs/a/input.jsonl") == 6
    assert store.exists("jobs/a/input.jsonl")
    store.put_bytes("jobs/a/input.jsonl", b"replaced")
    assert store.get_bytes("jobs/a/input.jsonl") == b"replaced"


def test_missing_objects_raise_not_found(store):
    assert not store.exists("nope/x")
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("nope/x")
    with pytest.raises(ObjectNotFoundError):
        store.size("nope/x")
    with pytest.raises(ObjectNotFoundError):
        with store.open_read("nope/x"):
            pass
    store.delete("nope/x")  # deleting a missing key is fine


def test_streaming_write_is_invisible_until_done(store):
    with store.open_write("jobs/a/out.jsonl") as f:
        f.write(b"part one\n")
        assert not store.exists("jobs/a/out.jsonl")
        f.write(b"part two\n")
    with store.open_read("jobs/a/out.jsonl") as f:
        assert f.read() == b"part one\npart two\n"


def test_failed_streaming_write_leaves_nothing(store):
    store.put_bytes("jobs/a/out.jsonl", b"old")
    with pytest.raises(RuntimeError):
        with store.open_write("jobs/a/out.jsonl") as f:
            f.write(b"new but broken")
            raise RuntimeError("boom")
    assert store.get_bytes("jobs/a/out.jsonl") == b"old"
    with pytest.raises(RuntimeError):
        with store.open_write("jobs/a/never.jsonl") as f:
            f.write(b"x")
            raise RuntimeError("boom")
    assert not store.exists("jobs/a/never.jsonl")
    assert list(store.list("")) == ["jobs/a/out.jsonl"]


def test_list_is_sorted_and_prefix_filtered(store):
    for key in ["jobs/b/x", "jobs/a/outputs/c2/gen-000001.jsonl", "jobs/a/outputs/c1/gen-000002.jsonl",
                "jobs/a/outputs/c1/gen-000001.jsonl", "jobs/a/input.jsonl", "jobs/ab/y", "files/f.jsonl"]:
        store.put_bytes(key, b"1")
    assert list(store.list("jobs/a/outputs/c1/")) == [
        "jobs/a/outputs/c1/gen-000001.jsonl", "jobs/a/outputs/c1/gen-000002.jsonl"]
    assert list(store.list("jobs/a/")) == [
        "jobs/a/input.jsonl", "jobs/a/outputs/c1/gen-000001.jsonl", "jobs/a/outputs/c1/gen-000002.jsonl",
        "jobs/a/outputs/c2/gen-000001.jsonl"]
    assert list(store.list("jobs/a")) == list(store.list("jobs/a/")) + ["jobs/ab/y"]
    assert list(store.list("jobs/a/in")) == ["jobs/a/input.jsonl"]
    assert list(store.list("missing/")) == []
    assert len(list(store.list(""))) == 7


def test_delete_prefix(store):
    for i in range(5):
        store.put_bytes(f"jobs/a/chunks/c{i}.jsonl", b"x")
    store.put_bytes("jobs/b/input.jsonl", b"y")
    assert store.delete_prefix("jobs/a/") == 5
    assert list(store.list("jobs/")) == ["jobs/b/input.jsonl"]


def test_put_file_and_large_streams(store, tmp_path):
    src = tmp_path / "big.bin"
    data = bytes(range(256)) * 40_000  # ~10 MB
    src.write_bytes(data)
    store.put_file("files/big.bin", str(src))
    assert store.size("files/big.bin") == len(data)
    with store.open_read("files/big.bin") as f:
        chunks = []
        while block := f.read(1 << 20):
            chunks.append(block)
    assert b"".join(chunks) == data


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "dir/", "./a"])
def test_invalid_keys_are_rejected(store, key):
    with pytest.raises(StoreError):
        store.put_bytes(key, b"x")
