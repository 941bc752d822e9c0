"""A FAKE OpenAI-compatible inference server, for tests and benchmarks only.

It generates no text: every answer is a fixed OpenAI-shaped response that echoes
the request body it received (``fake_request``), so tests can check that a
request's endpoint and every sampling parameter reached the engine verbatim.
It ships with the package because the worker's ``fake`` engine kind starts it
(benchmarks need an engine whose speed they control).

Capacity model: ``slots`` requests are served at once (a semaphore), each takes
``latency_s``; further requests wait, like a saturated GPU engine's queue.

Failure injection, read from the request body (which the worker forwards as is):

* ``"fake_fail": {"status": 503, "times": 2}`` - answer ``status`` the first
  ``times`` times this exact body arrives, then succeed (``times`` absent: always).
* ``"fake_delay_s": 1.5`` - this request's own latency.
* ``"fake_hang": true`` - never answer (a hung engine).

A request whose client hangs up before its answer is aborted, as vLLM's server aborts one whose client
disconnected: it is never answered nor logged "done", and its slot is free at once.

``ORCA_FAKE_ANSWER_LOG=DIR`` (the chaos bench): the server appends one JSON line per request to
``DIR/<parent pid>-<port>.jsonl`` when it starts (``{"ev": "start", "user", "t"}``) and when it
answers (``{"ev": "done", "user", "id", "t"}``; ``id`` is the response id, unique per server, and
``user`` the request body's ``user`` field), written through at once so a kill -9 loses nothing.

``GET /fake/stats`` returns counters (requests, in_flight, max_in_flight, by_path); in-process,
``keep_log=True`` also records each served request's start and finish times and body.
Run it as ``python -m orca.worker.engines.fake_server --port N --slots 64 --latency-s 0.02``
or in-process with :class:`FakeOpenAIServer`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class FakeStats:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    by_path: Counter = field(default_factory=Counter)
    failures_served: Counter = field(default_factory=Counter)
    log: list = field(default_factory=list)  # (path, started, finished, body) per served request (monotonic s)


class FakeOpenAIServer:
    """The fake server. ``start()`` runs it on a background thread and returns its base URL."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, slots: int = 64, latency_s: float = 0.0,
                 models: tuple[str, ...] = (), keep_log: bool = False) -> None:
        self.host, self.port = host, port
        self.keep_log = keep_log
        self.slots, self.latency_s = slots, latency_s
        self.models = models
        self.stats = FakeStats()
        self._fail_seen: Counter = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._sem: asyncio.Semaphore | None = None
        self._answer_log = None  # file object, see ORCA_FAKE_ANSWER_LOG
        self._seq = 0

    def _log_answer(self, ev: str, body: dict, **extra) -> None:
        if self._answer_log is not None:
            self._answer_log.write(json.dumps({"ev": ev, "user": body.get("user"), "t": time.time(), **extra}) + "\n")
            self._answer_log.flush()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle ------------------------------------------------------------
    async def serve(self) -> None:
        """Bind and serve until cancelled (used by the module entry point)."""
        await self._bind()
        async with self._server:  # type: ignore[union-attr]
            await self._server.serve_forever()  # type: ignore[union-attr]

    async def _bind(self) -> None:
        self._sem = asyncio.Semaphore(self.slots)
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        log_dir = os.environ.get("ORCA_FAKE_ANSWER_LOG")
        if log_dir:
            self._answer_log = open(os.path.join(log_dir, f"{os.getppid()}-{self.port}.jsonl"), "a", buffering=1)

    def start(self) -> str:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._bind())
            ready.set()
            self._loop.run_forever()
            self._server.close()  # type: ignore[union-attr]
            pending = asyncio.all_tasks(self._loop)
            for task in pending:  # hung and keep-alive connections
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> "FakeOpenAIServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP -----------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                answer = await self._answer_unless_hung_up(reader, self._route(method, path.split("?", 1)[0], body))
                if answer is None:
                    break
                status, payload = answer
                data = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
                    f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
                    f"x-request-id: fake-{self.stats.requests}\r\n\r\n".encode() + data
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _answer_unless_hung_up(reader: asyncio.StreamReader, routed) -> tuple[int, dict] | None:
        """The request's answer, or None when its client hangs up first: the request is then aborted (never
        answered, never logged "done"), as vLLM's server aborts a request whose client disconnected. Clients
        of this server never pipeline, so the only thing the connection can carry meanwhile is its end."""
        route = asyncio.ensure_future(routed)
        hangup = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({route, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (route, hangup):
                if not task.done():
                    task.cancel()
            await asyncio.gather(route, hangup, return_exceptions=True)
        if not hangup.cancelled():  # the connection ended (or carried something else) before the answer
            return None
        return route.result()

    async def _route(self, method: str, path: str, raw: bytes) -> tuple[int, dict]:
        if method == "GET" and path == "/health":
            return 200, {"status": "ok"}
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        if method == "GET" and path == "/fake/stats":
            s = self.stats
            return 200, {"requests": s.requests, "in_flight": s.in_flight, "max_in_flight": s.max_in_flight,
                         "by_path": dict(s.by_path), "failures_served": sum(s.failures_served.values())}
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            return 404, {"error": {"message": f"no route {method} {path}", "type": "invalid_request_error", "code": "not_found"}}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"error": {"message": "body is not JSON", "type": "invalid_request_error", "code": "bad_json"}}
        self.stats.requests += 1
        self.stats.by_path[path] += 1
        if self.models and body.get("model") not in self.models:
            return 404, {"error": {"message": f"model {body.get('model')!r} does not exist",
                                   "type": "invalid_request_error", "code": "model_not_found"}}
        fail = body.get("fake_fail")
        if fail:
            key = hashlib.sha256(raw).hexdigest()
            self._fail_seen[key] += 1
            if "times" not in fail or self._fail_seen[key] <= fail["times"]:
                self.stats.failures_served[key] += 1
                return int(fail["status"]), {"error": {"message": "injected failure", "type": "fake", "code": "injected"}}
        assert self._sem is not None
        self._seq += 1
        seq = self._seq
        self._log_answer("start", body)
        async with self._sem:
            started = time.monotonic()
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            try:
                if body.get("fake_hang"):
                    await asyncio.Event().wait()
                delay = float(body.get("fake_delay_s", self.latency_s))
                if delay > 0:
                    await asyncio.sleep(delay)
            finally:
                self.stats.in_flight -= 1
        if self.keep_log:
            self.stats.log.append((path, started, time.monotonic(), body))
        response = _response(path, body, self.stats.requests)
        if self._answer_log is not None:
            response["id"] = f"{response.get('id', 'embd-fake')}-{self.port}-{seq}"
            self._log_answer("done", body, id=response["id"])
        return 200, response


def _response(path: str, body: dict, n: int) -> dict:
    created = int(time.time())
    model = body.get("model", "fake")
    if path == "/v1/embeddings":
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        return {"object": "list", "model": model, "fake_request": body,
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(items))],
                "usage": {"prompt_tokens": len(items), "total_tokens": len(items)}}
    completion = int(body.get("max_tokens") or 16)
    usage = {"prompt_tokens": 5, "completion_tokens": completion, "total_tokens": 5 + completion}
    if path == "/v1/chat/completions":
        return {"id": f"chatcmpl-fake-{n}", "object": "chat.completion", "created": created, "model": model,
                "fake_request": body, "usage": usage,
                "choices": [{"index": 0, "finish_reason": "length",
                             "message": {"role": "assistant", "content": "fake"}}]}
    return {"id": f"cmpl-fake-{n}", "object": "text_completion", "created": created, "model": model,
            "fake_request": body, "usage": usage,
            "choices": [{"index": 0, "text": "fake", "finish_reason": "length", "logprobs": None}]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--model", action="append", default=[], help="served model name (repeatable; none: any)")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(args.host, args.port, args.slots, args.latency_s, tuple(args.model))
    try:
        asyncio.run(server.serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
