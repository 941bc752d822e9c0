"""The embedded stack locked down: its redis-server wants a password that lives only in a 0600 file,
binds loopback, keeps its data 0700/0600; after a whole job no secret is in the logs, the events,
`orca config`, `orca up --json` or a worker's command line; a second user added with the CLI
works, and a revoked one stops at once.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from orca.control import embedded
from orca.launchers.base import PoolSpec, WorkerEnv
from orca.launchers.local import worker_command, worker_secret_env
from orca.queue import keys
from tests.e2e.stack import Stack, batch, running_stack


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    home = tmp_path / "orca"
    home.mkdir(mode=0o755)  # as a user's umask would leave it
    with running_stack(home, monkeypatch) as s:
        yield s


def orca(home: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {**os.environ, "ORCA_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    return subprocess.run([sys.executable, "-m", "orca.cli", *argv], env=base, capture_output=True, text=True, timeout=120)


def test_redis_wants_the_password_and_the_files_are_private(stack: Stack) -> None:
    home = stack.home
    password = (home / "redis" / "password").read_text().strip()
    url = embedded.redis_url(stack.settings)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert len(password) >= 32 and password in url
    anonymous = redis.Redis(host="127.0.0.1", port=port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.hset(keys.TOKENS, "0" * 64, "local")  # the old way to mint a token
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, password="wrong").ping()
    owner = redis.Redis.from_url(url)
    assert owner.ping()
    assert owner.config_get("bind")["bind"].split() == ["127.0.0.1"]
    owner.close()
    # Who may read what: directories 0700, files 0600, all the way down.
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"


def test_no_secret_leaks_after_a_full_job(stack: Stack) -> None:
    home = stack.home
    job = stack.submit(batch(12, 0.0))
    stack.wait(job["id"], lambda j: j["status"] == "completed", timeout=90, what="completion")
    password = (home / "redis" / "password").read_text().strip()
    secrets = {"redis password": password, "admin token": stack.token}
    # Another user, added with the CLI, submits too; then the admin revokes them.
    added = orca(home, "users", "add", "bob")
    assert added.returncode == 0, added.stderr
    bob = added.stdout.strip()
    secrets["bob's token"] = bob
    r = httpx.post(f"{stack.api}/api/jobs", headers={"authorization": f"Bearer {bob}"}, files={"file": ("b.jsonl", batch(4, 0.0))},
                   data={"deadline": "1h"}, timeout=30)
    assert r.status_code == 201, r.text
    bob_job = r.json()["id"]
    stack.wait(bob_job, lambda j: j["status"] == "completed", timeout=90, what="bob's job")
    listed = orca(home, "list", "--all", "--json")
    assert {j["id"] for j in json.loads(listed.stdout)["data"]} == {job["id"], bob_job}
    assert orca(home, "users", "revoke", "bob").returncode == 0
    assert httpx.get(f"{stack.api}/api/jobs", headers={"authorization": f"Bearer {bob}"}).status_code == 401
    # Nowhere in the logs, the events or what orca prints.
    texts = {str(p): p.read_text(errors="replace") for p in (home / "logs").rglob("*") if p.is_file()}
    assert texts, "the stack wrote no logs"
    for job_id in (job["id"], bob_job):
        texts[f"events of {job_id}"] = json.dumps(stack.registry().events(job_id))
    texts["stack.json"] = (home / "run" / "stack.json").read_text()
    config = orca(home, "config", "--json", env={"ORCA_REDIS_URL": embedded.redis_url(stack.settings)})
    assert config.returncode == 0
    texts["orca config"] = config.stdout
    texts["orca up --json"] = orca(home, "up", "--json").stdout
    for where, text in texts.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in {where}"


def test_a_worker_gets_a_password_url_in_its_environment_not_its_command_line() -> None:
    env = WorkerEnv(job_id="batch_1", redis_url="redis://:s3cret@127.0.0.1:6379/0", store_url="file:///tmp/store", model="m")
    pool = PoolSpec(key="p", launcher="local", gpu="cpu", market="local", engine="fake")
    cmd = worker_command(env, pool, "w1")
    assert not any("s3cret" in part for part in cmd) and "--redis-url" not in cmd and "--store-url" in cmd
    assert worker_secret_env(env) == {"ORCA_REDIS_URL": "redis://:s3cret@127.0.0.1:6379/0"}
