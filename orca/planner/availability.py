"""Spot (and any market's) availability per zone, estimated only from what a launcher reports.

Nobody tells orca whether a cloud zone has spot capacity. What it can see is: a launch that
came back with a capacity error, a replica that was preempted (or got a preemption notice),
a launch that has been provisioning for far longer than it should, and a launch that came up.
This estimator turns those observations into one answer per (zone, market): *may the policy
launch there now?* It is the same code in production (the controller feeds it from its
launcher polls) and in the simulated cloud (``orca.sim``), which runs that controller.

The rule is SpotHedge's (SkyServe, EuroSys'25) in its simplest form:

- a failure (capacity error, preemption, notice, stuck provisioning) blocks the zone/market for
  a backoff; further failures *after* the zone was probed again double it (up to a cap);
  failures that arrive while it is blocked (the other replicas of the same outage) do not;
- once the backoff has passed the zone is usable again: the next launch there is the probe;
- a launch that came up resets the zone to healthy.

Pure: no I/O, time is passed in. Keys are ``(zone, market)``; ``zone`` is the pool's region
(``""`` when the launcher does not say).
"""

from __future__ import annotations

from dataclasses import dataclass

Key = tuple[str, str]


@dataclass
class ZoneHealth:
    failures: int = 0              # failures counted since the last launch that came up
    blocked_until: float = 0.0     # no launches before this time
    last_failure_at: float | None = None
    last_up_at: float | None = None
    preemptions: int = 0
    capacity_errors: int = 0

    def usable(self, t: float) -> bool:
        return t >= self.blocked_until


class AvailabilityEstimator:
    """Per (zone, market): may the policy launch there now? (see the module docstring)."""

    def __init__(self, backoff_s: float = 120.0, backoff_max_s: float = 1800.0) -> None:
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._zones: dict[Key, ZoneHealth] = {}

    @classmethod
    def from_settings(cls, settings) -> "AvailabilityEstimator":
        ps = settings.planner
        return cls(ps.availability_backoff_s, ps.availability_backoff_max_s)

    def health(self, zone: str, market: str) -> ZoneHealth:
        return self._zones.setdefault((zone or "", market), ZoneHealth())

    # -- observations -----------------------------------------------------
    def capacity_error(self, zone: str, market: str, t: float) -> None:
        h = self.health(zone, market)
        h.capacity_errors += 1
        self._fail(h, t)

    def preempted(self, zone: str, market: str, t: float) -> None:
        """A replica was taken away, or its preemption notice came (the same outage: counted once)."""
        h = self.health(zone, market)
        h.preemptions += 1
        self._fail(h, t)

    def stuck(self, zone: str, market: str, t: float) -> None:
        """A launch has been provisioning for far longer than the start-up it should take."""
        self._fail(self.health(zone, market), t)

    def came_up(self, zone: str, market: str, t: float) -> None:
        h = self.health(zone, market)
        h.failures, h.blocked_until, h.last_up_at = 0, 0.0, t

    def _fail(self, h: ZoneHealth, t: float) -> None:
        h.last_failure_at = t
        if not h.usable(t):
            return  # part of the failure that blocked it: no further doubling
        h.failures += 1
        h.blocked_until = t + min(self.backoff_s * 2 ** (h.failures - 1), self.backoff_max_s)

    # -- answers ------------------------------------------------------------
    def usable(self, zone: str, market: str, t: float) -> bool:
        h = self._zones.get((zone or "", market))
        return h is None or h.usable(t)
