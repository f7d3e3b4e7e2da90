"""Prometheus metrics of the service and request ids in its log lines.

Under uWSGI every worker counts in its own file of prometheus_client's multiprocess directory
($PROMETHEUS_MULTIPROC_DIR, set by uwsgi.ini: /run/modelserver/metrics in production), and
GET /metrics sums all the files, so the totals are those of the whole service whichever worker
answers the scrape. The files are keyed by uWSGI worker id, not by PID: a worker that is
respawned (kill -9, harakiri, max-requests, a graceful reload) opens its predecessor's file and
counts on from its values, so no total goes backwards and files do not pile up. The directory is
emptied when the service starts, never on a graceful reload.

Without uWSGI (Flask's test client, the development server) the metrics live in the process.
MODELSERVER_METRICS=0 turns all of it off: nothing is counted and /metrics is 404.
"""

import bisect
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable

from flask import Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from modelserver.serverstats import ServerCollector

try:
    import uwsgi
except ImportError:  # not under uWSGI
    uwsgi = None

ENABLED = os.environ.get("MODELSERVER_METRICS", "1") != "0"
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
# Set by modelserver/handover.py for the instance it starts beside the running one: it joins
# the service's directory (never empties it) under worker keys of its own.
WORKER_OFFSET = int(os.environ.get("MODELSERVER_METRICS_WORKER_OFFSET", "0"))

# From a fast GET (a fraction of a millisecond) to uWSGI's harakiri bound (30 s).
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
# Any other method token a client sends is counted as "other": labels stay few.
METHODS = frozenset({"GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"})
START = "modelserver.start"  # the request's start time, in its WSGI environ
CALLS = "modelserver.calls"  # the model calls a request made, in its WSGI environ
BATCHING = "modelserver.batching"  # a batched request's wait and the batch it formed, likewise
# A request's wait for its batch: from none (it came to a free model) to well past a delay.
# A value as it is stored in prometheus_client's multiprocess files (mmap_dict.py).
PACK_DOUBLE = struct.Struct("d").pack
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30)


def multiprocess() -> bool:
    """Counting in files shared by all workers: under uWSGI, with a directory given."""
    return ENABLED and uwsgi is not None and bool(MULTIPROC_DIR)


def worker_key() -> int:
    """The uWSGI worker id (0 in the master): unique among the processes running at once, and
    the same for a respawned worker as for the one it replaces. A second instance that takes
    over during a reload (modelserver/handover.py) counts beside the first with an offset."""
    return uwsgi.worker_id() + WORKER_OFFSET


def prepare_directory() -> None:
    """In the master, before any worker forks: an empty directory at service start (counters
    start at 0, as Prometheus expects after a restart); kept as it is on a graceful reload
    (uWSGI re-executes the master with UWSGI_RELOADS >= 1), and when a second instance joins it
    for a handover, so the totals go on."""
    if uwsgi.worker_id() != 0:
        return
    if os.environ.get("UWSGI_RELOADS", "0") == "0" and not WORKER_OFFSET:
        shutil.rmtree(MULTIPROC_DIR, ignore_errors=True)
    os.makedirs(MULTIPROC_DIR, exist_ok=True)


class Metrics:
    """The service's metrics; one per app."""

    def __init__(self, registry: CollectorRegistry | None):
        self.children = {}  # see child()
        self.answers = {}  # see answer()
        self.fast = registry is None  # values in the worker's files
        self.bump = bump_in_file if self.fast else bump_in_memory
        self.requests = Counter(
            "modelserver_requests",
            "HTTP requests answered by the app, by endpoint, method and status.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "modelserver_request_duration_seconds",
            "Time from the request reaching the app to its response, by endpoint.",
            ["endpoint"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.model_duration = Histogram(
            "modelserver_model_duration_seconds",
            "Time inside the model function only, per request, by model.",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "modelserver_batch_size",
            "Items per batch request, by endpoint (single-item requests are not counted).",
            ["endpoint"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        # modelserver_batch_size counts what clients send; these what the batcher made of it.
        self.formed_batch_size = Histogram(
            "modelserver_formed_batch_size",
            "Items per call of a batching endpoint's function, as the batcher formed them from "
            "the concurrent requests, by endpoint.",
            ["endpoint"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_wait = Histogram(
            "modelserver_batch_wait_seconds",
            "Time a request to a batching endpoint waited for its batch's call to start, by "
            "endpoint.",
            ["endpoint"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.stream_errors = Counter(
            "modelserver_stream_errors",
            "Streamed answers cut short by an exception after their first item, by endpoint.",
            ["endpoint"],
            registry=registry,
        )
        # Set in the master before fork; workers write 0 to their own files, so "max" is the
        # master's value.
        self.model_loaded = Gauge(
            "modelserver_model_loaded",
            "1 when the model loaded, 0 when it failed (its endpoints answer 503).",
            ["model"],
            multiprocess_mode="max",
            registry=registry,
        )

    def child(self, metric, *labels: str):
        """metric.labels(*labels), remembered: labels() takes a lock and builds its key."""
        key = (metric._name, labels)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*labels)
        return found

    def answer(self, endpoint: str, method: str, status: int) -> tuple:
        """The request counter's value and the duration histogram of one kind of answer,
        remembered: found with one lookup per request."""
        found = self.answers[endpoint, method, status] = (
            self.child(self.requests, endpoint, method, str(status))._value,
            self.child(self.duration, endpoint),
        )
        return found

    def write(
        self, endpoint: str, method: str, status: int, seconds: float, calls, batching=()
    ) -> None:
        """A request's counts and times, into the values behind the metrics' children."""
        with WRITING:
            count, duration = self.answers.get((endpoint, method, status)) or self.answer(
                endpoint, method, status
            )
            if self.fast:
                fresh_after_fork(count)
            self.bump(count, 1)
            self.observe(duration, seconds)
            for model, name, batch, model_seconds in calls:
                self.observe(self.child(self.model_duration, model), model_seconds)
                if batch is not None:
                    self.observe(self.child(self.batch_size, name), batch)
            for name, formed, wait in batching:
                self.observe(self.child(self.batch_wait, name), wait)
                if formed is not None:
                    self.observe(self.child(self.formed_batch_size, name), formed)

    def observe(self, histogram, amount: float) -> None:
        """Histogram.observe, through bump: the sum, and the first bucket that holds amount."""
        self.bump(histogram._sum, amount)
        self.bump(histogram._buckets[bisect.bisect_left(histogram._upper_bounds, amount)], 1)


def bump_in_file(value, amount: float) -> None:
    """A multiprocess value's inc(), less its lock and its fork check on every write (a worker
    answers one request at a time, and fresh_after_fork() checks once per request), and less
    the library's two calls to write it: the new value goes straight to its 8 bytes of the
    worker's file, where the library put it on its first write (its timestamp stays 0.0)."""
    value._value += amount
    file = value._file
    position = file._positions.get(value._key)
    if position is None:
        file.write_value(value._key, value._value, 0.0)
    else:
        file._m[position : position + 8] = PACK_DOUBLE(value._value)


def bump_in_memory(value, amount: float) -> None:
    value.inc(amount)


WORKER = [None]  # the worker whose files the values write to
# One request's writes at a time, should a worker ever answer from more than one thread.
WRITING = threading.Lock()


def fresh_after_fork(value) -> None:
    """In a newly forked worker, one value read through the library: it sees the new worker id
    and moves every value to this worker's files, as its own inc() would."""
    key = worker_key()
    if WORKER[0] != key:
        WORKER[0] = key
        value.get()


def instrument(app: Flask, model_names: list[str], models: dict) -> None:
    """Count every request of app, record which models loaded, and serve GET /metrics."""
    if not ENABLED:
        app.extensions["metrics"] = None
        return
    registry = None
    if multiprocess():
        prepare_directory()
        # Values in the directory's files, named by worker id instead of PID (module docs).
        values.ValueClass = values.MultiProcessValue(process_identifier=worker_key)
    else:
        registry = CollectorRegistry()
    metrics = Metrics(registry)
    app.extensions["metrics"] = metrics
    for name in model_names:
        metrics.model_loaded.labels(name).set(1 if name in models else 0)
    app.wsgi_app = timed(app.wsgi_app)
    app.after_request(lambda response: count_response(metrics, response))
    app.add_url_rule("/metrics", "metrics", lambda: exposition(registry))


def timed(wsgi_app: Callable) -> Callable:
    """The WSGI app, noting when each request starts: before Flask's own work and any
    before_request check, at a fraction of a before_request function's cost."""

    def start_timer(environ: dict, start_response: Callable):
        environ[START] = time.perf_counter()
        return wsgi_app(environ, start_response)

    return start_timer


def count_response(metrics: Metrics, response: Response) -> Response:
    """One count and one duration per response the app gives, errors included, and the model
    calls the request made: all written together, once, as the response leaves."""
    current = request._get_current_object()  # once, not through the proxy at each use
    environ = current.environ
    endpoint = current.endpoint or "none"
    method = environ["REQUEST_METHOD"]
    method = method if method in METHODS else "other"
    seconds = time.perf_counter() - environ[START]
    metrics.write(
        endpoint,
        method,
        response.status_code,
        seconds,
        environ.get(CALLS, ()),
        environ.get(BATCHING, ()),
    )
    return response


def observe_model(metrics: Metrics | None, model: str, endpoint: str, batch: int | None, seconds):
    """One call of an endpoint's function(s): the time inside them, and the size of a batch
    request (None for a single item: a GET, or a POST of one); written with the response."""
    if metrics is not None:
        request.environ.setdefault(CALLS, []).append((model, endpoint, batch, seconds))


def observe_batching(metrics: Metrics | None, endpoint: str, formed: int | None, wait: float):
    """A batched request's wait for its call, and the items of the batch it led (None: it was
    in another's); written with the response."""
    if metrics is not None:
        request.environ.setdefault(BATCHING, []).append((endpoint, formed, wait))


def exposition(registry: CollectorRegistry | None) -> Response:
    """The Prometheus text format: the app's metrics summed over every worker's file, and uWSGI's
    and nginx's own figures read now."""
    if registry is None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, MULTIPROC_DIR)
        registry.register(ServerCollector())
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
