"""Data in and decisions out for the planner and the runtime scaling policy (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Market = Literal["spot", "on_demand", "serverless", "local"]
MARKETS: tuple[Market, ...] = ("spot", "on_demand", "serverless", "local")


@dataclass(frozen=True)
class JobStats:
    """What ingest learned about a job: enough to size it."""

    n_requests: int
    prompt_tokens: int           # whole job: sum over requests
    max_output_tokens: int       # whole job: sum of each request's max_tokens (or the default)
    model: str
    endpoint: str = "/v1/chat/completions"


@dataclass(frozen=True)
class Constraints:
    """What the user or the deployment allows. Empty tuples mean 'anything in the catalog'."""

    markets: tuple[Market, ...] = ("spot", "on_demand", "serverless")
    gpus: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    max_replicas: int | None = None
    max_cost_usd: float | None = None


@dataclass(frozen=True)
class Plan:
    """One way to run a job: a pool of identical replicas."""

    gpu: str                 # catalog GPU name, e.g. "H100", or "cpu" for the local launcher
    gpus_per_replica: int
    tp: int
    pp: int
    market: Market
    region: str | None
    replicas: int
    price_per_replica_hour: float
    replica_tokens_per_s: float  # output tokens/s of one replica
    expected_finish_s: float     # from start, provisioning included
    expected_cost_usd: float
    risk: float                  # 0..1: probability-like score of missing the deadline
    instance_type: str | None = None
    startup_s: float = 0.0       # launch to first chunk: boot/cold start plus model load
    # For serverless plans ``region`` names the provider ("modal" | "runpod"); for local plans it is None.

    @property
    def key(self) -> str:
        """Pool key: the same GPU/parallelism/market/region is one pool."""
        return f"{self.gpu}-tp{self.tp}-pp{self.pp}-{self.market}" + (f"-{self.region}" if self.region else "")


@dataclass(frozen=True)
class PoolState:
    """Live view of one pool, as the controller sees it."""

    key: str
    market: Market
    replicas_running: int        # processing chunks
    replicas_starting: int       # launched, not yet processing
    replica_tokens_per_s: float  # measured if known, else the plan's estimate
    price_per_replica_hour: float
    recent_preemptions: int = 0


@dataclass(frozen=True)
class PoolOption:
    """A pool the runtime policy may grow or shrink: at most one per market (see orca.planner.policy)."""

    key: str
    market: Market
    replica_tokens_per_s: float
    price_per_replica_hour: float
    startup_s: float             # launch to first chunk
    max_replicas: int
    zone: str = ""               # region/zone of a spot or on-demand option (one option per spot zone)


@dataclass(frozen=True)
class RuntimeState:
    """Input of the runtime policy at one controller tick."""

    now_s: float                 # seconds since job start
    deadline_s: float            # seconds from job start to deadline
    work_total: float            # output tokens (or any unit) of the whole job
    work_done: float
    pools: tuple[PoolState, ...]
    blocked: frozenset[str] = frozenset()  # option keys not to launch in now (orca.planner.availability's estimate)
    probation: frozenset[str] = frozenset()  # option keys whose capacity went soon after it came up: one replica there


@dataclass(frozen=True)
class ScalingDecision:
    """Desired replica count per pool key. The controller launches or drains to match."""

    targets: dict[str, int] = field(default_factory=dict)
    reason: str = ""
