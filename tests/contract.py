"""The API contract as one table, run through Flask's test client and through the real stack."""

import math

import pytest

RESULT_25 = 8.86226925452758  # sqrt(25·π), the README's example

# (method, path, status, expected): expected is the exact JSON body of a 200, or the words
# that the message of an error must contain (the parameter and the problem).
CONTRACT = [
    ("GET", "/pisqrt?a=25", 200, {"result": RESULT_25}),
    ("GET", "/v1/pisqrt?a=25", 200, {"result": RESULT_25}),
    ("GET", "/pisqrt?a=0", 200, {"result": 0.0}),
    ("GET", "/pisqrt?a=2.5e1", 200, {"result": RESULT_25}),
    ("GET", "/pisqrt?a=%2B25", 200, {"result": RESULT_25}),  # "+25", percent-encoded
    ("GET", "/pisqrt?a=1e-300", 200, {"result": math.sqrt(1e-300 * math.pi)}),
    ("GET", "/pisqrt?a=25&unused=x", 200, {"result": RESULT_25}),
    ("GET", "/pisqrt", 400, ("'a'", "missing")),
    ("GET", "/pisqrt?b=1", 400, ("'a'", "missing")),
    ("GET", "/pisqrt?a=", 400, ("'a'", "empty")),
    ("GET", "/pisqrt?a", 400, ("'a'", "empty")),
    ("GET", "/pisqrt?a=abc", 400, ("'a'", "must be a number", "'abc'")),
    ("GET", "/pisqrt?a=0x1g", 400, ("'a'", "must be a number", "'0x1g'")),
    ("GET", "/pisqrt?a=1_000", 400, ("'a'", "must be a number")),
    ("GET", "/pisqrt?a=%2025", 400, ("'a'", "must be a number")),  # " 25"
    ("GET", "/pisqrt?a=nan", 400, ("'a'", "finite", "'nan'")),
    ("GET", "/pisqrt?a=inf", 400, ("'a'", "finite", "'inf'")),
    ("GET", "/pisqrt?a=-inf", 400, ("'a'", "finite", "'-inf'")),
    ("GET", "/pisqrt?a=Infinity", 400, ("'a'", "finite")),
    ("GET", "/pisqrt?a=-1", 400, ("a must be >= 0", "-1.0")),
    ("GET", "/pisqrt?a=1&a=2", 400, ("'a'", "2 times")),
    ("GET", "/pisqrt?a=1e308", 400, ("a*pi overflows",)),
    ("GET", "/pisqrt?a=1e999", 400, ("'a'", "overflows")),
    ("GET", "/pisqrt?a=" + "9" * 5000, 400, ("'a'", "overflows", "...")),
    ("GET", "/v1/pisqrt?a=-1", 400, ("a must be >= 0",)),
    ("GET", "/nowhere", 404, ("no such path", "/nowhere")),
    ("GET", "/pisqrt/25", 404, ("no such path",)),
    ("POST", "/pisqrt?a=25", 405, ("POST", "not allowed", "GET")),
    ("DELETE", "/v1/pisqrt?a=25", 405, ("DELETE", "not allowed", "GET")),
]


def contract_cases():
    """CONTRACT as pytest params, each named by its method and path."""
    return [pytest.param(*case, id=f"{case[0]} {case[1][:40]}") for case in CONTRACT]
