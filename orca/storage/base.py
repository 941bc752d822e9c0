"""The object store interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO


class ObjectStore(ABC):
    """Flat key -> bytes store with streaming reads and writes.

    Writes are atomic: a reader sees either no object or the whole object,
    never a partial one (local: write to a temp file then rename; S3: a PUT or
    a completed multipart upload).
    """

    url: str

    @abstractmethod
    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Stream an object. Raises ObjectNotFoundError."""

    @abstractmethod
    def open_write(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Stream a new object; it becomes visible when the context exits without error."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Raises ObjectNotFoundError."""

    @abstractmethod
    def put_file(self, key: str, path: str) -> None:
        """Upload a local file (multipart above the threshold)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int:
        """Raises ObjectNotFoundError."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys under prefix, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object; deleting a missing key is not an error."""

    def local_path(self, key: str) -> str | None:
        """The object's file on this machine if the backend keeps objects as local files, else None.

        Lets readers that need random access (ingest's second pass) skip a download.
        """
        return None

    def ping(self) -> None:
        """Raise a StoreError if the store cannot be reached now (one cheap metadata request)."""
        self.exists("healthz")

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        for key in list(self.list(prefix)):
            self.delete(key)
            n += 1
        return n
