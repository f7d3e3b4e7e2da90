"""The endpoints this service serves: the one file to edit to serve a model of your own.

Each entry is a URL name and a function, or serve(function, ...) for one that needs a model, takes
a whole batch at once or only part of its images. GET /pisqrt?a=25 calls algo.pi_sqrt(a=25.0).
"""

from collections.abc import Callable

import algo
import digits
from modelserver.endpoints import Endpoint, serve

ENDPOINTS: dict[str, Callable | Endpoint] = {
    "pisqrt": algo.pi_sqrt,
    "predict": serve(
        algo.predict_digits, model=digits.load_digits, vectorized=True, draft=digits.DRAFT
    ),
}
