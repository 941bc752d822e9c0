"""Dashboard sign-ins in Redis: a random session id per browser, stored under its SHA-256 with a TTL.

The cookie holds the id; Redis holds only its hash (``keys.session``), so a copy of the
database cannot be replayed as a cookie. A session remembers the hash of the API token it was
opened with and lives only while that token does: revoking or rotating the token ends it at
once, as it does for the API. It also ends when its TTL runs out or on ``delete`` (log out).
Nothing here knows about HTTP.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from orca.queue import keys
from orca.queue.connection import RedisConnection
from orca.queue.jobs import hash_token
from orca.settings import Settings, get_settings


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Create, look up and delete dashboard sessions in the Redis at ``redis_url``."""

    def __init__(self, redis_url: str, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._conn = RedisConnection(redis_url, self.settings.queue)
        self._r = self._conn.client

    def close(self) -> None:
        self._conn.close()

    def create(self, user: str, token: str, ttl_s: float | None = None) -> str:
        """A new session id for ``user``, who signed in with ``token``; valid for ``ttl_s``
        (default ``dashboard.session_ttl_s``) while the token stays valid."""
        session_id = secrets.token_urlsafe(32)
        ttl_ms = int((ttl_s if ttl_s is not None else self.settings.dashboard.session_ttl_s) * 1000)
        value = json.dumps({"user": user, "token_hash": hash_token(token), "created_at": time.time()})
        self._conn.call(lambda: self._r.set(keys.session(_hash(session_id)), value, px=ttl_ms))
        return session_id

    def user(self, session_id: str) -> str | None:
        """The user of a live session; None for an unknown, expired or deleted one, or one whose token
        no longer belongs to its user (revoked or rotated: the session is deleted then)."""
        name = keys.session(_hash(session_id))
        raw = self._conn.call(lambda: self._r.get(name))
        if not raw:
            return None
        session = json.loads(raw)
        user = session.get("user")
        if not user or self._conn.call(lambda: self._r.hget(keys.TOKENS, session.get("token_hash", ""))) != user:
            self._conn.call(lambda: self._r.delete(name))
            return None
        return user

    def delete(self, session_id: str) -> None:
        self._conn.call(lambda: self._r.delete(keys.session(_hash(session_id))))
