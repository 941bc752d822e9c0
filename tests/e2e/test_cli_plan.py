"""`orca plan` as users run it (the installed `orca` script in a subprocess): a table (its speed is
measured by bench/cli_plan.py), parseable --json, line-numbered errors for a bad file, and nothing
started or imported beyond what planning needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORCA = str(Path(sys.executable).parent / "orca")
CHAT = str(ROOT / "sample_jobs" / "chat.jsonl")


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("ORCA_")}
    e["ORCA_HOME"] = str(tmp_path / "home")
    return e


def run(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ORCA, *args], env=env, capture_output=True, text=True, timeout=60)


def test_plan_prints_a_table(env):
    r = run(env, "plan", CHAT, "--deadline", "2h")  # its speed: bench/cli_plan.py
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("40 requests to HuggingFaceTB/SmolLM2-135M-Instruct (/v1/chat/completions)")
    assert lines[1].split() == ["GPU", "TP/PP", "MARKET", "REGION", "REPLICAS", "ETA", "COST", "RISK"]
    rows, quote = lines[2:-1], lines[-1]
    assert rows and all(line.split()[2] in ("spot", "on_demand", "serverless") for line in rows)
    assert quote.startswith("quote for the first plan: expected $") and "P(deadline met)" in quote
    assert not Path(env["ORCA_HOME"]).exists(), "plan must not start the embedded stack"


def test_plan_json_parses(env):
    r = run(env, "plan", CHAT, "--deadline", "90m", "--gpu", "L4", "--json")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["object"] == "list" and body["n_requests"] == 40 and body["deadline_s"] == 5400
    assert body["data"] and all(p["gpu"] == "L4" for p in body["data"])
    for p in body["data"]:
        assert {"gpu", "tp", "pp", "market", "replicas", "expected_finish_s", "expected_cost_usd", "risk"} <= set(p)
        assert p["expected_finish_s"] <= 5400


def test_plan_bad_file_lists_errors_by_line(env, tmp_path):
    good = Path(CHAT).read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([good[0], "{not json", good[1], good[0]]) + "\n")
    r = run(env, "plan", str(bad), "--deadline", "2h")
    assert r.returncode == 1
    assert r.stdout == ""
    err = r.stderr.splitlines()
    assert err[0].startswith("orca: error: ") and "not a valid batch file" in err[0]
    assert any(line.startswith("  line 2: ") for line in err)
    assert any(line.startswith("  line 4: ") and "custom_id" in line for line in err)


def test_plan_bad_deadline_is_a_usage_error(env):
    r = run(env, "plan", CHAT, "--deadline", "tomorrow")
    assert r.returncode == 2 and "not a duration" in r.stderr


def test_plan_imports_nothing_heavy():
    # The deadline quote runs the production controller on the simulated cloud in-process, and the
    # controller's modules import redis-py and rq (their types; no connection is made), so those two
    # are no longer in the list; the web stack, cloud SDKs and pandas still must not load.
    code = (
        "import sys\n"
        "from orca.cli import main\n"
        f"sys.argv = ['orca', 'plan', {CHAT!r}, '--deadline', '2h', '--json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = sorted(m for m in ('fastapi', 'uvicorn', 'boto3', 'botocore', 'sky', 'httpx', 'pandas') if m in sys.modules)\n"
        "print(json.dumps(heavy), file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stderr.strip().splitlines()[-1]) == []
