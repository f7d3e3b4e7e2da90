"""POST /predict with real PNG and JPEG files, raw and multipart, single and batch, good and bad,
through Flask's test client (stack/test_predict_stack.py runs the same table through nginx)."""

import pytest

from helpers import assert_json_error
from helpers.predict_cases import PARAMS, check


@pytest.mark.parametrize("body,content_type,expected_status,expected", PARAMS)
def test_predict_flask(client, body, content_type, expected_status, expected):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/predict", data=body, headers=headers)
    lower = {k.lower(): v for k, v in response.headers.items()}
    check(response.status_code, lower, response.data, expected_status, expected)


def test_predict_is_post_only(client):
    response = client.get("/predict")
    lower = {k.lower(): v for k, v in response.headers.items()}
    assert_json_error(response.status_code, lower, response.data, 405, "GET", "POST")
