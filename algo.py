"""The model: pure functions of numbers, no HTTP and no I/O, to test and time them alone."""

import math

# The largest a for which a·π is still a finite 64-bit float.
MAX_A = math.nextafter(math.inf, 0) / math.pi


def pi_sqrt(a: float) -> float:
    """Return sqrt(a*pi) for a finite a with 0 <= a <= MAX_A."""
    if not a >= 0:  # also true for NaN, which has no square root either
        raise ValueError(f"a must be >= 0, got {a!r}")
    # a·π is computed first, as the formula says: above MAX_A it overflows to inf, and the
    # caller must hear that rather than receive inf, which JSON cannot carry.
    result = math.sqrt(a * math.pi)
    if math.isinf(result):
        raise OverflowError(f"a*pi overflows a 64-bit float; a must be <= {MAX_A!r}, got {a!r}")
    return result
