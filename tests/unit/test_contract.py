"""pisqrt's contract, every row, through Flask's test client (and through real nginx -> uWSGI
in tests/stack/test_contract_stack.py)."""

import pytest

from helpers.contract import JSON, check, contract_cases


@pytest.mark.parametrize("method,path,body,expected_status,expected", contract_cases())
def test_contract_flask(client, method, path, body, expected_status, expected):
    response = client.open(path, method=method, data=body, headers=JSON if body is not None else {})
    headers = {k.lower(): v for k, v in response.headers.items()}
    check(response.status_code, headers, response.data, method, expected_status, expected)
