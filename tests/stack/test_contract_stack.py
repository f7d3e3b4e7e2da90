"""pisqrt's contract, every row, through real nginx -> uWSGI."""

import pytest

from helpers.contract import JSON, check, contract_cases


@pytest.mark.parametrize("method,path,body,expected_status,expected", contract_cases())
def test_contract_stack(registry_stack, method, path, body, expected_status, expected):
    status, headers, body = registry_stack.request(
        method, path, body, JSON if body is not None else {}
    )
    assert headers["server"] == "nginx"  # through nginx, no version, not Werkzeug
    check(status, headers, body, method, expected_status, expected)
