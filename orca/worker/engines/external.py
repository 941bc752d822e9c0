"""The ``external`` engine kind: an OpenAI-compatible server orca does not run (serverless endpoint, user's server)."""

from __future__ import annotations

import os
import time

import httpx

from orca.errors import ConfigError, EngineStartError
from orca.settings import EngineSettings
from orca.worker.engines.base import Engine
from orca.worker.engines.spec import EngineSpec


class ExternalEngine(Engine):
    """Requests go to ``spec.url`` + the request's endpoint.

    A URL ending in ``/v1`` (the usual OpenAI "base URL") is accepted too: the
    request endpoints already start with ``/v1/``, so it is not doubled.
    """

    kind = "external"

    def __init__(self, spec: EngineSpec, settings: EngineSettings) -> None:
        if not spec.url:
            raise ConfigError("the external engine needs --engine-url")
        root = spec.url.rstrip("/")
        self.root = root[: -len("/v1")] if root.endswith("/v1") else root
        self.spec, self.settings = spec, settings
        token = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        if spec.api_key_env and not token:
            raise ConfigError("the external engine's API key variable is not set", env=spec.api_key_env)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def start(self) -> None:
        """Wait until the server answers ``GET /v1/models`` (any status below 500 counts as up)."""
        deadline = time.monotonic() + self.settings.start_timeout_s
        last: str = ""
        with httpx.Client(timeout=self.settings.health_poll_s * 4, headers=self._headers) as client:
            while time.monotonic() < deadline:
                try:
                    if client.get(self.root + "/v1/models").status_code < 500:
                        return
                except httpx.HTTPError as e:
                    last = repr(e)
                time.sleep(self.settings.health_poll_s)
        raise EngineStartError("external engine did not answer in time", url=self.root, last_error=last)

    def stop(self) -> None:
        """Nothing to stop: orca does not own the server."""

    def url_for(self, endpoint: str) -> str:
        return self.root + endpoint

    def headers(self) -> dict[str, str]:
        return self._headers
