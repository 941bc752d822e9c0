"""In-memory object store (``memory://name``), a fake for unit tests: no disk, no network.

Same interface and errors as the real backends. ``memory://name`` returns the same store
for the same name within a process (so a test can hand a URL to code that opens it
again); ``memory://`` alone makes a fresh store with a generated name.
"""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from orca.errors import ObjectNotFoundError
from orca.storage.base import ObjectStore
from orca.storage.keys import check_key

_registry: dict[str, "MemoryStore"] = {}
_registry_lock = threading.Lock()
_anonymous = itertools.count(1)


def memory_store(name: str) -> "MemoryStore":
    with _registry_lock:
        if not name:
            name = f"anonymous-{next(_anonymous)}"
        store = _registry.get(name)
        if store is None:
            store = _registry[name] = MemoryStore(name)
        return store


class MemoryStore(ObjectStore):
    def __init__(self, name: str) -> None:
        self.url = f"memory://{name}"
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        yield io.BytesIO(self.get_bytes(key))

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        check_key(key)
        buf = io.BytesIO()
        yield buf
        self.put_bytes(key, buf.getvalue())

    def put_bytes(self, key: str, data: bytes) -> None:
        check_key(key)
        with self._lock:
            self._objects[key] = bytes(data)

    def get_bytes(self, key: str) -> bytes:
        check_key(key)
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                raise ObjectNotFoundError(key=key) from None

    def put_file(self, key: str, path: str) -> None:
        with open(path, "rb") as f:
            self.put_bytes(key, f.read())

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._objects

    def size(self, key: str) -> int:
        return len(self.get_bytes(key))

    def list(self, prefix: str) -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        return iter(keys)

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)
