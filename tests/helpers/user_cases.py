"""The table of a user's functions (usermodels.py) and their answers, run through Flask's test
client (unit/test_registry.py) and through the real stack (stack/test_registry_stack.py)."""

import io
import json

import pytest
from PIL import Image

from helpers import assert_json_error, multipart
from modelserver.limits import MAX_BATCH

JSON = {"Content-Type": "application/json"}


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, "PNG")
    return buffer.getvalue()


SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]


def rows(n: int) -> str:
    return json.dumps([{"features": SETOSA}] * n)


# (method, path, JSON body or None, status, expected): the exact result of a 200, or the words
# the error message must contain (the parameter and the problem).
CASES = [
    # str is a string, however it looks: no more "must be a number", no 500 for ?text=42.
    ("GET", "/sentiment?text=42", None, 200, {"score": 0, "words": 1}),
    ("GET", "/sentiment?text=good%20great&times=2", None, 200, {"score": 2, "words": 2}),
    ("GET", "/sentiment?text=", None, 200, {"score": 0, "words": 0}),
    ("GET", "/v1/sentiment?text=bad", None, 200, {"score": -1, "words": 1}),
    ("GET", "/sentiment", None, 400, ("'text'", "missing", "?text=hello")),
    ("GET", "/sentiment?text=a&text=b", None, 400, ("'text'", "2 times")),
    ("GET", "/sentiment?text=a&times=x", None, 400, ("'times'", "must be an integer", "'x'")),
    ("GET", "/sentiment?text=a&times=1.5", None, 400, ("'times'", "must be an integer")),
    ("GET", "/sentiment?text=a&times=", None, 400, ("'times'", "empty", "such as 3")),
    ("GET", "/sentiment?text=a&times=" + "9" * 30, None, 400, ("'times'", "64-bit integer")),
    ("POST", "/sentiment", '{"text": "good"}', 200, {"score": 1, "words": 1}),
    ("POST", "/sentiment", '{"text": 42}', 400, ("text must be a string", "42")),
    ("POST", "/sentiment", '{"text": "a", "times": 2.0}', 400, ("times must be an integer",)),
    ("POST", "/sentiment", '{"text": "a", "times": true}', 400, ("times must be an integer",)),
    ("POST", "/sentiment", "{}", 400, ("'text' is missing", '{"text": "hello"}')),
    ("POST", "/sentiment", '{"text": "a", "tmes": 2}', 400, ("unknown field", "'tmes'", "times")),
    # A batch is explicit: a list of argument objects, answered in order, bad items named.
    (
        "POST",
        "/sentiment",
        '[{"text": "bad"}, {"text": "good", "times": 2}, {"text": ""}]',
        200,
        [{"score": -1, "words": 1}, {"score": 2, "words": 1}, {"score": 0, "words": 0}],
    ),
    ("POST", "/sentiment", "[]", 200, []),
    ("POST", "/sentiment", '[{"text": "a"}, {"txt": "b"}]', 400, ("item 1", "'text' is missing")),
    ("POST", "/sentiment", '[{"text": "a"}, 5]', 400, ("item 1", "JSON object")),
    ("POST", "/sentiment", '[{"text": "a"}, {"text": [1]}]', 400, ("item 1", "must be a string")),
    ("POST", "/sentiment", json.dumps([{"text": "a"}] * 10_001), 413, ("at most 10000",)),
    ("POST", "/sentiment", '"text"', 400, ("JSON object",)),
    # A list parameter is a list, not a batch.
    ("POST", "/norm", '{"values": [3, 4]}', 200, 5.0),
    ("GET", "/norm?values=3&values=4", None, 200, 5.0),
    ("GET", "/norm?values=3", None, 200, 3.0),
    ("GET", "/norm", None, 400, ("'values'", "missing", "?values=25&values=25")),
    ("GET", "/norm?values=3&values=x", None, 400, ("'values'", "must be a number", "'x'")),
    ("GET", "/norm?values=nan", None, 400, ("'values'", "finite number")),
    ("POST", "/norm", '{"values": [3, "x"]}', 400, ("values[1] must be a number", '"x"')),
    ("POST", "/norm", '{"values": 3}', 400, ("values must be a list",)),
    ("POST", "/norm", '{"values": [1e999]}', 400, ("values[0] overflows",)),
    ("POST", "/norm", json.dumps({"values": [1] * 10_001}), 413, ("values", "at most 10000")),
    ("POST", "/norm", '[{"values": [3, 4]}, {"values": []}]', 200, [5.0, 0.0]),
    # bool, list[str], list[int] | None with a default.
    ("GET", "/flags?on=true&labels=a&labels=b", None, 200, [["a", 1], ["b", 1]]),
    ("GET", "/flags?on=0&labels=a", None, 200, []),
    ("GET", "/flags?on=maybe&labels=a", None, 400, ("'on'", "true or false", "'maybe'")),
    ("POST", "/flags", '{"on": true, "labels": ["a"], "weights": [5]}', 200, [["a", 5]]),
    ("POST", "/flags", '{"on": true, "labels": ["a"], "weights": null}', 200, [["a", 1]]),
    ("POST", "/flags", '{"on": 1, "labels": []}', 400, ("on must be true or false",)),
    ("POST", "/flags", '{"on": true, "labels": ["a"], "weights": [1, 2]}', 400, ("weights has 2",)),
    # numpy results become plain JSON; a result JSON cannot carry is the function's 500.
    ("GET", "/classify?x=2&y=1", None, 200, {"label": 1, "scores": [2.0, 1.0], "ok": True}),
    (
        "POST",
        "/classify",
        '{"x": [2, 0], "y": [1, 1]}',
        200,
        [  # deprecated form: numbers only
            {"label": 1, "scores": [2.0, 1.0], "ok": True},
            {"label": 0, "scores": [0.0, 1.0], "ok": True},
        ],
    ),
    ("GET", "/nan?a=1", None, 200, 1.0),
    ("GET", "/nan?a=2", None, 500, ("nan returned", "NaN")),
    ("POST", "/nan", '[{"a": 1}, {"a": 2}]', 500, ("nan returned", "NaN")),
    ("GET", "/broken?a=1", None, 500, ("broken failed", "KeyError")),
    # A vectorised function: one call for the batch; a single call is a batch of one.
    (
        "POST",
        "/species",
        json.dumps([{"features": SETOSA}, {"features": VIRGINICA}]),
        200,
        ["setosa", "virginica"],
    ),
    ("POST", "/species", json.dumps({"features": VIRGINICA}), 200, "virginica"),
    ("GET", "/species?features=5.1&features=3.5&features=1.4&features=0.2", None, 200, "setosa"),
    ("POST", "/species", '[{"features": [1, 2]}]', 400, ("4 measures",)),
    ("POST", "/species", '[{"features": [1, 2, 3, 4]}, {"features": [1, "a"]}]', 400, ("item 1",)),
    ("POST", "/species", rows(MAX_BATCH), 200, ["setosa"] * MAX_BATCH),
    # A model that failed to load: its endpoint is 503, the others serve.
    ("GET", "/needs-broken?a=1", None, 503, ("model 'broken' is not loaded", "/readyz")),
    ("GET", "/readyz", None, 503, ("not ready", "broken")),
    ("GET", "/healthz", None, 200, None),
    ("GET", "/size", None, 405, ("GET", "not allowed", "POST")),
    ("POST", "/size", '{"image": 1}', 415, ("image/png", "multipart")),
]


def check(status: int, headers: dict, body: bytes, expected_status: int, expected) -> None:
    if expected_status >= 400:
        assert_json_error(status, headers, body, expected_status, *expected)
        return
    assert status == expected_status, body
    assert headers["content-type"] == "application/json"
    if expected is not None:
        assert json.loads(body) == {"result": expected}


PARAMS = [
    pytest.param(*case, id=f"{case[0]} {case[1][:40]} {(case[2] or '')[:30]}") for case in CASES
]


# The forms an image function takes its image in: raw (its other parameters in the query
# string, or their defaults), multipart, a multipart batch.
IMAGE_FORMS = ["raw", "raw-query", "multipart", "batch"]


def image_case(form: str) -> tuple[str, bytes, str, object]:
    """POST /size's path, body, Content-Type and result for an image sent in form."""
    image = png(30, 20)
    if form.startswith("raw"):
        scale = 2 if form == "raw-query" else 1
        path = "/size?scale=2" if form == "raw-query" else "/size"
        expected = {"width": 30.0 * scale, "height": 20.0 * scale, "mode": "RGB"}
        return path, image, "image/png", expected
    fields = [("image", image)] * (2 if form == "batch" else 1) + [("scale", b"2")]
    body, content_type = multipart(*fields)
    one = {"width": 60.0, "height": 40.0, "mode": "RGB"}
    return "/size", body, content_type, [one, one] if form == "batch" else one
