"""Where the control loop reads the time: the system clock in production, a virtual one in the simulated cloud.

``Clock`` is anything with ``time() -> float`` (unix seconds) and ``monotonic() -> float`` (for
intervals). The controller, the swap manager and
the runtime state they build read time only through the clock they were given, so
``orca.sim`` can run the production control loop hours ahead in milliseconds.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """Wall-clock time (the default everywhere)."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class VirtualClock:
    """Time that moves only when told to; ``now_ms`` lets the in-memory queue twin share it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._t = float(start)

    def time(self) -> float:
        return self._t

    def monotonic(self) -> float:
        return self._t

    def now_ms(self) -> int:
        return int(self._t * 1000)

    def advance_to(self, t: float) -> None:
        if t < self._t:
            raise ValueError(f"a virtual clock does not go back ({t} < {self._t})")
        self._t = float(t)


SYSTEM_CLOCK = SystemClock()
