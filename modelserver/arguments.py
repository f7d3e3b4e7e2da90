"""A request's arguments: from the query string, a JSON body or a multipart form."""

import json
import math

from flask import request
from pydantic import ValidationError
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from modelserver.answers import shorten
from modelserver.complaints import (
    complaint,
    field_path,
    first_leaf,
    oversized_int,
    pydantic_problem,
)
from modelserver.endpoints import Signature
from modelserver.files import File
from modelserver.hints import Param
from modelserver.images import IMAGE_TYPES, ImageUpload, decode_field, decode_upload
from modelserver.limits import MAX_BATCH, MAX_IMAGE_BODY_BYTES, MAX_IMAGES
from modelserver.query import query_texts

# --- arguments from a query string ---------------------------------------------------------


def query_value(param: Param) -> object:
    """Parameter `param` from the query string: given once, or repeated for a list."""
    texts = query_texts(param.name)
    if not texts and not param.required:
        return param.default
    if not param.in_query:
        body = f"an {param.kind.name} object" if param.whole_body else field_example(param)
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
        value = param.kind.parse_text(text)
    except ValueError as error:
        raise BadRequest(f"query parameter {param.name!r} {error}, got {shorten(text)!r}") from None
    if param.constrained:  # Field(ge=0, max_length=8, ...): checked as in a JSON body
        try:
            param.adapter.validate_python([value] if param.is_list else value)
        except ValidationError as error:
            problem = pydantic_problem(error.errors()[0])
            raise BadRequest(
                f"query parameter {param.name!r} {problem}, got {shorten(text)!r}"
            ) from None
    return value


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
        sent = (
            f", not {request.mimetype!r}"
            if request.mimetype
            else "; the request's Content-Type is missing or unreadable"
        )
        raise UnsupportedMediaType(f"send the body as Content-Type: application/json{sent}")
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
    if sig.params and sig.params[0].whole_body:  # the object is the model, as in FastAPI
        return [validated(sig.params[0], "", body, where)]
    row = [field_value(param, body, where) for param in sig.params]
    refuse_unknown_fields(sig, body, where)
    return row


def refuse_unknown_fields(sig: Signature, body: dict, where: str = "") -> None:
    """A field that is no parameter is a typo, not something to ignore: a default would
    silently stand in for what the client meant to send."""
    unknown = set(body) - {param.name for param in sig.params}
    if unknown:
        # By their text: a multipart field whose name Werkzeug cannot read is named None.
        names = ", ".join(repr(name) for name in sorted(unknown, key=str)[:3])
        known = ", ".join(param.name for param in sig.params) or "none"
        raise BadRequest(f"{where}unknown field(s) {shorten(names)}; the parameters: {known}")


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
    if param.is_list and isinstance(value, list) and len(value) > MAX_BATCH:
        raise RequestEntityTooLarge(
            f"{where}{name} holds at most {MAX_BATCH} values; got {len(value)}"
        )
    try:
        if not param.via_json:
            return param.adapter.validate_python(value)
        # From its JSON text: the JSON form of a date, an Enum's value, a tuple as a list.
        try:
            text = json.dumps(value, allow_nan=False)
        except ValueError:  # json.loads made a number of too many digits infinite
            loc, _ = first_leaf(value, not_finite) or ((), None)
            raise BadRequest(
                f"{where}{field_path(name, loc)} holds a number that overflows a 64-bit float"
            ) from None
        value = param.adapter.validate_json(text, strict=True)
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid" and (half := lone_surrogate(value)):
            raise BadRequest(
                f"{where}{field_path(name, ())} holds {half}, half of a character (a UTF-16 "
                "surrogate alone, as from text cut in the middle of an emoji): send whole "
                "characters"
            ) from None
        raise BadRequest(f"{where}{complaint(name, first)}") from None
    if param.nested_ints and (too_big := oversized_int(name, value)):
        raise BadRequest(f"{where}{too_big}")
    return value


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
    if sig.params and sig.params[0].whole_body:
        return f"a {sig.params[0].kind.name}"
    return "{" + ", ".join(field_text(p) for p in sig.params if p.required) + "}"


def field_example(param: Param) -> str:
    """{"a": 25}, or {"when": ...} for a type with no example to give."""
    return "{" + field_text(param) + "}"


def field_text(param: Param) -> str:
    example = param.example()
    return f"{json.dumps(param.name)}: {'...' if example is None else json.dumps(example)}"


# --- arguments from uploads: images, bytes, files ------------------------------------------


def upload_rows(sig: Signature) -> tuple[list[list], bool]:
    """The rows of arguments of an upload: a multipart form whose fields are the parameters (an
    upload field given n times: n items), a PNG or JPEG body for a function of one image, or
    the raw body for a function of bytes or a File (its other parameters in the query string)."""
    request.max_content_length = MAX_IMAGE_BODY_BYTES  # before the body is read
    if request.mimetype == "multipart/form-data":
        return form_rows(sig)
    raw = next((p for p in sig.params if p.upload in (bytes, File) and not p.many), None)
    if sig.takes_images and (request.mimetype in IMAGE_TYPES or raw is None):
        return image_body_rows(sig)
    if raw is None:
        raise UnsupportedMediaType(
            f"send the files as multipart/form-data; got {request.mimetype or 'no Content-Type'!r}"
        )
    data = request.get_data()
    if not data and raw.required:
        raise BadRequest(
            f"the body is empty; send {raw.name!r} as the request body, or as a part of a "
            "multipart/form-data form"
        )
    if raw.upload is File:
        data = File(data, "", request.mimetype or "application/octet-stream")
    return [[data if p is raw else raw_body_other(p) for p in sig.params]], False


def raw_body_other(param: Param) -> object:
    """A parameter beside a raw body: from the query string; an upload must come in a form."""
    if param.upload is None:
        return query_value(param)
    if not param.required:
        return param.default
    raise BadRequest(f"send {param.name!r} too: use a multipart/form-data form")


def image_body_rows(sig: Signature) -> tuple[list[list], bool]:
    """A PNG or JPEG body for a function of one image; anything else is refused."""
    if request.mimetype not in IMAGE_TYPES:
        raise UnsupportedMediaType(
            "send a PNG or JPEG image as the body (Content-Type: image/png or image/jpeg), or as "
            f"multipart/form-data; got {request.mimetype or 'no Content-Type'!r}"
        )
    images = [param for param in sig.params if param.is_image]
    missing = [p.name for p in sig.params if p.required and p not in images[:1]]
    if missing:
        raise BadRequest(f"send {', '.join(missing)} too: use a multipart/form-data form")
    data = request.get_data()
    row = [decode_upload(data, sig.draft) if p is images[0] else p.default for p in sig.params]
    return [row], False


def form_rows(sig: Signature) -> tuple[list[list], bool]:
    """A multipart form's rows: an upload field given n times makes n items."""
    parse_form()
    fields = {param.name: form_values(param) for param in sig.params}
    refuse_unknown_fields(sig, {**request.form, **request.files})
    count = max(map(len, fields.values()), default=1)
    if count > MAX_IMAGES:
        what = "images" if sig.takes_images else "uploads"
        raise RequestEntityTooLarge(f"at most {MAX_IMAGES} {what} at once; got {count}")
    for name, values in fields.items():
        if len(values) not in (1, count):
            raise BadRequest(
                f"field {name!r} is given {len(values)} times; give it once, or "
                f"once per {'image' if sig.takes_images else 'upload'} ({count})"
            )
    rows = [
        [values[i if len(values) > 1 else 0] for values in fields.values()] for i in range(count)
    ]
    # In a batch, an image's errors name it.
    where = [f"image {i}: " if count > 1 else "" for i in range(count)]
    return [
        [decode_field(value, sig.draft, where[i]) for value in row] for i, row in enumerate(rows)
    ], count > 1


def parse_form() -> None:
    """Parse the multipart form, refusing one of more parts than Werkzeug's max_form_parts
    (1,000: parsed in 25 ms) with a 413 that says so; Werkzeug's own would say the body is
    too large."""
    try:
        request.files  # noqa: B018 (parses the form)
    except ValueError:  # modelserver.lean.LeanRequest: a form Werkzeug cannot read
        if not request.mimetype_params.get("boundary"):
            raise BadRequest(
                "the multipart form's Content-Type names no boundary: send it as "
                "multipart/form-data; boundary=..., as curl -F and browsers do"
            ) from None
        raise BadRequest(
            "the multipart form cannot be read: it is cut short or malformed (a form ends with "
            "its closing boundary)"
        ) from None
    except RequestEntityTooLarge:
        if (request.content_length or 0) > (request.max_content_length or 0):
            raise
        raise RequestEntityTooLarge(
            f"a multipart form holds at most {request.max_form_parts} parts"
        ) from None


def form_values(param: Param) -> list:
    """The values of one multipart field: an upload's files, text parsed as in a query (JSON
    for a type that needs it)."""
    if param.upload is not None:
        values = [upload_value(param, part) for part in request.files.getlist(param.name)]
        # A field sent as text (curl -F name=value) is a file's bytes all the same.
        values += [upload_value(param, text) for text in request.form.getlist(param.name)]
        if param.many:
            if len(values) > MAX_IMAGES:
                raise RequestEntityTooLarge(
                    f"field {param.name!r}: at most {MAX_IMAGES} files; got {len(values)}"
                )
            values = [values] if values else []
    elif param.in_query:
        values = [text_value(param, text) for text in request.form.getlist(param.name)]
    else:
        values = [form_json(param, text) for text in request.form.getlist(param.name)]
    if values:
        return values
    if not param.required:
        return [param.default]
    raise BadRequest(f"the multipart form has no field {param.name!r}")


def upload_value(param: Param, part: object) -> object:
    """One part of a form as the parameter's upload type."""
    if isinstance(part, str):
        data, filename, content_type = part.encode(), "", "text/plain"
    else:
        data, filename = part.read(), part.filename or ""
        content_type = part.mimetype or "application/octet-stream"
    if param.is_image:
        return ImageUpload(data)
    return data if param.upload is bytes else File(data, filename, content_type)


def form_json(param: Param, text: str) -> object:
    """A form field of a type that needs JSON: its text is the JSON value."""
    try:
        value = json.loads(text, parse_constant=refuse_constant)
    except ValueError as error:
        raise BadRequest(
            f"field {param.name!r} ({param.kind.name}) must be JSON text: {error}"
        ) from None
    return validated(param, param.name, value)
