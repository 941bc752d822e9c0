"""The embedded stack's processes: up starts them, a second up adopts them, down stops them all."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest

from orca.control import embedded
from orca.launchers.local import process_start_time
from orca.queue.embedded import free_port
from orca.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ORCA_HOME", str(tmp_path / "orca"))
    monkeypatch.setenv("ORCA_CONTROL__PORT", str(free_port()))
    for k in ("ORCA_REDIS_URL", "ORCA_STORE_URL", "ORCA_API_URL", "ORCA_API_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    return Settings()


def test_up_adopt_down(settings: Settings) -> None:
    first = embedded.up(settings)
    try:
        assert first.running
        token_path = settings.home / "token"
        assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
        token = token_path.read_text().strip()
        r = httpx.get(f"{first.api_url}/api/jobs", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["data"] == []
        assert httpx.get(f"{first.api_url}/api/jobs").status_code == 401
        assert httpx.get(f"{first.api_url}/metrics").status_code == 200

        second = embedded.up(settings)  # adopts: same processes, same token
        assert second.processes == first.processes
        assert token_path.read_text().strip() == token
        assert (settings.home / "logs" / "server.log").exists()
    finally:
        embedded.down(settings)
    after = embedded.status(settings)
    assert not after.running and after.processes == {"rq-worker": None, "server": None, "supervisor": None}
    for pid in first.processes.values():
        assert pid is not None and process_start_time(pid) is None
    assert not (settings.home / "redis" / "orca-redis.state").exists()


def test_token_survives_restart_of_the_whole_stack(settings: Settings) -> None:
    embedded.up(settings)
    token = (settings.home / "token").read_text().strip()
    embedded.down(settings)
    status = embedded.up(settings)  # redis replays its AOF: the hashed token is still known
    try:
        assert (settings.home / "token").read_text().strip() == token
        r = httpx.get(f"{status.api_url}/api/jobs", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200
    finally:
        embedded.down(settings)
