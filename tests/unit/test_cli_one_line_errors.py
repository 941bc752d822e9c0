"""Every CLI error is one line on stderr, never a traceback; ids reach the server as one quoted path segment."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from typer.testing import CliRunner

from orca import cli
from orca.client import Client, segment
from orca.errors import InputValidationError
from orca.settings import Settings


class Recorder:
    """A control plane that knows no job: records each request path (raw, as sent) and answers 404."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.raw_path.decode())
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "No such job."}})


@pytest.fixture
def server(monkeypatch) -> Recorder:
    recorder = Recorder()
    client = Client("http://orca.test", "tok", settings=Settings(), http=httpx.Client(transport=httpx.MockTransport(recorder)))
    monkeypatch.setattr(cli, "make_client", lambda start=False: client)
    return recorder


def _one_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("orca: error:"), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_cancel_quotes_the_id(server: Recorder) -> None:
    line = _one_line(CliRunner().invoke(cli.app, ["cancel", "x/../batch_abc"]))
    assert server.paths == ["/api/jobs/x%2F..%2Fbatch_abc/cancel"]  # one segment: never batch_abc itself
    assert "No such job" in line


@pytest.mark.parametrize("job_id", ["", ".", "..", " "])
def test_empty_and_dot_ids_are_refused_before_any_request(server: Recorder, job_id: str) -> None:
    line = _one_line(CliRunner().invoke(cli.app, ["status", job_id]))
    assert "invalid id" in line and server.paths == []


def test_status_of_a_path_is_one_line(server: Recorder) -> None:
    _one_line(CliRunner().invoke(cli.app, ["status", "../jobs"]))
    assert server.paths == ["/api/jobs/..%2Fjobs"]


def test_segment() -> None:
    assert segment("batch_1") == "batch_1" and segment("日本") == "%E6%97%A5%E6%9C%AC" and segment("a/b?c#d") == "a%2Fb%3Fc%23d"
    with pytest.raises(InputValidationError):
        segment("..")


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path) -> None:
    env = {**os.environ, "ORCA_HOME": str(tmp_path), "ORCA_LAUNCHER__LOCAL_ENGINE_ARGS": '{"fake_slots": 2}',
           "PYTHONPATH": os.pathsep.join(sys.path)}
    for argv in (["list"], ["status", "batch_1"], ["config"]):
        r = subprocess.run([sys.executable, "-m", "orca.cli", *argv], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert "ORCA_LAUNCHER__LOCAL_ENGINE_ARGS" in r.stderr and "fake_slots" in r.stderr


def test_deadline_beyond_the_bound_is_a_usage_error(tmp_path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [{"role": "user", "content": "x"}]}}\n')
    r = CliRunner().invoke(cli.app, ["plan", str(path), "--deadline", "99999999999w"])
    assert r.exit_code == 2 and "longest deadline" in r.output and "Traceback" not in r.output


def test_an_unexpected_error_is_one_line(monkeypatch) -> None:
    def broken(start=False):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "make_client", broken)
    line = _one_line(CliRunner().invoke(cli.app, ["list"]))
    assert "RuntimeError: boom" in line and "ORCA_DEBUG" in line
