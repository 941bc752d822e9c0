"""Bearer-token auth and the request dependencies every router shares.

Routers (native ``/api`` and OpenAI ``/v1``) declare::

    user: str = Depends(require_user)
    admin: str = Depends(require_admin)     # admin-only routes
    service: OrcaService = Depends(get_service)

The token is checked once per request, before the body is read, by ``AuthGate``
(``orca.control.gate``), which leaves the ``Principal`` in ``request.state.principal``;
``principal_for_token`` is the one token -> user (and role) lookup, for any other front end.
A missing, malformed or unknown token is ``AuthError`` (401) with the same body in every
case, so a caller learns nothing about which tokens or users exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request

from orca.control.service import OrcaService
from orca.errors import AuthError, PermissionDeniedError


@dataclass(frozen=True)
class Principal:
    """Who a request acts as."""

    name: str
    admin: bool = False


def get_service(request: Request) -> OrcaService:
    """The app's service layer (set by ``create_app``)."""
    return request.app.state.service


def token_from_header(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def bearer_token(request: Request) -> str | None:
    return token_from_header(request.headers.get("authorization"))


def principal_for_token(service: OrcaService, token: str | None) -> Principal | None:
    """The user (and role) a bearer token belongs to, or None: read from Redis on every call, so a
    revoked or rotated token stops working at once."""
    if not token:
        return None
    found = service.registry.users.principal(token)
    return Principal(*found) if found else None


def require_principal(request: Request, service: OrcaService = Depends(get_service)) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:  # an app mounted without the gate
        principal = principal_for_token(service, bearer_token(request))
    if principal is None:
        raise AuthError()
    return principal


def require_user(principal: Principal = Depends(require_principal)) -> str:
    """The user the request's bearer token belongs to; AuthError (401) otherwise."""
    return principal.name


def require_admin(principal: Principal = Depends(require_principal)) -> str:
    """The admin the request's token belongs to; PermissionDeniedError (403) for a plain user."""
    if not principal.admin:
        raise PermissionDeniedError("this needs an admin token")
    return principal.name
