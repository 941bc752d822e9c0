"""``AuthGate``: the ASGI middleware that checks who is asking, and how much they send, before
any route reads the request body.

FastAPI parses a multipart upload before it runs a route's dependencies, so a credential check in
a dependency comes after a 100 MB body has been read. The gate runs first. For every request it
refuses a declared ``Content-Length`` over ``control.max_upload_mb`` (413) and counts the bytes of
a body without one, answering 413 as soon as they pass the limit. For paths under a guarded prefix
it also resolves the caller with that prefix's credential (``credentials``: the bearer token for
``/api/`` and ``/v1/``, the dashboard's session cookie for ``/dashboard/api/``) and answers 401 at
once, body unread, when there is none; then it runs the route's pre-upload checks (per-user
quotas of job submission: 429 before the upload is read). The ``Principal`` is left in
``request.state.principal`` for ``orca.control.auth``. Other paths (health, metrics, the API
docs, the dashboard's pages, which redirect to their sign-in) pass with the body limit only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import anyio.to_thread

from orca.control.auth import Principal, principal_for_token, token_from_header
from orca.control.service import OrcaService
from orca.errors import AuthError, OrcaError, PayloadTooLargeError

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ErrorResponder = Callable[[OrcaError], Callable[[Scope, Receive, Send], Awaitable[None]]]
#: Resolves the caller from the lower-cased request headers (blocking: it runs in a worker thread).
Credential = Callable[[dict[str, str]], "Principal | None"]


def bearer(service: OrcaService) -> Credential:
    """The ``Authorization: Bearer <token>`` credential of the API routes."""
    return lambda headers: principal_for_token(service, token_from_header(headers.get("authorization")))


def _too_large(limit_mb: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"request body exceeds the upload limit of {limit_mb} MB "
                                "(the server's ORCA_CONTROL__MAX_UPLOAD_MB); split the batch into smaller files")


class AuthGate:
    """Bound the body, authenticate guarded paths and run pre-upload checks before the wrapped app sees a request."""

    def __init__(self, app: Callable, service: OrcaService, respond: ErrorResponder,
                 credentials: Mapping[str, Credential],
                 prechecks: Mapping[tuple[str, str], Callable[[str], None]] | None = None) -> None:
        self.app = app
        self.service = service
        self.respond = respond
        self.credentials = sorted(credentials.items(), key=lambda kv: -len(kv[0]))  # longest prefix first
        self.prechecks = dict(prechecks or {})

    def _credential(self, path: str) -> Credential | None:
        for prefix, credential in self.credentials:
            if path.startswith(prefix) or path == prefix.rstrip("/"):
                return credential
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        limit_mb = self.service.settings.control.max_upload_mb
        limit = limit_mb * 1024 * 1024
        credential = self._credential(scope["path"])
        try:
            if credential is not None:
                principal = await anyio.to_thread.run_sync(credential, headers)
                if principal is None:
                    raise AuthError()
                scope.setdefault("state", {})["principal"] = principal
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(limit_mb)
            precheck = self.prechecks.get((scope["method"], scope["path"].rstrip("/") or "/"))
            if precheck is not None and credential is not None:
                await anyio.to_thread.run_sync(precheck, principal.name)
        except OrcaError as exc:
            await self.respond(exc)(scope, receive, send)
            return
        await self._bounded(scope, receive, send, limit, limit_mb)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, limit: int, limit_mb: int) -> None:
        """Run the app with a receive that stops at ``limit`` bytes and answers 413 itself."""
        seen = 0
        started = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if not started and not answered:
                        answered = True
                        await self.respond(_too_large(limit_mb))(scope, receive, send)
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is dropped
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
