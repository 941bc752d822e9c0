"""One controller's launcher calls for its jobs' replicas: submit, follow, apply.

The controller tick decides *what* should happen to a job's replicas (launch one, drain one,
tear one down, look at one); this module makes each decision a launcher call on the
controller's :class:`~orca.control.calls.CallRunner` and, on later ticks of the job, writes
what the calls returned to Redis.

Replica records carry what keeps this safe across controllers and restarts:

* ``rev``: bumped by every write here. A call's result lands only on the revision it was
  made for, so a late poll never overwrites a newer drain or teardown.
* ``call``/``call_by``/``call_at``: a launch, drain or teardown in flight and the controller
  running it. Other controllers leave such a replica alone, so nothing is launched or torn
  down twice. A call whose controller stopped beating (``control.controller_ttl_s``) is
  orphaned. When its launcher names the handle before the call (a SkyPilot cluster name, a
  local worker's replica id: ``Launcher.planned_handle``), a lost launch becomes a teardown of
  whatever it made, in flight like any other: the replica stays live (but no longer counts
  toward its pool's target) until the teardown lands, and only then are its chunks reclaimed,
  so a worker the lost launch did start commits what it answered first. Without a planned
  handle a lost launch ends the replica (``terminated``) at once, but its chunks are not
  reclaimed: a worker it did start runs on untracked, keeps its leases until it commits, and
  exits when it finds no work (burst mode) or its budget ends; if none started, or it died,
  its leases expire and are reaped. A lost drain or teardown is simply decided again. Polls are not marked: they only read.

Writes happen only inside the job's tick (under its lock); call threads never touch Redis.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from collections.abc import Callable
from typing import Any

from orca.control.calls import CallResult, CallRunner
from orca.fleet import Pool, Replica, ReplicaState, WorkerEnv
from orca.queue.jobs import JobRecord
from orca.settings import Settings

#: Launcher operations that change a replica (marked on its record while in flight).
MARKED_OPS = ("launch", "drain", "terminate")


def _same(a: Replica, b: Replica) -> bool:
    """Equal apart from the bookkeeping fields (a poll that changed nothing is not written)."""
    skip = {"rev", "call", "call_by", "call_at"}
    return all(getattr(a, f.name) == getattr(b, f.name) for f in dataclasses.fields(Replica) if f.name not in skip)


class ReplicaCalls:
    """Launcher calls of one controller; see the module doc."""

    def __init__(self, controller_id: str, settings: Settings, registry: Any, launchers: Callable[[str], Any],
                 runner: CallRunner, queue_for: Callable[[str], Any], clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 observe: Callable[[JobRecord, Replica, Replica], None] | None = None) -> None:
        """``observe(record, old, new)``: told of every replica record a finished call changed (the
        controller's availability estimate reads capacity errors, notices and preemptions there)."""
        self.id = controller_id
        self.settings = settings
        self.registry = registry
        self.launchers = launchers
        self.runner = runner
        self.queue_for = queue_for
        self._clock = clock
        self._monotonic = monotonic
        self._observe = observe
        self._last_poll: dict[str, float] = {}     # replica id -> when this controller last asked for its state
        self._gone: set[str] = set()               # replicas that left the live states in this follow

    # -- following ---------------------------------------------------------
    def follow(self, record: JobRecord, live_controllers: set[str], replicas: list[Replica] | None = None) -> list[Replica]:
        """Write the job's finished calls and take over orphaned ones; the job's replicas now.
        ``replicas``: the job's replica records if just read under its lock (else they are read here)."""
        results = self.runner.collect(record.id)
        replicas = {r.replica_id: r for r in (self.registry.replicas(record.id) if replicas is None else replicas)}
        writes: dict[str, Replica] = {}
        for result in results:
            stored = replicas.get(result.replica_id)
            if stored is None or stored.rev != result.rev:
                self._stale(record, result)
                continue
            new = self._outcome(stored, result)
            if result.op == "poll" and _same(new, stored):
                continue
            new = dataclasses.replace(new, rev=stored.rev + 1, call="", call_by="", call_at=0.0)
            new = self._changed(record, stored, new)
            writes[new.replica_id] = replicas[new.replica_id] = new
        busy = self.runner.busy(record.id)
        for replica in list(replicas.values()):
            if replica.call and replica.replica_id not in busy and (
                    replica.call_by == self.id or replica.call_by not in live_controllers):
                new = self._changed(record, replica, self._orphaned(record, replica))
                if replica.call == "launch" and not replica.handle:
                    self._gone.discard(new.replica_id)  # its leases are left to run out, not reclaimed
                writes[new.replica_id] = replicas[new.replica_id] = new
        self.registry.put_replicas(list(writes.values()))
        if self._gone:
            self._reclaim(record, [new for new in writes.values() if new.replica_id in self._gone])
            self._gone.clear()
        return sorted(replicas.values(), key=lambda r: (r.created_at, r.replica_id))

    def poll_due(self, record: JobRecord, replicas: list[Replica]) -> None:
        """Ask for the state of the job's replicas whose poll is due (call it after the tick has acted, so a
        poll never holds back a drain or teardown decided in the same tick)."""
        self._poll_due(record, replicas, self.runner.busy(record.id))

    def _outcome(self, stored: Replica, result: CallResult) -> Replica:
        if result.error is None and result.replica is not None:
            return result.replica
        why = f"{type(result.error).__name__}: {result.error}" if result.error is not None else "no result"
        if result.op == "launch":
            return dataclasses.replace(stored, state=ReplicaState.FAILED, ended_at=self._clock(),
                                       message=f"launch failed: {why}")
        verb = {"poll": "state unknown", "drain": "drain failed", "terminate": "teardown failed"}[result.op]
        return dataclasses.replace(stored, message=f"{verb}: {why}")

    def _stale(self, record: JobRecord, result: CallResult) -> None:
        """A result for a record that moved on. A launch that made something is torn down again."""
        made = result.replica
        if result.op == "launch" and made is not None and made.state.live:
            launcher = self.launchers(made.launcher)
            self.runner.submit(record.id, made.replica_id, "terminate", -1, lambda: launcher.terminate(made))

    def _orphaned(self, record: JobRecord, replica: Replica) -> Replica:
        lost = f"{replica.call} lost with controller {replica.call_by}"
        base = dataclasses.replace(replica, rev=replica.rev + 1, call="", call_by="", call_at=0.0)
        if replica.call != "launch":
            return dataclasses.replace(base, message=f"{lost}; decided again")
        if not replica.handle:
            # Nothing names what it may have made (a serverless call id comes back from the call): a worker
            # it did start runs on untracked. Its chunks are not reclaimed (see ``follow``): it keeps its
            # leases until it commits (burst mode: it exits when out of work or budget), or they expire.
            return dataclasses.replace(base, state=ReplicaState.TERMINATED, ended_at=self._clock(),
                                       message=f"{lost}; a worker it started runs untracked until its leases end")
        # Known before the call (a cluster name, a local worker's replica id): tear down whatever the lost
        # launch made. The replica stays live until the teardown lands, and only then are its chunks
        # reclaimed: a worker the launch did start lets them go by a partial commit first.
        teardown = dataclasses.replace(base, state=ReplicaState.PROVISIONING, call="terminate", call_by=self.id,
                                       call_at=self._clock(), message=f"{lost}; tearing down what it made")
        launcher = self.launchers(replica.launcher)
        copy = dataclasses.replace(teardown)
        self.runner.submit(record.id, replica.replica_id, "terminate", teardown.rev, lambda: launcher.terminate(copy))
        return teardown

    def _changed(self, record: JobRecord, old: Replica, new: Replica) -> Replica:
        """Events, failure count and reclaim for a replica that changed state; returns the record to write
        (a worker that ended on the cloud's preemption notice is ``preempted``, the notice its reason)."""
        if not new.state.live and new.state is not ReplicaState.PREEMPTED:
            # (also when a late poll of the same replica lands after it ended: the notice stays the reason)
            notice = (self.registry.worker_metrics(record.id, new.replica_id) or {}).get("notice")
            if notice:
                new = dataclasses.replace(new, state=ReplicaState.PREEMPTED, message=f"preemption notice: {notice}")
                if old.state.live:
                    self.registry.add_event(record.id, "preemption_notice", f"{new.replica_id}: {notice}")
        if self._observe is not None:
            self._observe(record, old, new)
        if new.state is ReplicaState.FAILED and old.state is not ReplicaState.FAILED:
            record.replica_failures += 1
            self.registry.update(record.id, replica_failures=record.replica_failures)
            self.registry.add_event(record.id, "replica_failed", f"{new.replica_id}: {new.message}")
        if old.state.live and not new.state.live:
            self._last_poll.pop(new.replica_id, None)
            self._gone.add(new.replica_id)
        return new

    def _reclaim(self, record: JobRecord, gone: list[Replica]) -> None:
        """Workers that are gone (crashed, killed, preempted, torn down) get their chunks taken back now,
        not when their leases expire; fencing keeps anything they might still send from committing.
        Only a failure charges the chunks an attempt: a preemption or teardown is not their fault.
        One round trip for all of the job's gone workers."""
        lost = [(r.replica_id, f"replica {r.state.value}" + (f": {r.message}" if r.message else ""),
                 r.state is ReplicaState.FAILED) for r in gone]
        taken = self.queue_for(record.id).reclaim_many(lost)
        self.registry.add_events(record.id, [
            ("reclaimed", f"{len(chunks)} chunk(s) of {r.replica_id} ({r.state.value}) returned to the queue")
            for r in gone if (chunks := taken.get(r.replica_id))])

    def _poll_due(self, record: JobRecord, replicas: list[Replica], busy: set[str]) -> None:
        now = self._monotonic()
        every = self.settings.control.poll_every_s
        for replica in replicas:
            if not (replica.state.live and replica.handle) or replica.call or replica.replica_id in busy:
                continue
            if now - self._last_poll.get(replica.replica_id, float("-inf")) < every or not self._room(busy):
                continue
            launcher = self.launchers(replica.launcher)
            copy = dataclasses.replace(replica)
            # partial, not a lambda: a call may run after the loop has moved on to the next replica
            self.runner.submit(record.id, replica.replica_id, "poll", replica.rev, functools.partial(launcher.poll, copy))
            self._last_poll[replica.replica_id] = now
            busy.add(replica.replica_id)

    def _room(self, busy: set[str]) -> bool:
        return len(busy) < self.settings.control.calls_per_job

    # -- acting ----------------------------------------------------------------
    def launch(self, record: JobRecord, pool: Pool, env: WorkerEnv, n: int) -> list[Replica]:
        """Record up to ``n`` new replicas of ``pool`` (provisioning, launch in flight) and submit their
        launches; fewer when the job would exceed ``calls_per_job`` calls out."""
        n = min(n, self.settings.control.calls_per_job - len(self.runner.busy(record.id)))
        if n <= 0:
            return []
        launcher = self.launchers(pool.launcher)  # an unknown launcher fails here, before anything is recorded
        now = self._clock()
        ids = [f"w-{uuid.uuid4().hex[:10]}" for _ in range(n)]
        new = [Replica(replica_id=rid, job_id=record.id, pool=pool.key, launcher=pool.launcher,
                       state=ReplicaState.PROVISIONING, handle=launcher.planned_handle(env, pool, rid), created_at=now,
                       price_per_hour=pool.price_per_replica_hour, message="launch requested",
                       rev=1, call="launch", call_by=self.id, call_at=now) for rid in ids]
        self.registry.put_replicas(new)  # the intent is in Redis before the calls start
        for replica in new:
            self.runner.submit(record.id, replica.replica_id, "launch", replica.rev,
                               lambda rid=replica.replica_id: launcher.launch(env, pool, rid))
        return new

    def act(self, record: JobRecord, replica: Replica, op: str) -> bool:
        """Submit ``op`` (drain or terminate) for a live replica; False if a call for it is already out
        (or the job has too many), so the next tick decides again."""
        assert op in ("drain", "terminate")
        busy = self.runner.busy(record.id)
        if replica.call or replica.replica_id in busy or not self._room(busy):
            return False
        launcher = self.launchers(replica.launcher)
        marked = dataclasses.replace(replica, rev=replica.rev + 1, call=op, call_by=self.id, call_at=self._clock())
        self.registry.put_replica(marked)
        copy = dataclasses.replace(marked)
        self.runner.submit(record.id, replica.replica_id, op, marked.rev, lambda: getattr(launcher, op)(copy))
        return True
