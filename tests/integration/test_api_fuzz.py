"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis, hypothesis
underneath), against a real uvicorn server over a real Redis and file store.

Every operation is called with cases generated from the schema, as an anonymous caller, as the plain
user alice and as an admin; every response must be below 500 and match the schema (status code,
content type, body). Alice must never see anything of bob's: half of alice's cases carry bob's job,
file and user names in their path, and no answer to alice may contain bob's ids or his job's secret.
Bounded: ``EXAMPLES`` cases per operation and caller, derandomized, no example database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

from orca.control.app import create_app
from orca.control.service import OrcaService
from orca.models import JobStatus
from orca.queue.embedded import free_port
from orca.queue.jobs import JobRecord
from orca.settings import ControlSettings, Settings

EXAMPLES = 20  # per operation and caller; the bound is 200, this keeps the whole run well under 2 minutes
BOB_SECRET = "bob-private-metadata-7f3a"
CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
          st_checks.response_schema_conformance]


@dataclass
class Server:
    url: str
    service: OrcaService
    tokens: dict[str, str | None]
    bob: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def server(redis_url: str, tmp_path) -> Iterator[Server]:
    import uvicorn

    settings = Settings(home=tmp_path, redis_url=redis_url, store_url=(tmp_path / "store").as_uri(),
                        control=ControlSettings(max_upload_mb=2))
    svc = OrcaService.from_settings(settings, synchronous=True)
    users = svc.registry.users
    tokens = {"anonymous": None, "alice": users.add("alice"), "admin": users.add("root", admin=True)}
    users.add("bob")
    bob_file = svc.create_file("bob", b'{"custom_id": "x"}\n', "bob.jsonl")
    svc.registry.create_job(JobRecord(id="batch_bobsecretjob0000000000", user="bob", status=JobStatus.IN_PROGRESS,
                                      created_at=time.time(), deadline_at=time.time() + 3600, metadata={"note": BOB_SECRET}))
    port = free_port()
    config = uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Server(f"http://127.0.0.1:{port}", svc, tokens,
                     {"job": "batch_bobsecretjob0000000000", "file": bob_file.id, "name": "bob"})
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        svc.close()


def _bobs(case, bob: dict[str, str]):
    """The same case aimed at bob's objects."""
    for name in list(case.path_parameters or {}):
        case.path_parameters[name] = bob["file"] if "file" in name else bob["name"] if name == "name" else bob["job"]
    return case


@pytest.mark.parametrize("caller", ["anonymous", "alice", "admin"])
def test_no_input_breaks_the_api(server: Server, caller: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures: list[str] = []
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = st.one_of(operation.as_strategy(), operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        if caller == "alice" and "{" in operation.path:
            strategy = st.one_of(strategy, strategy.map(lambda c: _bobs(c, server.bob)))

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case) -> None:
            token = server.tokens[caller]
            headers = {"authorization": f"Bearer {token}"} if token else {}
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS, headers=headers)
            if caller == "alice":
                leaked = [v for v in (*server.bob.values(), BOB_SECRET) if v != "bob" and v in response.text]
                assert not leaked, f"{case.method} {case.formatted_path} -> {response.status_code} shows bob's {leaked}"
            if caller != "anonymous" and case.path == "/api/token/rotate" and response.status_code == 200:
                server.tokens[caller] = response.json()["token"]  # the fuzzer rotated its own token

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures)
    assert elapsed < 120, f"fuzzing as {caller} took {elapsed:.0f} s"
