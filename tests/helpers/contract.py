"""The API contract as one table, run through Flask's test client and through the real stack."""

import json
import math

import pytest

from helpers import assert_json_error

RESULT_25 = 8.86226925452758  # sqrt(25·π), the README's example
RESULT_1 = math.sqrt(math.pi)

# (method, path, body, status, expected). body: JSON text sent as application/json, or None.
# expected: the exact JSON body of a 200, or the words the message of an error must contain
# (the parameter and the problem).
CONTRACT = [
    ("GET", "/pisqrt?a=25", None, 200, {"result": RESULT_25}),
    ("GET", "/v1/pisqrt?a=25", None, 200, {"result": RESULT_25}),
    ("GET", "/pisqrt?a=0", None, 200, {"result": 0.0}),
    ("GET", "/pisqrt?a=2.5e1", None, 200, {"result": RESULT_25}),
    ("GET", "/pisqrt?a=%2B25", None, 200, {"result": RESULT_25}),  # "+25", percent-encoded
    ("GET", "/pisqrt?a=1e-300", None, 200, {"result": math.sqrt(1e-300 * math.pi)}),
    ("GET", "/pisqrt?a=25&unused=x", None, 200, {"result": RESULT_25}),
    ("GET", "/pisqrt", None, 400, ("'a'", "missing")),
    ("GET", "/pisqrt?b=1", None, 400, ("'a'", "missing")),
    ("GET", "/pisqrt?a=", None, 400, ("'a'", "empty")),
    ("GET", "/pisqrt?a", None, 400, ("'a'", "empty")),
    ("GET", "/pisqrt?a=abc", None, 400, ("'a'", "must be a number", "'abc'")),
    ("GET", "/pisqrt?a=0x1g", None, 400, ("'a'", "must be a number", "'0x1g'")),
    ("GET", "/pisqrt?a=1_000", None, 400, ("'a'", "must be a number")),
    ("GET", "/pisqrt?a=%2025", None, 400, ("'a'", "must be a number")),  # " 25"
    ("GET", "/pisqrt?a=nan", None, 400, ("'a'", "finite", "'nan'")),
    ("GET", "/pisqrt?a=inf", None, 400, ("'a'", "finite", "'inf'")),
    ("GET", "/pisqrt?a=-inf", None, 400, ("'a'", "finite", "'-inf'")),
    ("GET", "/pisqrt?a=Infinity", None, 400, ("'a'", "finite")),
    ("GET", "/pisqrt?a=-1", None, 400, ("a must be >= 0", "-1.0")),
    ("GET", "/pisqrt?a=1&a=2", None, 400, ("'a'", "2 times")),
    ("GET", "/pisqrt?a=1", '{"a": 25}', 400, ("GET request's body is not read", "POST")),
    ("GET", "/pisqrt?a=%ff", None, 400, ("query parameter 'a' is not UTF-8 text",)),
    ("GET", "/pisqrt?a=1e308", None, 400, ("a*pi overflows",)),
    ("GET", "/pisqrt?a=1e999", None, 400, ("'a'", "overflows")),
    ("GET", "/pisqrt?a=" + "9" * 5000, None, 400, ("'a'", "overflows", "...")),
    ("GET", "/v1/pisqrt?a=-1", None, 400, ("a must be >= 0",)),
    ("POST", "/pisqrt", '{"a": 25}', 200, {"result": RESULT_25}),
    ("POST", "/v1/pisqrt", '{"a": 25}', 200, {"result": RESULT_25}),
    ("POST", "/pisqrt", '{"a": [1, 25, 0]}', 200, {"result": [RESULT_1, RESULT_25, 0.0]}),
    ("POST", "/pisqrt", '{"a": []}', 200, {"result": []}),
    ("POST", "/pisqrt", json.dumps({"a": [1] * 10_000}), 200, {"result": [RESULT_1] * 10_000}),
    ("POST", "/pisqrt", json.dumps({"a": [1] * 10_001}), 413, ("at most 10000", "10001")),
    ("POST", "/pisqrt", '{"a": [1, 2, -3]}', 400, ("item 2", "a must be >= 0")),
    ("POST", "/pisqrt", '{"a": [1, "x"]}', 400, ("a[1]", "must be a number", '"x"')),
    ("POST", "/pisqrt", '{"a": [1, null]}', 400, ("a[1]", "must be a number", "null")),
    ("POST", "/pisqrt", '{"a": [1, [2]]}', 400, ("a[1]", "must be a number")),
    ("POST", "/pisqrt", '{"a": true}', 400, ("a must be a number", "true")),
    ("POST", "/pisqrt", '{"a": "25"}', 400, ("a must be a number",)),
    ("POST", "/pisqrt", '{"a": NaN}', 400, ("not valid JSON", "NaN")),
    ("POST", "/pisqrt", '{"a": [Infinity]}', 400, ("not valid JSON", "Infinity")),
    # Python's reader would keep the last of a repeated key and drop the others unsaid.
    ("POST", "/pisqrt", '{"a": 1, "a": 25}', 400, ("key 'a' 2 times", "give it once")),
    ("POST", "/pisqrt", '{"a": [{"x": 1, "y": 2, "x": 3}]}', 400, ("key 'x' 2 times",)),
    ("POST", "/pisqrt", '{"a": 1e999}', 400, ("a overflows",)),
    ("POST", "/pisqrt", '{"a": 1' + "0" * 400 + "}", 400, ("a overflows",)),
    ("POST", "/pisqrt", '{"a": 1' + "0" * 5000 + "}", 400, ("integer of more than 4300 digits",)),
    # A parameter in the query string of a POST of JSON would be silently left: refused.
    ("POST", "/pisqrt?a=100", '{"a": 25}', 400, ("'a' is in the query string", "in the body")),
    ("POST", "/pisqrt?cachebuster=1", '{"a": 25}', 200, {"result": RESULT_25}),
    ("POST", "/pisqrt", '{"a": [1e308]}', 400, ("item 0", "a*pi overflows")),
    ("POST", "/pisqrt", '{"b": 1}', 400, ("'a' is missing",)),
    ("POST", "/pisqrt", "[25]", 400, ("JSON object",)),
    ("POST", "/pisqrt", '{"a": ', 400, ("not valid JSON",)),
    ("POST", "/pisqrt", "", 400, ("not valid JSON",)),
    ("POST", "/pisqrt", "[" * 100_000 + "]" * 100_000, 400, ("nests lists or objects too deeply",)),
    # The service's own routes read no body either: one sent would go unread.
    ("GET", "/healthz", "{}", 400, ("body is not read", "send none")),
    ("GET", "/openapi.json", "{}", 400, ("body is not read", "send none")),
    ("GET", "/metrics", "{}", 400, ("body is not read", "send none")),
    ("OPTIONS", "/pisqrt", "{}", 400, ("OPTIONS request's body is not read", "send none")),
    ("GET", "/nowhere", None, 404, ("no such path", "/nowhere")),
    ("GET", "/pisqrt/25", None, 404, ("no such path",)),
    ("PUT", "/pisqrt?a=25", None, 405, ("PUT", "not allowed", "GET", "POST")),
    ("DELETE", "/v1/pisqrt?a=25", None, 405, ("DELETE", "not allowed", "GET")),
]


def contract_cases():
    """CONTRACT as pytest params, each named by its method, path and body."""
    return [
        pytest.param(*case, id=f"{case[0]} {case[1][:40]} {(case[2] or '')[:30]}".strip())
        for case in CONTRACT
    ]


JSON = {"Content-Type": "application/json"}


def check(status: int, headers: dict, body: bytes, method: str, expected_status: int, expected):
    """Assert one response against its contract row (status first, then body)."""
    if expected_status == 200:
        assert status == 200, body
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == expected
        assert body == (json.dumps(expected) + "\n").encode()  # full precision, one line
    else:
        assert_json_error(status, headers, body, expected_status, *expected)
    if expected_status == 405:
        assert {"GET", "POST"} <= set(headers["allow"].split(", "))
