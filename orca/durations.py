"""Durations as people type them ('90m', '2h', '1d', '1h30m', '45s', '3600') and as orca prints them.

Shared by the CLI (``--deadline``), the client and the control plane (``JobCreate.deadline``,
OpenAI ``completion_window``). Stdlib only: ``orca plan`` imports it on its fast path.
"""

from __future__ import annotations

import math
import re

UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhdw])")
_WHOLE = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)\s*[smhdw]\s*)+")


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration: a plain number of seconds, or unit parts 's', 'm', 'h', 'd', 'w'
    ('90m', '2h', '1d', '1h30m', '1.5h'). ValueError unless the result is a positive finite number."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        t = str(text).strip().lower()
        try:
            value = float(t)
        except ValueError:
            if not t or not _WHOLE.fullmatch(t):
                raise ValueError(f"not a duration: {text!r} (use e.g. 90m, 2h, 1d, 1h30m or seconds)") from None
            value = sum(float(n) * UNITS[u] for n, u in _PART.findall(t))
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"duration must be a positive number of seconds: {text!r}")
    return value


def format_duration(seconds: float | None) -> str:
    """A short human form: '45s', '12m 05s', '2h 03m', '3d 04h'; '-' for None."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"
