"""Durations, percentages, sizes and rates."""

import math

import pytest
from hypothesis import given, strategies as st

from ccrollout import units


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5),
    ("1m30s", 90.0), ("1h2m3s", 3723.0), ("0s", 0.0), ("10", 10.0), ("2.5", 2.5),
    (10, 10.0), (0.25, 0.25), (" 8s ", 8.0),
])
def test_durations(text, seconds):
    assert units.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "s", "10x", "ten", "1.s", "-1s", "1 s", "1d", "1sm", "10%"])
def test_bad_durations_say_what_was_expected(bad):
    with pytest.raises(ValueError, match="duration"):
        units.parse_duration(bad)


@pytest.mark.parametrize("bad", [True, None, [1], -1, float("inf"), float("nan")])
def test_durations_reject_non_durations(bad):
    with pytest.raises(ValueError):
        units.parse_duration(bad)


@pytest.mark.parametrize("text, fraction", [
    ("10%", 0.10), ("2.5%", 0.025), ("0%", 0.0), ("100%", 1.0), (" 5% ", 0.05),
])
def test_percentages(text, fraction):
    assert units.parse_percent(text) == pytest.approx(fraction)


def test_percentages_are_strings_unless_numbers_are_allowed():
    with pytest.raises(ValueError, match="write it as '5%'"):
        units.parse_percent(5)
    assert units.parse_percent(20, allow_number=True) == pytest.approx(0.2)


@pytest.mark.parametrize("bad", ["10", "%", "abc%", "-5%", "101%", True, None, "5 %"])
def test_bad_percentages(bad):
    with pytest.raises(ValueError, match="percent"):
        units.parse_percent(bad)


def test_percent_maximum_is_adjustable():
    assert units.parse_percent("150%", maximum=None) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="at most 50%"):
        units.parse_percent("60%", maximum=50)


@pytest.mark.parametrize("text, size", [
    ("64k", 65536), ("1M", 1048576), ("1m", 1048576), ("2G", 2 * 1024**3), ("512", 512),
    (4096, 4096), ("1.5k", 1536), ("10KiB", 10240), ("3b", 3),
])
def test_sizes(text, size):
    assert units.parse_size(text) == size


@pytest.mark.parametrize("bad", ["1.3b", "10x", "", "k", -1, True])
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match="size"):
        units.parse_size(bad)


@pytest.mark.parametrize("text, bits", [
    ("10mbit", 10e6), ("1gbit", 1e9), ("500kbit", 5e5), ("100kbps", 8e5), ("1mibit", 1024**2), (1000, 1000),
])
def test_rates(text, bits):
    assert units.parse_rate(text) == pytest.approx(bits)


def test_bad_rate():
    with pytest.raises(ValueError, match="rate"):
        units.parse_rate("10 furlongs")


@pytest.mark.parametrize("seconds, text", [(0.5, "500ms"), (8, "8s"), (90, "1m30s"), (3600, "1h"), (2.5, "2.5s"), (0, "0s")])
def test_format_duration(seconds, text):
    assert units.format_duration(seconds) == text


@given(st.floats(min_value=0.001, max_value=10**6, allow_nan=False))
def test_format_duration_round_trips(seconds):
    assert math.isclose(units.parse_duration(units.format_duration(seconds)), seconds, rel_tol=1e-5)


@given(st.integers(min_value=0, max_value=10**6))
def test_plain_seconds(n):
    assert units.parse_duration(f"{n}s") == n == units.parse_duration(str(n))
