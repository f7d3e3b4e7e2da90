"""Prometheus metrics of the service: every request counted and timed, served at /metrics.

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

import glob
import os
import shutil
import threading
import time
from collections.abc import Callable

from flask import Flask, Response
from flask.globals import _cv_app, _cv_request
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

from modelserver import metricfiles
from modelserver.batching import concurrent_requests
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
# A request's wait for its batch: from none (it came to a free model) to well past a delay.
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
    for a handover, so the totals go on. On a reload the gauges go, as they are not totals but
    the models' states, which the reloaded master sets anew: a model the new code no longer has
    would be reported until the next restart. (Not when a second instance joins: if its code
    fails, the running one goes on, and its states with it.)"""
    if uwsgi.worker_id() != 0:
        return
    if not WORKER_OFFSET:
        if os.environ.get("UWSGI_RELOADS", "0") == "0":
            shutil.rmtree(MULTIPROC_DIR, ignore_errors=True)
        for gauges in glob.glob(os.path.join(MULTIPROC_DIR, "gauge_*.db")):
            os.remove(gauges)
    os.makedirs(MULTIPROC_DIR, exist_ok=True)


class Metrics:
    """The service's metrics; one per app."""

    def __init__(self, registry: CollectorRegistry | None, threads: bool = True):
        """registry: None to count in the worker's files (uWSGI); threads: whether requests
        may be answered side by side, each then writing alone."""
        self.in_files = registry is None
        # Made on a worker's first requests, never in the master, which answers none: so each
        # worker's slots are in its own files (metricfiles.where()).
        self.slots = {}  # see slot()
        self.answers = {}  # see answer()
        self.models = {}  # see model()
        self.lock = threading.Lock()
        # In a worker with threads each write takes the lock: those of a kind of answer and of
        # a model's calls (answer(), model()), and a batch's (write_batch_size, write_batching).
        self.threads = threads
        self.write_batch_size, self.write_batching = self.batch_written, self.batching_written
        if threads:
            self.write_batch_size = locked(self.write_batch_size, self.lock)
            self.write_batching = locked(self.write_batching, self.lock)
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

    def slot(self, metric, *labels: str):
        """Where one child of metric (metric.labels(*labels)) is counted, remembered: labels()
        takes a lock and builds its key. Under uWSGI, indexes into this worker's file."""
        key = (metric._name, labels)
        found = self.slots.get(key)
        if found is None:
            child = metric.labels(*labels)
            found = self.slots[key] = metricfiles.in_file(child) if self.in_files else child
        return found

    def answer(self, endpoint: str, method: str, status: int) -> Callable[[float], None]:
        """The write of one kind of answer, the request's count and its time, remembered:
        counted() finds it with one lookup a request. Under uWSGI straight into the worker's
        files; else through the library's children, which lock each value."""
        count = self.slot(self.requests, endpoint, method, str(status))
        duration = self.slot(self.duration, endpoint)
        if self.in_files:
            found = metricfiles.observer(duration, count)
        else:

            def found(seconds: float) -> None:
                count.inc(1.0)
                duration.observe(seconds)

        found = self.answers[endpoint, method, status] = self.one_at_a_time(found)
        return found

    def model(self, name: str) -> Callable[[float], None]:
        """The write of a model call's time, remembered under the model's name alone."""
        histogram = self.slot(self.model_duration, name)
        found = metricfiles.observer(histogram) if self.in_files else histogram.observe
        found = self.models[name] = self.one_at_a_time(found)
        return found

    def write_model(self, name: str, seconds: float) -> None:
        """A model's time outside the request's own writes (a stream's, as it ends)."""
        (self.models.get(name) or self.model(name))(seconds)

    def one_at_a_time(self, write: Callable) -> Callable:
        """write, taking the lock when requests are answered side by side."""
        return locked(write, self.lock) if self.threads else write

    def batch_written(self, endpoint: str, items: int) -> None:
        """The items of a batch request."""
        self.slot(self.batch_size, endpoint).observe(items)

    def batching_written(self, endpoint: str, formed: int | None, wait: float) -> None:
        """A batched request's wait for its call, and the items of the batch it led."""
        self.slot(self.batch_wait, endpoint).observe(wait)
        if formed is not None:
            self.slot(self.formed_batch_size, endpoint).observe(formed)

    def count(self, counter, *labels: str) -> None:
        """One more of a counter's child, outside a request's writes (a stream's failure)."""
        with self.lock:
            self.slot(counter, *labels).inc(1.0)


def locked(write: Callable, lock: threading.Lock) -> Callable:
    """write, one request's writes at a time: for a worker that answers from several threads."""

    def write_locked(*args) -> None:
        with lock:
            write(*args)

    return write_locked


def instrument(app: Flask, model_names: list[str], models: dict) -> None:
    """Count every request of app, record which models loaded, and serve GET /metrics."""
    if not ENABLED:
        app.extensions["metrics"] = None
        return
    if multiprocess():
        prepare_directory()
        # Values in the directory's files, named by worker id instead of PID (module docs).
        values.ValueClass = values.MultiProcessValue(process_identifier=worker_key)
        metrics = Metrics(None, concurrent_requests())
        registry = None
    else:
        registry = CollectorRegistry()
        metrics = Metrics(registry)
    app.extensions["metrics"] = metrics
    for name in model_names:
        metrics.model_loaded.labels(name).set(1 if name in models else 0)
    app.wsgi_app = counted(app, metrics)
    app.add_url_rule("/metrics", "metrics", lambda: exposition(registry))


def counted(flask_app: Flask, metrics: Metrics) -> Callable:
    """flask_app's WSGI entry point with every answer it gives counted and timed, errors
    included, as the answer leaves Flask; the model calls it makes are written as they end,
    through RECORD. It is Flask.wsgi_app (Flask 3.1) with the count inline: a WSGI wrapper around
    it would cost every request a layer (a closure, a call of it, the status parsed back from
    its text) that a worker under load pays several times over (docs/performance.md). Timed
    from before Flask's own work and any before_request check."""
    answers, answer, record, clock = metrics.answers, metrics.answer, RECORD, time.perf_counter
    request_context = flask_app.request_context
    full_dispatch_request = flask_app.full_dispatch_request
    handle_exception = flask_app.handle_exception

    def app(environ: dict, start_response: Callable):
        started = clock()
        record.metrics = metrics
        ctx = request_context(environ)
        error: BaseException | None = None
        try:
            try:
                ctx.push()
                response = full_dispatch_request()
            except Exception as e:
                error = e
                response = handle_exception(e)
            except BaseException as e:
                error = e
                raise
            rule = ctx.request.url_rule
            method = environ["REQUEST_METHOD"]
            kind = (
                "none" if rule is None else rule.endpoint,
                method if method in METHODS else "other",
                response.status_code,
            )
            (answers.get(kind) or answer(*kind))(clock() - started)
            return response(environ, start_response)
        finally:
            record.metrics = None
            if "werkzeug.debug.preserve_context" in environ:
                environ["werkzeug.debug.preserve_context"](_cv_app.get())
                environ["werkzeug.debug.preserve_context"](_cv_request.get())
            if error is not None and flask_app.should_ignore_error(error):
                error = None
            ctx.pop(error)

    return app


class Record(threading.local):
    """The metrics that count the request this thread answers (counted() sets them, None
    outside a counted request): the view's model calls reach them without Flask's proxies,
    and are written as they end rather than kept in a list per request for the answer's
    write (in a worker under load, making and reading that list cost more than writing)."""

    metrics: Metrics | None = None


class OneAtATime:
    """The same in a worker that answers one request at a time: plain attributes, which a
    worker under load reads and sets in a fraction of a thread-local's time."""

    __slots__ = ("metrics",)

    def __init__(self):
        self.metrics = None


RECORD = Record() if concurrent_requests() else OneAtATime()


def observe_model(model: str, endpoint: str, batch: int | None, seconds: float) -> None:
    """One call of an endpoint's function(s): the time inside them, and the size of a batch
    request (None for a single item: a GET, or a POST of one); written now."""
    counting = RECORD.metrics
    if counting is not None:
        (counting.models.get(model) or counting.model(model))(seconds)
        if batch is not None:
            counting.write_batch_size(endpoint, batch)


def observe_batching(endpoint: str, formed: int | None, wait: float) -> None:
    """A batched request's wait for its call, and the items of the batch it led (None: it was
    in another's); written now."""
    counting = RECORD.metrics
    if counting is not None:
        counting.write_batching(endpoint, formed, wait)


def exposition(registry: CollectorRegistry | None) -> Response:
    """The Prometheus text format: the app's metrics summed over every worker's file, and uWSGI's
    and nginx's own figures read now."""
    if registry is None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, MULTIPROC_DIR)
        registry.register(ServerCollector())
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
