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

import json
import logging
import os
import shutil
import socket
import struct
import time
from collections.abc import Callable

import flask.logging
from flask import Flask, Response, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

try:
    import uwsgi
except ImportError:  # not under uWSGI
    uwsgi = None

ENABLED = os.environ.get("MODELSERVER_METRICS", "1") != "0"
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
# nginx's stub_status, on a unix socket of its own (deploy/nginx/modelserver): the service has
# no network under systemd (PrivateNetwork=yes), but a unix socket it can reach.
NGINX_STATUS = os.environ.get("MODELSERVER_NGINX_STATUS", "/run/modelserver-nginx-status.sock")

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
# nginx passes the request's id (its $request_id, or the client's sane X-Request-Id).
REQUEST_ID = "MODELSERVER_REQUEST_ID"


def multiprocess() -> bool:
    """Counting in files shared by all workers: under uWSGI, with a directory given."""
    return ENABLED and uwsgi is not None and bool(MULTIPROC_DIR)


def worker_key() -> int:
    """The uWSGI worker id (0 in the master): unique among the processes running at once, and
    the same for a respawned worker as for the one it replaces."""
    return uwsgi.worker_id()


def prepare_directory() -> None:
    """In the master, before any worker forks: an empty directory at service start (counters
    start at 0, as Prometheus expects after a restart); kept as it is on a graceful reload
    (uWSGI re-executes the master with UWSGI_RELOADS >= 1), so the totals go on."""
    if uwsgi.worker_id() != 0:
        return
    if os.environ.get("UWSGI_RELOADS", "0") == "0":
        shutil.rmtree(MULTIPROC_DIR, ignore_errors=True)
    os.makedirs(MULTIPROC_DIR, exist_ok=True)


class Metrics:
    """The service's metrics; one per app."""

    def __init__(self, registry: CollectorRegistry | None):
        self.children = {}  # see child()
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
        """metric.labels(*labels), remembered: labels() takes a lock and builds its key on each
        call, a third of the metrics' cost per request (measured: 6.8 us -> 4.4 us)."""
        key = (metric._name, labels)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*labels)
        return found


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
    """One count and one duration per response the app gives, errors included."""
    environ = request.environ
    endpoint = request.endpoint or "none"
    method = environ["REQUEST_METHOD"]
    method = method if method in METHODS else "other"
    metrics.child(metrics.requests, endpoint, method, str(response.status_code)).inc()
    metrics.child(metrics.duration, endpoint).observe(time.perf_counter() - environ[START])
    return response


def observe_model(metrics: Metrics | None, model: str, endpoint: str, batch: int | None, seconds):
    """One call of an endpoint's function(s): the time inside them, and the size of a batch
    request (None for a single item: a GET, or a POST of one)."""
    if metrics is not None:
        metrics.child(metrics.model_duration, model).observe(seconds)
        if batch is not None:
            metrics.child(metrics.batch_size, endpoint).observe(batch)


def exposition(registry: CollectorRegistry | None) -> Response:
    """The Prometheus text format: the app's metrics summed over every worker's file, and uWSGI's
    and nginx's own figures read now."""
    if registry is None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, MULTIPROC_DIR)
        registry.register(ServerCollector())
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


# --- uWSGI's and nginx's own figures, read at scrape time ----------------------------------


def read_unix(path: str, request_bytes: bytes = b"", timeout: float = 1.0) -> bytes:
    """Everything a unix socket server sends back after request_bytes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        if request_bytes:  # uWSGI's stats server writes at once and closes: send nothing
            sock.sendall(request_bytes)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def uwsgi_stats() -> dict | None:
    """uWSGI's stats server (uwsgi.ini: a unix socket next to the uwsgi socket), as JSON."""
    path = uwsgi.opt.get("stats", b"").decode() if uwsgi is not None else ""
    if not path:
        return None
    try:
        return json.loads(read_unix(path))
    except (OSError, ValueError):
        return None


# Linux's sock_diag (what `ss -xl` reads): uWSGI's stats give no listen queue for a unix socket
# on a stock kernel (always 0), this does. Constants from linux/sock_diag.h and unix_diag.h.
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, NLMSG_DONE, NLMSG_ERROR = 4, 20, 3, 2
NLM_F_REQUEST_DUMP = 0x1 | 0x300
LISTENING = 1 << 10  # TCP_LISTEN, the state unix_diag uses for listening sockets too
UDIAG_SHOW_NAME, UDIAG_SHOW_RQLEN = 0x1, 0x10
UNIX_DIAG_NAME, UNIX_DIAG_RQLEN = 0, 4


def unix_listen_queue(path: str) -> int | None:
    """Connections waiting in the backlog of the listening unix socket at path (None: unknown)."""
    request = struct.pack(
        "=BBHIIIII", socket.AF_UNIX, 0, 0, LISTENING, 0, UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN, 0, 0
    )
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST_DUMP, 1, 0)
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
            sock.settimeout(1.0)
            sock.send(header + request)
            while True:
                data = sock.recv(65536)
                offset = 0
                while offset + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind in (NLMSG_DONE, NLMSG_ERROR) or length < 16:
                        return None
                    queue = diag_queue(data[offset + 16 : offset + length], path)
                    if queue is not None:
                        return queue
                    offset += (length + 3) & ~3
    except OSError:  # no netlink here (a sandbox that allows unix sockets only)
        return None


def diag_queue(message: bytes, path: str) -> int | None:
    """The receive queue (for a listening socket: its backlog) of one unix_diag_msg, if it is
    the socket at path."""
    name, queue, offset = None, None, 16  # after struct unix_diag_msg
    while offset + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, offset)
        if length < 4:
            break
        value = message[offset + 4 : offset + length]
        if kind == UNIX_DIAG_NAME:
            name = value.rstrip(b"\0").decode(errors="replace")
        elif kind == UNIX_DIAG_RQLEN:
            queue = struct.unpack_from("=I", value)[0]
        offset += (length + 3) & ~3
    return queue if name == path else None


def uwsgi_families(stats: dict) -> list:
    """Queue, busy workers, respawns and requests per worker from uWSGI's stats."""
    queue = GaugeMetricFamily(
        "modelserver_uwsgi_listen_queue", "Connections waiting for a free worker, now."
    )
    backlog = unix_listen_queue(uwsgi.opt.get("socket", b"").decode())
    if backlog is not None:  # absent rather than uWSGI's 0 when the kernel cannot be asked
        queue.add_metric([], backlog)
    limit = GaugeMetricFamily(
        "modelserver_uwsgi_listen_queue_limit", "The listen queue's size (uwsgi.ini listen)."
    )
    limit.add_metric([], int(uwsgi.opt.get("listen", b"100")))
    overflows = CounterMetricFamily(
        "modelserver_uwsgi_listen_queue_errors", "Connections refused because the queue was full."
    )
    overflows.add_metric([], stats.get("listen_queue_errors", 0))
    workers = stats["workers"]
    busy = GaugeMetricFamily("modelserver_uwsgi_busy_workers", "Workers running a request now.")
    busy.add_metric([], sum(1 for w in workers if w["status"] == "busy"))
    total = GaugeMetricFamily("modelserver_uwsgi_workers", "Workers configured.")
    total.add_metric([], len(workers))
    respawns = CounterMetricFamily(
        "modelserver_uwsgi_worker_respawns",
        "Times uWSGI replaced a worker since uWSGI (re)started.",
        labels=["worker"],
    )
    requests = CounterMetricFamily(
        "modelserver_uwsgi_worker_requests",
        "Requests each worker slot served since uWSGI (re)started.",
        labels=["worker"],
    )
    for worker in workers:
        # uWSGI counts the first spawn too.
        respawns.add_metric([str(worker["id"])], max(worker.get("respawn_count", 1) - 1, 0))
        requests.add_metric([str(worker["id"])], worker.get("requests", 0))
    return [queue, limit, overflows, busy, total, respawns, requests]


def nginx_active_connections() -> int | None:
    """Active client connections from nginx's stub_status, or None if it does not answer."""
    try:
        text = read_unix(NGINX_STATUS, b"GET /stub_status HTTP/1.0\r\nHost: local\r\n\r\n")
    except OSError:
        return None
    for line in text.decode(errors="replace").splitlines():
        if line.startswith("Active connections:"):
            return int(line.split(":")[1])
    return None


class ServerCollector:
    """uWSGI's and nginx's figures: read when Prometheus scrapes, from the servers themselves."""

    def collect(self):
        stats = uwsgi_stats()
        up = GaugeMetricFamily("modelserver_uwsgi_stats_up", "1 if uWSGI's stats answered.")
        up.add_metric([], 1 if stats else 0)
        yield up
        if stats:
            yield from uwsgi_families(stats)
        active = nginx_active_connections()
        nginx_up = GaugeMetricFamily("modelserver_nginx_up", "1 if nginx's stub_status answered.")
        nginx_up.add_metric([], 0 if active is None else 1)
        yield nginx_up
        if active is not None:
            connections = GaugeMetricFamily(
                "modelserver_nginx_active_connections", "Client connections open in nginx."
            )
            connections.add_metric([], active)
            yield connections


# --- request ids in the app's log lines ----------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Gives each log record the id of the request it is about ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request.environ.get(REQUEST_ID, "-") if has_request_context() else "-"
        return True


LOG_FORMAT = "[%(asctime)s] %(levelname)s request_id=%(request_id)s in %(module)s: %(message)s"


def log_request_ids() -> None:
    """Flask's log handler (stderr, which uWSGI logs) names the request of each line."""
    handler = flask.logging.default_handler
    if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
        handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
