"""HTTP in front of algo.py: read the request, call the function, answer JSON. Nothing else.

ALGORITHMS is the whole registry: a URL name and a function, whose type hints decide how each
parameter is read (query string, JSON body, image upload), validated and documented. Parsing and
errors live here once for every route; every 4xx/5xx leaves through http_error() as
{"message": "..."}. The OpenAPI document at /openapi.json is generated from the same registry.
"""

import argparse
import hmac
import inspect
import io
import json
import math
import os
import re
import signal
import struct
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from flask import Flask, Response, current_app, g, has_request_context, request
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    MethodNotAllowed,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)

import algo
import digits
import metrics


@dataclass(frozen=True)
class Endpoint:
    """A function and how it is served; serve() makes one, a plain function in ALGORITHMS is
    the same as serve(function)."""

    func: Callable
    # Called once, in the uWSGI master before the workers fork; its result is passed to the
    # function's parameter `model`. The model is named after it: load_iris -> "iris".
    model: Callable[[], object] | None = None
    # The function takes a whole batch in one call: each parameter is a list (list[float] for a
    # float per item) and it returns one result per item, in order (scikit-learn's predict).
    vectorized: bool = False
    # (mode, side): what the function needs of its images, for Pillow's Image.draft(). A JPEG
    # is then decoded by libjpeg straight to that mode ("L": grey, the Y channel, no colour
    # conversion; or "RGB") and at a reduced scale (1/2, 1/4 or 1/8): the smallest that is no
    # smaller than the image reduced by a whole factor until its longer side is at most `side`
    # (what Image.reduce would give; 640x480 -> 320x240 for 512, 4000x3000 -> 500x375). For a
    # model that shrinks every image anyway, most of the decoding is never done. Other formats
    # (PNG) come whole, in their own mode. None: every image whole.
    draft: tuple[str, int] | None = None


def serve(
    func: Callable,
    *,
    model: Callable[[], object] | None = None,
    vectorized: bool = False,
    draft: tuple[str, int] | None = None,
) -> Endpoint:
    """An ALGORITHMS entry: func, the loader of the model it needs, whether it is vectorised,
    and the least it needs of its images (see Endpoint)."""
    return Endpoint(func, model, vectorized, draft)


# URL name -> function (or serve(function, ...)): GET /pisqrt?a=25 calls algo.pi_sqrt(a=25.0).
ALGORITHMS: dict[str, Callable | Endpoint] = {
    "pisqrt": algo.pi_sqrt,
    "predict": serve(
        algo.predict_digits, model=digits.load_digits, vectorized=True, draft=digits.DRAFT
    ),
}

# JSON bodies: at most 1 MB (nginx lets 10 MB through, for images), and a batch at most 10,000
# items (or list values).
MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 10_000
BODY_TOO_LARGE = RequestEntityTooLarge.description  # Werkzeug's words for MAX_CONTENT_LENGTH

# Endpoints that take images: bodies up to 10 MB (a phone photo; nginx has the same cap there),
# at most 64 images in one request, each at most 4096 x 4096 pixels (read from its header before
# any pixel is decoded: a decoded RGBA image of this size takes 64 MB).
MAX_IMAGE_BODY_BYTES = 10 * 1024 * 1024
MAX_IMAGES = 64
MAX_PIXELS = 4096 * 4096
# All the images of one request together: as many pixels as 4 of the largest. Decoding and
# preparing one 4096 x 4096 RGB PNG costs a worker about 0.2 s on the reference machine (2 cores),
# so no accepted upload holds a worker much longer than a second (measured: README).
MAX_REQUEST_PIXELS = 4 * MAX_PIXELS
IMAGE_FORMATS = {
    b"\x89PNG\r\n\x1a\n": PngImagePlugin.PngImageFile,
    b"\xff\xd8\xff": JpegImagePlugin.JpegImageFile,
}
IMAGE_TYPES = ("image/png", "image/jpeg")
# How Pillow fails on a damaged file. Warning too: Pillow only warns of a damaged EXIF block, but
# where warnings are errors (pytest here, python -W error) that is a damaged file like any other.
IMAGE_DAMAGE = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    struct.error,
    Warning,
)

# Origins whose pages may call the API from a browser (CORS): a comma-separated list in
# $MODELSERVER_CORS_ORIGINS, "*" for any. Default: none; the page at / is on the same origin
# and needs no CORS.
CORS_ORIGINS = os.environ.get("MODELSERVER_CORS_ORIGINS", "")

# API keys: a file of one key per line, named by $MODELSERVER_API_KEYS_FILE. When it holds any,
# every call of a served function needs "Authorization: Bearer <key>"; the page, /docs, the
# OpenAPI document and the probes (/healthz, /readyz) stay open. Unset, or an empty file: no key
# is needed. The file is read when the app loads (in the uWSGI master), so a graceful reload
# (systemctl reload) takes a changed file into use without dropping a request.
API_KEYS_FILE = os.environ.get("MODELSERVER_API_KEYS_FILE", "")

STATIC = Path(__file__).with_name("static")

# uwsgi.ini's harakiri-graceful-signal: uWSGI sends it to a worker whose request ran past
# harakiri, a few seconds before it kills the worker.
DEADLINE_SIGNAL = signal.SIGSYS

# Every route answers unversioned and under /v1, so clients can pin the contract they wrote for.
PREFIXES = ("", "/v1")

# A plain decimal number as people type it (25, -1.5, .5, 2e10). float() alone would also take
# "nan", "inf", "1_000", " 25 " and non-ASCII digits, none of which a client means as a number.
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
NOT_FINITE = {"nan", "inf", "infinity"}
BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
# Integers are the 64-bit ones numpy and every model library take; a larger one is refused
# rather than overflowing inside the model.
INT64 = (-(2**63), 2**63 - 1)
INT64_RANGE = "must be a 64-bit integer (-2**63 to 2**63-1)"
JSON_INT = Annotated[int, Field(ge=INT64[0], le=INT64[1])]

JSON_TYPE = "application/json"

# JSON values are checked as JSON has them: no "25" for a number, no 1 for true.
STRICT = ConfigDict(strict=True, allow_inf_nan=False)


# --- what a parameter's type hint means ----------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One supported type: how its value is read from a query string, checked, shown."""

    name: str  # in messages: "must be {name}"
    parse_text: Callable[[str], object] | None  # None: cannot come in a query string
    example: object  # a value that fits, for messages and the document
    schema: dict


def parse_float(text: str) -> float:
    if not NUMBER.fullmatch(text):
        finite = text.lower().lstrip("+-") in NOT_FINITE
        raise ValueError("must be a finite number" if finite else "must be a number")
    value = float(text)
    if math.isinf(value):  # digits such as 1e999 that no float can hold
        raise ValueError("overflows a 64-bit float")
    return value


def parse_int(text: str) -> int:
    if not INTEGER.fullmatch(text):
        raise ValueError("must be an integer")
    return check_int64(int(text))


def check_int64(value: int) -> int:
    if not INT64[0] <= value <= INT64[1]:
        raise ValueError(INT64_RANGE)
    return value


def parse_bool(text: str) -> bool:
    try:
        return BOOLEANS[text.lower()]
    except KeyError:
        raise ValueError("must be true or false") from None


KINDS: dict[object, Kind] = {
    float: Kind("a number", parse_float, 25, {"type": "number"}),
    int: Kind("an integer", parse_int, 3, {"type": "integer", "format": "int64"}),
    bool: Kind("true or false", parse_bool, True, {"type": "boolean"}),
    str: Kind("a string", str, "hello", {"type": "string"}),
    Image.Image: Kind("a PNG or JPEG image", None, None, {"type": "string", "format": "binary"}),
}
SUPPORTED = "float, int, bool, str, list[float], list[int], list[str], PIL.Image.Image"


class Required:
    """The default of a parameter that has none."""

    def __repr__(self) -> str:
        return "required"


REQUIRED = Required()


@dataclass(frozen=True)
class Param:
    """One parameter of a served function, as the API sees it."""

    name: str
    kind: Kind  # of the value, or of each item of a list
    is_list: bool = False
    optional: bool = False  # None is a value (a hint of X | None)
    default: object = REQUIRED
    adapter: TypeAdapter | None = field(default=None, compare=False)  # checks JSON values

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def is_image(self) -> bool:
        return self.kind is KINDS[Image.Image]

    def example(self) -> object:
        if self.default is not REQUIRED and self.default is not None:
            return self.default
        return [self.kind.example, self.kind.example] if self.is_list else self.kind.example

    def schema(self) -> dict:
        schema = self.adapter.json_schema() if self.adapter else dict(self.kind.schema)
        if self.default is not REQUIRED and self.default is not None:
            schema["default"] = self.default
        return schema


def make_param(where: str, parameter: inspect.Parameter, hint: object, row_of_list: bool) -> Param:
    """The Param for a function parameter and its type hint; TypeError if it is not supported."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        others = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(others) != 1:  # int | str: which would "25" be?
            raise TypeError(f"{where}: type hint {hint!r} is not supported; use one type")
        optional, hint = True, others[0]
    if row_of_list:  # a vectorised function's list[X] is an X per item
        if typing.get_origin(hint) is not list:
            raise TypeError(f"{where}: a vectorised function takes lists; got {hint!r}")
        (hint,) = typing.get_args(hint)
    is_list = typing.get_origin(hint) is list
    item = typing.get_args(hint)[0] if is_list else hint
    if item not in KINDS:
        raise TypeError(f"{where}: type hint {hint!r} is not supported; use one of {SUPPORTED}")
    if is_list and item is Image.Image:
        raise TypeError(f"{where}: take one image; serve(..., vectorized=True) for many at once")
    adapter = None
    if item is not Image.Image:
        json_item = JSON_INT if item is int else item
        json_hint = list[json_item] if is_list else json_item
        adapter = TypeAdapter(json_hint | None if optional else json_hint, config=STRICT)
    default = REQUIRED if parameter.default is parameter.empty else parameter.default
    return Param(parameter.name, KINDS[item], is_list, optional, default, adapter)


@dataclass(frozen=True)
class Signature:
    """How an endpoint is called: its parameters as the API sees them, and its model's name."""

    name: str
    func: Callable
    params: tuple[Param, ...]
    model: str | None
    vectorized: bool
    draft: tuple[str, int] | None  # Endpoint.draft
    returns: dict  # JSON Schema of one result
    summary: str
    description: str

    @property
    def takes_images(self) -> bool:
        return any(param.is_image for param in self.params)

    @property
    def numbers_only(self) -> bool:
        """Every parameter a single number: the {"a": [1, 25]} batch form applies (deprecated)."""
        return all(
            param.kind.schema["type"] in ("number", "integer") for param in self.params
        ) and (not any(param.is_list for param in self.params))


# An ALGORITHMS name is a path segment: /NAME and /v1/NAME. Not one the service answers itself
# (probes, metrics, the document, the docs) or nginx serves from disk (static/).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RESERVED_NAMES = frozenset({"healthz", "readyz", "metrics", "openapi.json", "docs", "static", "v1"})


def signature_of(name: str, entry: Callable | Endpoint) -> Signature:
    """The Signature of an ALGORITHMS entry, checked at startup: TypeError says what is wrong."""
    endpoint = entry if isinstance(entry, Endpoint) else Endpoint(entry)
    func = endpoint.func
    where = f"ALGORITHMS[{name!r}] ({getattr(func, '__qualname__', func)!r})"
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise TypeError(
            f"{where}: not a name to serve at /NAME: use letters, digits, '-', '_' and '.', "
            f"starting with a letter or digit, and none of {', '.join(sorted(RESERVED_NAMES))}"
        )
    if not callable(func):
        raise TypeError(f"{where}: not a function")
    try:
        hints = typing.get_type_hints(func)
    except Exception as error:  # a hint naming what does not exist: the user's code to fix
        raise TypeError(f"{where}: its type hints cannot be read: {error}") from error
    parameters = list(inspect.signature(func).parameters.values())
    if endpoint.model is not None:
        if not parameters or parameters[0].name != "model":
            raise TypeError(
                f"{where}: serve(..., model=...) passes the model as the first "
                "parameter, which must be named 'model'"
            )
        parameters = parameters[1:]
    params = []
    for parameter in parameters:
        label = f"{where}, parameter {parameter.name!r}"
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"{label}: *args and **kwargs cannot be served; name each parameter")
        if parameter.name not in hints:
            raise TypeError(f"{label} has no type hint; give it one of {SUPPORTED}")
        params.append(make_param(label, parameter, hints[parameter.name], endpoint.vectorized))
    if endpoint.draft is not None:
        draft = endpoint.draft
        # The modes libjpeg decodes to; a bool is not a side.
        if not (
            isinstance(draft, tuple)
            and len(draft) == 2
            and draft[0] in ("L", "RGB")
            and type(draft[1]) is int
            and draft[1] >= 1
        ):
            raise TypeError(
                f"{where}: draft is (mode, side), mode 'L' or 'RGB', e.g. ('L', 512); got {draft!r}"
            )
        if not any(param.is_image for param in params):
            raise TypeError(f"{where}: draft= is for a function of images; this one takes none")
    if sum(param.is_image for param in params) > 1 and endpoint.vectorized:
        raise TypeError(f"{where}: a vectorised function takes at most one image parameter")
    doc = inspect.getdoc(func) or name
    summary, _, description = doc.partition("\n")
    model = None if endpoint.model is None else model_name(endpoint.model)
    returns = result_schema(hints.get("return"), endpoint.vectorized)
    return Signature(
        name,
        func,
        tuple(params),
        model,
        endpoint.vectorized,
        endpoint.draft,
        returns,
        summary.strip(),
        description.strip(),
    )


def model_name(loader: Callable[[], object]) -> str:
    """A model is named after its loader, less "load_": load_iris -> "iris"."""
    return getattr(loader, "__name__", "model").removeprefix("load_")


def result_schema(hint: object, vectorized: bool) -> dict:
    """The JSON Schema of one result, from the return hint where it is a plain type; {} (any
    JSON) for numpy arrays and other types that become JSON only when they are answered."""
    if hint is None:
        return {}
    if vectorized and typing.get_origin(hint) is list:
        (hint,) = typing.get_args(hint)
    try:
        return TypeAdapter(hint).json_schema()
    except Exception:  # pydantic has no schema for it (numpy, a model's own class)
        return {}


# --- the app ---------------------------------------------------------------------------------


def create_app(config: dict | None = None) -> Flask:
    """Build the app; config overrides Flask settings (tests pass {"TESTING": True}).

    config["ALGORITHMS"] replaces ALGORITHMS, the functions to serve.
    """
    app = Flask(__name__)
    # The same body cap as nginx's client_max_body_size, for whatever reaches Flask another way.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["ALGORITHMS"] = ALGORITHMS
    app.config.from_mapping(config or {})
    entries = app.config["ALGORITHMS"]
    signatures = [signature_of(name, entry) for name, entry in entries.items()]
    app.extensions["signatures"] = signatures
    app.extensions["models"] = load_models(app, entries)
    # Counts and times every request, serves /metrics; log lines name their request's id.
    metrics.instrument(app, app.extensions["model names"], app.extensions["models"])
    metrics.log_request_ids()
    for sig in signatures:
        view = algorithm_view(sig)
        methods = ["POST"] if sig.takes_images else ["GET", "POST"]
        for prefix in PREFIXES:
            app.add_url_rule(f"{prefix}/{sig.name}", sig.name, view, methods=methods)
    # The browser page and the API's docs; behind nginx, nginx serves them from disk.
    app.add_url_rule("/", "page", lambda: app.send_static_file("index.html"))
    app.add_url_rule("/docs", "docs", lambda: app.send_static_file("docs.html"))
    app.config.setdefault("CORS_ORIGINS", CORS_ORIGINS)
    origins = frozenset(item.strip() for item in app.config["CORS_ORIGINS"].split(","))
    if origins - {""}:  # none by default: then no request pays for CORS
        app.after_request(lambda response: allow_cross_origin(response, origins - {""}))
    document = (json.dumps(openapi(signatures), indent=1) + "\n").encode()
    app.add_url_rule("/openapi.json", "openapi", lambda: Response(document, mimetype=JSON_TYPE))
    app.add_url_rule("/healthz", "healthz", lambda: json_response({"status": "ok"}))
    app.add_url_rule("/readyz", "readyz", readiness)
    app.register_error_handler(HTTPException, http_error)
    app.config.setdefault("API_KEYS_FILE", API_KEYS_FILE)
    keys = read_api_keys(app.config["API_KEYS_FILE"])
    if keys:  # none by default: then no request pays for the check
        functions = frozenset(sig.name for sig in signatures)
        app.before_request(lambda: require_api_key(keys, functions))
    stop_requests_at_the_deadline()
    return app


def read_api_keys(path: str) -> tuple[bytes, ...]:
    """The keys in the file at path, one a line (blank lines and # comments skipped); none
    without a path. A path that cannot be read stops the start: serving openly by mistake is
    worse than not serving."""
    if not path:
        return ()
    lines = Path(path).read_text().splitlines()
    return tuple(
        line.strip().encode() for line in lines if line.strip() and not line.startswith("#")
    )


def require_api_key(keys: tuple[bytes, ...], functions: frozenset[str]) -> None:
    """A 401 for a call of a served function without one of the keys. Every key is compared, in
    constant time, so the time taken says nothing about how much of a key was right."""
    if request.endpoint not in functions or request.method == "OPTIONS":  # CORS preflight
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise key_required("this API needs a key: send the header Authorization: Bearer <key>")
    given_bytes = given.strip().encode()
    matches = [hmac.compare_digest(given_bytes, key) for key in keys]
    if not any(matches):
        raise key_required("the API key is not valid")  # the key itself is never echoed or logged


def key_required(message: str) -> Unauthorized:
    return Unauthorized(
        message, www_authenticate=WWWAuthenticate("Bearer", {"realm": "modelserver"})
    )


def load_models(app: Flask, entries: dict) -> dict[str, object]:
    """Each endpoint's model, loaded once; one that fails is logged and left out, so its
    endpoints answer 503 and /readyz says why, while the others keep serving."""
    loaders = {}
    for entry in entries.values():
        if isinstance(entry, Endpoint) and entry.model is not None:
            loaders[model_name(entry.model)] = entry.model
    app.extensions["model names"] = sorted(loaders)
    models = {}
    for name, load in loaders.items():
        try:
            models[name] = load()
        except Exception:  # any failure of a model file or its code means "not ready"
            app.logger.exception("model %r failed to load", name)
    return models


def readiness() -> Response:
    """200 naming every model when all are loaded, else 503 naming the missing ones."""
    loaded = current_app.extensions["models"]
    missing = [name for name in current_app.extensions["model names"] if name not in loaded]
    if missing:
        raise ServiceUnavailable(f"not ready: model(s) not loaded: {', '.join(missing)}")
    return json_response({"status": "ready", "models": sorted(loaded)})


def algorithm_view(sig: Signature) -> Callable[[], Response]:
    """The view of one endpoint: arguments from the request, the call, the result as JSON."""

    def view() -> Response:
        prefix = () if sig.model is None else (model_of(sig),)
        if request.method == "GET":
            result = call_rows(sig, prefix, [[query_value(param) for param in sig.params]], False)
        elif sig.takes_images:
            result = call_rows(sig, prefix, *image_rows(sig))
        else:
            result = call_rows(sig, prefix, *json_rows(sig, json_body()))
        return result_response(sig, result)

    return view


def model_of(sig: Signature) -> object:
    model = current_app.extensions["models"].get(sig.model)
    if model is None:
        raise ServiceUnavailable(f"the model {sig.model!r} is not loaded; see /readyz")
    return model


def call(sig: Signature, args: tuple, where: str = "") -> object:
    """sig.func(*args): its domain errors (ValueError, ArithmeticError) are the client's, a 400;
    anything else is a bug of the function, a 500 whose traceback goes to the log."""
    try:
        return sig.func(*args)
    except (ValueError, ArithmeticError) as error:
        raise BadRequest(f"{where}{error}") from error
    except HTTPException:
        raise
    except Exception as error:
        current_app.logger.exception("%s failed", sig.name)
        raise InternalServerError(
            f"{sig.name} failed with {type(error).__name__}; the server log has the traceback"
        ) from error


def call_rows(sig: Signature, prefix: tuple, rows: list[list], batch: bool) -> object:
    """call_each, timed: the time inside the function(s) and the batch size go to the metrics."""
    start = time.perf_counter()
    try:
        return call_each(sig, prefix, rows, batch)
    finally:
        seconds = time.perf_counter() - start
        model = sig.model or sig.name
        size = len(rows) if batch else None
        metrics.observe_model(current_app.extensions["metrics"], model, sig.name, size, seconds)


def call_each(sig: Signature, prefix: tuple, rows: list[list], batch: bool) -> object:
    """The function on each row of arguments: one call for a vectorised function, else one per
    row; the result of a single row, or the list of them in order for a batch."""
    if sig.vectorized:
        if not rows:
            return []
        columns = [list(column) for column in zip(*rows, strict=True)]
        results = call(sig, (*prefix, *columns))
        if not hasattr(results, "__len__") or len(results) != len(rows):
            raise InternalServerError(
                f"{sig.name} returned {describe_count(results)} for {len(rows)} item(s); "
                "a vectorised function returns one result per item"
            )
        return list(results) if batch else results[0]
    if not batch:
        return call(sig, (*prefix, *rows[0]))
    return [call(sig, (*prefix, *row), f"item {i}: ") for i, row in enumerate(rows)]


def describe_count(value: object) -> str:
    return f"{len(value)} result(s)" if hasattr(value, "__len__") else type(value).__name__


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
    return checked(param, param.name, body[param.name], where)


def checked(param: Param, name: str, value: object, where: str = "") -> object:
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
        [checked(param, f"{param.name}[{i}]", item) for i, item in enumerate(values[param.name])]
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
        row = [decoded(data, sig.draft) if p is images[0] else p.default for p in sig.params]
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


@dataclass(frozen=True)
class ImageUpload:
    data: bytes


def decode_field(value: object, draft: tuple[str, int] | None, where: str = "") -> object:
    return decoded(value.data, draft, where) if isinstance(value, ImageUpload) else value


def decoded(data: bytes, draft: tuple[str, int] | None = None, where: str = "") -> Image.Image:
    """decode_image(data, draft), its complaint a 400 (prefixed with `where` in a batch)."""
    try:
        return decode_image(data, draft, where)
    except ValueError as error:
        raise BadRequest(f"{where}{error}") from None


def decode_image(data: bytes, draft: tuple[str, int] | None = None, where: str = "") -> Image.Image:
    """The image in a PNG or JPEG file, upright as its EXIF says, or ValueError saying what is
    wrong with the file. The size is checked from the header before any pixel is decoded, and
    counted against the request's pixel budget (a 413 prefixed with `where` when it is spent).
    draft: (mode, side), a JPEG decoded at reduced scale (Endpoint.draft)."""
    if not data:
        raise ValueError("the image is empty (0 bytes)")
    opener = next((cls for prefix, cls in IMAGE_FORMATS.items() if data.startswith(prefix)), None)
    if opener is None:
        raise ValueError("not a PNG or JPEG image (the file does not start like one)")
    # The format's own class reads the header only; Image.open would also run Pillow's
    # decompression-bomb check, which warns or raises its own error: MAX_PIXELS is far lower.
    try:
        image = opener(io.BytesIO(data))
    except IMAGE_DAMAGE as error:
        raise ValueError(f"the {opener.format} header is invalid: {error}") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {MAX_PIXELS}"
        )
    charge_pixels(width * height, where)
    if draft is not None:
        mode, side = draft
        factor = math.ceil(max(width, height) / side)
        image.draft(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    try:
        image.load()
        # A phone stores a portrait photo sideways and says so in EXIF; browsers show it upright.
        ImageOps.exif_transpose(image, in_place=True)
    except IMAGE_DAMAGE as error:
        raise ValueError(f"the {opener.format} data is truncated or corrupt: {error}") from None
    return image


def charge_pixels(pixels: int, where: str = "") -> None:
    """Count an image's pixels against its request's MAX_REQUEST_PIXELS before it is decoded:
    a 413 once the request's images would hold more."""
    if not has_request_context():  # decoded() called from code, not for a request
        return
    total = g.get("decoded_pixels", 0) + pixels
    if total > MAX_REQUEST_PIXELS:
        raise RequestEntityTooLarge(
            f"{where}the images of one request hold at most {MAX_REQUEST_PIXELS} pixels "
            f"({MAX_REQUEST_PIXELS // MAX_PIXELS} of the largest); with this one they would hold "
            f"{total}"
        )
    g.decoded_pixels = total


# --- the answer ----------------------------------------------------------------------------


def result_response(sig: Signature, result: object) -> Response:
    """{"result": ...} as JSON: numpy values become plain numbers and lists; NaN, Infinity or
    a value JSON cannot hold is the function's fault, a 500 naming it, with a log line."""
    try:
        return json_response({"result": result})
    except (TypeError, ValueError) as error:
        current_app.logger.exception("%s returned a value that is not JSON", sig.name)
        problem = "NaN or Infinity" if isinstance(error, ValueError) else str(error)
        raise InternalServerError(
            f"{sig.name} returned a result that JSON cannot carry: {shorten(problem, 80)}"
        ) from error


def plain(value: object) -> object:
    """json.dumps' fallback: numpy scalars and arrays, tuples inside them, as plain values."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"a {type(value).__name__} is not JSON")


def json_response(payload: dict, status: int = 200) -> Response:
    """payload as JSON, with json.dumps' default spacing: {"result": 8.86226925452758}."""
    # allow_nan=False: NaN and Infinity are not JSON; emitting them would break clients silently.
    body = json.dumps(payload, allow_nan=False, default=plain) + "\n"
    return Response(body, status, mimetype=JSON_TYPE)


def allow_cross_origin(response: Response, allowed: frozenset[str]) -> Response:
    """CORS headers for a browser on an allowed origin ("*": any); none for the others."""
    origin = request.headers.get("Origin")
    if origin and ("*" in allowed or origin in allowed):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        response.headers["Access-Control-Max-Age"] = "600"
        # A page on another origin may read the request's id, to quote it. (nginx's own errors,
        # its 429 among them, carry no CORS headers: such a page sees a network error.)
        response.headers["Access-Control-Expose-Headers"] = "X-Request-Id"
    response.headers.add("Vary", "Origin")  # the answer depends on Origin: caches keep them apart
    return response


# --- errors ----------------------------------------------------------------------------------


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


def shorten(text: str, limit: int = 40) -> str:
    """Echo at most `limit` characters of client input back in a message."""
    return text if len(text) <= limit else text[:limit] + "..."


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


# --- the OpenAPI document ------------------------------------------------------------------


def error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def result_content(schema: dict, example: object = None) -> dict:
    body = {"type": "object", "required": ["result"], "properties": {"result": schema}}
    content = {"schema": body}
    if example is not None:
        content["example"] = {"result": example}
    return {"description": "the result", "content": {JSON_TYPE: content}}


def common_errors(body: bool) -> dict:
    responses = {
        "400": error_response(
            "a parameter is missing, repeated, of the wrong type, or outside "
            "the function's domain; the message names it"
        ),
        "401": error_response("the server needs an API key and none, or a wrong one, was sent"),
        "413": error_response(
            "the body, a list, a batch or the pixels of a request's images are over their limit"
        ),
        "429": error_response(
            "too many requests from this client, or in all (nginx's limits); "
            "Retry-After says when to try again"
        ),
        "431": error_response("a request header line is over 8 KB"),
        "default": error_response(
            "any other error (404, 405, 500, 502, 503, 504), always with a message"
        ),
    }
    if body:
        responses["415"] = error_response("the body is not of a Content-Type this endpoint takes")
    else:
        responses["414"] = error_response("the request line is over 8 KB")
    return responses


def openapi(signatures: list[Signature]) -> dict:
    """The OpenAPI 3 document of the API, generated from the registry's type hints."""
    paths = {
        "/": {"get": page_operation("the demo page", "text/html")},
        "/docs": {
            "get": page_operation("this document, to read and try in a browser", "text/html")
        },
        "/healthz": {"get": status_operation("the service is up")},
        "/readyz": {
            "get": status_operation("every model is loaded (503 names those that are not)")
        },
    }
    for sig in signatures:
        operations = {"post": post_operation(sig)}
        if not sig.takes_images:
            operations = {"get": get_operation(sig), **operations}
        paths[f"/{sig.name}"] = operations
        paths[f"/v1/{sig.name}"] = {"$ref": "#/paths/~1" + sig.name}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "modelserver",
            "version": "1.0.0",
            "description": "Python functions served over HTTP. Every error is JSON "
            '{"message": ...} naming the problem.',
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Result": {"type": "object", "required": ["result"]},
                "Error": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {"message": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
            "securitySchemes": API_KEY_SCHEME,
        },
        # A key, or none: the server needs one only when its key file holds any.
        "security": [{"apiKey": []}, {}],
    }


# The API key as the document declares it: Swagger UI at /docs then has an Authorize button.
API_KEY_SCHEME = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "a key from the server's key file ($MODELSERVER_API_KEYS_FILE); "
        "needed only when that file holds any",
    }
}


def page_operation(summary: str, media: str) -> dict:
    return {
        "summary": summary,
        "responses": {
            "200": {"description": summary, "content": {media: {"schema": {"type": "string"}}}}
        },
    }


def status_operation(summary: str) -> dict:
    schema = {"type": "object", "required": ["status"]}
    return {
        "summary": summary,
        "responses": {
            "200": {"description": summary, "content": {JSON_TYPE: {"schema": schema}}},
            "503": error_response("not ready"),
        },
    }


def describe(sig: Signature) -> dict:
    text = {"summary": sig.summary}
    if sig.description:
        text["description"] = sig.description
    return text


def get_operation(sig: Signature) -> dict:
    parameters = []
    for param in sig.params:
        item = {
            "name": param.name,
            "in": "query",
            "required": param.required,
            "schema": openapi_schema(param.schema()),
            "example": param.example(),
        }
        if param.is_list:  # ?values=1.5&values=2
            item.update(style="form", explode=True)
        parameters.append(item)
    responses = {"200": result_content(openapi_schema(sig.returns)), **common_errors(False)}
    return {**describe(sig), "parameters": parameters, "responses": responses}


def post_operation(sig: Signature) -> dict:
    one = openapi_schema(sig.returns)
    results = {"anyOf": [one, {"type": "array", "items": one}]} if one else {}
    responses = {"200": result_content(results), **common_errors(True)}
    if sig.model is not None:
        responses["503"] = error_response(f"the model {sig.model!r} is not loaded")
    return {**describe(sig), "requestBody": request_body(sig), "responses": responses}


def arguments_schema(sig: Signature) -> dict:
    schema = {
        "type": "object",
        "properties": {p.name: openapi_schema(p.schema()) for p in sig.params},
        "additionalProperties": False,
    }
    required = [p.name for p in sig.params if p.required]
    if required:
        schema["required"] = required
    return schema


def request_body(sig: Signature) -> dict:
    """A JSON object of arguments, or a list of them (a batch); images as a file or a form."""
    if sig.takes_images:
        form = arguments_schema(sig)
        for name, schema in form["properties"].items():
            if schema.get("format") == "binary":
                form["properties"][name] = {
                    "type": "array",
                    "items": schema,
                    "minItems": 1,
                    "maxItems": MAX_IMAGES,
                }
        content = {"multipart/form-data": {"schema": form}}
        if len(sig.params) == 1:
            binary = {"schema": {"type": "string", "format": "binary"}}
            content = {"image/png": binary, "image/jpeg": binary, **content}
        return {"required": True, "content": content}
    one = arguments_schema(sig)
    batch = {"type": "array", "items": one, "maxItems": MAX_BATCH}
    forms = [one, batch]
    if sig.numbers_only:  # deprecated: {"a": [1, 25, 0]}
        forms.append(
            {
                "type": "object",
                "properties": {
                    p.name: {"type": "array", "items": p.kind.schema, "maxItems": MAX_BATCH}
                    for p in sig.params
                },
                "required": [p.name for p in sig.params if p.required],
                "additionalProperties": False,
                "deprecated": True,
            }
        )
    examples = {"one": {"value": {p.name: p.example() for p in sig.params}}}
    examples["batch"] = {"value": [examples["one"]["value"]] * 2}
    return {
        "required": True,
        "content": {JSON_TYPE: {"schema": {"anyOf": forms}, "examples": examples}},
    }


def openapi_schema(schema: dict) -> dict:
    """A JSON Schema from pydantic in OpenAPI 3.0's dialect: anyOf with null is nullable."""
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0], "nullable": True}
    if schema.get("type") == "array" and "items" in schema:
        schema = {**schema, "items": openapi_schema(schema["items"])}
    return schema


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
