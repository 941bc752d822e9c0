"""S3 fixtures: a real S3-protocol server (moto in server mode) on loopback, and a fault-injecting proxy.

``moto_endpoint``: one ThreadedMotoServer on 127.0.0.1 (random port) per session, with fake
credentials in the environment. ``s3_url``: a fresh bucket per test, as an orca store URL.
``flaky_s3``: a tiny loopback HTTP proxy in front of moto that answers chosen requests with
an S3 ``503 SlowDown`` (real HTTP, so the client's whole retry path runs) and logs every
request it forwards.
"""

from __future__ import annotations

import http.client
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from orca.settings import StoreSettings
from orca.storage.s3 import S3Store

_buckets = itertools.count(1)
FAKE_AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in FAKE_AWS_ENV}
    os.environ.update(FAKE_AWS_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def make_bucket(endpoint: str) -> str:
    """Create a new bucket on the server; returns its name."""
    name = f"orca-test-{os.getpid()}-{next(_buckets)}"
    S3Store(name, endpoint_url=endpoint, region="us-east-1").client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_url(moto_endpoint: str) -> str:
    """Store URL of a fresh bucket (with a key prefix) on the moto server."""
    return f"s3://{make_bucket(moto_endpoint)}/orca?endpoint_url={moto_endpoint}&region=us-east-1"


@dataclass
class FlakyProxy:
    """Forwards to moto; the next ``fail`` requests matching ``fail_method``/``fail_query`` get a 503."""

    upstream: tuple[str, int]
    endpoint: str = ""
    log: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status sent)
    fail: int = 0
    fail_method: str | None = None
    fail_query: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, n: int, method: str | None = None, query: str | None = None) -> None:
        with self.lock:
            self.fail, self.fail_method, self.fail_query = n, method, query

    def should_fail(self, method: str, path: str) -> bool:
        with self.lock:
            if self.fail > 0 and (self.fail_method in (None, method)) and (self.fail_query is None or self.fail_query in path):
                self.fail -= 1
                return True
            return False


def _handler(proxy: FlakyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            assert "chunked" not in (self.headers.get("Transfer-Encoding") or ""), "proxy expects Content-Length bodies"
            body = self.rfile.read(length) if length else b""
            if proxy.should_fail(self.command, self.path):
                payload = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                proxy.log.append((self.command, self.path, 503))  # logged before the client can see the answer
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                return
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            proxy.log.append((self.command, self.path, resp.status))
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Handler


@pytest.fixture
def flaky_s3(moto_endpoint: str) -> Iterator[FlakyProxy]:
    host, port = moto_endpoint.removeprefix("http://").split(":")
    proxy = FlakyProxy(upstream=(host, int(port)))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield proxy
    server.shutdown()
    server.server_close()
    thread.join()


def fast_retry_settings(**kw) -> StoreSettings:
    """Store settings with millisecond backoffs so retry tests run fast."""
    return StoreSettings(retry_backoff_s=0.01, retry_max_wait_s=0.05, **kw)
