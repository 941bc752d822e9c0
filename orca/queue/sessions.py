"""Dashboard sign-ins in Redis: a random session id per browser, stored under its SHA-256 with a TTL.

The cookie holds the id; Redis holds only its hash (``keys.session``), so a copy of the
database cannot be replayed as a cookie. A session ends when its TTL runs out or on
``delete`` (log out). Nothing here knows about HTTP.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from orca.queue import keys
from orca.queue.connection import RedisConnection
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

    def create(self, user: str, ttl_s: float | None = None) -> str:
        """A new session id for ``user``, valid for ``ttl_s`` (default ``dashboard.session_ttl_s``)."""
        session_id = secrets.token_urlsafe(32)
        ttl_ms = int((ttl_s if ttl_s is not None else self.settings.dashboard.session_ttl_s) * 1000)
        value = json.dumps({"user": user, "created_at": time.time()})
        self._conn.call(lambda: self._r.set(keys.session(_hash(session_id)), value, px=ttl_ms))
        return session_id

    def user(self, session_id: str) -> str | None:
        """The user of a live session; None for an unknown, expired or deleted one."""
        raw = self._conn.call(lambda: self._r.get(keys.session(_hash(session_id))))
        if not raw:
            return None
        return json.loads(raw).get("user") or None

    def delete(self, session_id: str) -> None:
        self._conn.call(lambda: self._r.delete(keys.session(_hash(session_id))))
