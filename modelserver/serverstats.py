"""uWSGI's and nginx's own figures, read from the servers when Prometheus scrapes."""

import json
import os
import socket
import struct

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

try:
    import uwsgi
except ImportError:  # not under uWSGI
    uwsgi = None

# nginx's stub_status, on a unix socket of its own (deploy/nginx/modelserver): the service has
# no network under systemd (PrivateNetwork=yes), but a unix socket it can reach.
NGINX_STATUS = os.environ.get("MODELSERVER_NGINX_STATUS", "/run/modelserver-nginx-status.sock")


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
    """uWSGI's stats server (uwsgi.ini: a unix socket next to the uwsgi socket), as JSON (read
    alike by handover.stats, which runs outside the app)."""
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
