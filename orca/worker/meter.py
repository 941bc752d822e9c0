"""What a worker measures about its engine: throughput, tokens, busy time and progress.

Updated from the event loop, read from the heartbeat thread; a lock keeps the
two consistent.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from orca.usage import TokenUsage


@dataclass(frozen=True)
class MeterSnapshot:
    at: float                 # time.monotonic()
    requests: int             # requests finished (any outcome)
    errors: int               # requests that ended as error lines
    prompt_tokens: int
    completion_tokens: int
    busy_s: float             # time with at least one request in flight
    in_flight: int
    last_progress: float      # monotonic time of the last completion, or of going busy


class Meter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._busy_since: float | None = None
        self._busy_s = 0.0
        self._requests = self._errors = self._prompt = self._completion = 0
        self._last_progress = time.monotonic()

    def request_started(self) -> None:
        with self._lock:
            if self._in_flight == 0:
                now = time.monotonic()
                self._busy_since = now
                self._last_progress = now
            self._in_flight += 1

    def request_ended(self, completed: bool) -> None:
        """One HTTP attempt ended; ``completed`` when the engine answered (any status)."""
        with self._lock:
            now = time.monotonic()
            self._in_flight -= 1
            if completed:
                self._last_progress = now
            if self._in_flight == 0 and self._busy_since is not None:
                self._busy_s += now - self._busy_since
                self._busy_since = None

    def request_finished(self, ok: bool, usage: dict | None) -> None:
        """A request's final outcome (after retries)."""
        with self._lock:
            self._requests += 1
            if not ok:
                self._errors += 1
            if usage:
                tokens = TokenUsage.of(usage)  # chat/completions or Responses naming
                self._prompt += tokens.input_tokens
                self._completion += tokens.output_tokens

    def snapshot(self) -> MeterSnapshot:
        with self._lock:
            now = time.monotonic()
            busy = self._busy_s + (now - self._busy_since if self._busy_since is not None else 0.0)
            return MeterSnapshot(now, self._requests, self._errors, self._prompt, self._completion,
                                 busy, self._in_flight, self._last_progress)

    def stalled_for(self) -> float:
        """Seconds requests have been in flight without any completing (0 when idle)."""
        with self._lock:
            return time.monotonic() - self._last_progress if self._in_flight else 0.0
