"""The ``vllm`` engine kind: ``vllm serve`` as a supervised subprocess (GPU machines).

This is the only orca module that knows about vLLM. The worker never imports
vllm; it runs the ``vllm`` CLI, which must be on PATH (``pip install orca[vllm]``
or a vLLM container image).
"""

from __future__ import annotations

import shutil

from orca.errors import EngineUnavailableError
from orca.settings import EngineSettings
from orca.worker.engines.base import ServerProcess, SubprocessEngine, free_port
from orca.worker.engines.spec import EngineSpec


def vllm_command(spec: EngineSpec, port: int, executable: str = "vllm") -> list[str]:
    """The ``vllm serve`` command line for a spec: weights from ``model_path`` (default: the model name),
    answering to ``spec.model``, on loopback ``port``."""
    cmd = [
        executable, "serve", spec.model_path or spec.model,
        "--served-model-name", spec.model,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--tensor-parallel-size", str(spec.tp),
        "--pipeline-parallel-size", str(spec.pp),
    ]
    if spec.max_model_len is not None:
        cmd += ["--max-model-len", str(spec.max_model_len)]
    if spec.gpu_memory_utilization is not None:
        cmd += ["--gpu-memory-utilization", str(spec.gpu_memory_utilization)]
    return cmd


class VllmEngine(SubprocessEngine):
    kind = "vllm"

    def __init__(self, spec: EngineSpec, settings: EngineSettings) -> None:
        super().__init__(settings)
        self.spec = spec

    def build_servers(self) -> list[ServerProcess]:
        executable = shutil.which("vllm")
        if executable is None:
            raise EngineUnavailableError("vLLM is not installed here (no `vllm` on PATH); install orca[vllm]")
        port = free_port()
        return [ServerProcess("vllm", vllm_command(self.spec, port, executable), port, self.settings, "/health")]
