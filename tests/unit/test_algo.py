"""algo.py alone: no server, no HTTP."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from algo import MAX_A, pi_sqrt


@pytest.mark.parametrize(
    "a,expected",
    [(0.0, 0.0), (1.0, math.sqrt(math.pi)), (25.0, 8.86226925452758), (1 / math.pi, 1.0)],
)
def test_known_values(a, expected):
    assert pi_sqrt(a) == pytest.approx(expected, rel=1e-15)


@given(st.floats(min_value=0, max_value=MAX_A))
def test_square_is_a_times_pi(a):
    result = pi_sqrt(a)
    assert result >= 0
    assert result**2 == pytest.approx(a * math.pi, rel=1e-12, abs=1e-300)


@given(st.floats(min_value=0, max_value=MAX_A), st.floats(min_value=0, max_value=MAX_A))
def test_monotonic(a, b):
    low, high = sorted((a, b))
    assert pi_sqrt(low) <= pi_sqrt(high)


@given(st.floats(max_value=-1e-320) | st.just(math.nan))
def test_negative_or_nan_is_a_domain_error(a):
    with pytest.raises(ValueError, match=r"a must be >= 0"):
        pi_sqrt(a)


def test_largest_a_is_finite_and_next_overflows():
    assert math.isfinite(pi_sqrt(MAX_A))
    with pytest.raises(OverflowError, match=r"a\*pi overflows"):
        pi_sqrt(math.nextafter(MAX_A, math.inf))
