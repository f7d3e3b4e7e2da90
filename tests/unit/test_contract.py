"""pisqrt's contract, every row, through Flask's test client (and through real nginx -> uWSGI
in tests/stack/test_contract_stack.py)."""

import gzip
import time

import pytest

from helpers import answer_of
from helpers.contract import JSON, check, contract_cases


@pytest.mark.parametrize("method,path,body,expected_status,expected", contract_cases())
def test_contract_flask(client, method, path, body, expected_status, expected):
    response = client.open(path, method=method, data=body, headers=JSON if body is not None else {})
    check(*answer_of(response), method, expected_status, expected)


@pytest.mark.parametrize(
    "headers,said",
    [
        ({}, "; the request's Content-Type is missing or unreadable"),
        ({"Content-Type": "text/plain"}, ", not 'text/plain'"),
        ({"Content-Type": ";;;==="}, "; the request's Content-Type is missing or unreadable"),
    ],
    ids=["none", "text", "unreadable"],
)
def test_a_body_of_another_type_is_a_415_that_says_what_was_sent(client, headers, said):
    response = client.post("/pisqrt", data='{"a": 25}', headers=headers)
    assert response.status_code == 415, response.data
    assert response.json == {"message": f"send the body as Content-Type: application/json{said}"}


def test_a_compressed_body_is_a_415_that_names_its_encoding(client):
    body = gzip.compress(b'{"a": 25}')
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    response = client.post("/pisqrt", data=body, headers=headers)
    assert response.status_code == 415, response.data
    assert response.json == {
        "message": "the body's Content-Encoding 'gzip' is not taken: send it uncompressed"
    }


def test_a_repeated_key_in_a_large_object_is_found_in_linear_time(client):
    """A guard against a client's cheap body costing a worker seconds: one key repeated at the
    end of 50,000 took 34 s when each key was counted against all the others."""
    keys = ",".join(f'"{i}": 0' for i in range(50_000))
    body = '{"a": 1, "b": {' + keys + ', "49999": 0}}'
    start = time.perf_counter()
    response = client.post("/pisqrt", data=body, content_type="application/json")
    seconds = time.perf_counter() - start
    assert response.status_code == 400
    assert response.get_json()["message"] == (
        "the body gives the key '49999' 2 times in one object; give it once"
    )
    assert seconds < 2, seconds  # 0.03 s here; the quadratic search took 34 s
