"""The ``stack`` fixture: a fresh embedded stack per test (see tests/e2e/stack.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, running_stack


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with running_stack(tmp_path / "orca", monkeypatch) as s:
        yield s
