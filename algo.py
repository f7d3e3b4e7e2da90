"""The models: pure functions, no HTTP and no I/O, to test and time them alone.

pi_sqrt is the stand-in; predict_digits runs the handwritten-digit classifier of digits.py on
images that the server has decoded.
"""

import math

import numpy as np
from PIL import Image

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


def predict_digits(model: digits.Model, image: list[Image.Image]) -> list[dict]:
    """The handwritten digit (0-9) in each image, a photo or a drawing, dark on light or light
    on dark: {"label": the digit, "probabilities": the 10 digits' probabilities}, in order.

    An image with no digit to read raises ValueError saying why, and in a batch which one
    ("image 2: ...").
    """
    inputs = []
    for position, picture in enumerate(image):
        try:
            inputs.append(digits.preprocess(picture))
        except ValueError as error:
            where = f"image {position}: " if len(image) > 1 else ""
            raise ValueError(f"{where}{error}") from error
    predictions = digits.predict_batch(model, np.stack(inputs)) if inputs else []
    return [{"label": label, "probabilities": p} for label, p in predictions]
