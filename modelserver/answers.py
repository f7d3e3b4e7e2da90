"""Answers: results and errors as JSON."""

import json
import math
import sys
from decimal import Decimal

import numpy as np
from flask import Response, current_app, request
from pydantic_core import PydanticSerializationError, to_jsonable_python
from werkzeug.datastructures import Headers
from werkzeug.exceptions import (
    HTTPException,
    InternalServerError,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
)

from modelserver.deadline import DeadlineExceeded, recycle_this_worker
from modelserver.endpoints import Signature
from modelserver.limits import BODY_TOO_LARGE

JSON_TYPE = "application/json"

# --- the answer ----------------------------------------------------------------------------


def result_response(sig: Signature, result: object) -> Response:
    """{"result": ...} as JSON: numpy values become plain numbers and lists; NaN, Infinity or
    a value JSON cannot hold is the function's fault, a 500 naming it, with a log line."""
    kind = type(result)  # not bool, numpy or other subclasses
    if (kind is float and math.isfinite(result)) or (kind is int and result.bit_length() <= 64):
        # What json.dumps writes for a finite float or an int (their repr), without it; a
        # longer int takes json.dumps' way, which knows Python's limit on an int's digits.
        return JSONResponse(f'{{"result": {result!r}}}\n', 200, content_type=JSON_TYPE)
    try:
        return json_response({"result": result})
    except (TypeError, ValueError) as error:
        current_app.logger.exception("%s returned a value that is not JSON", sig.name)
        raise InternalServerError(
            f"{sig.name} returned a result that JSON cannot carry: {not_json(error)}"
        ) from error


def not_json(error: TypeError | ValueError) -> str:
    """What in a result JSON could not carry, from json.dumps' error."""
    if isinstance(error, UnicodeDecodeError):  # pydantic writes bytes as UTF-8 text
        return "bytes that are not UTF-8 text"
    if isinstance(error, ValueError) and "integer string conversion" in str(error):
        return f"an integer of more than {sys.get_int_max_str_digits()} digits"
    if isinstance(error, ValueError):  # allow_nan=False
        return "NaN or Infinity"
    return shorten(str(error), 80)


def numpy_to_json(value: object) -> object:
    """json.dumps' fallback, called only for what JSON has no form of (a float, a list or a dict
    never comes here, so plain answers cost nothing more): numpy scalars and arrays as plain
    values; whatever else pydantic serializes (a BaseModel, a dataclass, a datetime, a UUID, a
    Decimal, an Enum, a set), with numpy values inside it, as pydantic gives it in JSON."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, Decimal) and not value.is_finite():  # pydantic would write "NaN"
        raise ValueError("NaN or Infinity")
    if isinstance(value, complex):  # pydantic would write "1+2j", which no reader takes back
        raise TypeError("a complex number is not JSON")
    try:
        return to_jsonable_python(value, fallback=numpy_or_fail)
    except PydanticSerializationError as error:
        raise TypeError(f"a value of type {type(value).__name__} is not JSON") from error


def numpy_or_fail(value: object) -> object:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"a value of type {type(value).__name__} is not JSON")


class JSONResponse(Response):
    """A JSON answer: its headers go out as they are. Werkzeug would copy them for each answer
    to make a Location absolute or drop the body's length from a 204 or 304, neither of which
    a JSON answer has."""

    def get_wsgi_headers(self, environ: dict) -> Headers:
        return self.headers


def json_response(payload: dict, status: int = 200) -> Response:
    """payload as JSON, with json.dumps' default spacing: {"result": 8.86226925452758}."""
    # allow_nan=False: NaN and Infinity are not JSON; emitting them would break clients silently.
    body = json.dumps(payload, allow_nan=False, default=numpy_to_json) + "\n"
    return JSONResponse(body, status, content_type=JSON_TYPE)


# --- errors ----------------------------------------------------------------------------------


def shorten(text: str, limit: int = 40) -> str:
    """Echo at most `limit` characters of client input back in a message."""
    return text if len(text) <= limit else text[:limit] + "..."


def http_error(error: HTTPException) -> Response:
    """Every HTTP error as JSON {"message": ...}, keeping its status and headers (e.g. Allow)."""
    response = error.get_response()
    response.set_data(json.dumps({"message": error_message(error)}) + "\n")
    response.content_type = JSON_TYPE
    if isinstance(error, DeadlineExceeded):
        response.call_on_close(recycle_this_worker)
    return response


def error_message(error: HTTPException) -> str:
    """A one-line message naming what was wrong with the request."""
    if isinstance(error, NotFound):
        return f"no such path: {shorten(request.path)}"
    if isinstance(error, RequestEntityTooLarge) and error.description == BODY_TOO_LARGE:
        limit = request.max_content_length // (1024 * 1024)
        return f"request body too large: at most {limit} MB"
    if isinstance(error, MethodNotAllowed):
        allowed = ", ".join(sorted(error.valid_methods or ()))
        return f"method {request.method} is not allowed on {request.path}; allowed: {allowed}"
    if isinstance(error, InternalServerError) and error.original_exception is not None:
        # Flask's answer to an exception outside the function (Flask logged its traceback).
        failure = type(error.original_exception).__name__
        return f"the server failed with {failure}; the server log has the traceback"
    return error.description or error.name
