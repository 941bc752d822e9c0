"""The object store: ``open_store(url)`` picks the backend by URL scheme.

- ``file:///abs/dir``: a local directory (the embedded default), ``orca.storage.local``
- ``s3://bucket/prefix?endpoint_url=...&region=...``: S3 or any S3-compatible server, ``orca.storage.s3``
- ``memory://name``: an in-memory fake for unit tests, ``orca.storage.memory``
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from orca.errors import ConfigError
from orca.settings import StoreSettings
from orca.storage.base import ObjectStore
from orca.storage.layout import JobLayout


def open_store(url: str, settings: StoreSettings | None = None) -> ObjectStore:
    """Open the object store named by ``url``; raises ConfigError for an unknown scheme."""
    if settings is None:
        from orca.settings import get_settings

        settings = get_settings().store
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError("file:// store URLs must be absolute local paths (file:///abs/dir)", url=url)
        from orca.storage.local import LocalStore

        return LocalStore(unquote(parts.path), settings)
    if parts.scheme == "memory":
        from orca.storage.memory import memory_store

        return memory_store(parts.netloc + parts.path)
    if parts.scheme == "s3":
        from orca.storage.s3 import S3Store

        return S3Store.from_url(url, settings)
    raise ConfigError("unknown object store URL scheme (use file://, s3:// or memory://)", url=url)


__all__ = ["JobLayout", "ObjectStore", "open_store"]
