"""Dashboard sign-in: the user pastes their API token once; the browser then holds a session cookie.

The token is checked with the same token -> user lookup as the API's bearer auth. The cookie
(``orca_session``) is HttpOnly (page scripts cannot read it), SameSite=Strict (no other site's
page sends it) and Secure when served over HTTPS; it names a server-side session in Redis
(``orca.queue.sessions``) that lasts ``dashboard.session_ttl_s``, ends on log out, and ends at
once when the token it was opened with is revoked or rotated.

Every state-changing dashboard request must also come from the dashboard's own origin
(``Origin`` header, or ``Sec-Fetch-Site``): a second guard against cross-site requests.
"""

from __future__ import annotations

from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request, Response

from orca.control.auth import Principal, principal_for_token
from orca.errors import AuthError
from orca.queue.sessions import SessionStore

COOKIE = "orca_session"


def sessions(request: Request) -> SessionStore:
    return request.app.state.dashboard_sessions


def session_user(request: Request) -> str | None:
    """The signed-in user of this browser, or None."""
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        return None
    return sessions(request).user(session_id)


def cookie_credential(app: FastAPI) -> Callable[[dict[str, str]], Principal | None]:
    """The auth gate's credential for ``/dashboard/api/``: the session cookie's user, checked before a body is read."""
    def resolve(headers: dict[str, str]) -> Principal | None:
        jar = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        user = app.state.dashboard_sessions.user(morsel.value) if morsel is not None and morsel.value else None
        return Principal(user, app.state.service.registry.users.is_admin(user)) if user else None

    return resolve


def require_session_user(request: Request) -> str:
    """For the dashboard's JSON routes: the signed-in user; AuthError (401) otherwise."""
    user = session_user(request)
    if user is None:
        raise AuthError("sign in to the dashboard first")
    return user


def same_origin(request: Request) -> bool:
    """Whether a request comes from this site's own pages (or from no browser page at all)."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc == request.headers.get("host", "")
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


def require_same_origin(request: Request) -> None:
    if not same_origin(request):
        raise HTTPException(status_code=403, detail="cross-site request refused")


def token_user(request: Request, token: str) -> str | None:
    """The user an API token belongs to (the API's own lookup, ``principal_for_token``)."""
    principal = principal_for_token(request.app.state.service, token.strip())
    return principal.name if principal else None


def sign_in(request: Request, response: Response, user: str, token: str) -> None:
    """Start a session for ``user`` (signed in with ``token``) and set its cookie on ``response``."""
    store = sessions(request)
    session_id = store.create(user, token.strip())
    response.set_cookie(
        COOKIE, session_id, max_age=int(store.settings.dashboard.session_ttl_s), path="/",
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )


def sign_out(request: Request, response: Response) -> None:
    """End this browser's session (if any) and clear its cookie."""
    session_id = request.cookies.get(COOKIE)
    if session_id:
        sessions(request).delete(session_id)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")


def safe_next(target: str | None) -> str:
    """A post-sign-in redirect target: a path on this site, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
