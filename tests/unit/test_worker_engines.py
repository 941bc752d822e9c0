"""Engine command lines and URL handling (no engine is started here)."""

from __future__ import annotations

import sys

import pytest

from orca.errors import ConfigError, EngineUnavailableError
from orca.settings import EngineSettings
from orca.worker.engines import EngineSpec, make_engine
from orca.worker.engines.external import ExternalEngine
from orca.worker.engines.llamacpp import llamacpp_command, packaged_model_path
from orca.worker.engines.vllm import VllmEngine, vllm_command


def test_vllm_command_line_has_every_parallelism_and_memory_flag():
    spec = EngineSpec(kind="vllm", model="my-job-model", model_path="Qwen/Qwen2.5-0.5B-Instruct", tp=4, pp=2,
                      max_model_len=8192, gpu_memory_utilization=0.85)
    cmd = vllm_command(spec, 8123)
    assert cmd[:3] == ["vllm", "serve", "Qwen/Qwen2.5-0.5B-Instruct"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags == {
        "--served-model-name": "my-job-model", "--host": "127.0.0.1", "--port": "8123",
        "--tensor-parallel-size": "4", "--pipeline-parallel-size": "2",
        "--max-model-len": "8192", "--gpu-memory-utilization": "0.85",
    }


def test_vllm_command_line_defaults_load_the_served_model_and_leave_vllm_defaults_alone():
    cmd = vllm_command(EngineSpec(kind="vllm", model="Qwen/Qwen2.5-0.5B-Instruct"), 9000, "/opt/bin/vllm")
    assert cmd[:3] == ["/opt/bin/vllm", "serve", "Qwen/Qwen2.5-0.5B-Instruct"]
    assert "--max-model-len" not in cmd and "--gpu-memory-utilization" not in cmd
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "1"


def test_vllm_engine_without_vllm_installed_is_unavailable(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(EngineUnavailableError):
        VllmEngine(EngineSpec(kind="vllm", model="m"), EngineSettings()).start()


def test_llamacpp_command_serves_the_job_model_name_with_embeddings_pooled():
    settings = EngineSettings(llamacpp_ctx=1024, llamacpp_threads=2)
    cmd = llamacpp_command(EngineSpec(kind="llamacpp", model="smollm2"), 7001, settings, "/m.gguf")
    assert cmd[:3] == [sys.executable, "-m", "llama_cpp.server"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags["--model"] == "/m.gguf" and flags["--model_alias"] == "smollm2"
    assert flags["--port"] == "7001" and flags["--host"] == "127.0.0.1"
    assert flags["--n_ctx"] == "1024" and flags["--n_threads"] == "2"
    assert flags["--embedding"] == "true" and flags["--kv_overrides"] == settings.llamacpp_pooling_override


def test_packaged_model_is_a_gguf_file():
    path = packaged_model_path()
    assert path.endswith(".gguf")
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"


@pytest.mark.parametrize("url", ["http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/"])
def test_external_engine_joins_request_endpoints_without_doubling_v1(url):
    engine = ExternalEngine(EngineSpec(kind="external", url=url), EngineSettings())
    assert engine.url_for("/v1/chat/completions") == "http://h:1/v1/chat/completions"


def test_external_engine_sends_the_api_key_named_by_env(monkeypatch):
    monkeypatch.setenv("MY_ENDPOINT_KEY", "sekrit")
    engine = ExternalEngine(EngineSpec(kind="external", url="http://h", api_key_env="MY_ENDPOINT_KEY"), EngineSettings())
    assert engine.headers() == {"Authorization": "Bearer sekrit"}
    monkeypatch.delenv("MY_ENDPOINT_KEY")
    with pytest.raises(ConfigError):
        ExternalEngine(EngineSpec(kind="external", url="http://h", api_key_env="MY_ENDPOINT_KEY"), EngineSettings())


def test_external_engine_needs_a_url():
    with pytest.raises(ConfigError):
        make_engine(EngineSpec(kind="external"), EngineSettings())


def test_unknown_engine_kind_is_a_config_error():
    with pytest.raises(ConfigError):
        make_engine(EngineSpec(kind="tgi"), EngineSettings())  # type: ignore[arg-type]
