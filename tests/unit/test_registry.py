"""The framework: any typed function in the registry becomes a validated, documented, batchable
endpoint. Served here are a user's functions (usermodels.py), not the project's demos, through
Flask's test client and through the real stack, one table for both."""

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

import usermodels
from conftest import assert_json_error, multipart
from deploy.localstack import served_endpoints
from modelserver.endpoints import serve
from modelserver.limits import MAX_BATCH
from server import create_app

JSON = {"Content-Type": "application/json"}
INT64_SCHEMA = {"minimum": -(2**63), "maximum": 2**63 - 1}


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


@pytest.fixture(scope="module")
def user_client():
    return create_app({"TESTING": True, "ENDPOINTS": usermodels.ENDPOINTS}).test_client()


@pytest.mark.parametrize("method,path,body,expected_status,expected", PARAMS)
def test_user_functions_flask(user_client, method, path, body, expected_status, expected):
    response = user_client.open(path, method=method, data=body, headers=JSON if body else {})
    headers = {k.lower(): v for k, v in response.headers.items()}
    check(response.status_code, headers, response.data, expected_status, expected)


@pytest.mark.parametrize("method,path,body,expected_status,expected", PARAMS)
def test_user_functions_stack(user_stack, method, path, body, expected_status, expected):
    status, headers, response = user_stack.request(method, path, body, JSON if body else {})
    check(status, headers, response, expected_status, expected)


def test_a_vectorised_batch_is_one_call(user_client):
    usermodels.CALLS.clear()
    response = user_client.post("/species", data=rows(MAX_BATCH), headers=JSON)
    assert response.status_code == 200, response.data
    assert len(response.get_json()["result"]) == MAX_BATCH
    assert usermodels.CALLS == [MAX_BATCH]


def test_vectorised_batch_against_a_per_row_loop(user_stack, figure):
    """The figure the README gives: a 10,000-row batch through the stack, in one call of the
    function against one call per row (usermodels.species_row)."""
    seconds = {}
    for path in ("/species", "/species-rows"):
        started = time.perf_counter()
        status, _, answer = user_stack.request("POST", path, rows(MAX_BATCH), JSON, timeout=60)
        seconds[path] = time.perf_counter() - started
        assert status == 200, answer
        assert json.loads(answer)["result"] == ["setosa"] * MAX_BATCH
    figure("10,000-row batch through the stack, vectorised (s)", f"{seconds['/species']:.3f}")
    figure(
        "10,000-row batch through the stack, a call per row (s)", f"{seconds['/species-rows']:.3f}"
    )


@pytest.mark.parametrize("form", ["raw", "multipart", "batch"])
def test_image_parameter(user_client, user_stack, form):
    image = png(30, 20)
    if form == "raw":
        body, content_type, expected = (
            image,
            "image/png",
            {"width": 30, "height": 20, "mode": "RGB"},
        )
    else:
        fields = [("image", image)] * (2 if form == "batch" else 1) + [("scale", b"2")]
        body, content_type = multipart(*fields)
        one = {"width": 60.0, "height": 40.0, "mode": "RGB"}
        expected = [one, one] if form == "batch" else one
    for status, headers, answer in (
        flask_post(user_client, "/size", body, content_type),
        user_stack.request("POST", "/size", body, {"Content-Type": content_type}),
    ):
        check(status, headers, answer, 200, expected)


def flask_post(client, path: str, body: bytes, content_type: str) -> tuple:
    response = client.post(path, data=body, headers={"Content-Type": content_type})
    return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.data


def test_a_users_image_function_takes_a_photo_of_several_mb(user_stack):
    # nginx lets 10 MB through to any function of images, not only to the demo's /predict.
    noise = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    assert len(buffer.getvalue()) > 2 * 1024 * 1024
    status, _, answer = user_stack.request(
        "POST", "/size", buffer.getvalue(), {"Content-Type": "image/png"}
    )
    assert status == 200, answer
    assert json.loads(answer) == {"result": {"width": 1000, "height": 1000, "mode": "RGB"}}


def test_image_errors_name_the_image(user_client):
    body, content_type = multipart(("image", png(5, 5)), ("image", b"nope"))
    status, headers, answer = flask_post(user_client, "/size", body, content_type)
    assert_json_error(status, headers, answer, 400, "image 1:", "not a PNG or JPEG")
    body, content_type = multipart(("image", png(5, 5)), ("scale", b"x"))
    status, headers, answer = flask_post(user_client, "/size", body, content_type)
    assert_json_error(status, headers, answer, 400, "'scale'", "must be a number")


def untyped(a):
    return a


def dict_param(a: dict) -> float:
    return 0.0


def either(a: int | str) -> float:
    return 0.0


def star_args(*a: float) -> float:
    return 0.0


def not_lists(model, a: float) -> list:
    return [a]


def no_model_param(a: float) -> float:
    return a


@pytest.mark.parametrize(
    "entry,words",
    [
        (untyped, ("ENDPOINTS['bad']", "'a'", "no type hint", "list[float]")),
        (dict_param, ("ENDPOINTS['bad']", "'a'", "dict", "not supported", "list[str]")),
        (star_args, ("*args",)),
        (either, ("'a'", "int | str", "not supported")),
        (serve(not_lists, model=usermodels.load_iris, vectorized=True), ("vectorised", "lists")),
        (serve(no_model_param, model=usermodels.load_iris), ("'model'",)),
        (serve(no_model_param, draft=("L", 64)), ("draft=", "takes none")),
        (serve(usermodels.image_size, draft=("grey", 64)), ("draft is (mode, side)",)),
        (serve(usermodels.image_size, draft=512), ("draft is (mode, side)", "512")),
        (serve(usermodels.image_size, draft=("RGBA", 64)), ("mode 'L' or 'RGB'",)),
        (serve(usermodels.image_size, draft=("L", True)), ("draft is (mode, side)",)),
    ],
)
def test_an_unsupported_function_fails_at_startup(entry, words):
    with pytest.raises(TypeError) as failure:
        create_app({"TESTING": True, "ENDPOINTS": {"bad": entry}})
    for word in words:
        assert word in str(failure.value), (word, str(failure.value))


def test_a_draft_decodes_a_jpeg_at_reduced_scale_and_leaves_a_png_whole():
    # The function asks for grey at >= 100 pixels: a 1000x800 JPEG comes at libjpeg's 1/8 scale.
    thumb = serve(usermodels.image_size, draft=("L", 100))
    client = create_app({"TESTING": True, "ENDPOINTS": {"thumb": thumb}}).test_client()
    photo = io.BytesIO()
    Image.new("RGB", (1000, 800), "white").save(photo, "JPEG")
    for data, content_type, expected in (
        (photo.getvalue(), "image/jpeg", {"width": 125, "height": 100, "mode": "L"}),
        (png(1000, 800), "image/png", {"width": 1000, "height": 800, "mode": "RGB"}),
    ):
        status, headers, answer = flask_post(client, "/thumb", data, content_type)
        assert status == 200, answer
        assert json.loads(answer) == {"result": expected}


@pytest.mark.parametrize("name", ["metrics", "healthz", "openapi.json", "static", "", "a b", "x/y"])
def test_a_name_that_is_not_a_free_path_segment_fails_at_startup(name):
    with pytest.raises(TypeError) as failure:
        create_app({"TESTING": True, "ENDPOINTS": {name: no_model_param}})
    assert f"ENDPOINTS[{name!r}]" in str(failure.value)
    assert "not a name to serve at /NAME" in str(failure.value)


def test_readiness_names_every_model():
    working = {"species": usermodels.ENDPOINTS["species"]}
    response = create_app({"TESTING": True, "ENDPOINTS": working}).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "models": ["iris"]}


def test_openapi_is_generated_from_the_type_hints(user_client):
    response = user_client.get("/openapi.json")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    document = response.get_json()
    assert set(document["paths"]) >= {
        f"{p}/{name}" for name in usermodels.ENDPOINTS for p in ("", "/v1")
    }
    sentiment = document["paths"]["/sentiment"]
    assert (
        sentiment["get"]["summary"]
        == "How positive a text is, from -1 to 1, repeated `times` times."
    )
    assert sentiment["get"]["description"] == "Counts the good and bad words it knows."
    params = {p["name"]: p for p in sentiment["get"]["parameters"]}
    assert params["text"]["schema"] == {"type": "string"} and params["text"]["required"]
    assert params["times"]["schema"] == {"type": "integer", "default": 1, **INT64_SCHEMA}
    assert not params["times"]["required"]
    one, batch, *_ = sentiment["post"]["requestBody"]["content"]["application/json"]["schema"][
        "anyOf"
    ]
    assert one["properties"]["times"]["type"] == "integer" and one["required"] == ["text"]
    assert batch == {"type": "array", "items": one, "maxItems": MAX_BATCH}
    norm = document["paths"]["/norm"]["get"]
    assert norm["parameters"][0]["schema"] == {"type": "array", "items": {"type": "number"}}
    assert norm["responses"]["200"]["content"]["application/json"]["schema"]["properties"] == {
        "result": {"type": "number"}
    }
    weights = document["paths"]["/flags"]["get"]["parameters"][2]["schema"]
    items = {"type": "integer", **INT64_SCHEMA}
    assert weights == {"type": "array", "items": items, "nullable": True}
    size = document["paths"]["/size"]
    assert "get" not in size
    assert "multipart/form-data" in size["post"]["requestBody"]["content"]
    assert "503" in document["paths"]["/needs-broken"]["post"]["responses"]


def test_the_urls_make_run_prints_are_read_as_printed(user_client):
    """make run lists a GET URL per function from /openapi.json's examples: lists as the
    parameter repeated, bools as true/false. Each is read as sent; what fails, fails in the
    function (its own check, its NaN, its bug) or for its model, never in the query."""
    document = user_client.get("/openapi.json").get_json()
    endpoints = served_endpoints(document)
    assert [url for method, url in endpoints if method == "POST"] == ["/size"]  # an image
    urls = [url for method, url in endpoints if method == "GET"]
    assert "/flags?on=true&labels=hello&labels=hello&weights=3&weights=3" in urls
    statuses = {url.split("?")[0]: user_client.get(url).status_code for url in urls}
    assert statuses == {
        "/sentiment": 200,
        "/norm": 200,
        "/flags": 200,
        "/classify": 200,
        "/nan": 500,
        "/broken": 500,
        "/species": 400,  # "each row has 4 measures": the function's own check
        "/species-rows": 400,
        "/needs-broken": 503,
    }


def test_cross_origin_calls_only_from_the_allowed_origins():
    config = {
        "TESTING": True,
        "ENDPOINTS": usermodels.ENDPOINTS,
        "CORS_ORIGINS": "https://app.example",
    }
    client = create_app(config).test_client()
    allowed = client.get("/sentiment?text=good", headers={"Origin": "https://app.example"})
    assert allowed.status_code == 200, allowed.data
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert allowed.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
    # The page on that origin may read the request's id.
    assert allowed.headers["Access-Control-Expose-Headers"] == "X-Request-Id"
    other = client.get("/sentiment?text=good", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200, other.data
    assert "Access-Control-Allow-Origin" not in other.headers
    assert other.headers["Vary"] == "Origin"
    # None allowed (the default): no CORS header at all.
    plain = create_app({**config, "CORS_ORIGINS": ""}).test_client()
    response = plain.get("/sentiment?text=good", headers={"Origin": "https://app.example"})
    assert response.status_code == 200, response.data
    assert "Access-Control-Allow-Origin" not in response.headers
