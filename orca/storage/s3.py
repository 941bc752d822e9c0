"""S3 object store (``s3://bucket/prefix?endpoint_url=...&region=...``): AWS or any S3-compatible server.

The only module that imports boto3/botocore. Every call is retried with tenacity on
throttling, 5xx and connection errors (botocore's own retries are off, so the policy and
its limits live in ``StoreSettings``); a retried read resumes at the byte it reached. Large
writes stream as multipart uploads (parts of ``multipart_part_mb``), which S3 publishes only
when completed, so writes stay atomic; a failed write aborts its upload. Credentials come
from boto3's usual chain (environment, profile, instance role).
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError, HTTPClientError
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from orca.errors import ConfigError, ObjectNotFoundError, StoreError, StoreUnavailableError
from orca.settings import StoreSettings
from orca.storage.base import ObjectStore
from orca.storage.keys import check_key

T = TypeVar("T")
MB = 1024 * 1024
_RETRY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                "InternalError", "ServiceUnavailable", "503", "500", "502", "504"}
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


_session_lock = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    """One boto3 session per process: it caches the service model, so each further client is cheap."""
    return boto3.session.Session()


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _RETRY_CODES or status >= 500 or status == 429
    return isinstance(exc, (BotoConnectionError, HTTPClientError, ConnectionError, TimeoutError))


def _not_found(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code", "") in _NOT_FOUND


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, region: str | None = None,
                 settings: StoreSettings | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.settings = settings or StoreSettings()
        query = {k: v for k, v in (("endpoint_url", endpoint_url), ("region", region)) if v}
        self.url = f"s3://{bucket}/{self.prefix}" + (f"?{urlencode(query)}" if query else "")
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=self.settings.connect_timeout_s,
                        read_timeout=self.settings.read_timeout_s, s3={"addressing_style": "path"} if endpoint_url else None)
        try:
            with _session_lock:
                self.client = _session().client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        except (BotoCoreError, ValueError) as exc:
            raise ConfigError("cannot create the S3 client", url=self.url, detail=str(exc)) from None
        self._threshold = self.settings.multipart_threshold_mb * MB
        self._part = max(5 * MB, self.settings.multipart_part_mb * MB)

    @classmethod
    def from_url(cls, url: str, settings: StoreSettings | None = None) -> "S3Store":
        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigError("s3 store URLs need a bucket: s3://bucket/prefix", url=url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"endpoint_url", "region"}
        if unknown:
            raise ConfigError("unknown s3 store URL parameters", url=url, parameters=sorted(unknown))
        return cls(parts.netloc, parts.path, query.get("endpoint_url"), query.get("region"), settings)

    # -- plumbing -------------------------------------------------------------
    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def call(self, op: str, fn: Callable[..., T], key: str | None = None, **kwargs: Any) -> T:
        """Run one S3 call with retries on transient errors; translate errors into orca's."""
        s = self.settings
        retrying = Retrying(retry=retry_if_exception(_transient), stop=stop_after_attempt(s.max_retries + 1),
                            wait=wait_exponential(multiplier=s.retry_backoff_s, max=s.retry_max_wait_s), reraise=False)
        try:
            return retrying(fn, **kwargs)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise StoreUnavailableError(f"S3 {op} kept failing after {s.max_retries} retries", key=key, detail=str(last)) from None
        except ClientError as exc:
            if _not_found(exc):
                raise ObjectNotFoundError(key=key) from None
            raise StoreError(f"S3 {op} failed", key=key, detail=str(exc)) from None
        except BotoCoreError as exc:
            raise StoreError(f"S3 {op} failed", key=key, detail=str(exc)) from None

    # -- reads ----------------------------------------------------------------
    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        raw = _S3Reader(self, key)
        raw.open_at(0)
        with io.BufferedReader(raw, buffer_size=self.settings.read_buffer_kb * 1024) as f:
            yield f  # type: ignore[misc]

    def get_bytes(self, key: str) -> bytes:
        def get() -> bytes:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

        return self.call("get", get, key)

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
            return True
        except ObjectNotFoundError:
            return False

    def size(self, key: str) -> int:
        head = self.call("head", self.client.head_object, key, Bucket=self.bucket, Key=self._key(key))
        return int(head["ContentLength"])

    def list(self, prefix: str) -> Iterator[str]:
        full = self.prefix + prefix
        keys: list[str] = []
        token: str | None = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": full, **({"ContinuationToken": token} if token else {})}
            page = self.call("list", self.client.list_objects_v2, prefix, **kwargs)
            keys.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", []))
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]
        return iter(sorted(keys))

    # -- writes ---------------------------------------------------------------
    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        writer = _S3Writer(self, key)
        try:
            yield writer  # type: ignore[misc]
        except BaseException:
            writer.abort()
            raise
        writer.finish()

    def put_bytes(self, key: str, data: bytes) -> None:
        if len(data) <= self._threshold:
            self.call("put", self.client.put_object, key, Bucket=self.bucket, Key=self._key(key), Body=data)
            return
        with self.open_write(key) as f:
            f.write(data)

    def put_file(self, key: str, path: str) -> None:
        with open(path, "rb") as src, self.open_write(key) as dst:
            while block := src.read(self._part):
                dst.write(block)

    def delete(self, key: str) -> None:
        self.call("delete", self.client.delete_object, key, Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> int:
        keys = list(self.list(prefix))
        for i in range(0, len(keys), 1000):  # S3's batch delete limit
            batch = [{"Key": self.prefix + k} for k in keys[i: i + 1000]]
            self.call("delete", self.client.delete_objects, prefix, Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)


class _S3Reader(io.RawIOBase):
    """A GET body as a raw stream; a read that fails mid-way reopens the object at the byte reached."""

    def __init__(self, store: S3Store, key: str) -> None:
        self.store, self.key, self.pos, self.body = store, key, 0, None

    def readable(self) -> bool:
        return True

    def open_at(self, pos: int) -> None:
        s = self.store
        s.call("get", self._open, self.key, pos=pos)

    def _open(self, pos: int) -> None:
        s = self.store
        rng = {"Range": f"bytes={pos}-"} if pos else {}
        self.body = s.client.get_object(Bucket=s.bucket, Key=s._key(self.key), **rng)["Body"]

    def readinto(self, buf: Any) -> int:
        def attempt() -> bytes:
            if self.body is None:  # the previous attempt broke the stream: resume at the byte reached
                self._open(self.pos)
            try:
                return self.body.read(len(buf))
            except Exception:
                self.body = None
                raise

        data = self.store.call("read", attempt, self.key)
        n = len(data)
        buf[:n] = data
        self.pos += n
        return n

    def close(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None
        super().close()


class _S3Writer(io.RawIOBase):
    """Buffers up to the multipart threshold; beyond it, streams parts of a multipart upload."""

    def __init__(self, store: S3Store, key: str) -> None:
        self.store, self.key = store, key
        self.buf = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.buf += data
        s = self.store
        if self.upload_id is None and len(self.buf) > s._threshold:
            res = s.call("create multipart upload", s.client.create_multipart_upload, self.key,
                         Bucket=s.bucket, Key=s._key(self.key))
            self.upload_id = res["UploadId"]
        if self.upload_id is not None:
            while len(self.buf) >= s._part:
                self._upload_part(bytes(self.buf[: s._part]))
                del self.buf[: s._part]
        return len(data)

    def _upload_part(self, data: bytes) -> None:
        s = self.store
        number = len(self.parts) + 1
        res = s.call("upload part", s.client.upload_part, self.key, Bucket=s.bucket, Key=s._key(self.key),
                     UploadId=self.upload_id, PartNumber=number, Body=data)
        self.parts.append({"PartNumber": number, "ETag": res["ETag"]})

    def finish(self) -> None:
        s = self.store
        if self.upload_id is None:
            s.call("put", s.client.put_object, self.key, Bucket=s.bucket, Key=s._key(self.key), Body=bytes(self.buf))
        else:
            if self.buf:
                self._upload_part(bytes(self.buf))
            s.call("complete multipart upload", s.client.complete_multipart_upload, self.key, Bucket=s.bucket,
                   Key=s._key(self.key), UploadId=self.upload_id, MultipartUpload={"Parts": self.parts})
        self.buf = bytearray()

    def abort(self) -> None:
        s = self.store
        if self.upload_id is not None:
            try:
                s.call("abort multipart upload", s.client.abort_multipart_upload, self.key, Bucket=s.bucket,
                       Key=s._key(self.key), UploadId=self.upload_id)
            except StoreError:
                pass  # the bucket's lifecycle rule for incomplete uploads cleans up what an abort could not
        self.buf = bytearray()
