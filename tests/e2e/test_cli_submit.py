"""The CLI end to end on the embedded stack with the real CPU engine (llama.cpp + SmolLM2-135M):
`orca submit --wait` starts the stack, runs a sample job to completion, and the results hold each
input custom_id exactly once; status/list/logs/results --json parse; a bad file fails fast with
line-numbered errors and launches nothing. Every test ends with `orca down`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORCA = str(Path(sys.executable).parent / "orca")
SAMPLES = ROOT / "sample_jobs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orca:
    """Runs the installed `orca` script with its own ORCA_HOME and control plane port."""

    def __init__(self, home: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ORCA_")}
        self.env.update({"ORCA_HOME": str(home), "ORCA_CONTROL__PORT": str(_free_port()),
                         "ORCA_CONTROL__WAIT_POLL_S": "0.5"})

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([ORCA, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def json(self, *args: str) -> dict:
        r = self(*args, "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


@pytest.fixture
def orca(tmp_path):
    o = Orca(tmp_path / "home")
    yield o
    r = o("down", timeout=120)
    assert r.returncode == 0, r.stderr


def custom_ids(path: Path) -> list[str]:
    return [json.loads(line)["custom_id"] for line in path.read_text().splitlines() if line.strip()]


def test_submit_wait_with_the_cpu_engine(orca, tmp_path):
    chat = SAMPLES / "chat.jsonl"
    r = orca("submit", str(chat), "--deadline", "1h", "--wait", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "started the embedded stack" in r.stderr
    assert "40 valid requests" in r.stderr
    summary = r.stdout.splitlines()
    job_id = summary[0].split()[0]
    assert summary[0].startswith(f"{job_id} completed: 40/40 requests succeeded, 0 failed")
    assert any(line.startswith("results: ") for line in summary)

    out = tmp_path / "out.jsonl"
    r = orca("results", job_id, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert custom_ids(out) == custom_ids(chat)  # each input custom_id exactly once, in input order
    for line in out.read_text().splitlines():
        record = json.loads(line)
        assert record["error"] is None and record["response"]["status_code"] == 200
        assert record["response"]["body"]["choices"][0]["message"]["content"] is not None
    assert orca.json("errors", job_id, "-o", str(tmp_path / "err.jsonl"))["lines"] == 0

    job = orca.json("status", job_id)
    assert job["status"] == "completed" and job["request_counts"] == {"total": 40, "completed": 40, "failed": 0}
    assert job["plan"]["market"] == "local" and job["pools"] and job["pools"][0]["gpu"] == "cpu"
    listed = orca.json("list")
    assert [j["id"] for j in listed["data"]] == [job_id]
    events = orca.json("logs", job_id)["data"]
    assert events[0]["kind"] == "created" and any(e["kind"] == "completed" for e in events)
    text = orca("status", job_id).stdout
    assert "completed" in text and "40/40" in text and "POOL" in text

    # A bad file fails before upload: line-numbered errors, no new job.
    bad = tmp_path / "bad.jsonl"
    lines = chat.read_text().splitlines()
    bad.write_text("\n".join([lines[0], "{broken", lines[2], lines[0]]) + "\n")
    r = orca("submit", str(bad), "--deadline", "1h", "--wait")
    assert r.returncode == 1 and r.stdout == ""
    assert "  line 2: " in r.stderr and "  line 4: " in r.stderr
    assert [j["id"] for j in orca.json("list")["data"]] == [job_id]

    # Left to the server (--no-validate): the job fails in validation and launches nothing.
    r = orca("submit", str(bad), "--deadline", "1h", "--wait", "--no-validate", timeout=120)
    assert r.returncode == 1
    assert " failed: " in r.stdout and "  line 2: " in r.stdout
    failed = orca.json("list")["data"][0]
    assert failed["status"] == "failed" and failed["plan"] is None and failed["pools"] == []
    assert {e["line"] for e in failed["validation_errors"]} >= {2, 4}


def test_submit_without_wait_then_follow_with_the_client(orca):
    emb = SAMPLES / "embeddings.jsonl"
    r = orca("submit", str(emb), "--deadline", "30m", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["status"] in ("validating", "planning", "in_progress")
    from orca.client import Client
    from orca.settings import Settings

    settings = Settings(home=Path(orca.env["ORCA_HOME"]), control={"port": int(orca.env["ORCA_CONTROL__PORT"]), "wait_poll_s": 0.5})
    with Client(settings=settings, start=False) as client:
        done = client.job(job["id"]).wait(progress=False, timeout_s=300)
        assert done.status.value == "completed"
        records = list(client.job(job["id"]).results())
    assert [r["custom_id"] for r in records] == custom_ids(emb)
    vectors = [r["response"]["body"]["data"][0]["embedding"] for r in records]
    assert all(len(v) == len(vectors[0]) > 0 for v in vectors)


def test_submit_wait_runs_the_responses_sample(orca, tmp_path):
    """sample_jobs/responses.jsonl on the embedded defaults: Responses bodies from SmolLM2 via the worker's adapter."""
    from openai.types.responses import Response

    sample = SAMPLES / "responses.jsonl"
    out = tmp_path / "out.jsonl"
    r = orca("submit", str(sample), "--deadline", "1h", "--wait", "-o", str(out), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " completed: 20/20 requests succeeded, 0 failed" in r.stdout.splitlines()[0]
    assert custom_ids(out) == custom_ids(sample)
    bodies = [Response.model_validate(json.loads(line)["response"]["body"]) for line in out.read_text().splitlines()]
    assert all(b.object == "response" and b.output_text and 0 < b.usage.output_tokens <= 24 for b in bodies)
    job = orca.json("status", r.stdout.split()[0])
    assert job["usage"]["output_tokens"] == sum(b.usage.output_tokens for b in bodies)
    assert job["endpoint"] == "/v1/responses"


def test_bad_launcher_fields_are_refused_and_nothing_is_recorded(orca):
    """`orca submit --launcher bogus` and `--gpu ../../etc`: one clear line each (the server's 400,
    or the same check run by the CLI before uploading), exit code not 0, and no job recorded."""
    r = orca("submit", str(SAMPLES / "chat.jsonl"), "--launcher", "bogus")
    assert r.returncode != 0 and "unknown launcher 'bogus'" in r.stderr and "Traceback" not in r.stderr
    assert orca.json("list")["data"] == []
    r = orca("submit", str(SAMPLES / "chat.jsonl"), "--gpu", "../../etc")
    assert r.returncode != 0 and "GPU '../../etc'" in r.stderr
    assert orca.json("list")["data"] == []
