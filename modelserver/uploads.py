"""A request's arguments from an upload: a multipart form, an image body, a raw body."""

from flask import request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

from modelserver.arguments import (
    RepeatedKey,
    query_value,
    read_json,
    refuse_encoding,
    refuse_query_arguments,
    refuse_unknown_fields,
    text_value,
    validated,
)
from modelserver.endpoints import Signature
from modelserver.files import File
from modelserver.fillable import takes_text
from modelserver.hints import Param
from modelserver.images import IMAGE_TYPES, ImageUpload, decode_field, decode_upload
from modelserver.lean import PART_BYTES, PartsAfterClose
from modelserver.limits import MAX_BATCH, MAX_IMAGE_BODY_BYTES, MAX_IMAGES, at_most


def upload_rows(sig: Signature) -> tuple[list[list], bool]:
    """The rows of arguments of an upload: a multipart form whose fields are the parameters (an
    upload field given n times: n items), a PNG or JPEG body for a function of one image, or
    the raw body for a function of bytes or a File (its other parameters in the query string)."""
    # Before the body is read. A text part may be a whole file (curl -F 'data=<model.bin'),
    # held in memory as a file's part is: bounded by the body alone. A body labelled JSON keeps
    # JSON's bound: nginx counts it as a JSON request, not as one of a client's uploads (that
    # type alone: application/*+json is counted as an upload there).
    if request.mimetype != "application/json":
        request.max_content_length = request.max_form_memory_size = MAX_IMAGE_BODY_BYTES
    refuse_encoding()
    if request.mimetype == "multipart/form-data":
        return form_rows(sig)
    raw = next((p for p in sig.params if p.upload in (bytes, File) and not p.many), None)
    if sig.takes_images and (request.mimetype in IMAGE_TYPES or raw is None):
        return image_body_rows(sig)
    if raw is None:
        raise UnsupportedMediaType(
            f"send the files as multipart/form-data; got {request.mimetype or 'no Content-Type'!r}"
        )
    refuse_in_query(raw)
    data = request.get_data()
    if not data and raw.required:
        raise BadRequest(
            f"the body is empty; send {raw.name!r} as the request body, or as a part of a "
            "multipart/form-data form"
        )
    if raw.upload is File:
        data = File(data, "", request.mimetype or "application/octet-stream")
    return [[data if p is raw else raw_body_other(p, sig) for p in sig.params]], False


def refuse_in_query(body: Param) -> None:
    """The parameter that is the body is not also in the query string, to be left unread."""
    if body.name in request.args:
        raise BadRequest(
            f"parameter {body.name!r} is the request's body; it is in the query string too"
        )


def raw_body_other(param: Param, sig: Signature) -> object:
    """A parameter beside a raw body: from the query string, unless it cannot come in one (a
    date, a model) or is an upload: those come in a form."""
    if param.upload is None and param.in_query:
        return query_value(param)
    if not param.required and param.name not in request.args:
        return param.default
    fields = ", ".join(p.name for p in sig.params)
    raise BadRequest(
        f"send {param.name!r} too: POST a multipart/form-data form with a field for each "
        f"parameter ({fields})"
    )


def image_body_rows(sig: Signature) -> tuple[list[list], bool]:
    """A PNG or JPEG body for a function of one image, its other parameters in the query string;
    anything else is refused."""
    if request.mimetype not in IMAGE_TYPES:
        raise UnsupportedMediaType(
            "send a PNG or JPEG image as the body (Content-Type: image/png or image/jpeg), or as "
            f"multipart/form-data; got {request.mimetype or 'no Content-Type'!r}"
        )
    image = next(param for param in sig.params if param.is_image)
    refuse_in_query(image)
    others = {p.name: raw_body_other(p, sig) for p in sig.params if p is not image}  # 400s first
    data = decode_upload(request.get_data(), sig.draft)
    return [[data if p is image else others[p.name] for p in sig.params]], False


def form_rows(sig: Signature) -> tuple[list[list], bool]:
    """A multipart form's rows: an upload field given n times makes n items, and each other
    field is given once, or once per item."""
    if request.query_string:
        refuse_query_arguments(sig, "a form", "as a field of the form")
    parse_form()
    fields = {param.name: form_values(param) for param in sig.params}
    refuse_unknown_fields(sig, {**request.form, **request.files})
    uploads = [p for p in sig.params if p.upload is not None and not p.many]
    leader = max(uploads, key=lambda p: len(fields[p.name]), default=None)
    count = 1 if leader is None else len(fields[leader.name])
    at_most(MAX_IMAGES, count, "images" if sig.takes_images else "uploads", "a request")
    for name, values in fields.items():
        if len(values) not in (1, count):
            per = "" if count == 1 else f", or once per {upload_word(leader)} ({count})"
            raise BadRequest(f"field {name!r} is given {len(values)} times; give it once{per}")
    rows = [
        [values[i if len(values) > 1 else 0] for values in fields.values()] for i in range(count)
    ]
    # In a batch, an image's errors name it.
    where = [f"image {i}: " if count > 1 else "" for i in range(count)]
    return [
        [decode_field(value, sig.draft, where[i]) for value in row] for i, row in enumerate(rows)
    ], count > 1


def upload_word(param: Param) -> str:
    return f"{'image' if param.is_image else 'file'} of {param.name!r}"


def parse_form() -> None:
    """Parse the multipart form, refusing one of more parts than Werkzeug's max_form_parts
    (1,000: parsed in 25 ms) with a 413 that says so; Werkzeug's own would say the body is
    too large."""
    try:
        request.files  # noqa: B018 (parses the form)
    except ValueError as error:  # modelserver.lean.LeanRequest: a form Werkzeug cannot read
        if isinstance(error, PartsAfterClose):
            raise BadRequest(
                f"the multipart form goes on after its closing boundary (--{error}--): put "
                "every part before it"
            ) from None
        if isinstance(error, UnicodeDecodeError):
            raise BadRequest(
                "the multipart form cannot be read: a part's headers (a field's or a file's "
                "name) are not UTF-8 text"
            ) from None
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
    """The values of one multipart field: an upload's files; text as in a query string (a list
    from the field repeated), or JSON for a type that needs it. A file sent for a text field
    (curl -F name=@file) is its text."""
    if param.upload is not None:
        values = [upload_value(param, part) for part in request.files.getlist(param.name)]
        # A field sent as text (curl -F name=value) is a file's bytes all the same.
        values += [upload_value(param, part) for part in form_parts(param)]
        if param.many:
            at_most(MAX_IMAGES, len(values), "files", f"field {param.name!r}")
            values = [values] if values else []
    else:
        texts = [part_text(param, part) for part in text_parts(param)]
        if param.is_list:
            at_most(MAX_BATCH, len(texts), "values", f"field {param.name!r}")
            values = [[text_value(param, text, "field") for text in texts]] if texts else []
        elif param.in_query and not param.via_json:
            values = [text_value(param, text, "field") for text in texts]
        else:
            values = [form_json(param, text) for text in texts]
    if values:
        return values
    if not param.required:
        return [param.default]
    raise BadRequest(f"the multipart form has no field {param.name!r}")


def form_parts(param: Param) -> list[str]:
    """The text parts of the parameter's field, each its bytes a character a byte (LeanRequest)."""
    return request.form.getlist(param.name)


def text_parts(param: Param) -> list[str]:
    """Every part of a text parameter's field, its text parts and its files alike."""
    files = [part.read().decode(PART_BYTES) for part in request.files.getlist(param.name)]
    return form_parts(param) + files


def part_bytes(part: str) -> bytes:
    return part.encode(PART_BYTES)


def part_text(param: Param, part: str) -> str:
    """A text part as the UTF-8 text it is, or a 400 naming its field."""
    try:
        return part_bytes(part).decode()
    except UnicodeDecodeError:
        raise BadRequest(
            f"field {param.name!r} is not UTF-8 text: send its characters as UTF-8"
        ) from None


def upload_value(param: Param, part: object) -> object:
    """One part of a form as the parameter's upload type."""
    if isinstance(part, str):
        data, filename, content_type = part_bytes(part), "", "text/plain"
    else:
        data, filename = part.read(), part.filename or ""
        content_type = part.mimetype or "application/octet-stream"
    if param.is_image:
        return ImageUpload(data)
    return data if param.upload is bytes else File(data, filename, content_type)


def form_json(param: Param, text: str) -> object:
    """A form field of a type that needs JSON: its text is the JSON value; for a type JSON
    writes as a string (a date, a UUID), text that is not JSON is that string, as a browser's
    form sends it."""
    try:
        value = read_json(text)
    except RepeatedKey as error:
        raise BadRequest(f"field {param.name!r} {error}") from None
    except ValueError as error:
        if not takes_text(param.adapter):
            raise BadRequest(
                f"field {param.name!r} ({param.kind.name}) must be JSON text: {error}"
            ) from None
        value = text
    return validated(param, param.name, value)
