"""The framework: any typed function in the registry becomes a validated, documented, batchable
endpoint. Served here are a user's functions (usermodels.py), not the project's demos, through
Flask's test client (tests/stack/test_registry_stack.py runs the same table through the stack)."""

import array
import collections
import io
import json
from typing import Annotated

import numpy as np
import pytest
from PIL import Image
from pydantic import Field

from deploy.localstack import served_endpoints
from helpers import answer_of, assert_json_error, multipart, usermodels
from helpers.user_cases import IMAGE_FORMS, JSON, PARAMS, check, image_case, png, rows
from modelserver.endpoints import serve
from modelserver.limits import MAX_BATCH
from server import create_app

INT64_SCHEMA = {"minimum": -(2**63), "maximum": 2**63 - 1}


@pytest.fixture(scope="module")
def user_client():
    return create_app({"TESTING": True, "ENDPOINTS": usermodels.ENDPOINTS}).test_client()


@pytest.mark.parametrize("method,path,body,expected_status,expected", PARAMS)
def test_user_functions_flask(user_client, method, path, body, expected_status, expected):
    response = user_client.open(path, method=method, data=body, headers=JSON if body else {})
    check(*answer_of(response), expected_status, expected)


def test_a_vectorised_batch_is_one_call(user_client):
    usermodels.CALLS.clear()
    response = user_client.post("/species", data=rows(MAX_BATCH), headers=JSON)
    assert response.status_code == 200, response.data
    assert len(response.get_json()["result"]) == MAX_BATCH
    assert usermodels.CALLS == [MAX_BATCH]


@pytest.mark.parametrize("form", IMAGE_FORMS)
def test_image_parameter_flask(user_client, form):
    path, body, content_type, expected = image_case(form)
    check(*flask_post(user_client, path, body, content_type), 200, expected)


def flask_post(client, path: str, body: bytes, content_type: str) -> tuple:
    return answer_of(client.post(path, data=body, headers={"Content-Type": content_type}))


def test_the_image_body_s_name_in_the_query_string_is_refused(user_client):
    path, body, content_type, _ = image_case("raw")
    answer = flask_post(user_client, "/size?image=other.png", body, content_type)
    assert_json_error(*answer, 400, "'image' is the request's body", "query string too")


def test_image_errors_name_the_image(user_client):
    body, content_type = multipart(("image", png(5, 5)), ("image", b"nope"))
    status, headers, answer = flask_post(user_client, "/size", body, content_type)
    assert_json_error(status, headers, answer, 400, "image 1:", "not a PNG or JPEG")
    body, content_type = multipart(("image", png(5, 5)), ("scale", b"x"))
    status, headers, answer = flask_post(user_client, "/size", body, content_type)
    assert_json_error(status, headers, answer, 400, "'scale'", "must be a number")


def test_a_parameter_beside_an_upload_is_never_silently_left_out(user_client):
    """In the query string of an image body it is read; in that of a form, refused (the form's
    field, or the default, would stand in for it)."""
    status, headers, answer = flask_post(user_client, "/size?scale=x", png(5, 5), "image/png")
    assert_json_error(status, headers, answer, 400, "query parameter 'scale'", "must be a number")
    body, content_type = multipart(("image", png(5, 5)))
    status, headers, answer = flask_post(user_client, "/size?scale=2", body, content_type)
    assert_json_error(
        status, headers, answer, 400, "parameter 'scale' is in the query string of a POST of a form"
    )


def untyped(a):
    return a


class Opaque:
    """A class of a model's own that pydantic cannot validate from JSON."""


def opaque_param(a: Opaque) -> float:
    return 0.0


def either(a: int | str) -> float:
    return 0.0


def star_args(*a: float) -> float:
    return 0.0


def not_lists(model, a: float) -> list:
    return [a]


def no_model_param(a: float) -> float:
    return a


def model_unnamed(model, a: float) -> float:
    return a


def one_result(a: list[float]) -> float:
    return sum(a)


def with_model(model: object, a: float) -> float:
    return a


def load_from(path: str) -> object:
    return path


class CallableModel:
    """A model called to predict, as a torch Module is: not its own loader."""

    def __call__(self, *x: float) -> float:
        return sum(x)


@pytest.mark.parametrize(
    "entry,words",
    [
        (untyped, ("ENDPOINTS['bad']", "'a'", "no type hint", "list[float]")),
        (opaque_param, ("ENDPOINTS['bad']", "'a'", "Opaque", "not supported", "pydantic")),
        (star_args, ("*args",)),
        (either, ("'a'", "int | str", "not supported")),
        (serve(not_lists, model=usermodels.load_iris, vectorized=True), ("vectorised", "lists")),
        (serve(no_model_param, model=usermodels.load_iris), ("'model'",)),
        (model_unnamed, ("'model'", "no type hint", "serve(f, model=load_x)")),
        (serve(one_result, vectorized=True), ("one result per item", "list[float], not float")),
        (serve(no_model_param, draft=("L", 64)), ("draft=", "takes none")),
        (serve(usermodels.image_size, draft=("grey", 64)), ("draft is (mode, side)",)),
        (serve(usermodels.image_size, draft=512), ("draft is (mode, side)", "512")),
        (serve(usermodels.image_size, draft=("RGBA", 64)), ("mode 'L' or 'RGB'",)),
        (serve(usermodels.image_size, draft=("L", True)), ("draft is (mode, side)",)),
        # The model itself where its loader goes, and a loader that needs an argument.
        (serve(with_model, model={"w": 1}), ("model= takes the model's loader", "not a dict")),
        (serve(with_model, model=CallableModel()), ("model= takes", "not a CallableModel")),
        (serve(with_model, model=load_from), ("model='load_from' is called with no arguments",)),
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
    assert weights == {"type": "array", "items": items}  # optional: left out, never a null
    size = document["paths"]["/size"]
    assert "get" not in size
    assert "multipart/form-data" in size["post"]["requestBody"]["content"]
    for method in ("get", "post"):  # a model that did not load: its every operation
        assert "503" in document["paths"]["/needs-broken"][method]["responses"]


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


def odds(p: Annotated[float, Field(examples=[0.2])]) -> float:
    """The odds p/(1-p) of a probability p: it checks its input itself."""
    if not 0 <= p < 1:
        raise ValueError(f"p is a probability below 1, got {p}")
    return p / (1 - p)


def test_make_run_lists_a_functions_own_example_before_its_types():
    """Field(examples=[...]) is the URL make run prints: the type's own example (25) would be
    refused by the function's check."""
    client = create_app({"TESTING": True, "ENDPOINTS": {"odds": odds}}).test_client()
    document = client.get("/openapi.json").get_json()
    assert served_endpoints(document) == [("GET", "/odds?p=0.2")]
    response = client.get("/odds?p=0.2")
    assert response.status_code == 200, response.data

    assert response.get_json() == {"result": 0.25}
    assert client.get("/odds?p=25").status_code == 400  # the type's example, refused


def test_make_run_lists_a_function_of_no_parameters_without_a_query():
    client = create_app({"TESTING": True, "ENDPOINTS": {"now": lambda: 1}}).test_client()
    document = client.get("/openapi.json").get_json()
    assert served_endpoints(document) == [("GET", "/now")]


def total_cm(lengths: Annotated[list[int], {"unit": "cm"}]) -> int:
    return sum(lengths)


def scaled(x: Annotated[float, ["a note"]], by: Annotated[int, {"unit": "x"}] = 2) -> float:
    return x * by


def test_annotations_with_unhashable_metadata_are_served_as_their_type():
    """Annotated's metadata may be any object (a dict of units, a list); pydantic ignores what it
    does not know, and so must the reading of the signature, which once hashed it."""
    client = create_app({"TESTING": True, "ENDPOINTS": {"total": total_cm, "scaled": scaled}})
    client = client.test_client()
    response = client.post("/total", json={"lengths": [1, 2, 3]})
    assert response.status_code == 200, response.data
    assert response.get_json() == {"result": 6}
    response = client.get("/scaled?x=1.5&by=3")
    assert response.status_code == 200, response.data
    assert response.get_json() == {"result": 4.5}
    response = client.get("/scaled?x=1.5&by=two")
    assert_json_error(*answer_of(response), 400, "'by'", "an integer")


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
    # The browser's preflight of a POST: no body, the CORS headers.
    preflight = client.options(
        "/sentiment",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204, preflight.data
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, POST"
    other = client.get("/sentiment?text=good", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200, other.data
    assert "Access-Control-Allow-Origin" not in other.headers
    assert other.headers["Vary"] == "Origin"
    # None allowed (the default): no CORS header at all.
    plain = create_app({**config, "CORS_ORIGINS": ""}).test_client()
    response = plain.get("/sentiment?text=good", headers={"Origin": "https://app.example"})
    assert response.status_code == 200, response.data
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example/",
        "app.example",
        "https://a.example/x",
        "https://*.example",
        "https://u@a.example",
    ],
)
def test_an_origin_no_browser_sends_stops_the_start(origin):
    config = {"TESTING": True, "ENDPOINTS": {}, "CORS_ORIGINS": f"https://b.example, {origin}"}
    with pytest.raises(ValueError) as raised:
        create_app(config)
    assert str(raised.value).startswith(f"MODELSERVER_CORS_ORIGINS: {origin!r} is not an origin")


def test_null_which_any_page_can_send_stops_the_start():
    with pytest.raises(ValueError) as raised:
        create_app({"TESTING": True, "ENDPOINTS": {}, "CORS_ORIGINS": "null"})
    assert "'null' is the origin of sandboxed pages" in str(raised.value)


@pytest.mark.parametrize(
    "entry,origin",
    [
        ("HTTPS://App.Example", "https://app.example"),
        ("https://app.example:443", "https://app.example"),
        ("http://localhost:80", "http://localhost"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://[::1]:3000", "http://[::1]:3000"),
    ],
)
def test_an_allowed_origin_is_matched_as_a_browser_sends_it(entry, origin):
    config = {"TESTING": True, "ENDPOINTS": usermodels.ENDPOINTS, "CORS_ORIGINS": entry}
    response = create_app(config).test_client().get("/healthz", headers={"Origin": origin})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == origin


def columns(x: list[float]) -> list[dict]:
    """Columns, as a DataFrame of the batch would be: a dict of lists."""
    return {"prob": x, "label": ["a"] * len(x)}


def one_short(x: list[float]) -> list[float]:
    """A result too few."""
    return x[1:]


def lazily(x: list[float]) -> list[float]:
    """A generator, not a list."""
    return (value for value in x)


def text(x: list[float]) -> list[str]:
    """Text, whose characters would read as the results."""
    return "ab"


@pytest.mark.parametrize(
    "results",
    [
        lambda x: tuple(x),
        lambda x: collections.deque(x),
        lambda x: array.array("d", x),
        lambda x: np.asarray(x),
        lambda x: np.asarray(x, dtype=np.float32).reshape(-1, 1),
    ],
    ids=["tuple", "deque", "array.array", "ndarray", "ndarray of rows"],
)
def test_a_vectorised_result_of_any_sequence_or_array_is_its_items(results):
    def each(x: list[float]) -> list:
        """The values back, as some sequence or array."""
        return results(x)

    client = create_app({"TESTING": True, "ENDPOINTS": {"f": serve(each, vectorized=True)}})
    response = client.test_client().post("/f", json=[{"x": 0.5}, {"x": 2.0}])
    assert response.status_code == 200, response.data
    assert response.json["result"] in ([0.5, 2.0], [[0.5], [2.0]])


@pytest.mark.parametrize(
    ("func", "words"),
    [
        (
            columns,
            "returned a value of type dict for 2 item(s); a vectorised function returns a list",
        ),
        (one_short, "returned 1 result(s) for 2 item(s); a vectorised function returns one result"),
        (lazily, "returned a value of type generator for 2 item(s)"),
        (text, "returned a value of type str for 2 item(s)"),
    ],
)
def test_a_vectorised_result_that_is_not_one_per_item_is_the_functions_500(func, words):
    endpoints = {"f": serve(func, vectorized=True)}
    client = create_app({"TESTING": True, "ENDPOINTS": endpoints}).test_client()
    batch = client.post("/f", json=[{"x": 0.9}, {"x": 0.1}])
    assert_json_error(*answer_of(batch), 500, f"f {words}")
    single = client.post("/f", json={"x": 0.9})
    assert_json_error(*answer_of(single), 500, "f returned")
