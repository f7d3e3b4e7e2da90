"""POST /predict through the real stack: the table of tests/unit/test_predict.py, through nginx."""

import pytest

from helpers.predict_cases import PARAMS, check


@pytest.mark.parametrize("body,content_type,expected_status,expected", PARAMS)
def test_predict_stack(registry_stack, body, content_type, expected_status, expected):
    headers = {"Content-Type": content_type} if content_type else {}
    check(*registry_stack.request("POST", "/v1/predict", body, headers), expected_status, expected)
