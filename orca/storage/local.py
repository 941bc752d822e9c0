"""Local-directory object store, the embedded default (``file:///abs/dir``).

A key is a relative path under the root directory. Writes go to a temp file under
``<root>/.tmp/`` (same filesystem) and are renamed into place when complete, so a reader
sees either no object or the whole object; ``fsync`` before the rename (settings) makes
a completed write survive a machine crash too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from orca.errors import ObjectNotFoundError, StoreError, StoreUnavailableError
from orca.settings import StoreSettings
from orca.storage.base import ObjectStore
from orca.storage.keys import check_key

TMP_DIR = ".tmp"


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path, settings: StoreSettings | None = None) -> None:
        self.root = Path(root).resolve()
        self.settings = settings or StoreSettings()
        self.url = self.root.as_uri()
        self._buffer = self.settings.read_buffer_kb * 1024
        try:
            (self.root / TMP_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError("cannot create the local store directory", root=str(self.root), detail=str(exc)) from None

    def path(self, key: str) -> Path:
        """The file that holds ``key`` (it may not exist)."""
        check_key(key)
        if key == TMP_DIR or key.startswith(TMP_DIR + "/"):
            raise StoreError("invalid object key (reserved)", key=key)
        return self.root / key

    def ping(self) -> None:
        if not (self.root / TMP_DIR).is_dir():
            raise StoreUnavailableError("the local store directory is gone", root=str(self.root))

    def local_path(self, key: str) -> str | None:
        p = self.path(key)
        return str(p) if p.is_file() else None

    @contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        try:
            f = open(self.path(key), "rb", buffering=self._buffer)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFoundError(key=key) from None
        with f:
            yield f

    @contextmanager
    def _temp(self, key: str) -> Iterator[tuple[BinaryIO, str]]:
        """A temp file for ``key``; renamed to the key's path if the block exits cleanly, removed otherwise."""
        dest = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.root / TMP_DIR, prefix=dest.name[:64] + ".")
        try:
            with open(fd, "wb", buffering=self._buffer) as f:
                yield f, tmp
                f.flush()
                if self.settings.local_fsync:
                    os.fsync(f.fileno())
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        with self._temp(key) as (f, _):
            yield f

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._temp(key) as (f, _):
            f.write(data)

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as f:
            return f.read()

    def put_file(self, key: str, path: str) -> None:
        with self._temp(key) as (f, _), open(path, "rb") as src:
            shutil.copyfileobj(src, f, self._buffer)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        try:
            p = self.path(key)
            if not p.is_file():
                raise FileNotFoundError
            return p.stat().st_size
        except FileNotFoundError:
            raise ObjectNotFoundError(key=key) from None

    def list(self, prefix: str) -> Iterator[str]:
        # Walk only the deepest directory the prefix names; filter by the rest of the prefix.
        base = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base if base else self.root
        if not start.is_dir():
            return iter(())
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            rel = "" if rel == "." else rel + "/"
            if not rel:
                dirnames[:] = [d for d in dirnames if d != TMP_DIR]
            dirnames[:] = [d for d in dirnames if (rel + d + "/").startswith(prefix) or prefix.startswith(rel + d + "/")]
            keys.extend(k for k in (rel + name for name in filenames) if k.startswith(prefix))
        return iter(sorted(keys))

    def delete(self, key: str) -> None:
        p = self.path(key)
        try:
            p.unlink()
        except FileNotFoundError:
            return
        # Prune now-empty parent directories up to the root, so deleted prefixes leave no litter.
        parent = p.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
