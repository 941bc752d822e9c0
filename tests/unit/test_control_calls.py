"""Launcher calls off the tick: the inline and the threaded runner."""

from __future__ import annotations

import threading

import pytest

from orca.control.calls import CallTimeoutError, InlineCalls, ThreadCalls
from orca.errors import OrcaError
from orca.fleet import Replica
from orca.settings import ControlSettings
from tests.conftest import wait_until


def replica(rid: str = "w-1") -> Replica:
    return Replica(replica_id=rid, job_id="j", pool="p", launcher="x")


def test_inline_runs_at_once_and_hands_results_to_the_next_collect() -> None:
    calls = InlineCalls()
    calls.submit("j", "w-1", "launch", 1, lambda: replica())
    calls.submit("j", "w-2", "poll", 3, lambda: (_ for _ in ()).throw(OrcaError("api down")))
    assert calls.busy("j") == {"w-1", "w-2"} and calls.busy("other") == set()
    ok, failed = calls.collect("j")
    assert (ok.op, ok.rev, ok.replica.replica_id, ok.error) == ("launch", 1, "w-1", None)
    assert failed.replica is None and "api down" in str(failed.error)
    assert calls.collect("j") == [] and calls.busy("j") == set()


def test_threads_run_calls_off_the_caller_one_per_replica() -> None:
    calls = ThreadCalls(ControlSettings(call_workers=2))
    gate = threading.Event()
    calls.submit("j", "w-1", "launch", 1, lambda: gate.wait(5) and replica())
    assert calls.busy("j") == {"w-1"} and calls.collect("j") == []  # submit returned before the call ended
    with pytest.raises(OrcaError, match="already running"):
        calls.submit("j", "w-1", "poll", 1, replica)
    gate.set()
    [done] = wait_until(lambda: calls.collect("j"), 5, "the call to finish")
    assert done.replica.replica_id == "w-1" and calls.busy("j") == set()
    calls.close()


def test_a_call_past_its_timeout_is_reported_failed_and_its_late_result_dropped() -> None:
    clock = [0.0]
    calls = ThreadCalls(ControlSettings(call_workers=1, call_timeout_s=10), clock=lambda: clock[0])
    gate = threading.Event()
    calls.submit("j", "w-1", "terminate", 4, lambda: gate.wait(5) and replica())
    clock[0] = 11.0
    [late] = calls.collect("j")
    assert isinstance(late.error, CallTimeoutError) and late.op == "terminate" and late.rev == 4
    assert calls.busy("j") == set()
    gate.set()
    calls.close()
    assert calls.collect("j") == []
