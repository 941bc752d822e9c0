"""orca.durations: what users type for deadlines and completion windows, and how orca prints durations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orca.durations import format_duration, parse_duration


@pytest.mark.parametrize("text,seconds", [
    ("2h", 7200), ("90m", 5400), ("1d", 86400), ("45s", 45), ("1w", 604800),
    ("3600", 3600), ("0.5", 0.5), ("1.5h", 5400), ("1h30m", 5400), ("1h 30m", 5400),
    ("2H", 7200), (" 24h ", 86400), ("1d2h3m4s", 86400 + 7200 + 180 + 4), (".5h", 1800),
    (120, 120), (2.5, 2.5),
])
def test_parses(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "h", "2x", "two hours", "-1h", "0", "0h", "-5", "1h-30m", "h2", "nan", "inf", True, 0, -3])
def test_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_error_says_how():
    with pytest.raises(ValueError, match="90m"):
        parse_duration("soon")


@pytest.mark.parametrize("seconds,text", [
    (None, "-"), (0, "0s"), (59.4, "59s"), (60, "1m 00s"), (725, "12m 05s"), (3600, "1h 00m"),
    (7380, "2h 03m"), (86400 * 3 + 3600 * 4 + 5, "3d 04h"), (-5, "0s"), (math.inf, "-"),
])
def test_formats(seconds, text):
    assert format_duration(seconds) == text


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["s", "m", "h", "d"]))
def test_unit_roundtrip(n, unit):
    assert parse_duration(f"{n}{unit}") == n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
