"""POST /predict with real PNG and JPEG files, raw and multipart, single and batch, good and bad,
through Flask's test client (stack/test_predict_stack.py runs the same table through nginx)."""

import pytest

from helpers import answer_of, assert_json_error
from helpers.predict_cases import PARAMS, check


@pytest.mark.parametrize("body,content_type,expected_status,expected", PARAMS)
def test_predict_flask(client, body, content_type, expected_status, expected):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/predict", data=body, headers=headers)
    check(*answer_of(response), expected_status, expected)


def test_predict_is_post_only(client):
    response = client.get("/predict")
    assert_json_error(*answer_of(response), 405, "GET", "POST")
