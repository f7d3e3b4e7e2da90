"""A request's arguments: from the query string, a JSON body or a multipart form."""

import json

from flask import request
from pydantic import ValidationError
from werkzeug.exceptions import (
    BadRequest,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

from modelserver.answers import shorten
from modelserver.endpoints import Signature
from modelserver.hints import INT64_RANGE, Param
from modelserver.images import IMAGE_TYPES, ImageUpload, decode_field, decode_upload
from modelserver.limits import MAX_BATCH, MAX_IMAGE_BODY_BYTES, MAX_IMAGES

# --- arguments from a query string ---------------------------------------------------------


def query_value(param: Param) -> object:
    """Parameter `param` from the query string: given once, or repeated for a list."""
    texts = request.args.getlist(param.name)
    if not texts:
        if not param.required:
            return param.default
        raise BadRequest(
            f"query parameter {param.name!r} is missing; send e.g. {query_example(param)}"
        )
    if not param.is_list and len(texts) > 1:
        raise BadRequest(
            f"query parameter {param.name!r} is given {len(texts)} times; give it once"
        )
    if param.is_list and len(texts) > MAX_BATCH:
        raise RequestEntityTooLarge(f"query parameter {param.name!r}: at most {MAX_BATCH} values")
    values = [text_value(param, text) for text in texts]
    return values if param.is_list else values[0]


def text_value(param: Param, text: str) -> object:
    """One query-string value as the parameter's type, or a 400 naming it and the problem."""
    if text == "" and param.kind.parse_text is not str:
        raise BadRequest(
            f"query parameter {param.name!r} is empty; it must be {param.kind.name} such as "
            f"{query_text(param.kind.example)}"
        )
    try:
        return param.kind.parse_text(text)
    except ValueError as error:
        raise BadRequest(f"query parameter {param.name!r} {error}, got {shorten(text)!r}") from None


def query_example(param: Param) -> str:
    return "?" + "&".join(f"{param.name}={query_text(item)}" for item in as_list(param.example()))


def query_text(value: object) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


# --- arguments from a JSON body ------------------------------------------------------------


def json_body() -> object:
    """The request body as JSON; NaN and Infinity, which are not JSON, are refused."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"send the body as Content-Type: application/json, not {request.mimetype or 'none'!r}"
        )
    try:
        return json.loads(request.get_data(), parse_constant=refuse_constant)
    except (ValueError, RecursionError) as error:  # bad text or encoding; absurd nesting
        raise BadRequest(f"the body is not valid JSON: {error}") from error


def refuse_constant(name: str):
    raise ValueError(f"{name} is not a number in JSON")


def json_rows(sig: Signature, body: object) -> tuple[list[list], bool]:
    """The rows of arguments of a JSON body and whether it is a batch: an object is one call;
    a list of objects a batch; an object of lists, for numbers-only functions, the old batch."""
    if isinstance(body, list):
        if len(body) > MAX_BATCH:  # refused before any of its items is looked at
            raise RequestEntityTooLarge(
                f"a batch holds at most {MAX_BATCH} items; this one has {len(body)}"
            )
        return [object_row(sig, item, f"item {i}: ") for i, item in enumerate(body)], True
    if not isinstance(body, dict):
        raise BadRequest(
            f"the body must be a JSON object such as {json_example(sig)}, or a list "
            "of them for a batch"
        )
    if sig.numbers_only and any(isinstance(body.get(p.name), list) for p in sig.params):
        return columns_rows(sig, body), True
    return [object_row(sig, body)], False


def object_row(sig: Signature, body: object, where: str = "") -> list:
    """The arguments in a JSON object, each checked against its parameter's type."""
    if not isinstance(body, dict):
        raise BadRequest(f"{where}must be a JSON object such as {json_example(sig)}")
    row = [field_value(param, body, where) for param in sig.params]
    refuse_unknown_fields(sig, body, where)
    return row


def refuse_unknown_fields(sig: Signature, body: dict, where: str = "") -> None:
    """A field that is no parameter is a typo, not something to ignore: a default would
    silently stand in for what the client meant to send."""
    unknown = set(body) - {param.name for param in sig.params}
    if unknown:
        names = ", ".join(repr(name) for name in sorted(unknown)[:3])
        known = ", ".join(param.name for param in sig.params) or "none"
        raise BadRequest(f"{where}unknown field(s) {shorten(names)}; the parameters: {known}")


def field_value(param: Param, body: dict, where: str = "") -> object:
    if param.name not in body:
        if not param.required:
            return param.default
        example = json.dumps({param.name: param.example()})
        raise BadRequest(
            f"{where}field {param.name!r} is missing from the body; send e.g. {example}"
        )
    return validated(param, param.name, body[param.name], where)


def validated(param: Param, name: str, value: object, where: str = "") -> object:
    """value checked against the parameter's type by pydantic, its complaint said our way."""
    if param.is_list and isinstance(value, list) and len(value) > MAX_BATCH:
        raise RequestEntityTooLarge(
            f"{where}{name} holds at most {MAX_BATCH} values; got {len(value)}"
        )
    try:
        value = param.adapter.validate_python(value)
    except ValidationError as error:
        raise BadRequest(f"{where}{complaint(name, error.errors()[0])}") from None
    return value


# pydantic's error types -> how the contract words them.
COMPLAINTS = {
    "float_type": "must be a number",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "finite_number": "overflows a 64-bit float",
    "greater_than_equal": INT64_RANGE,
    "less_than_equal": INT64_RANGE,
}


def complaint(name: str, error: dict) -> str:
    """'a[1] must be a number, got "x"' from one pydantic error of parameter `name`."""
    where = name + "".join(f"[{part}]" for part in error["loc"] if isinstance(part, int))
    value = error.get("input")
    if error["type"] == "float_type" and type(value) is int:  # more digits than a float holds
        return f"{where} overflows a 64-bit float"
    problem = COMPLAINTS.get(error["type"], error["msg"])
    if error["type"] == "finite_number":
        return f"{where} {problem}"
    return f"{where} {problem}, got {shorten(json.dumps(value, default=repr))}"


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
    if lists and len(lists[0]) > MAX_BATCH:
        raise RequestEntityTooLarge(
            f"a batch holds at most {MAX_BATCH} values; this one has {len(lists[0])}"
        )
    refuse_unknown_fields(sig, body)
    columns = [
        [validated(param, f"{param.name}[{i}]", item) for i, item in enumerate(values[param.name])]
        for param in sig.params
    ]
    return [list(row) for row in zip(*columns, strict=True)]


def json_example(sig: Signature) -> str:
    return json.dumps({p.name: p.example() for p in sig.params if p.required})


# --- arguments from uploaded images --------------------------------------------------------


def image_rows(sig: Signature) -> tuple[list[list], bool]:
    """The rows of arguments of an upload: a PNG or JPEG body for a function of one image, or
    a multipart form whose fields are the parameters (an image field given n times: n items)."""
    request.max_content_length = MAX_IMAGE_BODY_BYTES  # before the body is read
    if request.mimetype in IMAGE_TYPES:
        images = [param for param in sig.params if param.is_image]
        missing = [p.name for p in sig.params if p.required and p not in images[:1]]
        if missing:
            raise BadRequest(f"send {', '.join(missing)} too: use a multipart/form-data form")
        data = request.get_data()
        row = [decode_upload(data, sig.draft) if p is images[0] else p.default for p in sig.params]
        return [row], False
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType(
            "send a PNG or JPEG image as the body (Content-Type: image/png or image/jpeg), or as "
            f"multipart/form-data; got {request.mimetype or 'no Content-Type'!r}"
        )
    fields = {param.name: form_values(param) for param in sig.params}
    refuse_unknown_fields(sig, {**request.form, **request.files})
    count = max(map(len, fields.values()), default=1)
    if count > MAX_IMAGES:
        raise RequestEntityTooLarge(f"at most {MAX_IMAGES} images at once; got {count}")
    for name, values in fields.items():
        if len(values) not in (1, count):
            raise BadRequest(
                f"field {name!r} is given {len(values)} times; give it once, or "
                f"once per image ({count})"
            )
    rows = [
        [values[i if len(values) > 1 else 0] for values in fields.values()] for i in range(count)
    ]
    # In a batch, an image's errors name it.
    where = [f"image {i}: " if count > 1 else "" for i in range(count)]
    return [
        [decode_field(value, sig.draft, where[i]) for value in row] for i, row in enumerate(rows)
    ], count > 1


def form_values(param: Param) -> list:
    """The values of one multipart field: file bytes for an image, text parsed as in a query."""
    if param.is_image:
        values = [ImageUpload(file.read()) for file in request.files.getlist(param.name)]
    else:
        values = [text_value(param, text) for text in request.form.getlist(param.name)]
    if values:
        return values
    if not param.required:
        return [param.default]
    raise BadRequest(f"the multipart form has no field {param.name!r}")
