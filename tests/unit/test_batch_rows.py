"""A batch of JSON objects is checked all at once when it can be, else item by item: either way
each item gets what it would get alone, and a refused item is named with the message it would
have alone."""

from typing import Annotated

import pytest
from pydantic import Field

from modelserver.arguments import rows_at_once
from modelserver.endpoints import signature_of
from server import create_app


def plain(
    x: float,
    n: int,
    flag: bool,
    label: str,
    scale: Annotated[float, Field(ge=0)] = 1.0,
    note: str | None = None,
) -> dict:
    if label == "domain":
        raise ValueError("label 'domain' is out of this model's domain")
    if label == "bug":
        raise KeyError("a bug of the function")
    return {"x": x, "n": n, "flag": flag, "label": label, "scale": scale, "note": note}


GOOD = {"x": 1.5, "n": 2, "flag": True, "label": "a", "scale": 0.5, "note": None}


@pytest.fixture(scope="module")
def client():
    return create_app({"TESTING": True, "ENDPOINTS": {"plain": plain}}).test_client()


def alone(client, item: object) -> tuple[int, object]:
    response = client.post("/plain", json=item)
    return response.status_code, response.get_json()


def test_a_batch_answers_each_item_as_it_would_be_answered_alone(client):
    items = [
        GOOD,
        {**GOOD, "x": 3, "n": -(2**63), "flag": False, "label": "", "note": "n"},
        {**GOOD, "scale": 0, "n": 2**63 - 1},
    ]
    response = client.post("/plain", json=items)
    assert response.status_code == 200
    assert response.get_json() == {"result": [alone(client, item)[1]["result"] for item in items]}
    assert rows_at_once(signature_of("plain", plain), items) is not None  # all at once


def test_items_that_leave_out_a_default_get_it_as_alone(client):
    items = [GOOD, {"x": 1, "n": 1, "flag": True, "label": "b"}]
    response = client.post("/plain", json=items)
    assert response.status_code == 200
    assert response.get_json() == {"result": [alone(client, item)[1]["result"] for item in items]}
    assert response.get_json()["result"][1]["scale"] == 1.0


@pytest.mark.parametrize(
    "fault",
    [
        {"x": "1.5"},
        {"x": None},
        {"x": True},
        {"n": 1.5},
        {"n": 2**63},
        {"flag": "yes"},
        {"label": 5},
        {"scale": -1},
        {"note": 5},
    ],
)
def test_a_refused_value_is_named_as_alone_with_its_item(client, fault):
    item = {**GOOD, **fault}
    status, single = alone(client, item)
    assert status == 400
    response = client.post("/plain", json=[GOOD, GOOD, item, GOOD])
    assert response.status_code == 400
    assert response.get_json()["message"] == f"item 2: {single['message']}"


@pytest.mark.parametrize(
    "item,words",
    [
        ({k: v for k, v in GOOD.items() if k != "x"}, "field 'x' is missing"),
        ({**GOOD, "y": 1}, "unknown field(s) 'y'"),
        ({k: v for k, v in GOOD.items() if k != "note"} | {"y": 1}, "unknown field(s) 'y'"),
        ({**GOOD, "u": 1, "v": 1, "w": 1, "y": 1, "z": 1}, "'u', 'v', 'w' and 2 more; the"),
        (5, "must be a JSON object"),
        ([1, 2, 3, 4, 5, 6], "must be a JSON object"),
        ("abcdef", "must be a JSON object"),
        (None, "must be a JSON object"),
    ],
)
def test_a_malformed_item_is_named(client, item, words):
    response = client.post("/plain", json=[GOOD, item])
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert message.startswith("item 1: ")
    assert words in message


def test_the_functions_errors_name_their_item(client):
    response = client.post("/plain", json=[GOOD, {**GOOD, "label": "domain"}])
    assert response.status_code == 400
    assert response.get_json()["message"] == (
        "item 1: label 'domain' is out of this model's domain"
    )
    response = client.post("/plain", json=[GOOD, GOOD, {**GOOD, "label": "bug"}])
    assert response.status_code == 500
    assert response.get_json()["message"] == (
        "plain failed with KeyError; the server log has the traceback"
    )


def test_the_old_batch_form_checks_a_column_at_once_and_names_a_refused_value():
    def area(a: float, b: Annotated[int, Field(ge=0)]) -> float:
        return a * b

    client = create_app({"TESTING": True, "ENDPOINTS": {"area": area}}).test_client()
    response = client.post("/area", json={"a": [1, 2.5], "b": [2, 4]})
    assert response.status_code == 200
    assert response.get_json() == {"result": [2.0, 10.0]}
    response = client.post("/area", json={"a": [1, 2.5, 3], "b": [2, 4, -1]})
    assert response.status_code == 400
    assert response.get_json()["message"].startswith("b[2] ")
    assert "greater than or equal to 0" in response.get_json()["message"]
