"""The fleet's records: what a job runs on (pools) and what runs (replicas).

Ground-floor types shared by the job registry (``orca.queue.jobs`` stores them), the
launchers (which start and report replicas) and the control plane (which decides): none of
them imports the others for these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
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


class PoolPhase(str, Enum):
    """A pool's place in the job: the controller scales only ``active`` pools."""

    ACTIVE = "active"          # scaled to its target
    DRAINING = "draining"      # a swap is moving its chunks to another pool
    DRAINED = "drained"        # a swap finished moving away from it
    CANCELLED = "cancelled"    # a swap to it was backed out


@dataclass(frozen=True)
class Pool(PoolSpec):
    """One pool of a job (``JobRecord.pools``): its spec, its phase, and a fixed target if a swap set one."""

    state: PoolPhase = PoolPhase.ACTIVE
    target: int | None = None      # replicas wanted; None: the plan (local) or the runtime policy (cloud)

    @property
    def active(self) -> bool:
        return self.state is PoolPhase.ACTIVE

    def to_dict(self) -> dict:
        return {**asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, d: dict) -> "Pool":
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        values["state"] = PoolPhase(values.get("state", "active"))
        return cls(**values)


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
    rev: int = 0                 # bumped by every controller write: a call's result lands only on the revision it was made for
    call: str = ""               # launcher call in flight (launch | drain | terminate), made by controller call_by at call_at
    call_by: str = ""
    call_at: float = 0.0
    zone: str = ""               # where it runs or is being placed, when the launcher knows (else the pool's region)
    capacity_errors: int = 0     # launch attempts the cloud refused for lack of capacity (the availability estimate reads them)
    notice_at: float | None = None  # when the cloud announced its preemption (AWS 2 min, GCP 30 s ahead)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["state"] = self.state.value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Replica":
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in d.items() if k in names}, "state": ReplicaState(d["state"])})
