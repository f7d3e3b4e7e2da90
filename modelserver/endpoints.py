"""The served thing: serve() declares an endpoint, signature_of() checks it at startup."""

import functools
import inspect
import re
import typing
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
from pydantic import BaseModel, PydanticSchemaGenerationError, TypeAdapter

from modelserver import eventloop
from modelserver.batching import check_batching
from modelserver.hints import SUPPORTED, Param, is_model, make_param, type_name
from modelserver.jsonread import from_json, holds


@dataclass(frozen=True)
class Endpoint:
    """A function and how it is served; serve() makes one, a plain function in ENDPOINTS is
    the same as serve(function)."""

    func: Callable
    # Called once, in the uWSGI master before the workers fork; its result is passed to the
    # function's parameter `model`. The model is named after it: load_iris -> "iris".
    model: Callable[[], object] | None = None
    # The function takes a whole batch in one call: each parameter is a list (list[float] for a
    # float per item) and it returns one result per item, in order (scikit-learn's predict).
    vectorized: bool = False
    # (mode, side): the least the function needs of its images. A JPEG is decoded straight to
    # that mode ("L" or "RGB") at the smallest reduced scale whose longer side is still at least
    # `side` (Pillow's Image.draft); other formats come whole. None: every image whole.
    draft: tuple[str, int] | None = None
    # A vectorised function only: concurrent requests to it (single items and small batches) are
    # answered together by one call of at most this many items (modelserver.batching). None:
    # one call per request.
    max_batch_size: int | None = None
    # The longest the first request of a batch waits for others to join it; 0: none, the batch
    # is what is already waiting when the function is free.
    max_batch_delay_ms: float = 0
    # Item counts a call is cut back to where the queued requests make one (Triton's name, not
    # its timing: modelserver.batching): for a model whose call costs less at some sizes than at
    # those just above them, as OpenBLAS's float32 products at multiples of 4 rows on x86
    # (docs/batching.md). Empty or None: every call takes all it can.
    preferred_batch_size: list[int] | tuple[int, ...] | range | None = ()
    # Where the model loads. "master": once, before the workers fork; they share its memory
    # (numpy, scikit-learn). "worker": in each worker after its fork, a copy each; for libraries
    # that start threads (onnxruntime, torch, OpenMP), which a fork leaves behind.
    load: str = "master"


LOADS = ("master", "worker")


def serve(
    func: Callable,
    *,
    model: Callable[[], object] | None = None,
    vectorized: bool = False,
    draft: tuple[str, int] | None = None,
    max_batch_size: int | None = None,
    max_batch_delay_ms: float = 0,
    preferred_batch_size: list[int] | tuple[int, ...] | range | None = (),
    load: str = "master",
) -> Endpoint:
    """An ENDPOINTS entry: func, the loader of the model it needs, whether it is vectorised,
    the least it needs of its images, and how concurrent requests are batched (see Endpoint)."""
    return Endpoint(
        func,
        model=model,
        vectorized=vectorized,
        draft=draft,
        max_batch_size=max_batch_size,
        max_batch_delay_ms=max_batch_delay_ms,
        preferred_batch_size=preferred_batch_size,
        load=load,
    )


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
    # A generator (plain or async): answered as a stream of items, `returns` each item's schema.
    streams: bool = False
    # The return hint, for the document's schema of a result (None: not given).
    returns_hint: object = None
    max_batch_size: int | None = None  # Endpoint.max_batch_size
    max_batch_delay_ms: float = 0  # Endpoint.max_batch_delay_ms
    preferred_batch_size: frozenset[int] = frozenset()  # Endpoint.preferred_batch_size

    @property
    def takes_images(self) -> bool:
        return any(param.is_image for param in self.params)

    @property
    def takes_uploads(self) -> bool:
        """An image, bytes or a File: the body is the upload or a multipart form (POST only)."""
        return any(param.upload is not None for param in self.params)

    @property
    def takes_query(self) -> bool:
        """Callable with a GET: no upload, and every required parameter fits a query string (a
        function of a model or a matrix is POST only, as one of images is)."""
        return not self.takes_uploads and all(p.in_query for p in self.params if p.required)

    @property
    def numbers_only(self) -> bool:
        """Every parameter a single number: the {"a": [1, 25]} batch form applies (deprecated)."""
        return all(
            param.kind.schema.get("type") in ("number", "integer") for param in self.params
        ) and (not any(param.is_list for param in self.params))


# An ENDPOINTS name is a path segment: /NAME and /v1/NAME. Not one the service answers itself
# (probes, metrics, the document, the docs) or nginx serves from disk (static/).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RESERVED_NAMES = frozenset({"healthz", "readyz", "metrics", "openapi.json", "docs", "static", "v1"})


def signature_of(name: str, entry: Callable | Endpoint) -> Signature:
    """The Signature of an ENDPOINTS entry, checked at startup: TypeError says what is wrong."""
    endpoint = entry if isinstance(entry, Endpoint) else Endpoint(entry)
    func = endpoint.func
    where = f"ENDPOINTS[{name!r}] ({getattr(func, '__qualname__', func)!r})"
    check_name(name, where)
    if not callable(func):
        raise TypeError(f"{where}: not a function")
    try:
        hints = typing.get_type_hints(func, include_extras=True)  # Field() constraints kept
    except Exception as error:  # a hint naming what does not exist: the user's code to fix
        raise TypeError(f"{where}: its type hints cannot be read: {error}") from error
    parameters = served_parameters(endpoint, where)
    params = [param_of(where, parameter, hints, endpoint.vectorized) for parameter in parameters]
    if endpoint.load not in LOADS:
        raise TypeError(f"{where}: load is 'master' or 'worker'; got {endpoint.load!r}")
    check_images(where, endpoint, params)
    if len(params) == 1 and is_model(hints[params[0].name]) and not endpoint.vectorized:
        # FastAPI's way: a function of one model takes the body as that model.
        body_model = hints[params[0].name]
        params[0] = replace(params[0], whole_body=True, body_fields=body_fields(body_model))
    preferred = check_batching(where, endpoint)
    streams = eventloop.streams(func)
    if streams and endpoint.vectorized:
        raise TypeError(
            f"{where}: a generator streams the items of one call; it cannot be vectorised"
        )
    returns_hint = result_hint(where, endpoint, hints, streams)
    doc = inspect.getdoc(func) or name
    summary, _, description = doc.partition("\n")
    keywords = tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)
    return Signature(
        name,
        # An async def runs on the worker's loop (modelserver.eventloop).
        by_name(eventloop.plain(func), keywords),
        tuple(params),
        model=None if endpoint.model is None else model_name(endpoint.model),
        vectorized=endpoint.vectorized,
        draft=endpoint.draft,
        returns=result_schema(where, returns_hint),
        summary=summary.strip(),
        description=description.strip(),
        streams=streams,
        returns_hint=returns_hint,
        max_batch_size=endpoint.max_batch_size,
        max_batch_delay_ms=endpoint.max_batch_delay_ms,
        preferred_batch_size=preferred,
    )


def check_name(name: object, where: str) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise TypeError(
            f"{where}: not a name to serve at /NAME: use letters, digits, '-', '_' and '.', "
            f"starting with a letter or digit, and none of {', '.join(sorted(RESERVED_NAMES))}"
        )


def served_parameters(endpoint: Endpoint, where: str) -> list[inspect.Parameter]:
    """The function's parameters a request fills: all but the model's, which comes first."""
    parameters = list(inspect.signature(endpoint.func).parameters.values())
    if endpoint.model is None:
        return parameters
    check_loader(endpoint.model, where)
    if not parameters or parameters[0].name != "model":
        raise TypeError(
            f"{where}: serve(..., model=...) passes the model as the first "
            "parameter, which must be named 'model'"
        )
    return parameters[1:]


def check_loader(loader: object, where: str) -> None:
    """model= is a function the service calls with no arguments: a model itself, or a loader
    that needs an argument, would only fail once loading, its endpoints 503 for good."""
    loading = inspect.isroutine(loader) or inspect.isclass(loader)
    if not (loading or isinstance(loader, functools.partial)):  # a model, callable or not
        raise TypeError(
            f"{where}: model= takes the model's loader, a function of no arguments called once "
            f"(serve(f, model=load_x)), not a {type(loader).__name__}"
        )
    try:
        inspect.signature(loader).bind()
    except TypeError:
        raise TypeError(
            f"{where}: model={getattr(loader, '__name__', loader)!r} is called with no "
            "arguments; give its parameters defaults, or wrap it: def load_x(): return ..."
        ) from None
    except ValueError:  # a builtin whose signature Python cannot tell: called as it is
        pass


def param_of(where: str, parameter: inspect.Parameter, hints: dict, vectorized: bool) -> Param:
    label = f"{where}, parameter {parameter.name!r}"
    if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
        raise TypeError(f"{label}: *args and **kwargs cannot be served; name each parameter")
    if parameter.name not in hints:
        if parameter.name == "model":  # a loaded model, without its loader named
            raise TypeError(
                f"{label} has no type hint; for a model loaded once, name its loader: "
                "serve(f, model=load_x)"
            )
        raise TypeError(f"{label} has no type hint; give it one of {SUPPORTED}")
    return make_param(label, parameter, hints[parameter.name], vectorized)


def check_images(where: str, endpoint: Endpoint, params: list[Param]) -> None:
    """What draft= asks of the images, and how many a vectorised function takes, fit it."""
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


def result_hint(where: str, endpoint: Endpoint, hints: dict, streams: bool) -> object:
    """The hint of one result: of each item of a stream, of each item's of a vectorised call."""
    hint = item_hint(hints.get("return")) if streams else hints.get("return")
    if endpoint.vectorized and typing.get_origin(hint) is list:
        (hint,) = typing.get_args(hint)
    elif endpoint.vectorized and one_value(hint):
        one = type_name(hint)
        raise TypeError(
            f"{where}: a vectorised function returns one result per item, a list or an array: "
            f"list[{one}], not {one}"
        )
    return hint


def body_fields(model: type[BaseModel]) -> tuple[str, ...] | None:
    """The top-level names a model of the whole body takes (its fields and their aliases) when
    its config does not say what to do with others: then, as for a function's parameters,
    another name is a typo to refuse, not data to drop. None when the config says (extra=...),
    or when an alias is a path or a choice."""
    config = model.model_config
    if config.get("extra") is not None:
        return None
    by_name = config.get("populate_by_name") or config.get("validate_by_name")
    names = set()
    for name, info in model.model_fields.items():
        aliases = [alias for alias in (info.alias, info.validation_alias) if alias is not None]
        if not all(isinstance(alias, str) for alias in aliases):
            return None
        names.update(aliases if aliases and not by_name else (name, *aliases))
    return tuple(sorted(names))


def model_name(loader: Callable[[], object]) -> str:
    """A model is named after its loader, less "load_": load_iris -> "iris"."""
    return getattr(loader, "__name__", "model").removeprefix("load_")


def by_name(func: Callable, keywords: tuple[str, ...]) -> Callable:
    """func as the server calls every function, its arguments in order, when its last
    parameters (keywords) are keyword-only (def f(x, *, k))."""
    if not keywords:
        return func
    count = len(keywords)

    @functools.wraps(func)
    def call(*args):
        return func(*args[:-count], **dict(zip(keywords, args[-count:], strict=True)))

    return call


def one_value(hint: object) -> bool:
    """Whether a return hint is of one value, never of several: a number, a string, a dict, a
    model."""
    origin = typing.get_origin(hint) or hint
    return origin in (float, int, bool, str, dict) or is_model(hint)


def result_schema(where: str, hint: object) -> dict:
    """The JSON Schema of one result, from the return hint where pydantic knows the type (numpy
    arrays as lists); {} (any JSON) for numpy's numbers, answered as plain ones, and for hints
    pydantic reads but has no schema for. TypeError for a class the answer cannot turn into
    JSON (a tokenizer, a tensor): every call would fail; and for bytes, which fail unless UTF-8."""
    if hint is None:
        return {}
    try:
        schema = TypeAdapter(from_json(hint)).json_schema(mode="serialization")
    except PydanticSchemaGenerationError as error:
        if holds_numpy(hint):
            return {}
        raise TypeError(
            f"{where}: its return type {hint!r} cannot be answered as JSON; return plain "
            "values, lists, dicts, numpy values, pydantic models or dataclasses"
        ) from error
    except Exception:  # pydantic has no JSON Schema for it (a Callable, a typing.TypedDict)
        return {}
    if holds(schema, lambda part: part.get("format") == "binary"):  # pydantic's bytes
        raise TypeError(
            f"{where}: its return type {hint!r} holds bytes, which JSON carries only as UTF-8 "
            "text: any other bytes (an image, a file) would fail the call; return base64 text "
            "(base64.b64encode(data).decode()) or a list of numbers"
        )
    return schema


def holds_numpy(hint: object) -> bool:
    """Whether hint is, or holds, one of numpy's types (np.float32, np.ndarray)."""
    if isinstance(hint, type) and issubclass(hint, np.generic | np.ndarray):
        return True
    return any(holds_numpy(arg) for arg in typing.get_args(hint))


def item_hint(hint: object) -> object:
    """Iterator[X], Generator[X, ...], AsyncIterator[X] -> X: what a generator yields."""
    origin = typing.get_origin(hint)
    if (
        isinstance(origin, type)
        and issubclass(origin, Iterable | AsyncIterable)
        and typing.get_args(hint)
    ):
        return typing.get_args(hint)[0]
    return None
