"""`orca config`: every setting with its environment variable, secrets hidden; the README documents every one."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from orca import cli
from orca.cli_format import settings_markdown, settings_reference
from orca.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_field_has_an_env_var_and_a_reason():
    rows = settings_reference(Settings())
    envs = [r["env"] for r in rows]
    assert len(envs) == len(set(envs))
    assert "ORCA_HOME" in envs and "ORCA_QUEUE__LEASE_S" in envs and "ORCA_CONTROL__WAIT_POLL_S" in envs
    assert all(r["description"] for r in rows), [r["env"] for r in rows if not r["description"]]
    sections = {r["section"] for r in rows} - {""}
    assert sections == {n for n, f in Settings.model_fields.items() if hasattr(f.annotation, "model_fields")}


def test_env_vars_reach_settings(monkeypatch):
    monkeypatch.setenv("ORCA_CONTROL__WAIT_POLL_S", "0.25")
    monkeypatch.setenv("ORCA_QUEUE__LEASE_S", "7")
    rows = {r["env"]: r["value"] for r in settings_reference(Settings())}
    assert rows["ORCA_CONTROL__WAIT_POLL_S"] == 0.25 and rows["ORCA_QUEUE__LEASE_S"] == 7.0


def test_secrets_are_hidden(monkeypatch):
    monkeypatch.setattr(cli, "get_settings", lambda: Settings(api_token="orca_secret", redis_url="redis://:hunter2@db:6379/0"))
    r = CliRunner().invoke(cli.app, ["config", "--json"])
    assert r.exit_code == 0
    assert "orca_secret" not in r.stdout and "hunter2" not in r.stdout
    rows = {x["env"]: x["value"] for x in json.loads(r.stdout)["data"]}
    assert rows["ORCA_API_TOKEN"] == "(set)" and rows["ORCA_REDIS_URL"] == "redis://:***@db:6379/0"
    text = CliRunner().invoke(cli.app, ["config"]).stdout
    assert "ORCA_API_TOKEN" in text and "orca_secret" not in text


def test_readme_documents_every_setting():
    readme = README.read_text()
    missing = [r["env"] for r in settings_reference(Settings()) if f"`{r['env']}`" not in readme]
    assert not missing, f"README lacks {missing}: paste `orca config --markdown` into its Configuration section"


def test_markdown_reference_shape():
    md = settings_markdown(settings_reference(Settings()))
    assert md.startswith("#### top level\n")
    assert "| `ORCA_HOME` | `~/.orca` |" in md and "| `ORCA_REDIS_URL` | unset |" in md
    assert "#### queue" in md and "| `ORCA_QUEUE__LEASE_S` | `60.0` |" in md
