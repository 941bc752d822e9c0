"""Building blocks for simulated jobs: the options a job may run on, and constant or synthetic zones."""

from __future__ import annotations

from orca.planner.traces import Trace
from orca.sim.cloud import Zone


def option(market: str, price: float, startup_s: float, tokens_per_s: float, max_replicas: int, *, gpu: str = "L4",
           region: str | None = None, replicas: int = 1) -> dict:
    """A ``JobRecord.options`` entry (the shape ``orca.control.tasks.plan_dict`` makes, plus the cap)."""
    key = f"{gpu}-tp1-pp1-{market}" + (f"-{region}" if region else "")
    return {"key": key, "gpu": gpu, "gpus_per_replica": 1, "tp": 1, "pp": 1, "market": market, "region": region,
            "replicas": replicas, "price_per_replica_hour": price, "replica_tokens_per_s": tokens_per_s,
            "startup_s": startup_s, "max_replicas": max_replicas, "instance_type": None,
            "expected_finish_s": 0.0, "expected_cost_usd": 0.0, "risk": 0.0}


def constant_zone(name: str, available: bool, notice_s: float = 120.0, capacity: int = 64) -> Zone:
    return Zone(name, Trace(f"const-{available}", 3600.0, (available,)), 0.0, capacity, notice_s)
