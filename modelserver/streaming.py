"""Streamed answers: a generator's items sent one by one, each as soon as it is made.

Each item is a line of JSON, {"result": item}, as application/x-ndjson; or, for a client that
asks for text/event-stream (a browser's EventSource), a Server-Sent Event whose data is that
line, and at the end an "end" event, on which the page closes its EventSource (else the browser
connects again and the function runs again). An exception of the function after the first item
ends the stream with a last line {"message": ...} (an "error" event), logged with the request's
id and counted; before it, it is answered as for any call (400 for its ValueError, 500 for a bug
or a first item JSON cannot carry). A client that goes away closes the generator: its next
write fails, uWSGI closes the response, and the function sees GeneratorExit at its yield.
uWSGI's harakiri bounds a whole stream, as it does any request. The request's time in the
metrics runs to its first item, as the answer starts; the model's covers all of them.
"""

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from flask import Response, current_app, request
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError

from modelserver import answers, deadline
from modelserver.calls import call_function, call_rows
from modelserver.endpoints import Signature
from modelserver.requestids import REQUEST_ID

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
END = object()  # next()'s default: the generator is done
END_EVENT = b"event: end\ndata: {}\n\n"  # an event without data is not dispatched


@dataclass
class Stream:
    """One streamed answer, sent after its request has left Flask: what it needs of it."""

    sig: Signature
    items: Iterator  # the function's generator
    events: bool  # Server-Sent Events, else lines of JSON
    logger: logging.Logger
    metrics: object  # modelserver.metrics.Metrics, or None when counting is off
    request_id: str
    spent: float  # seconds inside the function so far


def stream_response(sig: Signature, prefix: tuple, rows: list[list], batch: bool) -> Response:
    """The stream of sig's generator on one row of arguments."""
    if batch:
        raise BadRequest(f"{sig.name} streams its answer: send one call, not a batch")
    metrics = current_app.extensions["metrics"]
    events = request.accept_mimetypes.best_match([NDJSON, EVENT_STREAM]) == EVENT_STREAM
    started = time.perf_counter()
    try:
        items = call_rows(sig, prefix, rows, batch)
        # The first item is made, and written, before the answer starts: a bad argument the
        # function finds is still a 400, a bug or an item JSON cannot carry a 500, and not a
        # 200 that breaks off at once.
        first = call_function(replace(sig, func=next), (items, END))
        head = b"" if first is END else line({"result": first}, events, sig)
    except BaseException as error:
        model_time(metrics, sig, time.perf_counter() - started)
        if not isinstance(error, NotJSON):
            raise
        close(items)
        current_app.logger.error("%s", error)
        raise InternalServerError(str(error)) from None
    stream = Stream(
        sig,
        items,
        events,
        current_app.logger,
        metrics,
        request.environ.get(REQUEST_ID, "-"),
        time.perf_counter() - started,
    )
    response = Response(sent(stream, head), mimetype=EVENT_STREAM if events else NDJSON)
    # nginx passes this answer on as it comes instead of buffering it (this answer only).
    response.headers["X-Accel-Buffering"] = "no"
    response.headers["Cache-Control"] = "no-cache"
    return response


def sent(stream: Stream, head: bytes) -> Iterator[bytes]:
    """head (the first item's line, b"" for none), then the others as they come; a failure ends
    them with a message line. Closing this (a client that went away) closes the function's
    generator. The function's time for all of them goes to the metrics at the end."""
    sig, items, clock = stream.sig, stream.items, time.perf_counter
    try:
        if head:
            yield head
            while True:
                started = clock()
                try:
                    item = next(items, END)
                finally:
                    stream.spent += clock() - started
                if item is END:
                    break
                yield line({"result": item}, stream.events, sig)
        if stream.events:
            yield END_EVENT
    except Exception as error:  # not GeneratorExit: a disconnect goes on to close the generator
        stream.logger.exception(
            "%s failed while streaming", sig.name, extra={"request_id": stream.request_id}
        )
        if stream.metrics is not None:
            stream.metrics.count(stream.metrics.stream_errors, sig.name)
        yield line({"message": stream_error(sig, error)}, stream.events, sig, "error")
        if isinstance(error, deadline.DeadlineExceeded):
            deadline.recycle_this_worker()
    finally:
        close(items)
        model_time(stream.metrics, sig, stream.spent)


def close(items: Iterator) -> None:
    method = getattr(items, "close", None)
    if method is not None:
        method()


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
        raise NotJSON(
            f"{sig.name} returned an item that JSON cannot carry: {answers.not_json(error)}"
        ) from error
    if not events:
        return (text + "\n").encode()
    return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()


def stream_error(sig: Signature, error: Exception) -> str:
    if isinstance(error, NotJSON):
        return str(error)
    if isinstance(error, HTTPException):
        return error.description or error.name
    if isinstance(error, ValueError | ArithmeticError):  # the client's, as before the first item
        return str(error)
    return f"{sig.name} failed with {type(error).__name__}; the server log has the traceback"
