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
- a launch that came up resets the zone to healthy;
- capacity that went again soon after it came up (within ``short_s``, a few start-ups: the
  controller passes the pool's) could not repay a replica's start-up: the zone is avoided for
  ``short_backoff_s`` (doubling while it keeps happening; a launch that comes up does not lift
  it), then it is *on probation*: the policy launches one replica there, not a pool, until
  capacity there has lasted ``probation_factor * short_s``.

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
    up_since: float | None = None  # the first launch that came up since the last failure
    short_lives: int = 0           # capacity that went within short_s of coming up, in a row
    proven_s: float = 0.0          # capacity lasting this long ends the probation
    short_until: float = 0.0       # avoided after short-lived capacity (a launch that comes up does not lift it)

    def usable(self, t: float) -> bool:
        return t >= self.blocked_until and t >= self.short_until

    def on_probation(self, t: float) -> bool:
        return self.short_lives > 0 and not (self.up_since is not None and t - self.up_since >= self.proven_s)


class AvailabilityEstimator:
    """Per (zone, market): may the policy launch there now? (see the module docstring)."""

    def __init__(self, backoff_s: float = 120.0, backoff_max_s: float = 1800.0, short_backoff_s: float = 900.0,
                 probation_factor: float = 2.0) -> None:
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.short_backoff_s = short_backoff_s
        self.probation_factor = probation_factor
        self._zones: dict[Key, ZoneHealth] = {}

    @classmethod
    def from_settings(cls, settings) -> "AvailabilityEstimator":
        ps = settings.planner
        return cls(ps.availability_backoff_s, ps.availability_backoff_max_s, ps.availability_short_backoff_s,
                   ps.availability_probation_factor)

    def health(self, zone: str, market: str) -> ZoneHealth:
        return self._zones.setdefault((zone or "", market), ZoneHealth())

    # -- observations -----------------------------------------------------
    def capacity_error(self, zone: str, market: str, t: float) -> None:
        h = self.health(zone, market)
        h.capacity_errors += 1
        self._fail(h, t)

    def preempted(self, zone: str, market: str, t: float, short_s: float = 0.0) -> None:
        """A replica was taken away, or its preemption notice came (the same outage: counted once).

        ``short_s``: capacity that lasted less than this since it came up could not repay a start-up:
        the zone is avoided for ``short_backoff_s`` (doubling while it keeps happening) and is on
        probation until capacity there lasts ``probation_factor * short_s``."""
        h = self.health(zone, market)
        h.preemptions += 1
        lasted = None if h.up_since is None else t - h.up_since
        self._fail(h, t)
        if lasted is None:
            return
        h.proven_s = short_s * self.probation_factor
        if lasted < short_s:
            h.short_lives += 1
            h.short_until = t + self.short_backoff_s * 2 ** (h.short_lives - 1)
        else:
            h.short_lives = 0

    def stuck(self, zone: str, market: str, t: float) -> None:
        """A launch has been provisioning for far longer than the start-up it should take."""
        self._fail(self.health(zone, market), t)

    def came_up(self, zone: str, market: str, t: float) -> None:
        h = self.health(zone, market)
        h.failures, h.blocked_until, h.last_up_at = 0, 0.0, t
        if h.up_since is None:
            h.up_since = t

    def _fail(self, h: ZoneHealth, t: float) -> None:
        h.last_failure_at, h.up_since = t, None
        if not h.usable(t):
            return  # part of the failure that blocked it: no further doubling
        h.failures += 1
        h.blocked_until = t + min(self.backoff_s * 2 ** (h.failures - 1), self.backoff_max_s)

    # -- answers ------------------------------------------------------------
    def usable(self, zone: str, market: str, t: float) -> bool:
        h = self._zones.get((zone or "", market))
        return h is None or h.usable(t)

    def on_probation(self, zone: str, market: str, t: float) -> bool:
        """Its capacity went soon after coming up last time, and has not lasted since: launch one replica there, not a pool."""
        h = self._zones.get((zone or "", market))
        return h is not None and h.on_probation(t)
