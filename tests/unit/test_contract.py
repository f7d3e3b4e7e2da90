"""pisqrt's contract, every row, through Flask's test client and through real nginx -> uWSGI."""

import json

import pytest

from conftest import assert_json_error
from contract import contract_cases


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


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("method,path,body,expected_status,expected", contract_cases())
def test_contract_flask(client, method, path, body, expected_status, expected):
    response = client.open(path, method=method, data=body, headers=JSON if body is not None else {})
    headers = {k.lower(): v for k, v in response.headers.items()}
    check(response.status_code, headers, response.data, method, expected_status, expected)


@pytest.mark.parametrize("method,path,body,expected_status,expected", contract_cases())
def test_contract_stack(stack, method, path, body, expected_status, expected):
    status, headers, body = stack.request(method, path, body, JSON if body is not None else {})
    assert headers["server"] == "nginx"  # through nginx, no version, not Werkzeug
    check(status, headers, body, method, expected_status, expected)
