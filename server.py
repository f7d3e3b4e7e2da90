"""HTTP in front of algo.py: read the request, call the function, answer JSON. Nothing else.

Parsing and errors live here once for every route: an algorithm is served by one line in
ALGORITHMS, and every 4xx/5xx leaves through http_error() as {"message": "..."}.
"""

import argparse
import inspect
import json
import math
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)

import algo
import digits

# URL name -> function whose parameters are all numbers, each read from the query string under
# its own name: GET /pisqrt?a=25 calls algo.pi_sqrt(a=25.0).
ALGORITHMS: dict[str, Callable[..., float]] = {"pisqrt": algo.pi_sqrt}

# Request bodies: at most 1 MB (as nginx), and a batch at most 10,000 values (about 200 KB of JSON).
MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 10_000
BODY_TOO_LARGE = RequestEntityTooLarge.description  # Werkzeug's words for MAX_CONTENT_LENGTH

# Models each worker loads when the app is created: name -> loader. /readyz is 503 until every one
# has loaded (a missing or corrupt file keeps the worker alive but out of rotation).
MODELS: dict[str, Callable[[], object]] = {"digits": digits.load_model}

# Image uploads to /predict: bodies up to 10 MB (a phone photo; nginx has the same cap there),
# and at most 64 images in one multipart batch.
MAX_IMAGE_BODY_BYTES = 10 * 1024 * 1024
MAX_IMAGES = 64
IMAGE_TYPES = ("image/png", "image/jpeg")

# Origins whose pages may call the API from a browser (CORS): a comma-separated list in
# $MODELSERVER_CORS_ORIGINS, "*" for any. Default: none; the page at / is on the same origin
# and needs no CORS.
CORS_ORIGINS = os.environ.get("MODELSERVER_CORS_ORIGINS", "")

# The API's OpenAPI 3 document, served at /openapi.json; tests check the server against it.
OPENAPI_FILE = Path(__file__).with_name("openapi.json")

# uwsgi.ini's harakiri-graceful-signal: uWSGI sends it to a worker whose request ran past
# harakiri, a few seconds before it kills the worker.
DEADLINE_SIGNAL = signal.SIGSYS

# Every route answers unversioned and under /v1, so clients can pin the contract they wrote for.
PREFIXES = ("", "/v1")

# A plain decimal number as people type it (25, -1.5, .5, 2e10). float() alone would also take
# "nan", "inf", "1_000", " 25 " and non-ASCII digits, none of which a client means as a number.
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
NOT_FINITE = {"nan", "inf", "infinity"}

JSON_TYPE = "application/json"


def create_app(config: dict | None = None) -> Flask:
    """Build the app; config overrides Flask settings (tests pass {"TESTING": True}).

    config["MODELS"] replaces MODELS, the loaders of the models to load.
    """
    app = Flask(__name__)
    # The same body cap as nginx's client_max_body_size, for whatever reaches Flask another way.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["MODELS"] = MODELS
    app.config.from_mapping(config or {})
    app.extensions["models"] = load_models(app, app.config["MODELS"])
    for name, func in ALGORITHMS.items():
        view = algorithm_view(func)
        for prefix in PREFIXES:
            app.add_url_rule(f"{prefix}/{name}", name, view, methods=["GET", "POST"])
    for prefix in PREFIXES:
        app.add_url_rule(f"{prefix}/predict", "predict", predict, methods=["POST"])
    # The browser page; behind nginx, nginx serves / and /static/ from disk before Flask sees them.
    app.add_url_rule("/", "page", lambda: app.send_static_file("index.html"))
    app.config.setdefault("CORS_ORIGINS", CORS_ORIGINS)
    origins = frozenset(item.strip() for item in app.config["CORS_ORIGINS"].split(","))
    if origins - {""}:  # none by default: then no request pays for CORS
        app.after_request(lambda response: allow_cross_origin(response, origins - {""}))
    openapi = OPENAPI_FILE.read_bytes()
    app.add_url_rule("/openapi.json", "openapi", lambda: Response(openapi, mimetype=JSON_TYPE))
    app.add_url_rule("/healthz", "healthz", lambda: json_response({"status": "ok"}))
    app.add_url_rule("/readyz", "readyz", readiness)
    app.register_error_handler(HTTPException, http_error)
    stop_requests_at_the_deadline()
    return app


def load_models(app: Flask, loaders: dict[str, Callable[[], object]]) -> dict[str, object]:
    """Each model loaded; one that fails is logged and left out, so /readyz can say why."""
    models = {}
    for name, load in loaders.items():
        try:
            models[name] = load()
        except Exception:  # any failure of a model file or its code means "not ready"
            app.logger.exception("model %r failed to load", name)
    return models


def readiness() -> Response:
    """200 when every model is loaded in this worker, else 503 naming the missing ones."""
    loaded = current_app.extensions["models"]
    missing = sorted(set(current_app.config["MODELS"]) - set(loaded))
    if missing:
        raise ServiceUnavailable(f"not ready: model(s) not loaded: {', '.join(missing)}")
    return json_response({"status": "ready", "models": sorted(loaded)})


def predict() -> Response:
    """POST /predict: the digit in each uploaded image; one answer, or a list for a batch."""
    model = current_app.extensions["models"].get("digits")
    if model is None:
        raise ServiceUnavailable("the digits model is not loaded in this worker; see /readyz")
    images, batch = uploaded_images()
    try:
        predictions = algo.predict_digits(model, images)
    except ValueError as error:
        raise BadRequest(str(error)) from error
    answers = [{"label": label, "probabilities": p} for label, p in predictions]
    return json_response(answers if batch else answers[0])


def uploaded_images() -> tuple[list[bytes], bool]:
    """The image files of the request, and whether they are a batch (several form fields)."""
    request.max_content_length = MAX_IMAGE_BODY_BYTES  # before the body is read
    if request.mimetype in IMAGE_TYPES:
        return [request.get_data()], False
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType(
            "send a PNG or JPEG image as the body (Content-Type: image/png or image/jpeg), or as "
            f"multipart/form-data field(s) 'image'; got {request.mimetype or 'no Content-Type'!r}"
        )
    files = request.files.getlist("image")
    if not files:
        raise BadRequest("the multipart form has no field 'image'")
    if len(files) > MAX_IMAGES:
        raise RequestEntityTooLarge(f"at most {MAX_IMAGES} images at once; got {len(files)}")
    return [file.read() for file in files], len(files) > 1


def allow_cross_origin(response: Response, allowed: frozenset[str]) -> Response:
    """CORS headers for a browser on an allowed origin ("*": any); none for the others."""
    origin = request.headers.get("Origin")
    if origin and ("*" in allowed or origin in allowed):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    response.headers.add("Vary", "Origin")  # the answer depends on Origin: caches keep them apart
    return response


class DeadlineExceeded(HTTPException):
    """The request ran past uWSGI's harakiri; answered 504, then the worker is recycled."""

    code = 504
    description = "the request ran past the server's time limit and was stopped"


def stop_requests_at_the_deadline() -> None:
    """Under uWSGI, turn the harakiri signal into DeadlineExceeded inside the running request."""
    try:
        import uwsgi  # noqa: F401  (exists only inside uWSGI, the one server with harakiri)
    except ImportError:
        return
    signal.signal(DEADLINE_SIGNAL, raise_deadline_exceeded)


def raise_deadline_exceeded(signum, frame):
    raise DeadlineExceeded()


def recycle_this_worker() -> None:
    """Ask uWSGI to replace this worker (SIGHUP: finish, exit, respawn): an interrupted request
    may have left its state half-changed."""
    os.kill(os.getpid(), signal.SIGHUP)


def algorithm_view(func: Callable[..., float]) -> Callable[[], Response]:
    """A view calling func: GET with its arguments in the query string, POST in a JSON body.

    A POST whose arguments are lists is a batch: func runs once per position, results in order.
    """
    names = list(inspect.signature(func).parameters)

    def view() -> Response:
        if request.method == "GET":
            result = call(func, [parse_number(name, single_value(name)) for name in names])
        else:
            result = call_body(func, names, json_body())
        return json_response({"result": result})

    return view


def call(func: Callable[..., float], args: list[float], where: str = "") -> float:
    """func(*args), its domain errors (ValueError, ArithmeticError) turned into a 400."""
    try:
        return func(*args)
    except (ValueError, ArithmeticError) as error:
        raise BadRequest(f"{where}{error}") from error


def call_body(func: Callable[..., float], names: list[str], body: dict) -> float | list[float]:
    """func on a JSON body's arguments: numbers for one call, equal-length lists for a batch."""
    values = [body_value(body, name) for name in names]
    if not any(isinstance(value, list) for value in values):
        return call(func, values)
    if not all(isinstance(value, list) for value in values) or len(set(map(len, values))) > 1:
        raise BadRequest(f"give {', '.join(names)} all as numbers or all as lists of one length")
    rows = enumerate(zip(*values, strict=True))
    return [call(func, list(args), f"item {i}: ") for i, args in rows]


def json_body() -> dict:
    """The request body as a JSON object; NaN and Infinity, which are not JSON, are refused."""
    if not request.is_json:
        raise UnsupportedMediaType(
            f"send the body as Content-Type: application/json, not {request.mimetype or 'none'!r}"
        )
    try:
        body = json.loads(request.get_data(), parse_constant=refuse_constant)
    except (ValueError, RecursionError) as error:  # bad text or encoding; absurd nesting
        raise BadRequest(f"the body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object such as {"a": 25}')
    return body


def refuse_constant(name: str):
    raise ValueError(f"{name} is not a number in JSON")


def body_value(body: dict, name: str) -> float | list[float]:
    """Field `name` of the body: a finite number, or a list of them."""
    if name not in body:
        raise BadRequest(f'field {name!r} is missing from the body; send e.g. {{"{name}": 25}}')
    value = body[name]
    if isinstance(value, list):
        if len(value) > MAX_BATCH:  # refused before any of its items is looked at
            raise RequestEntityTooLarge(
                f"a batch holds at most {MAX_BATCH} values; this one has {len(value)}"
            )
        return [json_number(f"{name}[{i}]", item) for i, item in enumerate(value)]
    return json_number(name, value)


def json_number(where: str, value) -> float:
    """value as a finite float, or a 400 naming where it was."""
    if type(value) not in (int, float):  # bool is an int subclass, and not a number here
        raise BadRequest(f"{where} must be a number, got {shorten(json.dumps(value))}")
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise BadRequest(f"{where} overflows a 64-bit float") from None
    if not math.isfinite(number):  # 1e999 parses to inf
        raise BadRequest(f"{where} overflows a 64-bit float")
    return number


def single_value(name: str) -> str:
    """The one value of query parameter `name`; missing or repeated is the client's error."""
    values = request.args.getlist(name)
    if not values:
        raise BadRequest(f"query parameter {name!r} is missing; send e.g. ?{name}=25")
    if len(values) > 1:
        raise BadRequest(f"query parameter {name!r} is given {len(values)} times; give it once")
    return values[0]


def parse_number(name: str, text: str) -> float:
    """Parse the text of parameter `name` as a finite float, or raise BadRequest saying why."""
    if text == "":
        raise BadRequest(f"query parameter {name!r} is empty; it must be a number such as 25")
    if not NUMBER.fullmatch(text):
        kind = "a finite number" if text.lower().lstrip("+-") in NOT_FINITE else "a number"
        raise BadRequest(f"query parameter {name!r} must be {kind}, got {shorten(text)!r}")
    value = float(text)
    if value in (float("inf"), float("-inf")):  # digits such as 1e999 that no float can hold
        raise BadRequest(f"query parameter {name!r} overflows a 64-bit float: {shorten(text)!r}")
    return value


def shorten(text: str, limit: int = 40) -> str:
    """Echo at most `limit` characters of client input back in a message."""
    return text if len(text) <= limit else text[:limit] + "..."


def json_response(payload: dict, status: int = 200) -> Response:
    """payload as JSON, with json.dumps' default spacing: {"result": 8.86226925452758}."""
    # allow_nan=False: NaN and Infinity are not JSON; emitting them would break clients silently.
    body = json.dumps(payload, allow_nan=False) + "\n"
    return Response(body, status, mimetype=JSON_TYPE)


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
    return error.description or error.name


def main(argv: list[str] | None = None) -> None:
    """Run on Flask's development server: for a laptop, never for production (see README)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=5000, help="port (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="reloader and debugger; never public")
    args = parser.parse_args(argv)
    create_app().run(host=args.host, port=args.port, debug=args.debug)


if __name__ == "__main__":
    main()
