"""``python -m orca.worker`` argument and environment parsing, and its usage exit code."""

from __future__ import annotations

import pytest

from orca.settings import Settings
from orca.worker.__main__ import main, parse_config
from orca.worker.worker import ExitCode

ENV_NAMES = ("ORCA_JOB_ID", "ORCA_REDIS_URL", "ORCA_STORE_URL", "ORCA_POOL", "ORCA_WORKER_ID", "ORCA_ENGINE_KIND",
             "ORCA_ENGINE_URL", "ORCA_MODEL", "ORCA_TP", "ORCA_PP", "ORCA_MAX_MODEL_LEN", "ORCA_BURST",
             "ORCA_GPU_MEMORY_UTILIZATION", "ORCA_MAX_CONCURRENCY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_everything_can_come_from_the_environment(monkeypatch):
    env = {"ORCA_JOB_ID": "j1", "ORCA_REDIS_URL": "redis://r:6379/0", "ORCA_STORE_URL": "s3://b/p",
           "ORCA_POOL": "h100-tp2-spot", "ORCA_WORKER_ID": "w9", "ORCA_ENGINE_KIND": "vllm", "ORCA_MODEL": "llama",
           "ORCA_TP": "2", "ORCA_PP": "2", "ORCA_MAX_MODEL_LEN": "4096", "ORCA_GPU_MEMORY_UTILIZATION": "0.8",
           "ORCA_BURST": "true", "ORCA_MAX_CONCURRENCY": "128"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    c = parse_config([], Settings())
    assert (c.job_id, c.redis_url, c.store_url, c.pool, c.worker_id) == ("j1", "redis://r:6379/0", "s3://b/p",
                                                                           "h100-tp2-spot", "w9")
    assert c.burst and c.max_concurrency == 128
    e = c.engine
    assert (e.kind, e.model, e.tp, e.pp, e.max_model_len, e.gpu_memory_utilization) == ("vllm", "llama", 2, 2, 4096, 0.8)


def test_command_line_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("ORCA_JOB_ID", "from-env")
    monkeypatch.setenv("ORCA_ENGINE_KIND", "vllm")
    c = parse_config(["--job", "from-cli", "--redis-url", "redis://x/1", "--engine", "external",
                      "--engine-url", "http://e:8000/v1", "--store-url", "file:///tmp/s"], Settings())
    assert c.job_id == "from-cli" and c.engine.kind == "external" and c.engine.url == "http://e:8000/v1"
    assert not c.burst and c.max_concurrency is None


def test_default_store_is_under_orca_home(tmp_path):
    c = parse_config(["--job", "j", "--redis-url", "redis://x/1"], Settings(home=tmp_path))
    assert c.store_url == f"file://{tmp_path / 'store'}"


@pytest.mark.parametrize("argv", [[], ["--job", "j"], ["--job", "j", "--redis-url", "redis://x", "--engine", "external"],
                                  ["--job", "j", "--redis-url", "redis://x", "--engine", "tgi"]])
def test_missing_or_bad_arguments_exit_with_the_usage_code(argv, capsys):
    assert main(argv) == ExitCode.USAGE
    assert "usage:" in capsys.readouterr().err
