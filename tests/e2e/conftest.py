"""The ``stack`` fixture: a fresh embedded stack per test (see tests/e2e/stack.py), and the stack's logs and
job events attached to the report of any test that failed with a stack (CI shows nothing else of it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, running_stack


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with running_stack(tmp_path / "orca", monkeypatch) as s:
        yield s


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and call.when == "call" and isinstance(stack, Stack):
        report.sections.append(("orca stack at failure", stack.diagnostics()))
    return report
