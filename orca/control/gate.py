"""``AuthGate``: the ASGI middleware that checks who is asking, and how much they send, before
any route reads the request body.

FastAPI parses a multipart upload before it runs a route's dependencies, so a token check in a
dependency comes after a 100 MB body has been read. The gate runs first: for every path except
the open ones (health, metrics, API docs) it resolves the bearer token (401 at once, body
unread), refuses a declared ``Content-Length`` over ``control.max_upload_mb`` (413), counts the
bytes of a body without one and answers 413 as soon as they pass the limit, and runs the
route's pre-upload checks (per-user quotas of job submission: 429 before the upload is read).
The ``Principal`` is left in ``request.state.principal`` for ``orca.control.auth``.

``token_of`` picks the token out of the request headers (default: ``Authorization: Bearer``); a front
end with its own credential (a session cookie mapped to a token) passes its own, and paths that must
answer anyone go in ``open_paths``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import anyio.to_thread

from orca.control.auth import principal_for_token, token_from_header
from orca.control.service import OrcaService
from orca.errors import AuthError, OrcaError, PayloadTooLargeError

#: Paths anyone may read: liveness, Prometheus, and the API description itself.
OPEN_PATHS = frozenset({"/healthz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ErrorResponder = Callable[[OrcaError], Callable[[Scope, Receive, Send], Awaitable[None]]]
TokenOf = Callable[[dict[str, str]], "str | None"]


def bearer_of(headers: dict[str, str]) -> str | None:
    """The bearer token of lower-cased request headers."""
    return token_from_header(headers.get("authorization"))


def _too_large(limit_mb: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"request body exceeds the upload limit of {limit_mb} MB "
                                "(the server's ORCA_CONTROL__MAX_UPLOAD_MB); split the batch into smaller files")


class AuthGate:
    """Authenticate, bound the body and run pre-upload checks before the wrapped app sees a request."""

    def __init__(self, app: Callable, service: OrcaService, respond: ErrorResponder,
                 prechecks: Mapping[tuple[str, str], Callable[[str], None]] | None = None,
                 open_paths: frozenset[str] = OPEN_PATHS, token_of: TokenOf = bearer_of) -> None:
        self.app = app
        self.service = service
        self.respond = respond
        self.prechecks = dict(prechecks or {})
        self.open_paths = open_paths
        self.token_of = token_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        limit_mb = self.service.settings.control.max_upload_mb
        limit = limit_mb * 1024 * 1024
        try:
            principal = await anyio.to_thread.run_sync(principal_for_token, self.service, self.token_of(headers))
            if principal is None:
                raise AuthError()
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(limit_mb)
            precheck = self.prechecks.get((scope["method"], scope["path"].rstrip("/") or "/"))
            if precheck is not None:
                await anyio.to_thread.run_sync(precheck, principal.name)
        except OrcaError as exc:
            await self.respond(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
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
