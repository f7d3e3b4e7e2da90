"""Streamed answers: a generator's items sent one by one, each as soon as it is made.

Each item is a line of JSON, {"result": item}, as application/x-ndjson; or, for a client that
asks for text/event-stream (a browser's EventSource), a Server-Sent Event whose data is that
line. An exception of the function after the first item ends the stream with a last line
{"message": ...} (an "error" event), logged and counted; before it, it is answered as for any
call (400 for its ValueError, 500 for a bug). A client that goes away closes the generator: its
next write fails, uWSGI closes the response, and the function sees GeneratorExit at its yield.
uWSGI's harakiri bounds a whole stream, as it does any request. The request's time in the
metrics runs to its first item, as the answer starts; the model's covers all of them.
"""

import json
import time
from collections.abc import Iterator
from dataclasses import replace

from flask import Response, current_app, request
from werkzeug.exceptions import BadRequest, HTTPException

from modelserver import answers, deadline
from modelserver.calls import call_function, call_rows
from modelserver.endpoints import Signature

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
END = object()  # next()'s default: the generator is done


def stream_response(sig: Signature, prefix: tuple, rows: list[list], batch: bool) -> Response:
    """The stream of sig's generator on one row of arguments."""
    if batch:
        raise BadRequest(f"{sig.name} streams its answer: send one call, not a batch")
    metrics = current_app.extensions["metrics"]
    started = time.perf_counter()
    try:
        items = call_rows(sig, prefix, rows, batch)
        # The first item is made before the answer starts: a bad argument the function finds
        # is still a 400, a bug a 500, and not a 200 that breaks off at once.
        first = call_function(replace(sig, func=next), (items, END))
    except BaseException:
        model_time(metrics, sig, time.perf_counter() - started)
        raise
    spent = time.perf_counter() - started
    events = request.accept_mimetypes.best_match([NDJSON, EVENT_STREAM]) == EVENT_STREAM
    body = sent(sig, items, (first, spent), events, current_app.logger, metrics)
    response = Response(body, mimetype=EVENT_STREAM if events else NDJSON)
    # nginx passes this answer on as it comes instead of buffering it (this answer only).
    response.headers["X-Accel-Buffering"] = "no"
    response.headers["Cache-Control"] = "no-cache"
    return response


def sent(sig, items: Iterator, first: tuple, events: bool, logger, metrics) -> Iterator[bytes]:
    """The items as lines; a failure ends them with a message line. Closing this (a client that
    went away) closes the function's generator. first: the first item and the seconds the
    function took for it; the time it takes for all of them goes to the metrics at the end."""
    item, spent = first
    clock = time.perf_counter
    try:
        while item is not END:
            yield line({"result": item}, events, sig)
            started = clock()
            try:
                item = next(items, END)
            finally:
                spent += clock() - started
    except Exception as error:  # not GeneratorExit: a disconnect goes on to close the generator
        logger.exception("%s failed while streaming", sig.name)
        if metrics is not None:
            metrics.count(metrics.stream_errors, sig.name)
        yield line({"message": stream_error(sig, error)}, events, sig, "error")
        if isinstance(error, deadline.DeadlineExceeded):
            deadline.recycle_this_worker()
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
        model_time(metrics, sig, spent)


def model_time(metrics, sig: Signature, seconds: float) -> None:
    """The function's time for a stream, written as the stream ends: after the request's own
    count, which is taken as the answer starts (modelserver.metrics.counted)."""
    if metrics is not None:
        metrics.write_model(sig.model or sig.name, seconds)


class NotJSON(Exception):
    """An item that JSON cannot carry (NaN, Infinity, an object pydantic does not know)."""


def line(payload: dict, events: bool, sig: Signature, event: str = "") -> bytes:
    try:
        text = json.dumps(payload, allow_nan=False, default=answers.numpy_to_json)
    except (TypeError, ValueError) as error:
        problem = "NaN or Infinity" if isinstance(error, ValueError) else str(error)
        raise NotJSON(
            f"{sig.name} returned an item that JSON cannot carry: {answers.shorten(problem, 80)}"
        ) from error
    if not events:
        return (text + "\n").encode()
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


def stream_error(sig: Signature, error: Exception) -> str:
    if isinstance(error, NotJSON):
        return str(error)
    if isinstance(error, HTTPException):
        return error.description or error.name
    return f"{sig.name} failed with {type(error).__name__}; the server log has the traceback"
