"""Launcher calls off the controller tick: submitted, then followed.

A cloud API call (launch a cluster, drain it, tear it down, ask its state) takes from a
fraction of a second to minutes, and may hang or retry. The controller tick never makes one
itself: it *submits* each call to a :class:`CallRunner` and, on a later tick of the same job,
*collects* what finished and writes it to Redis. So one job's slow or failing cloud never
delays another job's tick.

* :class:`ThreadCalls` (production): a bounded thread pool per process
  (``control.call_workers`` threads). A call still running after ``control.call_timeout_s``
  is reported as failed (``CallTimeoutError``) and its late result is dropped; its thread
  stays busy until the call returns, which is why the pool is bounded and each job may hold
  at most ``control.calls_per_job`` calls.
* :class:`InlineCalls` (deterministic simulations and tests): runs each call at once, in the
  submitting thread; the result is collected like any other.

A runner keys calls by (job id, replica id): at most one call per replica is outstanding.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from orca.errors import OrcaError
from orca.fleet import Replica
from orca.settings import ControlSettings


class CallTimeoutError(OrcaError):
    """A launcher call ran past ``control.call_timeout_s``."""


@dataclass
class CallResult:
    """A finished launcher call: the replica it returned, or the exception it raised."""

    job_id: str
    replica_id: str
    op: str                      # launch | poll | drain | terminate
    rev: int                     # the replica record's revision the call was made against
    replica: Replica | None
    error: BaseException | None
    elapsed_s: float


class CallRunner(ABC):
    """Runs launcher calls for the controller; see the module doc."""

    @abstractmethod
    def submit(self, job_id: str, replica_id: str, op: str, rev: int, fn: Callable[[], Replica]) -> None:
        """Start ``fn`` (one launcher call for ``replica_id``); its result is collected later."""

    @abstractmethod
    def busy(self, job_id: str) -> set[str]:
        """Replica ids of the job with a call submitted and not yet collected."""

    @abstractmethod
    def collect(self, job_id: str) -> list[CallResult]:
        """The job's calls that finished (or timed out) since the last collect, in finishing order."""

    def close(self) -> None:
        """Stop taking calls (running ones finish on their own)."""


class InlineCalls(CallRunner):
    """Runs every call at once in the caller's thread (simulations with a virtual clock, unit tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._done: dict[str, list[CallResult]] = {}

    def submit(self, job_id: str, replica_id: str, op: str, rev: int, fn: Callable[[], Replica]) -> None:
        started = self._clock()
        try:
            replica, error = fn(), None
        except Exception as exc:  # noqa: BLE001 - handed to the controller as the call's outcome
            replica, error = None, exc
        self._done.setdefault(job_id, []).append(
            CallResult(job_id, replica_id, op, rev, replica, error, self._clock() - started))

    def busy(self, job_id: str) -> set[str]:
        return {r.replica_id for r in self._done.get(job_id, ())}

    def collect(self, job_id: str) -> list[CallResult]:
        return self._done.pop(job_id, [])


@dataclass
class _Running:
    job_id: str
    replica_id: str
    op: str
    rev: int
    started: float
    future: Future


class ThreadCalls(CallRunner):
    """A bounded thread pool per process; see the module doc."""

    def __init__(self, settings: ControlSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=settings.call_workers, thread_name_prefix="orca-call")
        self._lock = threading.Lock()
        self._running: dict[str, dict[str, _Running]] = {}   # job -> replica -> call
        self._done: dict[str, list[CallResult]] = {}

    def submit(self, job_id: str, replica_id: str, op: str, rev: int, fn: Callable[[], Replica]) -> None:
        with self._lock:
            if replica_id in self._running.get(job_id, {}):
                raise OrcaError("a call for this replica is already running", replica_id=replica_id, op=op)
            future = self._pool.submit(fn)
            call = _Running(job_id, replica_id, op, rev, self._clock(), future)
            self._running.setdefault(job_id, {})[replica_id] = call
        future.add_done_callback(lambda f, call=call: self._finished(call, f))

    def _finished(self, call: _Running, future: Future) -> None:
        error = future.exception()
        result = CallResult(call.job_id, call.replica_id, call.op, call.rev,
                            None if error is not None else future.result(), error, self._clock() - call.started)
        with self._lock:
            running = self._running.get(call.job_id, {})
            if running.get(call.replica_id) is not call:
                return  # timed out and reported already: the late result is dropped
            del running[call.replica_id]
            if not running:
                self._running.pop(call.job_id, None)
            self._done.setdefault(call.job_id, []).append(result)

    def busy(self, job_id: str) -> set[str]:
        with self._lock:
            return set(self._running.get(job_id, {})) | {r.replica_id for r in self._done.get(job_id, ())}

    def collect(self, job_id: str) -> list[CallResult]:
        now = self._clock()
        with self._lock:
            running = self._running.get(job_id, {})
            for replica_id, call in list(running.items()):
                if now - call.started > self.settings.call_timeout_s:
                    del running[replica_id]
                    error = CallTimeoutError(f"{call.op} call still running after {self.settings.call_timeout_s:g} s",
                                             replica_id=replica_id)
                    self._done.setdefault(job_id, []).append(
                        CallResult(job_id, replica_id, call.op, call.rev, None, error, now - call.started))
            if not running:
                self._running.pop(job_id, None)
            return self._done.pop(job_id, [])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
