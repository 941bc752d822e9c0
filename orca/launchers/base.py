"""The interface every launcher implements: the controller decides, a launcher acts.

A launcher starts replicas of the orca worker for one job and one pool, reports
their state, and tears them down. Local subprocesses, SkyPilot clusters and
serverless invocations are interchangeable behind it, and one job may mix them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from enum import Enum


class ReplicaState(str, Enum):
    PROVISIONING = "provisioning"  # asked the launcher; no worker yet
    STARTING = "starting"          # worker process up, engine loading
    RUNNING = "running"            # claiming chunks
    DRAINING = "draining"          # no new claims; finishing or releasing
    PREEMPTED = "preempted"        # the cloud took it away
    FAILED = "failed"              # could not launch or crashed for good
    TERMINATED = "terminated"      # torn down

    @property
    def live(self) -> bool:
        return self in (ReplicaState.PROVISIONING, ReplicaState.STARTING, ReplicaState.RUNNING, ReplicaState.DRAINING)


@dataclass(frozen=True)
class PoolSpec:
    """What every replica of a pool runs on."""

    key: str                 # Plan.key
    launcher: str            # "local" | "skypilot" | "modal" | "runpod"
    gpu: str
    gpus_per_replica: int = 1
    tp: int = 1
    pp: int = 1
    market: str = "local"
    region: str | None = None
    price_per_replica_hour: float = 0.0
    engine: str = "llamacpp"     # worker engine kind: llamacpp | vllm | external | fake
    engine_args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerEnv:
    """Everything a worker needs to join a job's queue. Secrets travel by name, not value."""

    job_id: str
    redis_url: str
    store_url: str
    model: str
    secret_env_names: tuple[str, ...] = ()


@dataclass
class Replica:
    replica_id: str
    job_id: str
    pool: str
    launcher: str
    state: ReplicaState = ReplicaState.PROVISIONING
    handle: str = ""             # pid, cluster name, call id ...
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    cost_usd: float = 0.0
    message: str = ""
    price_per_hour: float = 0.0  # PoolSpec.price_per_replica_hour at launch: cost accrues from it

    def to_dict(self) -> dict:
        d = asdict(self)
        d["state"] = self.state.value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Replica":
        return cls(**{**d, "state": ReplicaState(d["state"])})


class Launcher(ABC):
    name: str

    @abstractmethod
    def launch(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> Replica:
        """Start one replica; returns at once with state PROVISIONING (or FAILED)."""

    @abstractmethod
    def poll(self, replica: Replica) -> Replica:
        """Refresh a replica's state (and accrued cost) from the launcher's source of truth."""

    @abstractmethod
    def drain(self, replica: Replica) -> Replica:
        """Ask the replica's worker to stop claiming and release what it cannot finish (SIGTERM semantics)."""

    @abstractmethod
    def terminate(self, replica: Replica) -> Replica:
        """Tear the replica down for good; must be safe to call repeatedly."""
