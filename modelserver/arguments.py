"""A request's arguments: from the query string or a JSON body (a form's: modelserver.uploads)."""

import json
import math
import re
import sys
from collections.abc import Sequence

from flask import request
from pydantic import ValidationError
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from modelserver.answers import shorten
from modelserver.complaints import (
    complaint_of,
    field_path,
    first_leaf,
    oversized_int,
    pydantic_problem,
)
from modelserver.endpoints import Signature
from modelserver.hints import Param
from modelserver.lean import has_body
from modelserver.limits import JSON_DEPTH, MAX_BATCH, at_most
from modelserver.query import query_texts

# In a value's JSON text, the digits of an integer that may be past a float's range (1.8e308).
HUGE_INT = re.compile(r"\d{309}")

# --- arguments from a query string ---------------------------------------------------------


def query_value(param: Param) -> object:
    """Parameter `param` from the query string: given once, or repeated for a list."""
    texts = query_texts(param.name)
    if not texts and not param.required:
        return param.default
    if not param.in_query:
        body = (
            f"an object of the model {param.kind.name}"
            if param.whole_body
            else field_example(param)
        )
        raise BadRequest(
            f"parameter {param.name!r} ({param.kind.name}) cannot come in a query string: "
            f"POST {request.path} a JSON body (Content-Type: application/json) such as {body}"
        )
    if not texts:
        raise BadRequest(
            f"query parameter {param.name!r} is missing; send e.g. {query_example(param)}"
        )
    if not param.is_list and len(texts) > 1:
        raise BadRequest(
            f"query parameter {param.name!r} is given {len(texts)} times; give it once"
        )
    if param.is_list:
        at_most(MAX_BATCH, len(texts), "values", f"query parameter {param.name!r}")
    values = [text_value(param, text) for text in texts]
    return values if param.is_list else values[0]


def refuse_body(
    environ: dict, advice: str = "send the parameters in the query string, or POST the body"
) -> None:
    """A GET's parameters are in its query string; a body sent with it would go unread."""
    if has_body(environ):
        raise BadRequest(f"a {environ['REQUEST_METHOD']} request's body is not read: {advice}")


def text_value(param: Param, text: str, source: str = "query parameter") -> object:
    """One text value as the parameter's type, or a 400 naming it and the problem; source: where
    it came from ("query parameter", a form's "field")."""
    if text == "" and param.kind.parse_text is not str:
        example = param.kind.example
        such_as = "" if example is None else f" such as {query_text(example)}"
        raise BadRequest(f"{source} {param.name!r} is empty; it must be {param.kind.name}{such_as}")
    try:
        value = param.kind.parse_text(text)
        if param.constrained:  # Field(ge=0, max_length=8, ...): checked as in a JSON body
            param.adapter.validate_python([value] if param.is_list else value)
    except ValidationError as error:  # pydantic's: a constraint, a date (hints.text_kind)
        problem = pydantic_problem(error.errors()[0])
    except ValueError as error:
        problem = str(error)
    else:
        return value
    raise BadRequest(f"{source} {param.name!r} {problem}, got {shorten(text)!r}")


def query_example(param: Param) -> str:
    """?a=25, or ?when=... for a type with no example to give."""
    items = as_list(param.example())
    return "?" + "&".join(f"{param.name}={'...' if i is None else query_text(i)}" for i in items)


def query_text(value: object) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


# --- arguments from a JSON body ------------------------------------------------------------


def json_body() -> object:
    """The request body as JSON; NaN and Infinity, which are not JSON, are refused."""
    if not request.is_json:
        sent = (
            f", not {request.mimetype!r}"
            if request.mimetype
            else "; the request's Content-Type is missing or unreadable"
        )
        raise UnsupportedMediaType(f"send the body as Content-Type: application/json{sent}")
    refuse_encoding()
    try:
        return read_json(request.get_data())
    except RepeatedKey as error:
        raise BadRequest(f"the body {error}") from None
    except RecursionError:  # valid JSON, perhaps, but deeper than Python's reader goes
        raise BadRequest(
            "the body nests lists or objects too deeply to be read (about a thousand levels)"
        ) from None
    except ValueError as error:  # bad text or encoding
        if "int_max_str_digits" in str(error):  # Python's guard against slow conversions
            limit = sys.get_int_max_str_digits()
            raise BadRequest(f"the body holds an integer of more than {limit} digits") from None
        raise BadRequest(f"the body is not valid JSON: {error}") from error


def refuse_encoding() -> None:
    """A compressed body (Content-Encoding: gzip) would be read as its compressed bytes."""
    encoding = request.content_encoding
    if encoding and encoding.lower() != "identity":
        raise UnsupportedMediaType(
            f"the body's Content-Encoding {shorten(encoding)!r} is not taken: send it uncompressed"
        )


def read_json(text: str | bytes) -> object:
    """JSON text as Python values, refusing what JSON readers disagree on or would lose:
    NaN and Infinity, and a key given twice in one object (Python's reader keeps the last
    value and drops the others without a word)."""
    return json.loads(text, parse_constant=refuse_constant, object_pairs_hook=unique_keys)


class RepeatedKey(ValueError):
    """An object of the JSON text gives one key more than once."""


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) < len(pairs):
        seen = set()
        name = next(name for name, _ in pairs if name in seen or seen.add(name))
        times = sum(1 for other, _ in pairs if other == name)
        raise RepeatedKey(
            f"gives the key {shorten(name)!r} {times} times in one object; give it once"
        )
    return found


def refuse_constant(name: str):
    raise ValueError(f"{name} is not a number in JSON")


def json_rows(sig: Signature, body: object) -> tuple[list[list], bool]:
    """The rows of arguments of a JSON body and whether it is a batch: an object is one call;
    a list of objects a batch; an object of lists, for numbers-only functions, the old batch."""
    if request.query_string:
        refuse_query_arguments(sig, "JSON", "in the body")
    if isinstance(body, list):
        at_most(MAX_BATCH, len(body), "items", "a batch")  # before any item is looked at
        return batch_rows(sig, body), True
    if not isinstance(body, dict):
        raise BadRequest(
            f"the body must be a JSON object such as {json_example(sig)}, or a list "
            "of them for a batch"
        )
    if sig.numbers_only and any(isinstance(body.get(p.name), list) for p in sig.params):
        return columns_rows(sig, body), True
    return [object_row(sig, body)], False


def batch_rows(sig: Signature, items: list) -> list[list]:
    """The rows of a batch of JSON objects: all at once when each parameter's values can be
    checked in one call; else item by item, which names the item and the value at fault."""
    rows = rows_at_once(sig, items)
    if rows is None:
        rows = [object_row(sig, item, f"item {i}: ") for i, item in enumerate(items)]
    return rows


def rows_at_once(sig: Signature, items: list) -> list[tuple] | None:
    """The rows when every item is an object that gives each parameter, all single values of
    the plain types, and each parameter's values pass its check in one call; else None (the
    item-by-item check then says what is wrong, and where)."""
    params = sig.params
    if not params or any(param.column_adapter is None for param in params):
        return None
    try:
        if set(map(len, items)) - {len(params)}:  # a field missing or unknown
            return None
        columns = [
            param.column_adapter.validate_python([item[param.name] for item in items])
            for param in params
        ]
    except (TypeError, KeyError, ValidationError):  # not an object; another name; refused
        return None
    return list(zip(*columns, strict=True))


def refuse_query_arguments(sig: Signature, body: str, place: str) -> None:
    """A parameter in the query string of a POST of JSON or of a form is a mistake, not a value
    to take or to leave: the body's value, or the default, would silently stand in for it."""
    given = [param.name for param in sig.params if param.name in request.args]
    if given:
        raise BadRequest(
            f"parameter {given[0]!r} is in the query string of a POST of {body}; send it {place}"
        )


def object_row(sig: Signature, body: object, where: str = "") -> list:
    """The arguments in a JSON object, each checked against its parameter's type."""
    if not isinstance(body, dict):
        raise BadRequest(f"{where}must be a JSON object such as {json_example(sig)}")
    if sig.params and sig.params[0].whole_body:  # the object is the model, as in FastAPI
        model = sig.params[0]
        if model.body_fields is not None:
            refuse_unknown(body, model.body_fields, "the fields", where)
        return [validated(model, "", body, where)]
    row = [field_value(param, body, where) for param in sig.params]
    refuse_unknown_fields(sig, body, where)
    return row


def refuse_unknown_fields(sig: Signature, body: dict, where: str = "") -> None:
    refuse_unknown(body, [param.name for param in sig.params], "the parameters", where)


def refuse_unknown(body: dict, known: Sequence[str], what: str, where: str = "") -> None:
    """A field that is not known is a typo, not something to ignore: a default would silently
    stand in for what the client meant to send."""
    unknown = set(body).difference(known)
    if unknown:
        # By their text: a multipart field whose name Werkzeug cannot read is named None.
        names = ", ".join(repr(name) for name in sorted(unknown, key=str)[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise BadRequest(
            f"{where}unknown field(s) {shorten(names)}{more}; {what}: {', '.join(known) or 'none'}"
        )


def field_value(param: Param, body: dict, where: str = "") -> object:
    if param.name not in body:
        if not param.required:
            return param.default
        raise BadRequest(
            f"{where}field {param.name!r} is missing from the body; send e.g. "
            f"{field_example(param)}"
        )
    return validated(param, param.name, body[param.name], where)


def validated(param: Param, name: str, value: object, where: str = "") -> object:
    """value checked against the parameter's type by pydantic, its complaint said our way."""
    if param.is_list and isinstance(value, list):
        at_most(MAX_BATCH, len(value), "values", f"{where}{name}")
    try:
        if not param.via_json:
            return param.adapter.validate_python(value)
        # From its JSON text: the JSON form of a date, an Enum's value, a tuple as a list.
        try:
            text = json.dumps(value, allow_nan=False)
        except ValueError:  # json.loads made a number of too many digits infinite
            raise overflow(where, name, value) from None
        except RecursionError:  # nested past what the writer goes, far past what is read
            raise too_deep(where, name) from None
        value = param.adapter.validate_json(text, strict=True)
        if HUGE_INT.search(text) and first_leaf(value, not_finite):  # an int read as a float
            raise overflow(where, name, value)
    except ValidationError as error:
        errors = error.errors()
        first = errors[0]
        if first["type"] == "json_invalid" and "recursion limit" in first["msg"]:
            raise too_deep(where, name) from None
        if first["type"] == "json_invalid" and (half := lone_surrogate(value)):
            raise BadRequest(
                f"{where}{field_path(name, ())} holds {half}, half of a character (a UTF-16 "
                "surrogate alone, as from text cut in the middle of an emoji): send whole "
                "characters"
            ) from None
        raise BadRequest(f"{where}{complaint_of(name, errors, value)}") from None
    if param.nested_ints and (too_big := oversized_int(name, value)):
        raise BadRequest(f"{where}{too_big}")
    return value


def overflow(where: str, name: str, value: object) -> BadRequest:
    """The 400 of a value holding a number past a float's range, which became infinite."""
    loc, _ = first_leaf(value, not_finite) or ((), None)
    path = field_path(name, loc)
    return BadRequest(f"{where}{path} holds a number that overflows a 64-bit float")


def too_deep(where: str, name: str) -> BadRequest:
    return BadRequest(
        f"{where}{field_path(name, ())} nests lists or objects more than {JSON_DEPTH} levels deep"
    )


def not_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def lone_surrogate(value: object) -> str | None:
    """The first lone surrogate in value's strings, escaped ("\\ud83d"), or None: Python's json
    reads one from a JSON escape, and pydantic's JSON parser then refuses the text json.dumps made
    of it, at a position the client never saw. (json.loads joins a valid pair into one character.)
    """
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError as error:
        return error.object[error.start].encode("unicode_escape").decode()
    return None


def columns_rows(sig: Signature, body: dict) -> list[list]:
    """The deprecated batch form {"a": [1, 25]}: each parameter a list, the i-th call takes the
    i-th of each."""
    for param in sig.params:
        if param.required and param.name not in body:
            field_value(param, body)  # raises "missing"
    values = {p.name: body.get(p.name, p.default) for p in sig.params}
    lists = [value for value in values.values() if isinstance(value, list)]
    if len(lists) != len(values) or len(set(map(len, lists))) > 1:
        raise BadRequest(f"give {', '.join(values)} all as numbers or all as lists of one length")
    if lists:
        at_most(MAX_BATCH, len(lists[0]), "values", "a batch")
    refuse_unknown_fields(sig, body)
    columns = [column_values(param, values[param.name]) for param in sig.params]
    return list(zip(*columns, strict=True))


def column_values(param: Param, values: list) -> list:
    """A parameter's list of values, each checked: in one call; if that refuses one, item by
    item, to name it."""
    if param.column_adapter is not None:
        try:
            return param.column_adapter.validate_python(values)
        except ValidationError:
            pass
    return [validated(param, f"{param.name}[{i}]", item) for i, item in enumerate(values)]


def json_example(sig: Signature) -> str:
    if sig.params and sig.params[0].whole_body:
        return f"an object of the model {sig.params[0].kind.name}"
    return "{" + ", ".join(field_text(p) for p in sig.params if p.required) + "}"


def field_example(param: Param) -> str:
    """{"a": 25}, or {"when": ...} for a type with no example to give."""
    return "{" + field_text(param) + "}"


def field_text(param: Param) -> str:
    example = param.example()
    return f"{json.dumps(param.name)}: {'...' if example is None else json.dumps(example)}"
