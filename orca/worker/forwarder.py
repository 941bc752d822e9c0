"""Send one batch request to the engine and turn the outcome into an output line.

Each request's ``body`` goes verbatim to its ``url`` on the engine; a ``/v1/responses`` request
to an engine that does not serve that endpoint goes through the chat completions adapter
(``orca.worker.responses_adapter``), and a request it cannot translate becomes an error line
(status 400, the field named) without reaching the engine. Concurrency
is bounded by one semaphore shared by every chunk of the worker, so chunk k+1's
requests take slots the moment chunk k's last requests are in flight.
Transient failures (connection errors, timeouts, 429, 5xx) are retried with
exponential backoff (honouring Retry-After); a retry while the engine restarts
does not use up an attempt. Other statuses are final and become error lines.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx

from orca.errors import EngineError
from orca.settings import EngineSettings, WorkerSettings
from orca.worker.engines.base import Engine
from orca.worker.meter import Meter
from orca.worker.output import RequestLine, error_line, output_id, success_line
from orca.worker.responses_adapter import CHAT, RESPONSES, Untranslatable, from_chat, to_chat


def _is_transient(status: int) -> bool:
    return status == 429 or status >= 500


class ClientPool:
    """Several small httpx clients; each request goes to the least-loaded one.

    httpcore's pool walks every connection on each event, which makes one
    64-connection client cost more CPU than the engine's work at high request rates.
    """

    def __init__(self, connections: int, per_client: int, timeout_s: float, headers: dict[str, str]) -> None:
        n = max(1, -(-connections // per_client))
        size = -(-connections // n)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self._clients = [httpx.AsyncClient(limits=limits, timeout=timeout_s, headers=headers) for _ in range(n)]
        self._load = [0] * n

    async def post(self, url: str, content: bytes) -> httpx.Response:
        i = min(range(len(self._clients)), key=self._load.__getitem__)
        self._load[i] += 1
        try:
            return await self._clients[i].post(url, content=content, headers={"content-type": "application/json"})
        finally:
            self._load[i] -= 1

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


@dataclass
class _Attempt:
    status: int | None = None
    body: object = None
    request_id: str | None = None
    error_code: str = ""
    error_message: str = ""
    retry_after: float | None = None


class Forwarder:
    def __init__(self, engine: Engine, job_id: str, concurrency: int, settings: WorkerSettings,
                 engine_settings: EngineSettings, meter: Meter) -> None:
        self.engine, self.job_id = engine, job_id
        self.settings, self.engine_settings, self.meter = settings, engine_settings, meter
        self.concurrency = concurrency
        self.slots = asyncio.Semaphore(concurrency)
        self.clients = ClientPool(concurrency, settings.connections_per_client, settings.request_timeout_s,
                                  engine.headers())

    async def aclose(self) -> None:
        await self.clients.aclose()

    async def submit(self, chunk_id: str, req: RequestLine) -> asyncio.Task:
        """Wait for a free slot, then start the request in it; returns the task of its output line.

        The chunk dispatcher calls this for each request in turn, so it never runs ahead
        of free engine capacity and the next chunk's requests queue behind this one's.
        """
        await self._wait_engine()
        await self.slots.acquire()
        started = [False]
        task = asyncio.create_task(self._forward(chunk_id, req, started))

        def give_back_unused_slot(_: asyncio.Task) -> None:
            if not started[0]:  # cancelled before its first step: the slot was never used
                self.slots.release()

        task.add_done_callback(give_back_unused_slot)
        return task

    async def _forward(self, chunk_id: str, req: RequestLine, started: list[bool]) -> dict:
        """The output line of one request (after retries); enters holding a slot.
        Raises EngineError if the engine is gone for good."""
        started[0] = True
        held = True
        line_id = output_id(self.job_id, chunk_id, req.index)
        adapt = req.url == RESPONSES and not self.engine.serves_responses
        try:
            body = to_chat(req.body) if adapt else req.body
        except Untranslatable as e:
            self.slots.release()
            error = {"message": e.message, "type": "invalid_request_error", "param": e.param, "code": e.code}
            return self._final(line_id, req, _Attempt(status=400, body={"error": error}, request_id=line_id,
                                                      error_code=e.code, error_message=e.message))
        url = self.engine.url_for(CHAT if adapt else req.url)
        content = json.dumps(body).encode()
        attempt_no = 0
        while True:
            if not held:
                await self._wait_engine()
                await self.slots.acquire()
            try:
                att = await self._attempt(url, content)
            finally:
                self.slots.release()
                held = False
            if att.status is not None and not _is_transient(att.status):
                if adapt and att.status == 200 and isinstance(att.body, dict):
                    att.body = from_chat(att.body, req.body, "resp_" + line_id.removeprefix("batch_req_"))
                return self._final(line_id, req, att)
            if att.status is None and self.engine.ready:
                # A connection dropped by a dying engine can arrive a moment before its process
                # is seen to exit; look again after one health poll before charging the attempt.
                await asyncio.sleep(self.engine_settings.health_poll_s)
            if not self.engine.ready:
                continue  # the engine is restarting: this failure does not count
            if attempt_no >= self.settings.request_retries:
                return self._final(line_id, req, att)
            delay = self.settings.retry_backoff_s * (2 ** attempt_no)
            if att.retry_after is not None:
                delay = max(delay, min(att.retry_after, self.settings.retry_after_max_s))
            attempt_no += 1
            await asyncio.sleep(delay)

    async def _wait_engine(self) -> None:
        while not self.engine.ready:
            if self.engine.failure:
                raise EngineError("engine is gone", reason=self.engine.failure)
            await asyncio.sleep(self.engine_settings.health_poll_s)

    async def _attempt(self, url: str, content: bytes) -> _Attempt:
        self.meter.request_started()
        answered = False
        try:
            resp = await self.clients.post(url, content)
            answered = True
        except httpx.TimeoutException as e:
            return _Attempt(error_code="timeout", error_message=f"engine did not answer in time: {e!r}")
        except httpx.TransportError as e:
            return _Attempt(error_code="engine_unreachable", error_message=f"engine connection failed: {e!r}")
        finally:
            self.meter.request_ended(answered)
        try:
            body = resp.json()
        except ValueError:
            body = {"error": {"message": resp.text[:2000], "type": "invalid_engine_response"}}
            if resp.status_code == 200:
                return _Attempt(status=502, body=body, error_code="invalid_engine_response",
                                error_message="engine answered 200 with a body that is not JSON")
        request_id = resp.headers.get("x-request-id") or (body.get("id") if isinstance(body, dict) else None)
        att = _Attempt(status=resp.status_code, body=body, request_id=request_id)
        if resp.status_code != 200:
            err = body.get("error") if isinstance(body, dict) else None
            err = err if isinstance(err, dict) else {"message": str(err or body)}
            att.error_code = str(err.get("code") or err.get("type") or f"http_{resp.status_code}")
            att.error_message = str(err.get("message") or f"engine answered {resp.status_code}")
            retry_after = resp.headers.get("retry-after")
            if retry_after:
                try:
                    att.retry_after = float(retry_after)
                except ValueError:
                    pass
        return att

    def _final(self, line_id: str, req: RequestLine, att: _Attempt) -> dict:
        if att.status == 200:
            usage = att.body.get("usage") if isinstance(att.body, dict) else None
            self.meter.request_finished(True, usage if isinstance(usage, dict) else None)
            return success_line(line_id, req.custom_id, 200, att.request_id or line_id, att.body)
        self.meter.request_finished(False, None)
        return error_line(line_id, req.custom_id, att.error_code, att.error_message,
                          att.status, att.request_id, att.body)
