"""Every row of the contract, through Flask's test client and through real nginx -> uWSGI."""

import json

import pytest

from conftest import assert_json_error
from contract import contract_cases
from server import OPENAPI_FILE, create_app


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


def test_health_and_readiness(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "models": ["digits"]}


def test_not_ready_while_a_model_failed_to_load():
    def broken_loader():
        raise OSError("weights.npz: no such file")

    client = create_app({"TESTING": True, "MODELS": {"digits": broken_loader}}).test_client()
    response = client.get("/readyz")
    assert_json_error(
        response.status_code,
        {"content-type": response.content_type},
        response.data,
        503,
        "not ready",
        "digits",
    )
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_openapi_document_is_served_as_is(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.data == OPENAPI_FILE.read_bytes()
    assert response.get_json()["openapi"].startswith("3.")
