"""A fake cloud instance metadata server on loopback (real HTTP), for the preemption-notice watcher.

AWS IMDSv2: ``PUT /latest/api/token`` hands out a token; ``GET /latest/meta-data/spot/instance-action``
needs it (401 without, or once ``expire_tokens()`` was called) and answers 404 until ``aws_notice()``.
GCP: ``GET /computeMetadata/v1/instance/preempted`` needs ``Metadata-Flavor: Google`` and answers
``FALSE`` until ``gcp_preempt()``; its responses carry ``Metadata-Flavor: Google`` as GCP's do.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeMetadataServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.action: dict | None = None
        self.preempted = False
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, token header)
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeMetadataServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def aws_notice(self, seconds: float, action: str = "terminate") -> None:
        when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
        with self.lock:
            self.action = {"action": action, "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def gcp_preempt(self, value: bool = True) -> None:
        with self.lock:
            self.preempted = value

    def clear(self) -> None:
        with self.lock:
            self.action, self.preempted = None, False

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                fake.requests.append(("PUT", self.path, None))
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    token = f"token-{next(fake._ids)}"
                    with fake.lock:
                        fake.tokens.add(token)
                    return self._send(200, token)
                self._send(400, "bad request")

            def do_GET(self) -> None:
                token = self.headers.get("X-aws-ec2-metadata-token")
                fake.requests.append(("GET", self.path, token))
                with fake.lock:
                    if self.path == "/latest/meta-data/spot/instance-action":
                        if token not in fake.tokens:
                            return self._send(401, "unauthorized")
                        if fake.action is None:
                            return self._send(404, "not found")
                        return self._send(200, json.dumps(fake.action), {"Content-Type": "application/json"})
                    if self.path == "/computeMetadata/v1/instance/preempted":
                        if self.headers.get("Metadata-Flavor") != "Google":
                            return self._send(403, "missing Metadata-Flavor")
                        return self._send(200, "TRUE" if fake.preempted else "FALSE", {"Metadata-Flavor": "Google"})
                self._send(404, "not found")

        return Handler
