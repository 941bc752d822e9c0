"""The job lifecycle table and the pure progress math."""

from __future__ import annotations

import pytest

from orca.control import lifecycle
from orca.errors import JobStateError
from orca.models import JobStatus as S


def test_happy_path_is_allowed() -> None:
    path = [S.VALIDATING, S.PLANNING, S.IN_PROGRESS, S.FINALIZING, S.COMPLETED]
    for a, b in zip(path, path[1:]):
        lifecycle.check_transition(a, b)


@pytest.mark.parametrize("terminal", [s for s in S if s.terminal])
def test_terminal_states_have_no_way_out(terminal: S) -> None:
    assert lifecycle.TRANSITIONS[terminal] == frozenset()
    for target in S:
        with pytest.raises(JobStateError):
            lifecycle.check_transition(terminal, target)


def test_every_state_has_a_row_and_targets_are_states() -> None:
    assert set(lifecycle.TRANSITIONS) == set(S)
    for targets in lifecycle.TRANSITIONS.values():
        assert targets <= set(S)


def test_cancel_and_expire_rules() -> None:
    assert lifecycle.CANCELLABLE == {S.VALIDATING, S.PLANNING, S.IN_PROGRESS}
    assert not lifecycle.can_transition(S.FINALIZING, S.CANCELLING)  # assembly is not interrupted
    assert lifecycle.can_transition(S.IN_PROGRESS, S.EXPIRED)
    assert not lifecycle.can_transition(S.CANCELLING, S.IN_PROGRESS)
    assert lifecycle.can_transition(S.CANCELLING, S.CANCELLED)
    assert not lifecycle.can_transition(S.VALIDATING, S.IN_PROGRESS)  # planning is never skipped
    assert not lifecycle.can_transition(S.IN_PROGRESS, S.COMPLETED)   # completion goes through finalizing


def test_every_non_terminal_state_can_end() -> None:
    for state in S:
        if not state.terminal:
            reachable, frontier = set(), [state]
            while frontier:
                for nxt in lifecycle.TRANSITIONS[frontier.pop()]:
                    if nxt not in reachable:
                        reachable.add(nxt)
                        frontier.append(nxt)
            assert any(s.terminal for s in reachable), state


def test_rate_eta_and_cost() -> None:
    assert lifecycle.completion_rate(10, 20.0, None, None) is None
    assert lifecycle.completion_rate(3, 20.0, 3, 10.0) is None
    assert lifecycle.completion_rate(13, 20.0, 3, 10.0) == pytest.approx(1.0)
    assert lifecycle.eta_seconds(0, None) == 0.0
    assert lifecycle.eta_seconds(5, None) is None
    assert lifecycle.eta_seconds(10, 2.0) == pytest.approx(5.0)
    assert lifecycle.projected_cost(1.0, None, 3.0) is None
    assert lifecycle.projected_cost(1.0, 1800.0, 4.0) == pytest.approx(3.0)


def test_estimated_request_counts() -> None:
    assert lifecycle.estimate_request_counts(100, 0, 0, 0) == (0, 0)
    assert lifecycle.estimate_request_counts(100, 10, 5, 1) == (50, 10)
    assert lifecycle.estimate_request_counts(100, 10, 10, 0) == (100, 0)
    done, failed = lifecycle.estimate_request_counts(7, 3, 2, 1)
    assert done + failed == 7


def test_live_progress_from_worker_reports() -> None:
    reports = [{"requests_uncommitted": "30", "requests_per_s": "2.5"}, {"requests_uncommitted": "12", "requests_per_s": "1.5"},
               {}]  # a worker that has not reported yet
    assert lifecycle.live_progress(100, 20, reports) == (42, pytest.approx(4.0))
    assert lifecycle.live_progress(100, 90, reports)[0] == 10  # never more than the job has left
    assert lifecycle.live_progress(100, 0, []) == (0, 0.0)
