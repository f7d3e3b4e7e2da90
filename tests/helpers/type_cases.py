"""The table of functions of every type (typed_models.py) and their answers, run through Flask's
test client (unit/test_types.py) and through the real stack (stack/test_types_stack.py)."""

import json

import pytest

from helpers import assert_json_error
from modelserver.limits import MAX_BODY_BYTES

JSON = "application/json"
# A body a byte past JSON's bound, and what /size says of it.
PAST_JSON = b" " * (MAX_BODY_BYTES + 1)
PAST_JSON_SIZE = {"bytes": MAX_BODY_BYTES + 1, "sha256": "9d78de4e5b12fc16"}
ORDER = {
    "customer": "ann",
    "items": [
        {"name": "tea", "quantity": 2, "when": "2026-01-01T10:00:00"},
        {"name": "cake", "quantity": 1, "when": "2026-01-03T10:00:00"},
    ],
}
OVERFLOW_B = ("scores.b holds a number that overflows a 64-bit float",)
OVERFLOW_01 = ("rows[0][1] holds a number that overflows a 64-bit float",)
UUID = "12345678-1234-5678-1234-567812345678"
NOT_FINITE = ('amount must be a finite number, got "NaN"',)
PAST_INT64 = ("weights must be an array of numbers, with integers from -2**63 to 2**63-1",)
UNKNOWN_FIELD = ("unknown field(s) 'custmer'; the fields: customer, items",)
RECEIPT = {"customer": "ann", "quantity": 3, "last": "2026-01-03T10:00:00"}


def order_with(index: int, field: str, value: object) -> str:
    order = json.loads(json.dumps(ORDER))
    if value is None:
        del order["items"][index][field]
    else:
        order["items"][index][field] = value
    return json.dumps(order)


def form(*parts: tuple[str, str | None, str | None, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type: (name, filename, type, data) a part;
    a part with a filename is a file."""
    boundary = "typed-test-boundary"
    chunks = []
    for name, filename, content_type, data in parts:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
        head += f'; filename="{filename}"' if filename else ""
        head += f"\r\nContent-Type: {content_type}" if content_type else ""
        # surrogateescape: "\udce9" in a name is the byte 0xe9, a name that is not UTF-8.
        chunks.append(head.encode("utf-8", "surrogateescape") + b"\r\n\r\n" + data + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


FILES = form(
    ("docs", "a.csv", "text/csv", b"x,y\n1,2\n"),
    ("docs", "b.wav", "audio/wav", b"RIFF...."),
    ("note", None, None, b"two files"),
)
ONE_FILE = form(("doc", "report.pdf", "application/pdf", b"%PDF-1.7 ..."))
CSV = b"name,price\ntea,1.5\ncake,2.25\n"

MOMENT = {"shape": [2, 2], "dtype": "float32", "first": 1.0, "weights": None, "levels": None}
WEIGHED = {
    "shape": [2],
    "dtype": "float32",
    "first": 1.0,
    "weights": ["int64", [2]],
    "levels": None,
}
NO_LEVELS = {
    "shape": [1],
    "dtype": "float32",
    "first": 1.0,
    "weights": None,
    "levels": ["uint8", []],
}
LEVELS = {
    "shape": [1],
    "dtype": "float32",
    "first": 1.0,
    "weights": None,
    "levels": ["uint8", [0, 255]],
}

# (method, path, body, Content-Type, status, expected): the exact result of a 200, or the words
# the error message must contain (the field path and the problem).
CASES = [
    # Literal and Enum: in a query string and in JSON.
    ("GET", "/choose?speed=fast&level=high", None, None, 200, "fast/high"),
    ("GET", "/choose?speed=slow", None, None, 200, "slow/low"),
    ("GET", "/choose?speed=medium", None, None, 400, ("'speed'", "one of 'fast', 'slow'")),
    ("POST", "/choose", '{"speed": "fast", "level": "high"}', JSON, 200, "fast/high"),
    ("POST", "/choose", '{"speed": "fast", "level": "x"}', JSON, 400, ("level", "'low'", '"x"')),
    ("POST", "/choose", '{"speed": 1}', JSON, 400, ("speed", "'fast'")),
    # A matrix and a dict: JSON only; the query string answers which POST to send.
    ("POST", "/row-sums", '{"rows": [[1, 2], [3, 4.5]]}', JSON, 200, [3.0, 7.5]),
    ("POST", "/row-sums", '{"rows": [[1, 2], [3, "x"]]}', JSON, 400, ("rows[1][1]", "number")),
    ("POST", "/row-sums", '{"rows": [[1, 1e999]]}', JSON, 400, ("rows[0][1] holds a number",)),
    ("POST", "/row-sums", '{"rows": [[1e308, 1e308]]}', JSON, 400, ("overflow",)),
    # numpy arrays: nested lists, rectangular, numbers that fit the hint's dtype.
    ("POST", "/moments", '{"x": [[1, 2], [3, 4.5]]}', JSON, 200, MOMENT),
    ("POST", "/moments", '{"x": [1, 3], "weights": [3, 1]}', JSON, 200, WEIGHED),
    ("POST", "/moments", '{"x": [1], "levels": [0, 255]}', JSON, 200, LEVELS),
    ("POST", "/moments", '{"x": [[1, 2], [3]]}', JSON, 400, ("x must", "rectangular")),
    ("POST", "/moments", '{"x": [1, "2"]}', JSON, 400, ("x must", "array of numbers")),
    ("POST", "/moments", '{"x": 1}', JSON, 400, ("x must", "a JSON list")),
    ("POST", "/moments", '{"x": [1, true]}', JSON, 400, ("x must", "not true or false")),
    ("POST", "/moments", '{"x": [1e300]}', JSON, 400, ("x must", "fit in float32")),
    ("POST", "/moments", '{"x": [1], "levels": []}', JSON, 200, NO_LEVELS),
    ("POST", "/moments", '{"x": [1], "levels": [256]}', JSON, 400, ("levels", "fit in uint8")),
    ("POST", "/moments", '{"x": [1], "levels": [-1]}', JSON, 400, ("levels", "fit in uint8")),
    ("POST", "/moments", '{"x": [1], "levels": [1.5]}', JSON, 400, ("levels", "integers")),
    ("GET", "/moments?x=1", None, None, 405, ("GET", "not allowed", "POST")),
    # A GET of a function whose required parameter needs JSON is refused as one of images is.
    ("GET", "/row-sums?rows=1", None, None, 405, ("GET", "not allowed", "POST")),
    (
        "POST",
        "/choose",
        '{"speed": "fast", "bias": {"b": 1, "a": 2}}',
        JSON,
        200,
        "fast/low/['a', 'b']",
    ),
    (
        "GET",
        "/choose?speed=fast&bias=1",
        None,
        None,
        400,
        ("'bias'", "query string", "POST /choose"),
    ),
    ("POST", "/best", '{"scores": {"a": 1, "b": 3.5}}', JSON, 200, "b"),
    ("POST", "/best", '{"scores": {"a": true}}', JSON, 400, ("scores.a", "must be a")),
    ("POST", "/best", '{"scores": {}}', JSON, 400, ("scores is empty",)),
    # Valid JSON nested past what pydantic reads: said so, not "Invalid JSON" at a column of
    # text the client never sent.
    (
        "POST",
        "/best",
        '{"scores": ' + '{"a": ' * 250 + "1" + "}" * 250 + "}",
        JSON,
        400,
        ("scores nests lists or objects more than 201 levels deep",),
    ),
    (
        "POST",
        "/receipt",
        '{"customer": "ann", "items": ' + "[" * 300 + "]" * 300 + "}",
        JSON,
        400,
        ("the body nests lists or objects more than 201 levels deep",),
    ),
    # date, time, timedelta in; datetime out.
    (
        "POST",
        "/schedule",
        '{"day": "2026-01-02", "at": "10:30", "after": "PT1H"}',
        JSON,
        200,
        "2026-01-02T11:30:00Z",
    ),
    # A date and a time come in a query string as their JSON text, with the same checks.
    ("GET", "/schedule?day=2026-01-02&at=10:30", None, None, 200, "2026-01-02T10:30:00Z"),
    ("GET", "/schedule?day=2026-13-02", None, None, 400, ("'day'", "valid date", "'2026-13-02'")),
    ("GET", "/schedule?day=20260102", None, None, 400, ("'day'", "ISO 8601", "not a number")),
    ("GET", "/schedule?day=", None, None, 400, ("'day' is empty", "a date such as 2026-01-02")),
    ("GET", "/schedule", None, None, 400, ("'day' is missing", "?day=2026-01-02")),
    (
        "GET",
        "/schedule?day=2026-01-02&after=PT1H",
        None,
        None,
        400,
        ("parameter 'after' (timedelta) cannot come in a query string", "POST /schedule"),
    ),
    ("POST", "/schedule", '{"day": "2026-13-02"}', JSON, 400, ("day", "valid date", "2026-13")),
    ("POST", "/schedule", '{"day": 20260102}', JSON, 400, ("day", "date")),
    # Not Unix time, as pydantic alone would read a number or the text of one: 1970-08-23.
    ("POST", "/schedule", '{"day": "20260102"}', JSON, 400, ("day", "ISO 8601", "not a number")),
    ("POST", "/schedule", '{"day": "0"}', JSON, 400, ("day", "ISO 8601", "not a number")),
    (
        "POST",
        "/schedule",
        '{"day": "2026-01-02", "at": "3600"}',
        JSON,
        400,
        ("at", "time in ISO 8601", "not a number"),
    ),
    # UUID and Decimal in, given back as pydantic writes them.
    (
        "POST",
        "/price",
        '{"item": "00000000-0000-0000-0000-000000000003", "amount": "1.25"}',
        JSON,
        200,
        {"item": "00000000-0000-0000-0000-000000000003", "amount": "2.50", "currency": "EUR"},
    ),
    ("POST", "/price", '{"item": "nope", "amount": "1"}', JSON, 400, ("item", "UUID")),
    # Field() constraints, in a query string and in JSON.
    ("GET", "/bounded?share=0.5&tag=abc", None, None, 200, "abc:0.5"),
    ("GET", "/bounded?share=1.5", None, None, 400, ("'share'", "less than or equal to 1")),
    ("GET", "/bounded?share=0.5&tag=ABC", None, None, 400, ("'tag'", "pattern")),
    ("POST", "/bounded", '{"share": -1}', JSON, 400, ("share", "greater than or equal to 0")),
    ("POST", "/bounded", '{"share": 0.5, "tag": "abcdefghi"}', JSON, 400, ("tag", "at most 8")),
    # A tuple.
    ("POST", "/span", '{"pair": [1, 5]}', JSON, 200, 4),
    ("POST", "/span", '{"pair": [1]}', JSON, 400, ("pair[1] is missing",)),
    # An int at any depth is held to 64 bits, as a parameter's own is.
    ("POST", "/span", '{"pair": [1, 18446744073709551616]}', JSON, 400, ("pair[1] ", "64-bit")),
    # A keyword-only parameter is passed by name.
    ("GET", "/repeated?x=2&times=3", None, None, 200, [2.0, 2.0, 2.0]),
    ("POST", "/repeated", '{"x": 2}', JSON, 200, [2.0, 2.0]),
    ("POST", "/repeated", '[{"x": 1}, {"x": 1, "times": 1}]', JSON, 200, [[1.0, 1.0], [1.0]]),
    # An integer past a float's range, where a float is taken, is refused as 1e400 is: it would
    # reach the function as inf.
    ("POST", "/best", '{"scores": {"a": 1, "b": 1%s}}' % ("0" * 400), JSON, 400, OVERFLOW_B),
    ("POST", "/row-sums", '{"rows": [[1, -1%s]]}' % ("0" * 400), JSON, 400, OVERFLOW_01),
    ("POST", "/best", '{"scores": {"a": 1%s}}' % ("0" * 307), JSON, 200, "a"),
    # A Decimal's "NaN" is no number, not an overflow.
    ("POST", "/price", json.dumps({"item": UUID, "amount": "NaN"}), JSON, 400, NOT_FINITE),
    # numpy reads integers from 2**63 as uint64, which an ndarray of its own choice is not.
    ("POST", "/moments", '{"x": [1], "weights": [9223372036854775808]}', JSON, 400, PAST_INT64),
    # A model is the whole body; a list of them is a batch; errors name the field path.
    # Where its config does not say, a field it does not have is a typo, as a parameter's is.
    ("POST", "/receipt", json.dumps({**ORDER, "custmer": "x"}), JSON, 400, UNKNOWN_FIELD),
    ("POST", "/receipt", json.dumps(ORDER), JSON, 200, RECEIPT),
    ("POST", "/receipt", json.dumps([ORDER, ORDER]), JSON, 200, [RECEIPT, RECEIPT]),
    ("POST", "/receipt", order_with(1, "when", "soon"), JSON, 400, ("items[1].when", "datetime")),
    (
        "POST",
        "/receipt",
        order_with(0, "quantity", 0),
        JSON,
        400,
        ("items[0].quantity", "greater than or equal to 1"),
    ),
    ("POST", "/receipt", order_with(0, "name", None), JSON, 400, ("items[0].name is missing",)),
    (
        "POST",
        "/receipt",
        order_with(1, "quantity", 2**64),
        JSON,
        400,
        ("items[1].quantity must be a 64-bit integer", "18446744073709551616"),
    ),
    # A number too large for a float is named by its path, as any other refused value is.
    (
        "POST",
        "/receipt",
        order_with(1, "quantity", 7).replace(": 7", ": 1e999"),
        JSON,
        400,
        ("items[1].quantity holds a number that overflows a 64-bit float",),
    ),
    (
        "POST",
        "/receipt",
        '[{"customer": "ann", "items": []}, {"customer": 1e999, "items": []}]',
        JSON,
        400,
        ("item 1: customer holds a number that overflows",),
    ),
    (
        "POST",
        "/receipt",
        json.dumps([ORDER, {"customer": 5}]),
        JSON,
        400,
        ("item 1: customer must be a string", "5"),
    ),
    ("GET", "/receipt", None, None, 405, ("GET", "not allowed", "POST")),
    # Half an emoji (a JSON escape of one UTF-16 surrogate, as text cut in JavaScript gives) is
    # refused naming it; a whole one, two escapes, is one character.
    (
        "POST",
        "/receipt",
        order_with(0, "name", "tea \ud83d"),
        JSON,
        400,
        ("the body holds \\ud83d",),
    ),
    ("POST", "/receipt", order_with(0, "name", "tea \ud83d\ude00"), JSON, 200, RECEIPT),
    ("POST", "/best", '{"scores": {"\\ude00": 1}}', JSON, 400, ("scores holds \\ude00", "half")),
    ("POST", "/best", '{"scores": {"\\ud83d\\ude00": 1}}', JSON, 200, "\U0001f600"),
    # A dataclass and a TypedDict in, a dataclass out.
    (
        "POST",
        "/place",
        '{"point": {"x": 1, "y": 2}, "label": {"text": "a", "size": 3}}',
        JSON,
        200,
        {
            "point": {"x": 1.0, "y": 2.0},
            "label": {"text": "a", "size": 3},
            "at": "00000000-0000-0000-0000-000000000007",
        },
    ),
    ("POST", "/place", '{"point": {"x": 1}, "label": {}}', JSON, 400, ("point.y is missing",)),
    (
        "POST",
        "/place",
        '{"point": {"x": 1, "y": 2}, "label": {"text": "a", "size": "3"}}',
        JSON,
        400,
        ("label.size", "integer"),
    ),
    (
        "POST",
        "/place",
        '{"point": {"x": 1, "y": 2}, "label": {"text": "a", "size": -9223372036854775809}}',
        JSON,
        400,
        ("label.size must be a 64-bit integer",),
    ),
    # Results pydantic serializes, numpy inside; a NaN in one is still the function's 500.
    (
        "GET",
        "/results",
        None,
        None,
        200,
        {
            "point": {"x": 1.5, "y": 2.0},
            "shape": "round",
            "when": "2026-01-02",
            "money": "1.10",
            "scores": [0, 1, 2],
            "nested": [{"m": [[1.0, 2.0]]}],
        },
    ),
    ("GET", "/nan-inside?a=1", None, None, 500, ("nan-inside returned", "NaN")),
    # bytes: the raw body, any Content-Type; other parameters from the query string.
    ("POST", "/size", b"hello", "text/csv", 200, {"bytes": 5, "sha256": "2cf24dba5fb0a30e"}),
    ("POST", "/size", b'{"a": 1}', JSON, 200, {"bytes": 8, "sha256": "f9d86028c6e0d64e"}),
    # Labelled JSON, a body is held to JSON's 1 MB: nginx does not count it as an upload (one
    # of another JSON type it does count, so it has the upload's bound).
    ("POST", "/size", PAST_JSON, JSON, 413, ("request body too large: at most 1 MB",)),
    ("POST", "/size", PAST_JSON, "application/vnd.api+json", 200, PAST_JSON_SIZE),
    ("POST", "/size", PAST_JSON, "text/csv", 200, PAST_JSON_SIZE),
    ("POST", "/size", b"", "audio/wav", 400, ("body is empty", "'data'")),
    ("GET", "/size", None, None, 405, ("GET", "not allowed", "POST")),
    (
        "POST",
        "/size?data=abc",
        b"hello",
        "text/csv",
        400,
        ("parameter 'data' is the request's body; it is in the query string too",),
    ),
    # The closing boundary's text inside a file is data, not the form's end.
    (
        "POST",
        "/size",
        *form(("data", "d.bin", None, b"xx--typed-test-boundary--yy")),
        200,
        {"bytes": 27, "sha256": "739b076fa8fbc6b2"},
    ),
    # A file sent as a text part (curl -F 'data=<file') is bounded by the body alone.
    (
        "POST",
        "/size",
        *form(("data", None, None, b"x" * 600_000)),
        200,
        {"bytes": 600_000, "sha256": "34e95fe8877d0787"},
    ),
    ("POST", "/column-total?column=1", CSV, "text/csv", 200, 3.75),
    ("POST", "/column-total?column=x", CSV, "text/csv", 400, ("'column'", "integer")),
    ("POST", "/column-total?column=5", CSV, "text/csv", 400, ("no column 5",)),
    # The same in a form: its errors name a field, not a query parameter.
    (
        "POST",
        "/column-total",
        *form(("data", "p.csv", "text/csv", CSV), ("column", None, None, b"1")),
        200,
        3.75,
    ),
    (
        "POST",
        "/column-total",
        *form(("data", "p.csv", "text/csv", CSV), ("column", None, None, b"x")),
        400,
        ("field 'column' must be an integer, got 'x'",),
    ),
    # A bare carriage return ends a line, as csv reads files; a field past csv's limit is a 400.
    ("POST", "/column-total", b"a\r1\r2", "text/csv", 200, 3.0),
    ("POST", "/column-total", b"a\n" + b"7" * 200_000, "text/csv", 400, ("not CSV",)),
    # File: a part of a form, or the body; list[File]: every part of that name.
    (
        "POST",
        "/describe",
        ONE_FILE[0],
        ONE_FILE[1],
        200,
        {"filename": "report.pdf", "type": "application/pdf", "bytes": 12},
    ),
    (
        "POST",
        "/describe",
        b"raw",
        "application/pdf",
        200,
        {"filename": "", "type": "application/pdf", "bytes": 3},
    ),
    (
        "POST",
        "/describe-all",
        FILES[0],
        FILES[1],
        200,
        {"note": "two files", "files": [["a.csv", 8], ["b.wav", 8]]},
    ),
    ("POST", "/describe-all", *form(("note", None, None, b"x")), 400, ("no field 'docs'",)),
    # A file sent as a text part (curl -F 'data=<file') reaches bytes and File whole; a text
    # part is UTF-8 or refused, never read with U+FFFD in place of its bytes.
    (
        "POST",
        "/size",
        *form(("data", None, None, b"\xff\x00\x80A")),
        200,
        {"bytes": 4, "sha256": "b600fe4ff8c3ad2b"},
    ),
    (
        "POST",
        "/describe",
        *form(("doc", None, None, b"\xff\xfe")),
        200,
        {"filename": "", "type": "text/plain", "bytes": 2},
    ),
    (
        "POST",
        "/describe-all",
        *form(("docs", "a.csv", None, b"1"), ("note", None, None, "café ☕".encode())),
        200,
        {"note": "café ☕", "files": [["a.csv", 1]]},
    ),
    (
        "POST",
        "/describe-all",
        *form(("docs", "a.csv", None, b"1"), ("note", None, None, b"caf\xe9")),
        400,
        ("field 'note' is not UTF-8 text",),
    ),
    (
        "POST",
        "/describe-all",
        *form(("docs", "\udce9.csv", None, b"a")),
        400,
        ("a part's headers", "not UTF-8"),
    ),
    # A form's other fields read as a query string's: a list from its field repeated, a scalar
    # given once (or once per upload), a date as a browser sends it; a file for a text field
    # is its text.
    (
        "POST",
        "/tagged",
        *form(
            ("doc", "a.txt", None, b"abc"),
            ("weights", None, None, b"1.5"),
            ("weights", None, None, b"2"),
            ("day", None, None, b"2026-01-02"),
            ("meta", None, None, b'{"a": 1}'),
        ),
        200,
        {"bytes": 3, "k": 1, "weights": [1.5, 2.0], "day": "2026-01-02", "meta": {"a": 1}},
    ),
    (
        "POST",
        "/tagged",
        *form(("doc", "a.txt", None, b"abc"), ("weights", None, None, b"3")),
        200,
        {"bytes": 3, "k": 1, "weights": [3.0], "day": None, "meta": None},
    ),
    (
        "POST",
        "/tagged",
        *form(("doc", "a.txt", None, b"abc"), ("day", None, None, b'"2026-01-02"')),
        200,
        {"bytes": 3, "k": 1, "weights": None, "day": "2026-01-02", "meta": None},
    ),
    (
        "POST",
        "/tagged",
        *form(("doc", "a.txt", None, b"abc"), ("k", None, None, b"1"), ("k", None, None, b"2")),
        400,
        ("field 'k' is given 2 times; give it once",),
    ),
    (
        "POST",
        "/tagged",
        *form(("doc", "a.txt", None, b"abc"), ("k", "k.txt", "text/plain", b"7")),
        200,
        {"bytes": 3, "k": 7, "weights": None, "day": None, "meta": None},
    ),
    (
        "POST",
        "/tagged",
        *form(("doc", "a.txt", None, b"abc"), ("day", None, None, b"soon")),
        400,
        ("day must be a valid date", 'got "soon"'),
    ),
    (
        "POST",
        "/tagged",
        *form(("doc", "a.txt", None, b"abc"), ("meta", None, None, b"a=1")),
        400,
        ("field 'meta' (dict[str, int]) must be JSON text",),
    ),
    (
        "POST",
        "/tagged",
        *form(("doc", "a.txt", None, b"abc"), ("meta", None, None, b'{"a": 1, "a": 2}')),
        400,
        ("field 'meta' gives the key 'a' 2 times in one object",),
    ),
    (
        "POST",
        "/describe-all",
        *form(("docs", "a.csv", None, b"1"), ("note", "n.txt", "text/plain", b"from a file")),
        200,
        {"note": "from a file", "files": [["a.csv", 1]]},
    ),
    (
        "POST",
        "/describe",
        *form(("doc", "a", None, b"1"), ("doc", "b", None, b"22"), ("doc", "c", None, b"333")),
        200,
        [
            {"filename": "a", "type": "application/octet-stream", "bytes": 1},
            {"filename": "b", "type": "application/octet-stream", "bytes": 2},
            {"filename": "c", "type": "application/octet-stream", "bytes": 3},
        ],
    ),
    (
        "POST",
        "/tagged",
        *form(
            ("doc", "a", None, b"1"),
            ("doc", "b", None, b"2"),
            ("k", None, None, b"1"),
            ("k", None, None, b"2"),
            ("k", None, None, b"3"),
        ),
        400,
        ("field 'k' is given 3 times; give it once, or once per file of 'doc' (2)",),
    ),
    # A parameter that no query string carries, beside a raw body: a form is the way.
    (
        "POST",
        "/tagged?meta=%7B%7D",
        b"abc",
        "text/plain",
        400,
        ("send 'meta' too: POST a multipart/form-data form", "(doc, k, weights, day, meta)"),
    ),
    # A date does come in the query string beside a raw body.
    (
        "POST",
        "/tagged?day=2026-01-02",
        b"abc",
        "text/plain",
        200,
        {"bytes": 3, "k": 1, "weights": None, "day": "2026-01-02", "meta": None},
    ),
    ("POST", "/dated?day=2026-01-02", b"abc", "text/plain", 200, {"bytes": 3, "day": "2026-01-02"}),
    # JSON to a File is the file's bytes: the date is then missing from the query string.
    (
        "POST",
        "/dated",
        '{"doc": "x", "day": "2026-01-02"}',
        JSON,
        400,
        ("query parameter 'day' is missing; send e.g. ?day=2026-01-02",),
    ),
    (
        "POST",
        "/dated",
        *form(("doc", "a.txt", None, b"abc"), ("day", None, None, b"2026-01-02")),
        200,
        {"bytes": 3, "day": "2026-01-02"},
    ),
    ("POST", "/scaled", '{"x": [[1, 2], [3, 4.5]]}', JSON, 200, [[0.5, 1.0], [1.5, 2.25]]),
    # A dict's integer keys are their plain text: "1", "01" and " 1" would be one key.
    (
        "POST",
        "/classes",
        '{"names": {"1": "cat", "0": "dog", "-2": "x"}}',
        JSON,
        200,
        [[-2, "x"], [0, "dog"], [1, "cat"]],
    ),
    (
        "POST",
        "/classes",
        '{"names": {"1": "cat", "01": "dog"}}',
        JSON,
        400,
        ("key '01' of names must be an integer written plainly", "no two keys"),
    ),
    ("POST", "/classes", '{"names": {"a": "cat"}}', JSON, 400, ("key 'a' of names",)),
    # A Literal's true is true, not 1 (which Python takes for it).
    ("POST", "/switch", '{"v": true}', JSON, 200, {"v": True}),
    ("POST", "/switch", '{"v": "auto"}', JSON, 200, {"v": "auto"}),
    ("POST", "/switch", '{"v": 1}', JSON, 400, ("v must be True or 'auto', got 1",)),
    # Inside a model alike, and in a dataclass, a TypedDict: pydantic alone would keep one of
    # "1" and "01", take true for 1 and read a date from a number; and a field that the class
    # does not have is refused, as a parameter's typo is, unless its config says otherwise.
    (
        "POST",
        "/labelled",
        '{"names": {"1": "cat", "0": "dog"}, "v": true}',
        JSON,
        200,
        {"names": [[0, "dog"], [1, "cat"]], "v": True},
    ),
    (
        "POST",
        "/labelled",
        '{"names": {"1": "cat", "01": "dog"}}',
        JSON,
        400,
        ("key '01' of names must be an integer written plainly",),
    ),
    ("POST", "/labelled", '{"names": {}, "v": 1}', JSON, 400, ("v must be True or 'auto'",)),
    (
        "POST",
        "/labelled",
        '{"names": {}, "colour": 1}',
        JSON,
        400,
        ("unknown field(s) 'colour'; the fields: names, v",),
    ),
    (
        "POST",
        "/receipt",
        order_with(1, "when", "20260102"),
        JSON,
        400,
        ("items[1].when must be a datetime in ISO 8601 text", "not a number"),
    ),
    (
        "POST",
        "/receipt",
        order_with(0, "colour", "green"),
        JSON,
        400,
        ("items[0].colour is not a field of it",),
    ),
    (
        "POST",
        "/place",
        '{"point": {"x": 1, "y": 2, "z": 3}, "label": {"text": "a", "size": 3}}',
        JSON,
        400,
        ("point.z is not a field of it",),
    ),
    (
        "POST",
        "/place",
        '{"point": {"x": 1, "y": 2}, "label": {"text": "a", "size": 3, "font": "x"}}',
        JSON,
        400,
        ("label.font is not a field of it",),
    ),
    # A union's types are named as such, not as fields (pydantic: "key.int", "value.float").
    ("POST", "/keyed", '{"key": "a", "value": [1, 2]}', JSON, 200, {"key": "a", "value": [1, 2]}),
    (
        "POST",
        "/keyed",
        '{"key": 5.5, "value": 1}',
        JSON,
        400,
        ("key must be an integer or a string, got 5.5",),
    ),
    ("POST", "/keyed", '{"key": 5, "value": [1, "a"]}', JSON, 400, ("value[1] must be a number",)),
    # async def: run on the worker's loop.
    ("GET", "/later?a=2", None, None, 200, 4.0),
    ("POST", "/later", '{"a": 3, "wait": 0.01}', JSON, 200, 6.0),
    # A generator's error before its first item is answered as for any call.
    ("GET", "/count?n=-1", None, None, 400, ("n must be >= 0",)),
    ("POST", "/count", '[{"n": 1}]', JSON, 400, ("streams", "not a batch")),
]


def check(status: int, headers: dict, body: bytes, expected_status: int, expected) -> None:
    if expected_status >= 400:
        assert_json_error(status, headers, body, expected_status, *expected)
        return
    assert status == expected_status, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"result": expected}


def as_bytes(body: str | bytes | None) -> bytes | None:
    return body.encode() if isinstance(body, str) else body


PARAMS = [
    pytest.param(*case, id=f"{case[0]} {case[1][:40]} {str(case[2] or '')[:30]}") for case in CASES
]
