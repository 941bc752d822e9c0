"""`orca users ...` and `orca token rotate` against a scripted control plane: what goes on the wire, what is printed."""

from __future__ import annotations

import json
import stat

import httpx
import pytest
from typer.testing import CliRunner

from orca import cli
from orca.client import Client
from orca.settings import Settings

USER = {"name": "bob", "admin": False, "created_at": 1.0, "quota_overrides": {}}


class Api:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.raw_path.decode(), body))
        path = request.url.path
        if path == "/api/token/rotate":
            return httpx.Response(200, json={"user": {**USER, "name": "local", "admin": True}, "token": "orca_new"})
        if path == "/api/users" and request.method == "POST":
            return httpx.Response(201, json={"user": {**USER, "name": body["name"], "admin": body["admin"]}, "token": "orca_bob"})
        if path == "/api/users":
            return httpx.Response(200, json={"object": "list", "data": [USER, {**USER, "name": "root", "admin": True}]})
        if path.endswith("/quota"):
            return httpx.Response(200, json={**USER, "quota_overrides": {k: v for k, v in body.items() if v is not None}})
        if request.method == "DELETE":
            return httpx.Response(200, json=USER)
        return httpx.Response(403, json={"error": {"code": "forbidden", "message": "this needs an admin token"}})


@pytest.fixture
def api(tmp_path, monkeypatch) -> Api:
    api = Api()
    settings = Settings(home=tmp_path)
    (tmp_path / "token").write_text("orca_old\n")
    client = Client("http://orca.test", "orca_old", settings=settings, http=httpx.Client(transport=httpx.MockTransport(api)))
    monkeypatch.setattr(cli, "make_client", lambda start=False: client)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    return api


def test_users_add_prints_the_token_once_on_stdout(api: Api) -> None:
    r = CliRunner().invoke(cli.app, ["users", "add", "bob", "--admin"])
    assert r.exit_code == 0 and r.stdout == "orca_bob\n"
    assert api.requests == [("POST", "/api/users", {"name": "bob", "admin": True, "reclaim_jobs": False})]


def test_users_list_revoke_quota(api: Api) -> None:
    assert CliRunner().invoke(cli.app, ["users", "list"]).stdout == "bob\nroot (admin)\n"
    assert CliRunner().invoke(cli.app, ["users", "revoke", "bob"]).stdout == "revoked bob\n"
    r = CliRunner().invoke(cli.app, ["users", "quota", "bob", "--max-active-jobs", "3", "--max-usd-per-day", "50"])
    assert r.exit_code == 0 and "max_active_jobs=3" in r.stdout and "max_usd_per_day=50" in r.stdout
    assert api.requests[-1] == ("PATCH", "/api/users/bob/quota", {"max_active_jobs": 3.0, "max_usd_per_day": 50.0})
    CliRunner().invoke(cli.app, ["users", "quota", "bob", "--clear"])
    assert api.requests[-1][2] == {"max_active_jobs": None, "max_queued_requests": None, "max_usd_per_day": None}
    assert CliRunner().invoke(cli.app, ["users", "quota", "bob"]).exit_code == 2  # nothing to set


def test_users_quote_names(api: Api) -> None:
    CliRunner().invoke(cli.app, ["users", "revoke", "a/../root"])
    assert api.requests[-1][1] == "/api/users/a%2F..%2Froot"


def test_token_rotate_updates_the_token_file(api: Api, tmp_path) -> None:
    r = CliRunner().invoke(cli.app, ["token", "rotate"])
    assert r.exit_code == 0 and "orca_new" not in r.stdout
    path = tmp_path / "token"
    assert path.read_text() == "orca_new\n" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_forbidden_is_one_line(monkeypatch) -> None:
    forbid = httpx.MockTransport(lambda r: httpx.Response(403, json={"error": {"code": "forbidden", "message": "this needs an admin token"}}))
    client = Client("http://orca.test", "orca_user", settings=Settings(), http=httpx.Client(transport=forbid))
    monkeypatch.setattr(cli, "make_client", lambda start=False: client)
    r = CliRunner().invoke(cli.app, ["users", "list"])
    assert r.exit_code == 1 and r.stderr == "orca: error: this needs an admin token\n"
