"""The S3 backend against a real S3-protocol server (moto in server mode).

The whole ObjectStore contract (imported from the unit suite) runs on S3, plus multipart
uploads with a small threshold and 503 SlowDown answers injected by a loopback proxy
(``flaky_s3`` in conftest), which tenacity rides out.
"""

from __future__ import annotations

import pytest

from orca.errors import ConfigError, ObjectNotFoundError, StoreUnavailableError
from orca.storage import open_store
from orca.storage.s3 import S3Store
from tests.integration.conftest import fast_retry_settings, make_bucket
from tests.unit.test_storage_contract import (  # noqa: F401 - collected here against S3
    test_delete_prefix, test_failed_streaming_write_leaves_nothing, test_invalid_keys_are_rejected,
    test_list_is_sorted_and_prefix_filtered, test_missing_objects_raise_not_found, test_put_file_and_large_streams,
    test_put_get_roundtrip, test_streaming_write_is_invisible_until_done,
)

MB = 1024 * 1024


@pytest.fixture
def store(s3_url):
    return open_store(s3_url)


def test_url_roundtrip_and_prefix_isolation(moto_endpoint):
    bucket = make_bucket(moto_endpoint)
    a = open_store(f"s3://{bucket}/team-a?endpoint_url={moto_endpoint}&region=us-east-1")
    b = open_store(f"s3://{bucket}/team-b?endpoint_url={moto_endpoint}&region=us-east-1")
    a.put_bytes("jobs/x/input.jsonl", b"a")
    assert list(b.list("")) == [] and not b.exists("jobs/x/input.jsonl")
    assert open_store(a.url).get_bytes("jobs/x/input.jsonl") == b"a"
    whole = open_store(f"s3://{bucket}?endpoint_url={moto_endpoint}&region=us-east-1")
    assert list(whole.list("")) == ["team-a/jobs/x/input.jsonl"]
    with pytest.raises(ConfigError):
        open_store(f"s3://{bucket}/p?endpoint=x")


def test_multipart_upload_with_small_threshold(flaky_s3):
    bucket = make_bucket(flaky_s3.endpoint)
    store = S3Store(bucket, "mp", endpoint_url=flaky_s3.endpoint, region="us-east-1",
                    settings=fast_retry_settings(multipart_threshold_mb=5, multipart_part_mb=5))
    data = bytes(range(256)) * (12 * MB // 256 + 1000)  # ~12 MB: parts of 5 + 5 + ~2 MB
    with store.open_write("big.bin") as f:
        for i in range(0, len(data), 1_000_000):
            f.write(data[i: i + 1_000_000])
        assert not store.exists("big.bin")  # parts uploaded, object not yet visible
    assert store.size("big.bin") == len(data)
    with store.open_read("big.bin") as f:
        assert f.read() == data
    parts = [p for m, p, _ in flaky_s3.log if m == "PUT" and "partNumber=" in p]
    assert len(parts) == 3
    assert any(m == "POST" and "uploads" in p for m, p, _ in flaky_s3.log)  # create
    assert any(m == "POST" and "uploadId=" in p for m, p, _ in flaky_s3.log)  # complete


def test_failed_multipart_write_is_aborted(flaky_s3):
    bucket = make_bucket(flaky_s3.endpoint)
    store = S3Store(bucket, "", endpoint_url=flaky_s3.endpoint, region="us-east-1",
                    settings=fast_retry_settings(multipart_threshold_mb=5, multipart_part_mb=5))
    with pytest.raises(RuntimeError):
        with store.open_write("never.bin") as f:
            f.write(b"x" * (11 * MB))
            raise RuntimeError("producer died")
    assert not store.exists("never.bin")
    assert any(m == "DELETE" and "uploadId=" in p for m, p, _ in flaky_s3.log)
    assert store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_503_is_ridden_out_by_retries(flaky_s3):
    bucket = make_bucket(flaky_s3.endpoint)
    store = S3Store(bucket, "p", endpoint_url=flaky_s3.endpoint, region="us-east-1",
                    settings=fast_retry_settings(max_retries=4, multipart_threshold_mb=5, multipart_part_mb=5))
    flaky_s3.fail_next(3, method="PUT")
    store.put_bytes("a.txt", b"hello")
    assert [s for m, p, s in flaky_s3.log if m == "PUT" and p.endswith("a.txt")] == [503, 503, 503, 200]
    flaky_s3.fail_next(2, method="GET")
    assert store.get_bytes("a.txt") == b"hello"
    flaky_s3.fail_next(2, method="PUT", query="partNumber=2")  # a failed part is retried alone
    store.put_bytes("big.bin", b"y" * (12 * MB))
    assert store.size("big.bin") == 12 * MB
    flaky_s3.fail_next(1, method="HEAD")
    assert store.exists("big.bin")


def test_persistent_503_becomes_store_unavailable(flaky_s3):
    bucket = make_bucket(flaky_s3.endpoint)
    store = S3Store(bucket, "", endpoint_url=flaky_s3.endpoint, region="us-east-1", settings=fast_retry_settings(max_retries=2))
    flaky_s3.fail_next(100, method="PUT")
    with pytest.raises(StoreUnavailableError):
        store.put_bytes("a.txt", b"x")
    assert [s for m, p, s in flaky_s3.log if m == "PUT" and p.endswith("a.txt")] == [503, 503, 503], flaky_s3.log
    flaky_s3.fail_next(0)
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("a.txt")


def test_unreachable_endpoint_is_unavailable():
    store = S3Store("b", "", endpoint_url="http://127.0.0.1:9", region="us-east-1",
                    settings=fast_retry_settings(max_retries=1, connect_timeout_s=0.5))
    with pytest.raises(StoreUnavailableError):
        store.put_bytes("k", b"x")
