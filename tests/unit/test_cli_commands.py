"""The orca CLI's argument handling, output and exit codes, against a fake client.

FakeClient stands in for orca.Client (same methods, contract models in and out, no HTTP) so
these tests check only what the CLI adds: parsing, text and --json output, exit codes and
error lines. The client's HTTP side is tests/unit/test_client_http.py; the whole CLI against
a real stack is tests/e2e/test_cli_*.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orca import cli
from orca.client import JobHandle
from orca.control.schemas import Job, PlanOut, PoolOut, SwapOut, SwapRequest
from orca.errors import InputValidationError, JobNotFoundError, JobStateError
from orca.models import ValidationIssue
from orca.planner.types import JobStats
from orca.settings import Settings

runner = CliRunner()


def make_job(status: str = "in_progress", **kw) -> Job:
    now = time.time()
    base = dict(id="batch_1", status=status, created_at=now - 90, deadline_at=now + 3600, model="smollm2",
                endpoint="/v1/chat/completions", request_counts={"total": 40, "completed": 10, "failed": 0},
                progress={"chunks_total": 4, "chunks_done": 1, "chunks_leased": 2, "chunks_pending": 1, "fraction": 0.25},
                eta_s=120.0, cost_usd=0.0)
    base.update(kw)
    return Job.model_validate(base)


class FakeClient:
    """orca.Client's surface as the CLI uses it; records calls, answers from ``self.jobs_by_id``."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.jobs_by_id: dict[str, Job] = {"batch_1": make_job()}
        self.final: Job = make_job("completed", request_counts={"total": 40, "completed": 39, "failed": 1},
                                   output_available=True, completed_at=time.time(), eta_s=None)
        self.files = {"results": b'{"custom_id": "a"}\n{"custom_id": "b"}\n', "errors": b'{"custom_id": "c"}\n'}

    def submit(self, path, **kw):
        self.calls.append(("submit", Path(path).name, kw))
        return JobHandle(self, make_job("validating", request_counts={"total": 0, "completed": 0, "failed": 0}))

    def get_job(self, job_id):
        self.calls.append(("get_job", job_id))
        if job_id not in self.jobs_by_id:
            raise JobNotFoundError(job_id=job_id)
        return self.jobs_by_id[job_id]

    def list_jobs(self, limit=None, after=None, all_users=False):
        self.calls.append(("list_jobs", limit))
        return list(self.jobs_by_id.values())[:limit]

    def cancel(self, job_id):
        self.calls.append(("cancel", job_id))
        return make_job("cancelling")

    def swap(self, job_id, request: SwapRequest):
        self.calls.append(("swap", job_id, request))
        return make_job(swaps=[SwapOut(state="launching", from_pool="cpu-tp1-pp1-local", to_pool="H100-tp2-pp1-spot", started_at=time.time())])

    def logs(self, job_id):
        return [{"t": 1_700_000_000.0, "kind": "created", "message": "job created"},
                {"t": 1_700_000_001.0, "kind": "planned", "message": "2 x cpu"}]

    def download(self, job_id, out, kind="results", partial=False):
        self.calls.append(("download", job_id, kind, partial))
        data = self.files[kind]
        out.write(data)
        return data.count(b"\n")

    def wait(self, job_id, progress=True, on_update=None, **kw):
        self.calls.append(("wait", job_id))
        if on_update is not None:
            on_update(make_job("validating"))
            for _ in range(2):  # the plan is announced once, however many polls see it
                on_update(make_job(plan=PlanOut(gpu="L4", gpus_per_replica=1, tp=1, pp=1, market="spot",
                                                region="us-east-1", replicas=3, expected_finish_s=3000,
                                                expected_cost_usd=1.5, risk=0.1, price_per_replica_hour=0.3)))
        return self.final


@pytest.fixture
def fake(monkeypatch) -> FakeClient:
    client = FakeClient()
    monkeypatch.setattr(cli, "make_client", lambda start=False: client)
    monkeypatch.setattr(cli, "get_settings", lambda: Settings(api_url="http://orca.test"))  # a control plane elsewhere
    return client


@pytest.fixture
def valid_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "batch.jsonl"
    path.write_text("{}\n")
    stats = JobStats(n_requests=40, prompt_tokens=800, max_output_tokens=960, model="meta-llama/Llama-3.1-8B-Instruct")
    monkeypatch.setattr(cli, "local_stats", lambda p, model, allow=False: stats)
    return path


def test_submit_prints_the_job_id(fake, valid_file):
    r = runner.invoke(cli.app, ["submit", str(valid_file), "--deadline", "2h", "--model", "m", "--gpu", "L4",
                                "--market", "spot", "--metadata", "team=ml"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "batch_1"
    assert "40 valid requests" in r.stderr and "orca status batch_1" in r.stderr
    name, kw = fake.calls[0][1], fake.calls[0][2]
    assert name == "batch.jsonl"
    assert kw["deadline"] == "2h" and kw["model"] == "m" and kw["gpu"] == "L4" and kw["markets"] == ["spot"]
    assert kw["metadata"] == {"team": "ml"}


def test_submit_json(fake, valid_file):
    r = runner.invoke(cli.app, ["submit", str(valid_file), "--json"])
    assert r.exit_code == 0
    body = json.loads(r.stdout)
    assert body["id"] == "batch_1" and body["status"] == "validating"


def test_submit_wait_reports_and_downloads(fake, valid_file, tmp_path):
    out = tmp_path / "out.jsonl"
    r = runner.invoke(cli.app, ["submit", str(valid_file), "--wait", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "batch_1 completed: 39/40 requests succeeded, 1 failed" in r.stdout
    assert f"results: {out}" in r.stdout and "orca errors batch_1" in r.stdout
    assert out.read_bytes() == fake.files["results"]
    assert r.stderr.count("orca: plan: 3 x 1xL4 tp1/pp1 spot us-east-1, ETA 50m 00s, $1.50") == 1


@pytest.mark.parametrize("status", ["failed", "expired", "cancelled"])
def test_submit_wait_exit_code_when_the_job_did_not_complete(fake, valid_file, status):
    fake.final = make_job(status, message=f"job {status}", eta_s=None)
    r = runner.invoke(cli.app, ["submit", str(valid_file), "--wait"])
    assert r.exit_code == 1
    assert f"batch_1 {status}" in r.stdout and f"job {status}" in r.stdout


def test_submit_wait_json_is_the_final_job(fake, valid_file):
    r = runner.invoke(cli.app, ["submit", str(valid_file), "--wait", "--json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["status"] == "completed"


def test_embedded_submit_refuses_a_job_local_workers_cannot_run_before_uploading(fake, valid_file, monkeypatch):
    monkeypatch.setattr(cli, "get_settings", lambda: Settings())  # no ORCA_API_URL: the embedded stack, local workers
    r = runner.invoke(cli.app, ["submit", str(valid_file), "--deadline", "2h"])  # an 8B model on this machine's CPU
    assert r.exit_code == 1
    assert "fits none of the allowed GPU configurations (cpu)" in r.stderr
    assert fake.calls == []  # nothing uploaded, no job created


def test_embedded_submit_of_a_job_local_workers_can_run(fake, valid_file, monkeypatch):
    monkeypatch.setattr(cli, "get_settings", lambda: Settings())
    r = runner.invoke(cli.app, ["submit", str(valid_file), "--deadline", "2h", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct"])
    assert r.exit_code == 0, r.output
    assert [c[0] for c in fake.calls] == ["submit"]
    r = runner.invoke(cli.app, ["submit", str(valid_file), "--deadline", "2h", "--launcher", "skypilot"])
    assert r.exit_code == 0, r.output  # cloud launchers plan on the server, over GPUs


def test_submit_invalid_file_lists_lines_and_submits_nothing(fake, tmp_path, monkeypatch):
    path = tmp_path / "bad.jsonl"
    path.write_text("x\n")

    def invalid(p, model, allow=False):
        raise InputValidationError("the batch input file is invalid", error_count=3, errors=[
            ValidationIssue(code="invalid_json", line=1, message="line is not JSON"),
            ValidationIssue(code="missing_custom_id", line=4, message="custom_id is required", param="custom_id"),
        ])

    monkeypatch.setattr(cli, "local_stats", invalid)
    r = runner.invoke(cli.app, ["submit", str(path), "--deadline", "1h"])
    assert r.exit_code == 1
    assert r.stdout == ""
    err = r.stderr.splitlines()
    assert err[0].startswith("orca: error: the batch input file is invalid")
    assert "  line 1: invalid_json: line is not JSON" in err
    assert "  line 4: missing_custom_id [custom_id]: custom_id is required" in err
    assert "  ... and 1 more" in err
    assert fake.calls == []


def test_submit_invalid_file_with_json_prints_the_errors_as_json(fake, tmp_path, monkeypatch):
    path = tmp_path / "bad.jsonl"
    path.write_text("x\n")

    def invalid(p, model, allow=False):
        raise InputValidationError("bad.jsonl is not a valid batch file (2 error(s))", error_count=2, errors=[
            ValidationIssue(code="invalid_json_line", line=1, message="line is not valid JSON"),
            ValidationIssue(code="duplicate_custom_id", line=3, message="custom_id 'a' duplicates line 2", param="custom_id"),
        ])

    monkeypatch.setattr(cli, "local_stats", invalid)
    r = runner.invoke(cli.app, ["submit", str(path), "--deadline", "1h", "--json"])
    assert r.exit_code == 1
    body = json.loads(r.stdout)
    assert body == {"error": {"type": "InputValidationError", "message": "bad.jsonl is not a valid batch file (2 error(s))",
                              "error_count": 2, "errors": [
                                  {"code": "invalid_json_line", "line": 1, "message": "line is not valid JSON", "param": None},
                                  {"code": "duplicate_custom_id", "line": 3, "message": "custom_id 'a' duplicates line 2",
                                   "param": "custom_id"}]}}
    assert r.stderr.startswith("orca: error: bad.jsonl is not a valid batch file")
    assert fake.calls == []


def test_unknown_job_with_json_is_a_json_error(fake):
    r = runner.invoke(cli.app, ["status", "batch_nope", "--json"])
    assert r.exit_code == 1
    assert json.loads(r.stdout) == {"error": {"type": "JobNotFoundError", "message": "No such job.", "job_id": "batch_nope"}}


@pytest.mark.parametrize("args,needle", [
    (["--deadline", "soon"], "not a duration"),
    (["--metadata", "novalue"], "KEY=VALUE"),
    (["--metadata", "k=" + "v" * 513], "513 characters"),
    ([arg for i in range(17) for arg in ("--metadata", f"k{i}=v")], "at most 16"),
    (["-o", "x.jsonl"], "--output needs --wait"),
])
def test_submit_bad_arguments_are_usage_errors(fake, valid_file, args, needle):
    r = runner.invoke(cli.app, ["submit", str(valid_file), *args])
    assert r.exit_code == 2
    assert needle in r.output
    assert fake.calls == []


def test_status_of_a_job_shows_progress_plan_and_pools(fake):
    fake.jobs_by_id["batch_1"] = make_job(
        plan=PlanOut(gpu="cpu", gpus_per_replica=1, tp=1, pp=1, market="local", region=None, replicas=2,
                     expected_finish_s=300, expected_cost_usd=0.0, risk=0.02, price_per_replica_hour=0.0),
        pools=[PoolOut(key="cpu-tp1-pp1-local", launcher="local", gpu="cpu", market="local", state="active",
                       replicas={"running": 2}, chunks_completed=1, cost_usd=0.0),
               PoolOut(key="H100-tp2-pp1-spot", launcher="skypilot", gpu="H100", market="spot", state="draining",
                       replicas={"running": 1, "terminated": 1}, chunks_completed=3, cost_usd=4.5)],
        cost_usd=4.5, projected_cost_usd=6.0)
    r = runner.invoke(cli.app, ["status", "batch_1"])
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "in_progress" in out and "10/40" in out and "2m 00s" in out
    assert "$4.50 (projected $6.00)" in out
    assert "2 x 1xcpu tp1/pp1 local" in out
    assert "POOL" in out and "H100-tp2-pp1-spot" in out and "draining" in out and "1 running, 1 terminated" in out


def test_status_shows_requests_answered_in_running_chunks(fake):
    job = make_job()
    job.progress.requests_uncommitted = 7
    fake.jobs_by_id["batch_1"] = job
    r = runner.invoke(cli.app, ["status", "batch_1"])
    assert r.exit_code == 0, r.output
    assert "10/40 (+7 answered in running chunks)" in r.stdout


def test_status_json(fake):
    r = runner.invoke(cli.app, ["status", "batch_1", "--json"])
    assert r.exit_code == 0
    assert Job.model_validate(json.loads(r.stdout)).id == "batch_1"


def test_status_without_job_lists_latest(fake):
    fake.jobs_by_id["batch_2"] = make_job("completed", id="batch_2", eta_s=None)
    r = runner.invoke(cli.app, ["status"])
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "MODEL", "REQUESTS", "ETA", "COST", "CREATED"]
    assert lines[1].startswith("batch_1") and lines[2].startswith("batch_2")
    assert ("list_jobs", Settings().control.list_limit) in fake.calls


def test_list_json_is_one_object(fake):
    r = runner.invoke(cli.app, ["list", "--json", "--limit", "1"])
    body = json.loads(r.stdout)
    assert body["object"] == "list" and [j["id"] for j in body["data"]] == ["batch_1"]


def test_list_empty(fake):
    fake.jobs_by_id.clear()
    r = runner.invoke(cli.app, ["list"])
    assert r.exit_code == 0 and "no jobs yet" in r.stdout


def test_unknown_job_is_one_line_and_exit_1(fake):
    r = runner.invoke(cli.app, ["status", "batch_nope"])
    assert r.exit_code == 1
    assert r.stderr.strip() == "orca: error: No such job. (job_id='batch_nope')"


def test_results_while_running_are_partial_and_say_so(fake, tmp_path):
    out = tmp_path / "out.jsonl"
    r = runner.invoke(cli.app, ["results", "batch_1", "-o", str(out)])
    assert r.exit_code == 0
    assert "partial results" in r.stderr and "wrote 2 results lines" in r.stderr
    assert ("download", "batch_1", "results", True) in fake.calls
    assert out.read_bytes() == fake.files["results"]


def test_results_of_a_finished_job_to_stdout(fake):
    fake.jobs_by_id["batch_1"] = fake.final
    r = runner.invoke(cli.app, ["results", "batch_1"])
    assert r.exit_code == 0
    assert r.stdout == fake.files["results"].decode()
    assert ("download", "batch_1", "results", False) in fake.calls
    assert "partial" not in r.stderr


def test_results_json_needs_output(fake, tmp_path):
    r = runner.invoke(cli.app, ["results", "batch_1", "--json"])
    assert r.exit_code == 2
    r = runner.invoke(cli.app, ["errors", "batch_1", "--json", "-o", str(tmp_path / "e.jsonl")])
    assert r.exit_code == 0
    assert json.loads(r.stdout) == {"job": "batch_1", "kind": "errors", "path": str(tmp_path / "e.jsonl"),
                                    "lines": 1, "partial": True, "status": "in_progress"}


def test_results_not_ready_error(fake, monkeypatch):
    def not_ready(*a, **k):
        raise JobStateError("results are not ready", status="failed")

    fake.jobs_by_id["batch_1"] = make_job("failed", eta_s=None)
    monkeypatch.setattr(fake, "download", not_ready)
    r = runner.invoke(cli.app, ["results", "batch_1"])
    assert r.exit_code == 1 and "results are not ready" in r.stderr


def test_cancel(fake):
    r = runner.invoke(cli.app, ["cancel", "batch_1"])
    assert r.exit_code == 0 and r.stdout.strip() == "batch_1 cancelling"
    r = runner.invoke(cli.app, ["cancel", "batch_1", "--json"])
    assert json.loads(r.stdout)["status"] == "cancelling"


def test_logs(fake):
    r = runner.invoke(cli.app, ["logs", "batch_1"])
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and "created" in lines[0] and "job created" in lines[0]
    body = json.loads(runner.invoke(cli.app, ["logs", "batch_1", "--json"]).stdout)
    assert body["job"] == "batch_1" and len(body["data"]) == 2


def test_swap(fake):
    r = runner.invoke(cli.app, ["swap", "batch_1", "--gpu", "H100", "--tp", "2", "--market", "on_demand"])
    assert r.exit_code == 0, r.output
    assert "cpu-tp1-pp1-local -> H100-tp2-pp1-spot launching" in r.stdout
    request = fake.calls[-1][2]
    assert (request.gpu, request.tp, request.pp, request.market, request.cancel) == ("H100", 2, 1, "on_demand", False)
    runner.invoke(cli.app, ["swap", "batch_1", "--gpu", "H100", "--cancel"])
    assert fake.calls[-1][2].cancel is True


def test_swap_needs_gpu(fake):
    r = runner.invoke(cli.app, ["swap", "batch_1"])
    assert r.exit_code == 2 and fake.calls == []


def test_plan_table_and_json(monkeypatch, valid_file):
    monkeypatch.setattr(cli, "get_settings", lambda: Settings())
    r = runner.invoke(cli.app, ["plan", str(valid_file), "--deadline", "2h"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("40 requests to meta-llama/Llama-3.1-8B-Instruct")
    assert lines[1].split()[:6] == ["GPU", "TP/PP", "MARKET", "REGION", "REPLICAS", "ETA"]
    assert len(lines) > 2
    body = json.loads(runner.invoke(cli.app, ["plan", str(valid_file), "--deadline", "2h", "--json"]).stdout)
    assert body["object"] == "list" and body["n_requests"] == 40 and body["deadline_s"] == 7200
    first = body["data"][0]
    PlanOut.model_validate(first)
    assert first["expected_finish_s"] <= 7200
    costs = [p["expected_cost_usd"] for p in body["data"]]
    assert costs == sorted(costs)
    # the deadline quote of the first plan: simulated runs over the bundled traces
    assert lines[-1].startswith("quote for the first plan: expected $") and "P(deadline met)" in lines[-1]
    q = body["quote"]
    assert q["runs"] == Settings().planner.quote_runs and 0.0 <= q["p_deadline_met"] <= 1.0 and q["expected_cost_usd"] > 0


def test_plan_filters(monkeypatch, valid_file):
    monkeypatch.setattr(cli, "get_settings", lambda: Settings())
    body = json.loads(runner.invoke(cli.app, ["plan", str(valid_file), "--gpu", "H100", "--market", "on_demand", "--json"]).stdout)
    assert body["data"] and all(p["gpu"] == "H100" and p["market"] == "on_demand" for p in body["data"])


def test_plan_infeasible_is_one_line(monkeypatch, valid_file):
    monkeypatch.setattr(cli, "get_settings", lambda: Settings())
    r = runner.invoke(cli.app, ["plan", str(valid_file), "--deadline", "1s"])
    assert r.exit_code == 1
    assert r.stderr.startswith("orca: error: ") and len(r.stderr.strip().splitlines()) == 1


def test_server_passes_its_options_to_the_control_plane(monkeypatch):
    from orca.control import server_main

    seen = []
    monkeypatch.setattr(server_main, "main", lambda argv: seen.append(argv))
    r = runner.invoke(cli.app, ["server", "--port", "9000", "--no-controller", "--rq-worker"])
    assert r.exit_code == 0, r.output
    assert seen == [["--port", "9000", "--no-controller", "--rq-worker"]]


def test_dashboard_prints_the_url_and_opens_a_browser_only_where_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient()
    client.api_url = "http://127.0.0.1:8765"
    monkeypatch.setattr(cli, "make_client", lambda start=False: client)
    monkeypatch.setattr(cli, "get_settings", lambda: Settings())
    opened: list[str] = []
    import webbrowser

    monkeypatch.setattr(webbrowser, "open", lambda url, new=0: opened.append(url) or True)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(cli.sys, "platform", "linux")
    r = runner.invoke(cli.app, ["dashboard"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "http://127.0.0.1:8765/" and opened == []  # headless: no browser to open
    assert "token" in r.stderr

    monkeypatch.setenv("DISPLAY", ":0")
    r = runner.invoke(cli.app, ["dashboard", "--json"])
    assert json.loads(r.stdout)["opened"] is True and opened == ["http://127.0.0.1:8765/"]
    r = runner.invoke(cli.app, ["dashboard", "--no-open", "--json"])
    assert json.loads(r.stdout)["opened"] is False and len(opened) == 1
