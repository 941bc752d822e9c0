"""Key rules shared by every backend: a key is a relative, slash-separated path without dot segments."""

from __future__ import annotations

from orca.errors import StoreError


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid object key, else raise StoreError."""
    if not key or key.startswith("/") or key.endswith("/") or "\\" in key or "\x00" in key:
        raise StoreError("invalid object key", key=key)
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise StoreError("invalid object key", key=key)
    return key
