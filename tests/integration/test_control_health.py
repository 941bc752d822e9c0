"""The API through a Redis crash: /healthz says what is down (503), calls answer 503 'unavailable'
with one log line (no traceback per request), and the same server serves again once the
redis-server is restarted on its own port (the restart is found from its data dir, no port given)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time

from fastapi.testclient import TestClient

from orca.control.app import create_app
from orca.control.service import OrcaService
from orca.queue.embedded import EmbeddedRedis
from orca.settings import ControlSettings, QueueSettings, Settings


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            return
        time.sleep(0.02)
    raise AssertionError("redis-server did not die")


def test_redis_outage_answers_503_and_the_server_reconnects(tmp_path, caplog) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    port = server.port
    settings = Settings(home=tmp_path, redis_url=server.url, store_url=(tmp_path / "store").as_uri(),
                        queue=QueueSettings(connect_retries=2, retry_backoff_s=0.05),
                        control=ControlSettings(unavailable_log_every_s=60))
    svc = OrcaService.from_settings(settings, synchronous=True)
    try:
        client = TestClient(create_app(svc))
        client.headers["authorization"] = f"Bearer {svc.registry.create_token('alice')}"
        assert client.get("/healthz").json() == {"ok": True, "redis": True, "store": True}
        assert client.get("/api/jobs").status_code == 200

        os.kill(server.pid, signal.SIGKILL)  # a crash: nothing cleans up, the state file still names the port
        wait_gone(server.pid)
        caplog.set_level(logging.WARNING)
        r = client.get("/healthz")
        assert r.status_code == 503 and r.json() == {"ok": False, "redis": False, "store": True}
        for _ in range(3):
            r = client.get("/api/jobs")
            assert r.status_code == 503
            assert r.json()["error"]["type"] == "unavailable"
            assert r.json()["error"]["message"] == "redis unreachable; retrying"
        lines = [rec for rec in caplog.records if rec.name.startswith("orca")]
        assert len(lines) == 1 and "unreachable" in lines[0].getMessage() and lines[0].exc_info is None

        restarted = EmbeddedRedis(tmp_path / "redis").start()  # no port: it comes back where it was
        server = restarted
        assert restarted.port == port
        assert client.get("/healthz").status_code == 200
        assert client.get("/api/jobs").status_code == 200  # the token survived in the AOF; same client objects

        shutil.rmtree(tmp_path / "store")
        r = client.get("/healthz")
        assert r.status_code == 503 and r.json() == {"ok": False, "redis": True, "store": False}
    finally:
        svc.close()
        server.stop()
