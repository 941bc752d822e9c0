"""bench/chaos.py's fault schedule is a pure function of the seed: a seed names the same faults, in the
same order, at the same progress, and with --cancel every fault comes before the cancel."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("chaos_bench", Path(__file__).parents[2] / "bench" / "chaos.py")
chaos = sys.modules["chaos_bench"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(chaos)


def test_a_seed_fixes_the_schedule() -> None:
    assert chaos.schedule(4, 8, cancel=False) == chaos.schedule(4, 8, cancel=False)
    assert chaos.schedule(4, 8, cancel=False) != chaos.schedule(5, 8, cancel=False)
    plan = chaos.schedule(1, 8, cancel=False)
    ats = [f.at for f in plan["run"]]
    assert len(ats) == 8 and ats == sorted(ats) and all(0 < a < 1 for a in ats) and plan["cancel_at"] is None
    assert all(f.kind in chaos.KINDS and (len(f.parts) == 2) == (f.kind == "overlapping") for f in plan["run"])
    assert plan["ingest"].kind in ("kill9_rq_worker", "kill9_server") and plan["assembly"].kind in chaos.STACK_KINDS


def test_with_cancel_every_fault_comes_before_the_cancel() -> None:
    for seed in range(1, 20):
        plan = chaos.schedule(seed, 8, cancel=True)
        assert len(plan["run"]) == 4 and max(f.at for f in plan["run"]) <= plan["cancel_at"] <= 0.6
