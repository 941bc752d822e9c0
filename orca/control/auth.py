"""Bearer-token auth and the request dependencies every router shares.

Routers (native ``/api`` and OpenAI ``/v1``) declare::

    user: str = Depends(require_user)
    service: OrcaService = Depends(get_service)

A missing, malformed or unknown token is ``AuthError`` (401) with the same body in
every case, so a caller learns nothing about which tokens or users exist.
"""

from __future__ import annotations

from fastapi import Depends, Request

from orca.control.service import OrcaService
from orca.errors import AuthError


def get_service(request: Request) -> OrcaService:
    """The app's service layer (set by ``create_app``)."""
    return request.app.state.service


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_user(request: Request, service: OrcaService = Depends(get_service)) -> str:
    """The user the request's bearer token belongs to; AuthError (401) otherwise."""
    token = bearer_token(request)
    user = service.registry.user_for_token(token) if token else None
    if not user:
        raise AuthError()
    return user
