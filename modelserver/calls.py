"""Calling an endpoint's function on rows of arguments: one call, a batch, timed."""

import time
from collections.abc import Mapping, Sequence

import numpy as np
from flask import current_app
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    ServiceUnavailable,
)

from modelserver import batching, metrics
from modelserver.deadline import seconds_left
from modelserver.endpoints import Signature


def one_per_item(results: object) -> bool:
    """Whether a vectorised function's result reads, as a list, as its items in order: a
    sequence, an array of one dimension or more (numpy's, or one that converts to it: a pandas
    Series, a tensor). A dict or a DataFrame has a length too, but reads as its keys or column
    names; text as its characters."""
    if isinstance(results, Mapping | str | bytes) or hasattr(results, "columns"):
        return False
    if isinstance(results, np.ndarray):
        return results.ndim >= 1
    return isinstance(results, Sequence) or hasattr(results, "__array__")


def model_of(sig: Signature) -> object:
    model = current_app.extensions["models"].get(sig.model)
    if model is None:
        raise ServiceUnavailable(f"the model {sig.model!r} is not loaded; see /readyz")
    return model


def call_function(sig: Signature, args: tuple) -> object:
    """sig.func(*args); an exception of it answered as failure() says."""
    try:
        return sig.func(*args)
    except HTTPException:
        raise
    except Exception as error:
        raise failure(sig, error) from error


def call_each(sig: Signature, prefix: tuple, rows: list[list]) -> list:
    """sig.func on each row, in order; the first exception answered as failure() says, naming
    its item. One try around the loop, not a call_function per item, whose frame costs a cheap
    function as much as its own work."""
    func, results = sig.func, []
    try:
        for row in rows:
            results.append(func(*prefix, *row))
    except HTTPException:
        raise
    except Exception as error:
        raise failure(sig, error, f"item {len(results)}: ") from error
    return results


def failure(sig: Signature, error: Exception, where: str = "") -> HTTPException:
    """The answer to an exception of the function: its domain errors (ValueError,
    ArithmeticError) are the client's, a 400; anything else is a bug of the function, a 500
    whose traceback goes to the log (called while the exception is handled)."""
    if isinstance(error, (ValueError, ArithmeticError)):
        return BadRequest(f"{where}{error}")
    current_app.logger.exception("%s failed", sig.name)
    return InternalServerError(
        f"{sig.name} failed with {type(error).__name__}; the server log has the traceback"
    )


def call_timed(sig: Signature, prefix: tuple, rows: list[list], batch: bool) -> object:
    """call_rows, timed: the time inside the function(s) and the batch size go to the metrics."""
    if sig.max_batch_size and rows and batching.concurrent_requests():
        return call_batched(sig, prefix, rows, batch)
    start = time.perf_counter()
    try:
        return call_rows(sig, prefix, rows, batch)
    finally:
        seconds = time.perf_counter() - start
        model = sig.model or sig.name
        size = len(rows) if batch else None
        metrics.observe_model(model, sig.name, size, seconds)


def call_batched(sig: Signature, prefix: tuple, rows: list[list], batch: bool) -> object:
    """The rows answered in one call with those of the requests running beside this one
    (modelserver.batching); the metrics get the call's time, the size of the batch it formed
    and how long this request waited for it."""
    batcher = batching.batcher_of(
        sig.name, sig.max_batch_size, sig.max_batch_delay_ms / 1000, sig.preferred_batch_size
    )
    deadline = time.perf_counter() + seconds_left()
    pending = batcher.submit(
        rows, lambda batch_rows: call_rows(sig, prefix, batch_rows, True), deadline
    )
    seconds = time.perf_counter() - pending.started
    wait = pending.started - pending.arrived
    size = len(rows) if batch else None
    metrics.observe_model(sig.model or sig.name, sig.name, size, seconds)
    metrics.observe_batching(sig.name, pending.batch_items or None, wait)
    if pending.error is not None:
        raise pending.error
    return pending.results if batch else pending.results[0]


def call_rows(sig: Signature, prefix: tuple, rows: list[list], batch: bool) -> object:
    """The function on each row of arguments: one call for a vectorised function, else one per
    row; the result of a single row, or the list of them in order for a batch."""
    if sig.vectorized:
        if not rows:
            return []
        columns = [list(column) for column in zip(*rows, strict=True)]
        results = call_function(sig, (*prefix, *columns))
        if not one_per_item(results):
            raise InternalServerError(
                f"{sig.name} returned a value of type {type(results).__name__} for {len(rows)} "
                "item(s); a vectorised function returns a list or an array of one result per item"
            )
        if len(results) != len(rows):
            raise InternalServerError(
                f"{sig.name} returned {len(results)} result(s) for {len(rows)} item(s); "
                "a vectorised function returns one result per item"
            )
        return list(results) if batch else results[0]
    if not batch:
        return call_function(sig, (*prefix, *rows[0]))
    return call_each(sig, prefix, rows)
