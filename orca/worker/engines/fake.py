"""The ``fake`` engine kind: a supervised subprocess of the FAKE OpenAI server (benchmarks, e2e tests)."""

from __future__ import annotations

import sys

from orca.settings import EngineSettings
from orca.worker.engines.base import ServerProcess, SubprocessEngine, free_port
from orca.worker.engines.spec import EngineSpec


class FakeEngine(SubprocessEngine):
    kind = "fake"
    serves_responses = False  # chat completions, completions and embeddings only

    def __init__(self, spec: EngineSpec, settings: EngineSettings) -> None:
        super().__init__(settings)
        self.spec = spec

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "orca.worker.engines.fake_server", "--port", str(port),
                "--slots", str(self.spec.fake_slots), "--latency-s", str(self.spec.fake_latency_s),
                "--model", self.spec.model]

    def build_servers(self) -> list[ServerProcess]:
        port = free_port()
        return [ServerProcess("fake", self.command(port), port, self.settings)]
