"""Answers written directly (a plain number's repr) have json.dumps' bytes: the same body for
every float and int, and NaN, Infinity and the rest still go the checked way."""

import json
from decimal import Decimal

import numpy as np
import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from modelserver.answers import json_response, result_response
from modelserver.endpoints import signature_of
from server import create_app


def repr_short(value) -> str:
    """A test id; a long int's digits are past what Python writes by default."""
    return f"int of {len(str(abs(value)))} digits" if type(value) is int else repr(value)


@pytest.fixture(scope="module")
def sig():
    def half(x: float) -> float:
        return x / 2

    return signature_of("half", half)


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70))
def test_a_plain_number_has_the_bytes_json_gives_it(sig, number):
    response = result_response(sig, number)
    assert response.status_code == 200
    assert response.get_data() == json_response({"result": number}).get_data()
    assert response.get_data() == (json.dumps({"result": number}) + "\n").encode()
    assert response.content_type == "application/json"


@pytest.mark.parametrize(
    "value", [True, [1.5], {"a": 1}, "text", 10**400, -(10**4000)], ids=repr_short
)
def test_other_results_are_json(sig, value):
    assert json.loads(result_response(sig, value).get_data()) == {"result": value}


@pytest.mark.parametrize(
    "value,problem",
    [
        (float("nan"), "NaN or Infinity"),
        (float("inf"), "NaN or Infinity"),
        (-float("inf"), "NaN or Infinity"),
        pytest.param(10**5000, "an integer of more than 4300 digits", id="10**5000"),
        (Decimal("NaN"), "NaN or Infinity"),
        ([Decimal("-Infinity")], "NaN or Infinity"),
        (np.complex128(1 + 2j), "a complex number is not JSON"),
        # From a function with no return type: a typed one returning bytes does not start.
        ({"png": b"\x89PNG\r\n"}, "bytes that are not UTF-8 text"),
    ],
)
def test_what_json_cannot_carry_is_the_functions_fault(sig, value, problem):
    with Flask(__name__).test_request_context(), pytest.raises(Exception) as raised:
        result_response(sig, value)
    assert raised.value.code == 500
    assert raised.value.description == f"half returned a result that JSON cannot carry: {problem}"


def test_an_exception_outside_the_function_is_named_in_the_500():
    """One the app did not foresee (a spool file with no writable directory): its type, not
    Werkzeug's paragraph about an overloaded server."""
    app = create_app({"TESTING": False})

    @app.route("/broken")
    def broken():
        raise FileNotFoundError("No usable temporary directory found")

    response = app.test_client().get("/broken")
    assert response.status_code == 500
    assert response.get_json() == {
        "message": "the server failed with FileNotFoundError; the server log has the traceback"
    }
