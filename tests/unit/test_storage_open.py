"""open_store URL handling and backend specifics of the local and memory stores."""

from __future__ import annotations

import os

import pytest

from orca.errors import ConfigError, StoreError
from orca.storage import open_store
from orca.storage.local import LocalStore


def test_memory_urls_share_by_name_and_anonymous_ones_are_fresh():
    a = open_store("memory://shared-test")
    a.put_bytes("k", b"v")
    assert open_store("memory://shared-test").get_bytes("k") == b"v"
    fresh1, fresh2 = open_store("memory://"), open_store("memory://")
    assert fresh1 is not fresh2 and not fresh1.exists("k")
    assert open_store(fresh1.url) is fresh1


def test_file_url_roundtrip(tmp_path):
    store = open_store(tmp_path.as_uri())
    assert isinstance(store, LocalStore)
    store.put_bytes("jobs/j/input.jsonl", b"x")
    assert (tmp_path / "jobs/j/input.jsonl").read_bytes() == b"x"
    assert open_store(store.url).get_bytes("jobs/j/input.jsonl") == b"x"
    assert store.local_path("jobs/j/input.jsonl") == str(tmp_path / "jobs/j/input.jsonl")
    assert store.local_path("jobs/j/missing") is None


@pytest.mark.parametrize("url", ["ftp://x/y", "file://host/dir", "nothing"])
def test_bad_urls(url):
    with pytest.raises(ConfigError):
        open_store(url)


def test_local_store_hides_temp_files_and_prunes_dirs(tmp_path):
    store = open_store(tmp_path.as_uri())
    with pytest.raises(StoreError):
        store.put_bytes(".tmp/x", b"x")
    with store.open_write("jobs/j/a") as f:
        f.write(b"x")
        assert len(os.listdir(tmp_path / ".tmp")) == 1
        assert list(store.list("")) == []
    assert os.listdir(tmp_path / ".tmp") == []
    store.delete("jobs/j/a")
    assert not (tmp_path / "jobs").exists()
