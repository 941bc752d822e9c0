"""The interface every launcher implements: the controller decides, a launcher acts.

A launcher starts replicas of the orca worker for one job and one pool, reports
their state, and tears them down. Local subprocesses, SkyPilot clusters and
serverless invocations are interchangeable behind it, and one job may mix them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from orca.fleet import PoolSpec, Replica, ReplicaState, WorkerEnv

__all__ = ["Launcher", "PoolSpec", "Replica", "ReplicaState", "WorkerEnv"]


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

    def planned_handle(self, env: WorkerEnv, pool: PoolSpec, replica_id: str) -> str:
        """The handle ``launch`` will give this replica, if it is known before the call (a cluster name);
        "" otherwise. The controller records it with the launch request, so a launch lost with its
        controller can still be torn down."""
        return ""
