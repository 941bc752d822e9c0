"""What engine a worker runs, as given on its command line or in its environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EngineKind = Literal["llamacpp", "vllm", "external", "fake"]
ENGINE_KINDS: tuple[str, ...] = ("llamacpp", "vllm", "external", "fake")


@dataclass(frozen=True)
class EngineSpec:
    kind: EngineKind
    model: str = "smollm2"                 # name the engine answers to: the ``model`` of the job's request bodies
    model_path: str | None = None          # weights: HF id or dir (vLLM), .gguf file (llama.cpp); None: the default
    url: str | None = None                 # external: root URL of an OpenAI-compatible server
    api_key_env: str | None = None         # external: name of the env var holding a bearer token
    tp: int = 1                            # vLLM tensor parallel size
    pp: int = 1                            # vLLM pipeline parallel size
    max_model_len: int | None = None       # vLLM context limit (None: the model's)
    gpu_memory_utilization: float | None = None  # vLLM KV-cache memory fraction (None: vLLM's default)
    fake_slots: int = 64                   # fake: requests served at once
    fake_latency_s: float = 0.0            # fake: time per request
