"""Spot availability traces: the bundled public ones and synthetic two-state ones.

Bundled traces (``orca/planner/data/traces/``, see its SOURCE.md) hold one integer per tick of
``gap_seconds``; a value counts the instances that could NOT be obtained, so for 1-node traces
``available = (value == 0)``. This module is the only place that convention is applied.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

TRACES_DIR = Path(__file__).parent / "data" / "traces"


@dataclass(frozen=True)
class Trace:
    name: str
    gap_s: float
    available: tuple[bool, ...]

    @property
    def duration_s(self) -> float:
        return self.gap_s * len(self.available)

    def available_at(self, t: float) -> bool:
        """Spot availability at ``t`` seconds from the trace start (wraps around)."""
        return self.available[int(t // self.gap_s) % len(self.available)]

    def next_change(self, t: float, horizon: float) -> float | None:
        """First time in ``(t, t + horizon]`` at which availability flips, or None."""
        now = self.available_at(t)
        edge = (int(t // self.gap_s) + 1) * self.gap_s
        while edge <= t + horizon:
            if self.available_at(edge) != now:
                return edge
            edge += self.gap_s
        return None

    def fraction_available(self) -> float:
        return sum(self.available) / len(self.available)


def load_trace(path: Path) -> Trace:
    """One trace file; ``available = (value == 0)``."""
    raw = json.loads(Path(path).read_text())
    data = raw["data"]
    name = f"{Path(path).parent.name}/{Path(path).stem}"
    return Trace(name=name, gap_s=float(raw["metadata"]["gap_seconds"]), available=tuple(int(v) == 0 for v in data))


def bundled_traces() -> list[Trace]:
    """Every bundled public trace, sorted by name."""
    return [load_trace(p) for p in sorted(TRACES_DIR.glob("*/*.json"))]


def synthetic_trace(name: str, mean_up_s: float, mean_down_s: float, duration_s: float, gap_s: float = 60.0, seed: int = 0) -> Trace:
    """Alternating available/unavailable periods with exponential lengths (a two-state Markov chain)."""
    rng = random.Random(seed)
    ticks = int(duration_s // gap_s)
    out: list[bool] = []
    up = True
    while len(out) < ticks:
        span = rng.expovariate(1.0 / (mean_up_s if up else mean_down_s))
        out.extend([up] * max(1, round(span / gap_s)))
        up = not up
    return Trace(name=name, gap_s=gap_s, available=tuple(out[:ticks]))
