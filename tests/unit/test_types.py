"""Every type a model speaks, in-process: pydantic types in and out, raw and file uploads, async
functions and streamed results (typed_models.py), through Flask's test client."""

import datetime
import json
import re
import typing
import uuid
from typing import Annotated

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from helpers import answer_of, assert_json_error, typed_models, usermodels
from helpers.type_cases import PARAMS, as_bytes, check
from modelserver.endpoints import serve
from modelserver.files import File
from modelserver.requestids import REQUEST_ID, RequestIdFilter
from server import create_app


@pytest.fixture(scope="module")
def typed_client():
    return create_app({"TESTING": True, "ENDPOINTS": typed_models.ENDPOINTS}).test_client()


@pytest.mark.parametrize("method,path,body,content_type,expected_status,expected", PARAMS)
def test_typed_functions_flask(
    typed_client, method, path, body, content_type, expected_status, expected
):
    headers = {"Content-Type": content_type} if content_type else {}
    response = typed_client.open(path, method=method, data=as_bytes(body), headers=headers)
    check(*answer_of(response), expected_status, expected)


def test_the_document_offers_a_stream_one_upload_and_an_optional_body_as_optional():
    def sizes(data: bytes = b"") -> int:
        """The body's length; none is 0."""
        return len(data)

    def widths(doc: File) -> typing.Iterator[int]:
        """A stream of one file."""
        yield len(doc.data)

    def pair(a: File | None = None, b: File | None = None, n: int = 1, *, k: int) -> int:
        """A form of two optional files and a required number."""
        return k

    endpoints = {"sizes": sizes, "widths": widths, "pair": pair}
    response = (
        create_app({"TESTING": True, "ENDPOINTS": endpoints}).test_client().get("/openapi.json")
    )
    assert response.status_code == 200
    paths = response.json["paths"]
    assert paths["/sizes"]["post"]["requestBody"]["required"] is False
    assert paths["/pair"]["post"]["requestBody"]["required"] is True  # the form carries k
    form = paths["/widths"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["doc"]["maxItems"] == 1  # a batch is a 400 for a stream


@pytest.mark.parametrize(
    "item,problem",
    [(10**5000, "an integer of more than 4300 digits"), (b"\xff", "bytes that are not UTF-8 text")],
    ids=["long int", "bytes"],
)
def test_a_first_item_json_cannot_carry_is_named_as_a_result_is(item, problem):
    def one(n: int = 1) -> typing.Iterator[typing.Any]:
        """The item JSON cannot carry."""
        yield item

    client = create_app({"TESTING": True, "ENDPOINTS": {"one": one}}).test_client()
    response = client.get("/one")
    assert response.status_code == 500
    assert response.json == {"message": f"one returned an item that JSON cannot carry: {problem}"}


def test_a_date_constrained_past_the_example_is_offered_none_in_a_query():
    def later(day: Annotated[datetime.date, Field(gt=datetime.date(2030, 1, 1))]) -> str:
        """A day after 2030."""
        return day.isoformat()

    client = create_app({"TESTING": True, "ENDPOINTS": {"later": later}}).test_client()
    document = client.get("/openapi.json")
    assert document.status_code == 200
    parameters = document.json["paths"]["/later"]["get"]["parameters"]
    assert "example" not in parameters[0]  # 2026-01-02, which /docs would send, is refused
    assert_json_error(*answer_of(client.get("/later")), 400, "is missing; send e.g. ?day=...")
    assert_json_error(*answer_of(client.get("/later?day=")), 400, "is empty; it must be a date")
    response = client.get("/later?day=2031-01-01")
    assert response.status_code == 200
    assert response.json == {"result": "2031-01-01"}


def test_a_plain_float_answer_keeps_its_exact_bytes():
    client = create_app({"TESTING": True, "ENDPOINTS": usermodels.SERVED}).test_client()
    response = client.get("/norm?values=1&values=1")
    assert response.status_code == 200
    assert response.data == b'{"result": 1.4142135623730951}\n'


def test_the_document_validates_and_names_the_models(typed_client):
    response = typed_client.get("/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    validate(document)
    schemas = document["components"]["schemas"]
    assert {"Order", "Item", "Receipt", "Point", "Label", "Placed", "Level"} <= set(schemas)
    paths = document["paths"]
    receipt = paths["/receipt"]
    assert "get" not in receipt  # a model cannot come in a query string
    body = receipt["post"]["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    assert body[0] == {"$ref": "#/components/schemas/Order"}
    result = receipt["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert result["properties"]["result"]["anyOf"][0] == {"$ref": "#/components/schemas/Receipt"}
    # A raw body gets the file picker (binary); list[File] a repeated file field.
    size = paths["/size"]["post"]["requestBody"]["content"]
    assert size["application/octet-stream"]["schema"] == {"type": "string", "format": "binary"}
    docs = paths["/describe-all"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert docs["schema"]["properties"]["docs"]["items"]["format"] == "binary"
    # Beside a raw body, the other parameters are in the query string; in a form, fields.
    (column,) = paths["/column-total"]["post"]["parameters"]
    assert (column["name"], column["in"], column["required"]) == ("column", "query", False)
    assert "parameters" not in paths["/describe-all"]["post"]  # a form only
    # In a form, a date is its text as it is; a dict its JSON text.
    tagged = paths["/tagged"]["post"]["requestBody"]["content"]["multipart/form-data"]
    fields = tagged["schema"]["properties"]
    assert (fields["day"]["type"], fields["day"]["format"]) == ("string", "date")
    assert fields["meta"] == {"type": "string", "description": "JSON"}
    # A stream: NDJSON lines of {"result": item}, or events.
    stream = paths["/count"]["get"]["responses"]["200"]["content"]
    assert set(stream) == {"application/x-ndjson", "text/event-stream"}
    item = stream["application/x-ndjson"]["schema"]["properties"]["result"]
    assert item["type"] == "integer"
    # An array of numbers out is described as one; a bare ndarray may hold labels: any JSON.
    scaled = paths["/scaled"]["post"]["responses"]["200"]["content"]["application/json"]
    one = scaled["schema"]["properties"]["result"]["anyOf"][0]
    assert (one["type"], one["items"]["anyOf"][0]) == ("array", {"type": "number"})
    # Constraints and choices reach the query parameters.
    share = paths["/bounded"]["get"]["parameters"][0]
    assert share["schema"]["minimum"] == 0 and share["schema"]["maximum"] == 1
    assert 0 <= share["example"] <= 1
    level = paths["/choose"]["get"]["parameters"][1]["schema"]
    assert level["default"] == "low"


def test_a_stream_answers_ndjson_lines_or_events(typed_client):
    response = typed_client.get("/count?n=3&every=0")
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.data == b'{"result": 0}\n{"result": 1}\n{"result": 2}\n'
    events = typed_client.get("/count?n=2&every=0", headers={"Accept": "text/event-stream"})
    assert events.status_code == 200
    assert events.mimetype == "text/event-stream"
    assert events.data == (
        b'data: {"result": 0}\n\ndata: {"result": 1}\n\nevent: end\ndata: {}\n\n'
    )  # the end: the page closes its EventSource, which would otherwise connect again
    tokens = typed_client.post("/tokens", json={"text": "a b", "every": 0})
    assert tokens.status_code == 200
    lines = [json.loads(line) for line in tokens.data.splitlines()]
    assert lines == [{"result": {"index": 0, "token": "a"}}, {"result": {"index": 1, "token": "b"}}]


def test_a_failure_midway_ends_the_stream_with_a_message_and_is_counted(typed_client):
    response = typed_client.get("/breaks?n=2")
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.data.splitlines()]
    assert lines[:2] == [{"result": 0.0}, {"result": 1.0}]
    assert lines[2] == {
        "message": "breaks failed with RuntimeError; the server log has the traceback"
    }
    events = typed_client.get("/breaks?n=1", headers={"Accept": "text/event-stream"})
    assert events.status_code == 200
    assert events.data.startswith(b'data: {"result": 0.0}\n\nevent: error\ndata: {"message": ')
    # Failing before its first item, it is answered as any call that fails: a 500.
    assert typed_client.get("/breaks?n=0").status_code == 500
    # A first item JSON cannot carry is the function's fault too, before the answer starts.
    first = typed_client.get("/breaks?n=0&how=nan")
    assert first.status_code == 500
    assert first.json == {
        "message": "breaks returned an item that JSON cannot carry: NaN or Infinity"
    }
    # The client's mistake (a ValueError) keeps its words midway, as before the first item.
    value = typed_client.get("/breaks?n=1&how=value")
    assert value.status_code == 200
    assert value.data == b'{"result": 0.0}\n{"message": "no reading past 1"}\n'
    before = typed_client.get("/breaks?n=0&how=value")
    assert_json_error(*answer_of(before), 400, "no reading past 0")
    metrics = typed_client.get("/metrics")
    assert metrics.status_code == 200
    assert 'modelserver_stream_errors_total{endpoint="breaks"} 3.0' in metrics.data.decode()


def test_a_failure_midway_is_logged_with_its_requests_id(typed_client, caplog):
    """The stream is sent after its request has left Flask: the id goes with it."""
    response = typed_client.get("/breaks?n=1", environ_base={REQUEST_ID: "0123456789abcdef"})
    assert response.status_code == 200
    assert response.data.endswith(
        b'{"message": "breaks failed with RuntimeError; the server log has the traceback"}\n'
    )
    (record,) = [r for r in caplog.records if "failed while streaming" in r.getMessage()]
    assert RequestIdFilter().filter(record)
    assert record.request_id == "0123456789abcdef"


def test_a_streams_model_time_covers_all_its_items(typed_client):
    def model_seconds() -> float:
        scraped = typed_client.get("/metrics")
        assert scraped.status_code == 200
        text = scraped.data.decode()
        pattern = r'modelserver_model_duration_seconds_sum\{model="count"\} (\S+)'
        found = re.search(pattern, text)
        return float(found.group(1)) if found else 0.0

    before = model_seconds()
    response = typed_client.get("/count?n=4&every=0.1")
    assert response.status_code == 200
    assert response.data == b'{"result": 0}\n{"result": 1}\n{"result": 2}\n{"result": 3}\n'
    assert 0.3 <= model_seconds() - before < 2  # three waits of 0.1 s between the items


def test_closing_a_stream_closes_the_generator(typed_client):
    tag = f"unit-{uuid.uuid4().hex}"
    response = typed_client.get(f"/count?n=100&every=0&tag={tag}", buffered=False)
    assert response.status_code == 200
    chunks = iter(response.response)
    assert next(chunks) == b'{"result": 0}\n'
    response.close()
    ticks = (typed_models.TICKS / tag).read_text().splitlines()
    (typed_models.TICKS / tag).unlink()
    assert ticks[-1] == "closed" and len(ticks) <= 3, ticks


class Opaque:
    """Nothing pydantic can validate."""


def opaque(a: Opaque) -> float:
    return 0.0


class OldDict(typing.TypedDict):
    a: int


def old_typed_dict(a: OldDict) -> float:
    return 0.0


def numbers(a: list[float]) -> typing.Iterator[float]:
    yield from a


def takes_function(f: typing.Callable[[int], int]) -> int:
    return f(1)


def takes_functions(fs: list[typing.Callable]) -> int:
    return len(fs)


class Hook(BaseModel):
    call: typing.Callable[[int], int]
    times: int = 1


def takes_hook(h: Hook) -> int:
    return h.call(h.times)


def takes_classes(kinds: dict[str, type[int]]) -> int:
    return len(kinds)


def gives_opaque(a: float) -> Opaque:
    return Opaque()


class Thumbnail(BaseModel):
    png: bytes
    side: int


def gives_thumbnail(side: int) -> Thumbnail:
    return Thumbnail(png=b"\x89PNG\r\n", side=side)


class Fine(TypedDict):
    a: int


def fine(a: Fine) -> int:
    return a["a"]


@pytest.mark.parametrize(
    "entry,words",
    [
        (opaque, ("ENDPOINTS['bad']", "'a'", "Opaque", "pydantic cannot validate")),
        (old_typed_dict, ("'a'", "typing_extensions.TypedDict")),
        (serve(numbers, vectorized=True), ("generator", "cannot be vectorised")),
        (takes_function, ("'f'", "Callable", "f would be a function", "no JSON value can be")),
        # Inside a list, a dict or a model's required field, it can never be sent either.
        (takes_functions, ("'fs'", "fs[0] would be a function", "no JSON value can be")),
        (takes_hook, ("'h'", "h.call would be a function")),
        (takes_classes, ("'kinds'", "kinds[key] would be a function")),
        (gives_opaque, ("return type", "Opaque", "cannot be answered as JSON")),
        # bytes are answered only as UTF-8 text: a PNG's would fail every call.
        (gives_thumbnail, ("return type", "Thumbnail", "holds bytes", "base64")),
    ],
)
def test_a_type_pydantic_cannot_take_stops_the_app_at_startup(entry, words):
    with pytest.raises(TypeError) as failure:
        create_app({"TESTING": True, "ENDPOINTS": {"bad": entry}})
    for word in words:
        assert word in str(failure.value), (word, str(failure.value))
    # The same kind of type, written the way pydantic takes it, is served.
    response = (
        create_app({"TESTING": True, "ENDPOINTS": {"fine": fine}})
        .test_client()
        .post("/fine", json={"a": {"a": 3}})
    )
    assert response.status_code == 200, response.data
    assert response.get_json() == {"result": 3}


class MaybeHook(BaseModel):
    call: typing.Callable[[int], int] = abs
    times: int = 1


class Tree(BaseModel):
    value: int
    kids: list["Tree"] = []


def takes_maybe_hook(h: MaybeHook) -> int:
    return h.call(-h.times)


def takes_tree(t: Tree) -> int:
    return t.value + sum(takes_tree(kid) for kid in t.kids)


def takes_function_or_number(f: typing.Callable[[], int] | int) -> int:
    return f if isinstance(f, int) else f()


@pytest.mark.parametrize(
    "entry,body,result",
    [
        # A lone model is the body; MaybeHook's function has a default.
        (takes_maybe_hook, {"times": 3}, 3),
        (takes_tree, {"value": 1, "kids": [{"value": 2, "kids": [{"value": 4}]}]}, 7),
        (takes_function_or_number, {"f": 4}, 4),  # a number is one of its ways
    ],
)
def test_a_type_json_can_fill_some_way_is_served(entry, body, result):
    response = (
        create_app({"TESTING": True, "ENDPOINTS": {"x": entry}}).test_client().post("/x", json=body)
    )
    assert response.status_code == 200, response.data
    assert response.get_json() == {"result": result}


def test_a_query_value_of_a_json_type_names_the_post_form(typed_client):
    response = typed_client.get("/choose?speed=fast&bias=1")
    assert_json_error(
        *answer_of(response),
        400,
        "'bias'",
        "dict[str, float]",
        "POST /choose",
        '{"bias": ...}',
    )


def by_id(weights: dict[int, float]) -> float:
    return sum(weights.values())


def test_a_dict_key_that_is_wrong_is_named_as_a_key():
    client = create_app({"TESTING": True, "ENDPOINTS": {"by-id": by_id}}).test_client()
    response = client.post("/by-id", json={"weights": {"7": 1.5, "a": 2}})
    assert response.status_code == 400
    assert response.get_json()["message"].startswith("key 'a' of weights must be an integer")
    response = client.post("/by-id", json={"weights": {"7": 1.5}})
    assert response.status_code == 200
    assert response.get_json() == {"result": 1.5}
