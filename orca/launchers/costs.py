"""Money accrued by replicas: catalog price per replica-hour times billed time.

Billing starts at ``Replica.started_at`` (set by each launcher when the platform starts
charging: cluster up, invocation running) and stops at ``Replica.ended_at``; a replica
that never started cost nothing. The price is ``Replica.price_per_hour``, copied from
``PoolSpec.price_per_replica_hour`` (the planner's catalog) at launch, so every launcher
accrues cost the same way and a restarted control plane still knows it.
"""

from __future__ import annotations

from collections.abc import Iterable

from orca.launchers.base import Replica


def accrued_cost(price_per_hour: float, started_at: float | None, ended_at: float | None, now: float) -> float:
    """Cost in USD of ``started_at .. (ended_at or now)`` at ``price_per_hour``."""
    if started_at is None:
        return 0.0
    end = ended_at if ended_at is not None else now
    return max(0.0, end - started_at) * price_per_hour / 3600.0


def with_cost(replica: Replica, now: float) -> Replica:
    """``replica`` with ``cost_usd`` brought up to ``now`` at its ``price_per_hour`` (in place; returned)."""
    replica.cost_usd = accrued_cost(replica.price_per_hour, replica.started_at, replica.ended_at, now)
    return replica


def pool_costs(replicas: Iterable[Replica]) -> dict[str, float]:
    """Pool key -> summed ``cost_usd`` of its replicas."""
    totals: dict[str, float] = {}
    for replica in replicas:
        totals[replica.pool] = totals.get(replica.pool, 0.0) + replica.cost_usd
    return totals
