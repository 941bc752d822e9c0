"""orca.Client against a scripted HTTP transport (httpx.MockTransport): what goes on the wire,
how answers and errors come back, waiting with a progress bar, records, pandas, HTML.

The transport is a fake of the control plane's /api routes that answers in the contract's
shapes (orca.control.schemas); the real server is exercised in tests/integration and tests/e2e.
"""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest

from orca.client import Client, error_from_response
from orca.control.schemas import Job
from orca.errors import ApiError, AuthError, ConfigError, InputValidationError, JobNotFoundError, JobStateError
from orca.models import JobStatus
from orca.settings import ControlSettings, Settings


def _job(status: str = "validating", **kw) -> dict:
    now = time.time()
    base = dict(id="batch_1", status=status, created_at=now, deadline_at=now + 3600)
    base.update(kw)
    return Job.model_validate(base).model_dump(mode="json")


class FakeApi:
    """Records requests; answers from ``routes`` ((method, path) -> callable(request) -> httpx.Response)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such route"}})
        return handler(request)

    def client(self, token: str | None = "tok", **settings_kw) -> Client:
        settings = Settings(control=ControlSettings(wait_poll_s=0.0, **settings_kw))
        return Client("http://orca.test", token, settings=settings, http=httpx.Client(transport=httpx.MockTransport(self)))


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


def test_submit_sends_file_fields_and_bearer_token(api, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"custom_id": "a"}\n')
    api.routes[("POST", "/api/jobs")] = lambda r: httpx.Response(201, json=_job())
    job = api.client().submit(path, deadline="2h", model="m1", gpu="H100", markets=["spot", "on_demand"], metadata={"k": "v"})
    assert job.id == "batch_1" and job.job.status is JobStatus.VALIDATING
    req = api.requests[-1]
    assert req.headers["authorization"] == "Bearer tok"
    body = req.content.decode()
    assert 'filename="in.jsonl"' in body and '{"custom_id": "a"}' in body
    for name, value in [("deadline", "2h"), ("model", "m1"), ("gpu", "H100"), ("markets", "spot"),
                        ("markets", "on_demand"), ("metadata", '{"k": "v"}'), ("allow_multiple_models", "false")]:
        assert f'name="{name}"\r\n\r\n{value}\r\n' in body
    assert 'name="launcher"' not in body


@pytest.mark.parametrize("min_mb,shown", [(0.001, True), (1.0, False)])
def test_submit_shows_an_upload_bar_for_large_files(api, tmp_path, min_mb, shown):
    path = tmp_path / "in.jsonl"
    content = "".join(f'{{"custom_id": "r{i}", "pad": "{"x" * 100}"}}\n' for i in range(100))  # about 13 kB
    path.write_text(content)
    api.routes[("POST", "/api/jobs")] = lambda r: httpx.Response(201, json=_job())
    out = io.StringIO()
    api.client(upload_progress_min_mb=min_mb).submit(path, file=out)
    assert content in api.requests[-1].content.decode()  # the whole file went up, through the reader
    drawn = out.getvalue()
    size = f"{path.stat().st_size / 1000:.1f}k"
    assert ("uploading" in drawn and "100%" in drawn and f"{size}/{size}" in drawn) is shown
    assert bool(drawn) is shown


def test_submit_records_writes_a_temporary_jsonl(api):
    seen = {}

    def create(request):
        seen["body"] = request.content.decode()
        return httpx.Response(201, json=_job())

    api.routes[("POST", "/api/jobs")] = create
    records = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/embeddings", "body": {"input": "é"}} for i in range(3)]
    api.client().submit(records, deadline="1h")
    lines = [line for part in seen["body"].split("\r\n") for line in part.split("\n") if line.startswith('{"custom_id"')]
    assert [json.loads(line)["custom_id"] for line in lines] == ["r0", "r1", "r2"]
    assert "é" in seen["body"]
    assert 'filename="records.jsonl"' in seen["body"]


def test_submit_missing_file_is_a_validation_error(api, tmp_path):
    with pytest.raises(InputValidationError, match="no such file"):
        api.client().submit(tmp_path / "nope.jsonl")
    assert api.requests == []


@pytest.mark.parametrize("status,body,exc", [
    (401, {"error": {"code": "unauthorized", "message": "Missing or invalid API token."}}, AuthError),
    (404, {"error": {"code": "not_found", "message": "No such job."}}, JobNotFoundError),
    (409, {"error": {"code": "conflict", "message": "results are not ready"}}, JobStateError),
    (400, {"error": {"code": "invalid_request", "message": "bad deadline"}}, ApiError),
    (500, {"error": {"code": "server_error", "message": "internal error"}}, ApiError),
])
def test_http_errors_become_orca_errors(api, status, body, exc):
    api.routes[("GET", "/api/jobs/batch_1")] = lambda r: httpx.Response(status, json=body)
    with pytest.raises(exc) as info:
        api.client().get_job("batch_1")
    assert body["error"]["message"] in str(info.value)


def test_validation_errors_keep_their_lines():
    body = {"error": {"code": "invalid_request", "message": "invalid input", "errors": [
        {"code": "invalid_json", "line": 3, "message": "not JSON", "param": None}]}}
    exc = error_from_response(httpx.Response(400, json=body))
    assert isinstance(exc, InputValidationError)
    assert exc.errors[0].line == 3 and exc.errors[0].code == "invalid_json"
    body["error"]["error_count"] = 250
    assert error_from_response(httpx.Response(400, json=body)).context["error_count"] == 250


def test_non_json_error_body():
    exc = error_from_response(httpx.Response(502, text="Bad Gateway from proxy"))
    assert isinstance(exc, ApiError) and "Bad Gateway" in str(exc)


def test_unreachable_server_is_an_api_error():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    client = Client("http://127.0.0.1:9", "t", settings=Settings(), http=httpx.Client(transport=httpx.MockTransport(refuse)))
    with pytest.raises(ApiError, match="cannot reach the control plane"):
        client.list_jobs()


def test_list_and_paging_params(api):
    api.routes[("GET", "/api/jobs")] = lambda r: httpx.Response(200, json={"object": "list", "data": [_job(id="batch_2"), _job()]})
    jobs = api.client().list_jobs(limit=5, after="batch_0")
    assert [j.id for j in jobs] == ["batch_2", "batch_1"]
    assert dict(api.requests[-1].url.params) == {"limit": "5", "after": "batch_0"}
    assert [h.id for h in api.client().jobs()] == ["batch_2", "batch_1"]


def test_results_stream_lines_split_across_blocks(api):
    lines = [{"custom_id": f"c{i}", "response": {"status_code": 200, "body": {"choices": [{"message": {"content": f"hi {i}"}}]}}, "error": None}
             for i in range(50)]
    payload = "".join(json.dumps(r) + "\n" for r in lines).encode()

    def results(request):
        blocks = [payload[i:i + 37] for i in range(0, len(payload), 37)]
        return httpx.Response(200, stream=_Blocks(blocks))

    api.routes[("GET", "/api/jobs/batch_1")] = lambda r: httpx.Response(200, json=_job("completed", output_available=True))
    api.routes[("GET", "/api/jobs/batch_1/results")] = results
    handle = api.client().job("batch_1")
    got = list(handle.results())
    assert [r["custom_id"] for r in got] == [f"c{i}" for i in range(50)]
    out = io.BytesIO()
    assert api.client().download("batch_1", out) == 50
    assert out.getvalue() == payload


class _Blocks(httpx.SyncByteStream):
    def __init__(self, blocks):
        self.blocks = blocks

    def __iter__(self):
        yield from self.blocks


def test_partial_results_ask_for_partial(api):
    api.routes[("GET", "/api/jobs/batch_1/results")] = lambda r: httpx.Response(200, content=b"")
    list(api.client().iter_lines("batch_1", "results", partial=True))
    assert api.requests[-1].url.params["partial"] == "true"
    with pytest.raises(ValueError):
        list(api.client().iter_lines("batch_1", "output"))


def test_results_not_ready_is_a_state_error(api):
    api.routes[("GET", "/api/jobs/batch_1/results")] = lambda r: httpx.Response(
        409, json={"error": {"code": "conflict", "message": "results are not ready; pass partial=true"}})
    with pytest.raises(JobStateError, match="partial"):
        list(api.client().iter_lines("batch_1"))


def test_wait_polls_until_terminal_and_draws_progress(api):
    states = iter([
        _job("validating"),
        _job("in_progress", request_counts={"total": 10, "completed": 3, "failed": 0}, eta_s=42.0,
             progress={"chunks_total": 2, "chunks_leased": 1, "chunks_done": 1, "requests_uncommitted": 2}),
        _job("in_progress", request_counts={"total": 10, "completed": 8, "failed": 1}, eta_s=5.0, cost_usd=0.5),
        _job("completed", request_counts={"total": 10, "completed": 9, "failed": 1}, output_available=True),
    ])
    api.routes[("GET", "/api/jobs/batch_1")] = lambda r: httpx.Response(200, json=next(states))
    bar_out = io.StringIO()
    seen = []
    job = api.client().wait("batch_1", progress=True, file=bar_out, on_update=lambda j: seen.append(j.status.value))
    assert job.status is JobStatus.COMPLETED
    assert seen == ["validating", "in_progress", "in_progress", "completed"]
    drawn = bar_out.getvalue()
    assert "10/10" in drawn and "completed" in drawn and "eta=42s" in drawn and "failed=1" in drawn
    assert "5/10" in drawn  # 3 committed + 2 answered in a running chunk
    assert "validating: 0req" in drawn and ": :" not in drawn


def test_wait_timeout(api):
    api.routes[("GET", "/api/jobs/batch_1")] = lambda r: httpx.Response(200, json=_job("in_progress"))
    with pytest.raises(JobStateError, match="did not finish"):
        api.client().wait("batch_1", progress=False, timeout_s=0.0)


def test_handle_cancel_swap_logs(api):
    api.routes[("POST", "/api/jobs/batch_1/cancel")] = lambda r: httpx.Response(200, json=_job("cancelling"))
    api.routes[("POST", "/api/jobs/batch_1/swap")] = lambda r: httpx.Response(200, json=_job("in_progress"))
    api.routes[("GET", "/api/jobs/batch_1/logs")] = lambda r: httpx.Response(200, json=[{"t": 1.0, "kind": "created", "message": "hi"}])
    api.routes[("GET", "/api/jobs/batch_1")] = lambda r: httpx.Response(200, json=_job())
    handle = api.client().job("batch_1")
    assert handle.cancel().status is JobStatus.CANCELLING
    handle.swap("H100", tp=2, market="on_demand")
    assert json.loads(api.requests[-1].content) == {"gpu": "H100", "tp": 2, "pp": 1, "market": "on_demand", "launcher": None, "cancel": False}
    assert handle.logs()[0]["kind"] == "created"


def test_to_pandas_and_html(api):
    out = [
        {"id": "r1", "custom_id": "a", "response": {"status_code": 200, "body": {"choices": [{"message": {"content": "hello"}}]}}, "error": None},
        {"id": "r2", "custom_id": "b", "response": {"status_code": 200, "body": {"choices": [{"text": "poem"}]}}, "error": None},
        {"id": "r3", "custom_id": "c", "response": {"status_code": 200, "body": {"data": [{"embedding": [0.1, 0.2]}]}}, "error": None},
    ]
    err = [{"id": "r4", "custom_id": "d", "response": None, "error": {"code": "engine_error", "message": "boom"}}]
    api.routes[("GET", "/api/jobs/batch_1")] = lambda r: httpx.Response(200, json=_job(
        "in_progress", request_counts={"total": 4, "completed": 3, "failed": 1}, eta_s=75, cost_usd=1.25, projected_cost_usd=2.5))
    api.routes[("GET", "/api/jobs/batch_1/results")] = lambda r: httpx.Response(200, content="".join(json.dumps(x) + "\n" for x in out))
    api.routes[("GET", "/api/jobs/batch_1/errors")] = lambda r: httpx.Response(200, content="".join(json.dumps(x) + "\n" for x in err))
    handle = api.client().job("batch_1")
    df = handle.to_pandas()
    assert list(df["custom_id"]) == ["a", "b", "c", "d"]
    assert list(df["output"][:2]) == ["hello", "poem"] and df["output"][2] == [0.1, 0.2]
    assert df["error"][3] == "boom" and df["output"][3] is None
    html = handle._repr_html_()
    for text in ("batch_1", "in_progress", "4/4 (1 failed)", "1m 15s", "$1.25", "projected $2.50"):
        assert text in html
    assert "<table>" in html and "batch_1" in repr(handle)


def test_to_pandas_without_pandas_says_how(api, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("no pandas")
        return real_import(name, *args, **kwargs)

    api.routes[("GET", "/api/jobs/batch_1")] = lambda r: httpx.Response(200, json=_job())
    handle = api.client().job("batch_1")
    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ConfigError, match=r"orca\[pandas\]"):
        handle.to_pandas()


def test_token_defaults_to_home_token_file(tmp_path, api):
    (tmp_path / "token").write_text("orca_from_file\n")
    api.routes[("GET", "/api/jobs")] = lambda r: httpx.Response(200, json={"object": "list", "data": []})
    client = Client("http://orca.test", settings=Settings(home=tmp_path), http=httpx.Client(transport=httpx.MockTransport(api)))
    client.list_jobs()
    assert api.requests[-1].headers["authorization"] == "Bearer orca_from_file"


def test_no_server_and_no_stack_without_start(tmp_path):
    with pytest.raises(ConfigError, match="orca up"):
        Client(settings=Settings(home=tmp_path), start=False)
