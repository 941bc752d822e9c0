"""What the control plane depends on, whether it answers, and how an outage is answered.

``/healthz`` reports Redis and the object store (503 when either is down). While Redis (or the
store) is unreachable, every API call that needs it answers 503
``{"error": {"type": "unavailable", "message": "redis unreachable; retrying"}}``, and the server
logs one line per ``control.unavailable_log_every_s`` instead of a traceback per request.
"""

from __future__ import annotations

import logging
import threading
import time

from fastapi.responses import JSONResponse

from orca.errors import OrcaError, QueueUnavailableError
from orca.settings import Settings

log = logging.getLogger("orca.control")


def check(service) -> dict[str, bool]:
    """``{"redis": reachable, "store": reachable}`` for ``service`` (an ``OrcaService``)."""
    try:
        redis_ok = service.registry.ping()
    except OrcaError:
        redis_ok = False
    try:
        service.store.ping()
        store_ok = True
    except OrcaError:
        store_ok = False
    return {"redis": redis_ok, "store": store_ok}


def healthz(service) -> JSONResponse:
    checks = check(service)
    ok = all(checks.values())
    return JSONResponse({"ok": ok, **checks}, status_code=200 if ok else 503)


class OutageAnswer:
    """The 503 for a call that hit an unreachable Redis or store, logged at most once per period."""

    def __init__(self, settings: Settings) -> None:
        self.every_s = settings.control.unavailable_log_every_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def __call__(self, exc: OrcaError) -> JSONResponse:
        what = "redis" if isinstance(exc, QueueUnavailableError) else "store"
        now = time.monotonic()
        with self._lock:
            due = now - self._last.get(what, float("-inf")) >= self.every_s
            if due:
                self._last[what] = now
        if due:
            log.warning("%s unreachable; answering 503 until it is back (%s)", what, exc)
        return JSONResponse({"error": {"type": "unavailable", "code": "unavailable",
                                       "message": f"{what} unreachable; retrying", "param": None, "errors": []}},
                            status_code=503, headers={"retry-after": "1"})
