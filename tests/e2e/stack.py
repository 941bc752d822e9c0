"""The embedded stack as e2e tests drive it: fast settings, a batch maker, and a ``Stack`` handle
over real subprocesses (redis-server, API server + controller, RQ worker, local workers on the
fake engine). The ``stack`` fixture (tests/e2e/conftest.py) and the module-scoped or differently
configured stacks of single test files all start it through :func:`running_stack`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from orca.control import embedded
from orca.queue.embedded import free_port
from orca.queue.jobs import JobRegistry
from orca.settings import Settings

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"

FAST = {
    "ORCA_CONTROL__TICK_S": "0.3",
    "ORCA_CONTROL__LOCK_TTL_S": "2",
    "ORCA_CONTROL__TASK_RETRY_BACKOFF_S": "1",
    "ORCA_QUEUE__LEASE_S": "3",
    "ORCA_QUEUE__RENEW_EVERY_S": "0.5",
    "ORCA_QUEUE__REAP_EVERY_S": "0.5",
    "ORCA_WORKER__DRAIN_GRACE_S": "1",
    "ORCA_WORKER__METRICS_EVERY_S": "0.5",
    "ORCA_WORKER__IDLE_POLL_S": "0.2",
    "ORCA_INGEST__MIN_CHUNK_REQUESTS": "1",
    "ORCA_INGEST__MAX_CHUNK_REQUESTS": "8",
    "ORCA_LAUNCHER__LOCAL_ENGINE": "fake",
    "ORCA_LAUNCHER__LOCAL_STOP_GRACE_S": "5",
    "ORCA_LAUNCHER__LOCAL_ENGINE_ARGS": json.dumps({"fake_latency_s": "0.01", "fake_slots": "8"}),
}


def batch(n: int, delay_s: float) -> bytes:
    """``n`` chat requests; the fake engine takes ``delay_s`` to answer each (``fake_delay_s``)."""
    lines = [json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": MODEL, "max_tokens": 8, "fake_delay_s": delay_s,
                                  "messages": [{"role": "user", "content": f"hi {i}"}]}})
             for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


class Stack:
    def __init__(self, home: Path) -> None:
        self.settings = Settings()
        self.home = home

    def up(self) -> embedded.StackStatus:
        self.status = embedded.up(self.settings)
        self.api = self.status.api_url
        self.token = (self.home / "token").read_text().strip()
        return self.status

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def submit(self, data: bytes, deadline: str = "1h") -> dict:
        r = httpx.post(f"{self.api}/api/jobs", headers=self.headers, files={"file": ("b.jsonl", data)},
                       data={"deadline": deadline}, timeout=30)
        assert r.status_code == 201, r.text
        return r.json()

    def job(self, job_id: str) -> dict:
        r = httpx.get(f"{self.api}/api/jobs/{job_id}", headers=self.headers, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, pred, timeout: float = 40.0, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        job = {}
        while time.monotonic() < deadline:
            try:
                job = self.job(job_id)
            except httpx.HTTPError:
                time.sleep(0.2)  # server restarting
                continue
            if pred(job):
                return job
            assert job["status"] not in ("failed",) or pred(job), f"job failed: {job.get('message')}"
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}: {job}\n{self.logs(3000)}")

    def logs(self, tail: int) -> str:
        """The last ``tail`` characters of each of the stack's log files."""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
                         for p in sorted((self.home / "logs").glob("*.log")))

    def diagnostics(self) -> str:
        """What a failed test's report shows of the stack: each job's status and last events, then the logs."""
        parts = []
        try:
            registry = self.registry()
            try:
                for job_id in registry.job_ids():
                    record = registry.get(job_id)
                    events = "\n".join(f"  {e}" for e in registry.events(job_id)[-25:])
                    parts.append(f"job {job_id} {record.status.value} swaps={record.swaps}\n{events}")
            finally:
                registry.close()
        except Exception as exc:  # noqa: BLE001 - diagnostics must not hide the test's own failure
            parts.append(f"(could not read the registry: {exc!r})")
        return "\n".join(parts) + "\n" + self.logs(6000)

    def lines(self, job_id: str, kind: str, partial: bool = False) -> list[dict]:
        r = httpx.get(f"{self.api}/api/jobs/{job_id}/{kind}", headers=self.headers, params={"partial": partial}, timeout=30)
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]

    def registry(self) -> JobRegistry:
        return JobRegistry(embedded.redis_url(self.settings), self.settings)



@contextmanager
def running_stack(home: Path, mp: pytest.MonkeyPatch, **env: str) -> Iterator[Stack]:
    """The embedded stack up under ``home`` with :data:`FAST` (and ``env``) settings, down afterwards."""
    mp.setenv("ORCA_HOME", str(home))
    mp.setenv("ORCA_CONTROL__PORT", str(free_port()))
    for k, v in {**FAST, **env}.items():
        mp.setenv(k, v)
    for k in ("ORCA_REDIS_URL", "ORCA_STORE_URL", "ORCA_API_URL", "ORCA_API_TOKEN"):
        mp.delenv(k, raising=False)
    s = Stack(home)
    s.up()
    try:
        yield s
    finally:
        embedded.down(s.settings)


def assert_exactly_once(stack: Stack, job_id: str, n: int) -> None:
    out = stack.lines(job_id, "results")
    err = stack.lines(job_id, "errors")
    ids = [line["custom_id"] for line in out + err]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(n)), f"{len(ids)} lines for {n} requests"
    assert len(out) == n and err == []
