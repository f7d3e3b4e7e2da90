"""The models: pure functions, no HTTP and no I/O, to test and time them alone.

pi_sqrt is the stand-in; predict_digits runs the handwritten-digit classifier of digits.py.
"""

import math

import numpy as np

import digits

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


def predict_digits(model: digits.Model, images: list[bytes]) -> list[digits.Prediction]:
    """The digit in each PNG or JPEG file: (label, 10 probabilities), in order.

    A file that cannot be read raises ValueError saying why, and in a batch which one
    ("image 2: ...").
    """
    inputs = []
    for position, data in enumerate(images):
        try:
            inputs.append(digits.preprocess(digits.decode_image(data)))
        except ValueError as error:
            where = f"image {position}: " if len(images) > 1 else ""
            raise ValueError(f"{where}{error}") from error
    return digits.predict_batch(model, np.stack(inputs)) if inputs else []
