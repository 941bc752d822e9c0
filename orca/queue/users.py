"""Users of a shared control plane: names, roles, quota overrides and their (hashed) tokens, in Redis.

``keys.USERS`` maps a user name to its record; ``keys.TOKENS`` maps the SHA-256 of a bearer
token to the user name (as before users had records: a token made with
``JobRegistry.create_token`` for a name without a record is a plain user). A user has one
current token: ``add`` and ``rotate`` write a new one and drop the old, ``revoke`` drops the
record and every token of the name, so the next request with it is 401 at once.

Jobs and files are owned by the user's name and outlive a revoke, so a revoked name is kept in
``keys.RETIRED_USERS``: adding a user under it is refused unless the admin asks for the old
jobs and files to go to the new user (``reclaim_jobs``); a re-added name never sees them by accident.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

import redis
from pydantic import BaseModel, Field

from orca.errors import InputValidationError, UserExistsError, UserNotFoundError
from orca.queue import keys
from orca.queue.connection import RedisConnection

#: User names become parts of Redis keys and URL paths: a short, plain alphabet.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
QUOTA_FIELDS = ("max_active_jobs", "max_queued_requests", "max_usd_per_day")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "orca_" + secrets.token_urlsafe(32)


class UserRecord(BaseModel):
    name: str
    admin: bool = False
    created_at: float = 0.0
    token_hash: str | None = None
    quotas: dict[str, float] = Field(default_factory=dict, description="Overrides of the quota settings (0 = unlimited).")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InputValidationError(f"invalid user name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


class UserStore:
    """The user records over one Redis connection (``JobRegistry.users``)."""

    def __init__(self, conn: RedisConnection) -> None:
        self._conn = conn
        self._r = conn.client

    def get(self, name: str) -> UserRecord | None:
        raw = self._conn.call(lambda: self._r.hget(keys.USERS, name))
        return UserRecord.model_validate_json(raw) if raw else None

    def require(self, name: str) -> UserRecord:
        record = self.get(name)
        if record is None:
            raise UserNotFoundError(f"no such user: {name}")
        return record

    def list(self) -> list[UserRecord]:
        raw = self._conn.call(lambda: self._r.hgetall(keys.USERS))
        return sorted((UserRecord.model_validate_json(v) for v in raw.values()), key=lambda u: u.name)

    def is_admin(self, name: str) -> bool:
        record = self.get(name)
        return bool(record and record.admin)

    def principal(self, token: str) -> tuple[str, bool] | None:
        """(user name, is admin) of a bearer token, or None for an unknown token."""
        name = self._conn.call(lambda: self._r.hget(keys.TOKENS, hash_token(token)))
        if not name:
            return None
        return name, self.is_admin(name)

    def add(self, name: str, admin: bool = False, reclaim_jobs: bool = False) -> str:
        """Create a user; returns its token (shown once: only the hash is kept). UserExistsError if the
        name is taken, or was a revoked user's and ``reclaim_jobs`` is not set (see the module doc)."""
        check_name(name)
        token = new_token()
        record = UserRecord(name=name, admin=admin, created_at=time.time(), token_hash=hash_token(token))

        def write() -> str:
            while True:
                with self._r.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(keys.USERS, keys.RETIRED_USERS)
                        if pipe.hexists(keys.USERS, name):
                            return "taken"
                        if pipe.hexists(keys.RETIRED_USERS, name) and not reclaim_jobs:
                            return "retired"
                        pipe.multi()
                        pipe.hset(keys.USERS, name, record.model_dump_json())
                        pipe.hset(keys.TOKENS, record.token_hash, name)
                        pipe.hdel(keys.RETIRED_USERS, name)
                        pipe.execute()
                        return "added"
                    except redis.WatchError:
                        continue  # another user was added or revoked meanwhile: check again

        outcome = self._conn.call(write)
        if outcome == "taken":
            raise UserExistsError(f"user {name} already exists (rotate its token with `orca users rotate {name}`)")
        if outcome == "retired":
            raise UserExistsError(f"{name} was a revoked user's name and still owns that user's jobs and files; "
                                  f"pick another name, or pass --reclaim-jobs to give them to the new user")
        return token

    def adopt(self, name: str, token: str | None, admin: bool) -> None:
        """Give ``name`` a record (an admin one if ``admin``) and, if given, ``token`` as its current token:
        for the embedded stack's first admin and for tokens made before users had records."""
        check_name(name)
        record = self.get(name) or UserRecord(name=name, admin=admin, created_at=time.time())
        record.admin = record.admin or admin
        if token is not None:
            record.token_hash = hash_token(token)

        def write() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(keys.USERS, name, record.model_dump_json())
            if token is not None:
                pipe.hset(keys.TOKENS, record.token_hash, name)
            pipe.execute()

        self._conn.call(write)

    def rotate(self, name: str) -> str:
        """A new token for ``name``; every older token of the name stops working now."""
        record = self.require(name)
        token = new_token()
        record.token_hash = hash_token(token)

        def write() -> None:
            old = [h for h, user in self._r.hscan_iter(keys.TOKENS) if user == name]
            pipe = self._r.pipeline(transaction=True)
            if old:
                pipe.hdel(keys.TOKENS, *old)
            pipe.hset(keys.USERS, name, record.model_dump_json())
            pipe.hset(keys.TOKENS, record.token_hash, name)
            pipe.execute()

        self._conn.call(write)
        return token

    def revoke(self, name: str) -> UserRecord:
        """Remove the user and every token of the name (their jobs and files stay, owned by the name)."""
        record = self.get(name)
        tokens = self._conn.call(lambda: [h for h, user in self._r.hscan_iter(keys.TOKENS) if user == name])
        if record is None and not tokens:
            raise UserNotFoundError(f"no such user: {name}")

        def write() -> None:
            pipe = self._r.pipeline(transaction=True)
            if tokens:
                pipe.hdel(keys.TOKENS, *tokens)
            pipe.hdel(keys.USERS, name)
            pipe.hset(keys.RETIRED_USERS, name, time.time())
            pipe.execute()

        self._conn.call(write)
        return record or UserRecord(name=name)

    def set_quotas(self, name: str, quotas: dict[str, float | None]) -> UserRecord:
        """Set (a number) or clear (None) per-user quota overrides."""
        record = self.require(name)
        for field, value in quotas.items():
            if field not in QUOTA_FIELDS:
                raise InputValidationError(f"unknown quota {field!r}; one of {', '.join(QUOTA_FIELDS)}")
            if value is None:
                record.quotas.pop(field, None)
            elif value < 0:
                raise InputValidationError(f"quota {field} must be >= 0 (0 = unlimited), not {value}")
            else:
                record.quotas[field] = float(value)
        self._conn.call(lambda: self._r.hset(keys.USERS, name, record.model_dump_json()))
        return record
