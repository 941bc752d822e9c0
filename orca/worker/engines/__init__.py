"""Inference engines the worker forwards requests to: llama.cpp (CPU), vLLM (GPU), an external URL, or a fake."""

from __future__ import annotations

from orca.settings import EngineSettings
from orca.worker.engines.base import Engine
from orca.worker.engines.spec import ENGINE_KINDS, EngineKind, EngineSpec

__all__ = ["ENGINE_KINDS", "Engine", "EngineKind", "EngineSpec", "make_engine"]


def make_engine(spec: EngineSpec, settings: EngineSettings) -> Engine:
    """The engine for a spec (nothing is started yet)."""
    if spec.kind == "llamacpp":
        from orca.worker.engines.llamacpp import LlamaCppEngine
        return LlamaCppEngine(spec, settings)
    if spec.kind == "vllm":
        from orca.worker.engines.vllm import VllmEngine
        return VllmEngine(spec, settings)
    if spec.kind == "external":
        from orca.worker.engines.external import ExternalEngine
        return ExternalEngine(spec, settings)
    if spec.kind == "fake":
        from orca.worker.engines.fake import FakeEngine
        return FakeEngine(spec, settings)
    from orca.errors import ConfigError
    raise ConfigError("unknown engine kind", kind=spec.kind, known=ENGINE_KINDS)
