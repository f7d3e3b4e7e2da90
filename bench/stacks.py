"""The stacks the benchmark compares, each started from a temp dir and stopped by its PIDs.

Every stack behind nginx uses the project's site file rendered by render_site(), changed only in
what it needs to reach its server (the pass directive, and the upstream's keepalive for HTTP
servers); every server runs the same number of workers, WORKERS, as uwsgi.ini.
"""

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.localstack import PROJECT, Stack, find_nginx, free_port

BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
PATH = "/pisqrt?a=25"
BODY = b'{"result": 8.86226925452758}\n'
RESULT = 8.86226925452758
# uwsgi.ini's default; main() clears $MODELSERVER_WORKERS so that ours runs this many too.
WORKERS = 2

# The peers' apps import algo from the project and themselves from bench/.
PEER_ENV = {**os.environ, "PYTHONPATH": f"{BENCH}{os.pathsep}{PROJECT}"}

# The site's location that passes the app's requests to uWSGI: the stacks without uWSGI replace
# it, and only it (render_site fails if it is not found exactly once).
APP_LOCATION = "location / {\n        uwsgi_pass modelserver;\n    }"

# nginx answers by itself, with the same bytes and Content-Type as the app: the proxy ceiling.
NGINX_BODY = BODY.decode().replace("\n", "\\n")  # in nginx's string syntax
NGINX_ANSWERS = {
    APP_LOCATION: f"""location / {{
        default_type application/json;
        return 200 '{NGINX_BODY}';
    }}""",
}

# proxy_pass to an HTTP server with keepalive to it, as nginx's docs set it up: HTTP/1.1 and no
# "Connection: close", or every request opens a new upstream connection. 32 idle connections
# kept per nginx worker: nginx's docs want the number "small enough to let upstream servers
# process new incoming connections as well" (their example has 16). The server's uwsgi settings
# become HTTP ones and every location that passes to uWSGI (/, the health checks, /metrics)
# passes over HTTP instead, its other lines unchanged.
HTTP_PROXY = {"upstream modelserver {": "upstream modelserver {\n    keepalive 32;"}
UWSGI_PASS = "include uwsgi_params;"
HTTP_PASS = 'proxy_http_version 1.1;\n    proxy_set_header Connection "";'


def http_passes(site: str) -> str:
    """The site with every uwsgi_pass to the upstream turned into an HTTP proxy_pass."""
    if UWSGI_PASS not in site:
        raise ValueError(f"no {UWSGI_PASS!r} in the site file: the bench's edit must change")
    site = site.replace(UWSGI_PASS, HTTP_PASS)
    return site.replace("uwsgi_pass modelserver;", "proxy_pass http://modelserver;")


GUNICORN = [
    str(VENV_BIN / "gunicorn"),
    "--workers", str(WORKERS),
    # sync: the default, which gunicorn's design docs name for CPU-bound apps behind a
    # buffering proxy such as nginx (it keeps no connection alive: nginx reconnects each time).
    "--worker-class", "sync",
    "peer_flask:app",
]  # fmt: skip

UVICORN = [
    str(VENV_BIN / "uvicorn"),
    "peer_fastapi:app",
    "--workers", str(WORKERS),
    # uvicorn[standard]'s fast paths, named rather than left to auto-detection.
    "--loop", "uvloop",
    "--http", "httptools",
    # No line per request: uWSGI logs only failures and nginx logs every request in all stacks.
    "--no-access-log",
    "--log-level", "warning",
    # Longer than nginx's upstream keepalive_timeout (60 s): uvicorn's default 5 s would close
    # idle connections that nginx may be reusing at that very moment (a 502).
    "--timeout-keep-alive", "75",
]  # fmt: skip


# The load generator's address: the site's per-client limits (200 requests per second, 32 in
# flight) would measure the policy, not the stack; the benchmark measures what it can serve.
LOAD_GENERATOR = ("127.0.0.1",)


class BenchStack(Stack):
    """A server on this run's socket (or port) with or without the project's nginx in front.

    server: argv where "{socket}" and "{port}" are this run's; None for the proxy ceiling, where
    nginx answers alone. The server goes in Stack's `uwsgi` slot, whatever it is, because
    Stack.stop() stops that slot (SIGINT, wait, SIGKILL) after nginx and checks for leaks.
    """

    def __init__(
        self,
        server: list[str] | None,
        site_changes: dict[str, str] | None = None,
        behind_nginx: bool = True,
        http: bool = False,
        ready_path: str = PATH,
        tcp_backend: bool = False,
    ):
        super().__init__(site_changes=site_changes, ready_path=ready_path, exempt=LOAD_GENERATOR)
        self.server = server
        self.behind_nginx = behind_nginx
        self.http = http  # True: nginx talks HTTP to the server (proxy_pass), not uwsgi
        # True: the server listens on TCP 127.0.0.1:{backend} (it cannot take a unix socket).
        self.backend = free_port() if tcp_backend else None

    def write_nginx_config(self) -> None:
        super().write_nginx_config()
        site = Path(self.dir, "modelserver-site.conf")
        if self.http:
            site.write_text(http_passes(site.read_text()))
        if self.backend:
            text = site.read_text().replace(f"unix:{self.socket_path}", f"127.0.0.1:{self.backend}")
            site.write_text(text)

    def start(self, timeout: float = 30) -> None:
        if self.server:
            argv = [
                arg.format(socket=self.socket_path, port=self.port, backend=self.backend)
                for arg in self.server
            ]
            self.uwsgi = self.spawn(argv, "server.log", env=PEER_ENV)
        if self.behind_nginx:
            nginx = find_nginx()
            if nginx is None:
                raise RuntimeError("nginx is not installed: sudo apt-get install nginx")
            self.write_nginx_config()
            self.check_nginx_config(nginx)
            self.nginx = self.spawn([nginx, *self.nginx_flags()], "nginx.log")
        self.wait_ready(timeout)


class StackWithoutMetrics(Stack):
    """Ours with MODELSERVER_METRICS=0: nothing counted, no /metrics; beside ours, the cost of
    counting every request in prometheus_client's multiprocess files."""

    def metrics_env(self) -> dict[str, str]:
        return {**super().metrics_env(), "MODELSERVER_METRICS": "0"}


@dataclass(frozen=True)
class StackSpec:
    name: str  # the key in results.json
    label: str  # the row in results.md
    how: str  # how it runs, for results.md
    start: Callable[[], Stack]
    needs: tuple[str, ...] = ()  # Python packages beyond the service's (bench/requirements.txt)
    # True: the body must be BODY byte for byte; False: the same JSON, as the framework writes it.
    exact_body: bool = True
    in_quick: bool = True  # False: informative only, left out of --quick to keep it short


STACKS = [
    StackSpec(
        "ours",
        "ours: nginx → uWSGI → Flask",
        "the shipped stack: the project's site, uwsgi.ini and wsgi:app (deploy.localstack.Stack)",
        lambda: Stack(ready_path=PATH, exempt=LOAD_GENERATOR),
    ),
    StackSpec(
        "ours-nometrics",
        "ours without metrics",
        "the same, with MODELSERVER_METRICS=0: what counting each request and /metrics cost",
        lambda: StackWithoutMetrics(ready_path=PATH, exempt=LOAD_GENERATOR),
    ),
    StackSpec(
        "bare",
        "bare ceiling: nginx → uWSGI → bare WSGI",
        "the same site and uwsgi.ini, app bench/bare_wsgi.py: constant bytes, no framework",
        lambda: Stack(
            uwsgi_args=("--pythonpath", str(BENCH), "--module", "bare_wsgi:app"),
            ready_path=PATH,
            exempt=LOAD_GENERATOR,
        ),
    ),
    StackSpec(
        "proxy",
        "proxy ceiling: nginx alone",
        "the same site, `return 200` with the same body in place of uwsgi_pass",
        lambda: BenchStack(None, NGINX_ANSWERS),
    ),
    StackSpec(
        "gunicorn",
        "gunicorn + Flask behind nginx",
        f"gunicorn, {WORKERS} sync workers on a unix socket, bench/peer_flask.py; the same site "
        "with proxy_pass and upstream keepalive",
        lambda: BenchStack([*GUNICORN, "--bind", "unix:{socket}"], HTTP_PROXY, http=True),
        needs=("gunicorn",),
        exact_body=False,
    ),
    StackSpec(
        "gunicorn-uwsgi",
        "gunicorn + Flask behind nginx, uwsgi protocol",
        f"gunicorn, {WORKERS} sync workers, `--protocol uwsgi` on a unix socket, "
        "bench/peer_flask.py; the same site unchanged (uwsgi_pass)",
        lambda: BenchStack([*GUNICORN, "--protocol", "uwsgi", "--bind", "unix:{socket}"]),
        needs=("gunicorn",),
        exact_body=False,
        in_quick=False,
    ),
    StackSpec(
        "fastapi",
        "FastAPI + uvicorn behind nginx",
        f"uvicorn[standard] (uvloop, httptools), {WORKERS} workers on a unix socket, "
        "bench/peer_fastapi.py (`async def`, Pydantic return type); the same site with "
        "proxy_pass and upstream keepalive",
        lambda: BenchStack([*UVICORN, "--uds", "{socket}"], HTTP_PROXY, http=True),
        needs=("fastapi", "uvicorn", "uvloop", "httptools"),
        exact_body=False,
    ),
    StackSpec(
        "uvicorn",
        "FastAPI + uvicorn alone (no nginx)",
        f"the same uvicorn and app, {WORKERS} workers, on TCP 127.0.0.1, no nginx: for information",
        lambda: BenchStack([*UVICORN, "--host", "127.0.0.1", "--port", "{port}"], None, False),
        needs=("fastapi", "uvicorn", "uvloop", "httptools"),
        exact_body=False,
        in_quick=False,
    ),
]
BY_NAME = {spec.name: spec for spec in STACKS}


def in_turn(specs: list[StackSpec], round_no: int) -> list[StackSpec]:
    """The stacks' order in a round: as given in odd rounds, reversed in even ones (A B C, C B A,
    ...), so that no stack is always measured before another (bench/README.md)."""
    return specs if round_no % 2 else specs[::-1]


# --- batching: a model where it pays, served by ours with batching off and on and by the peers ---

# bench/mlp.py's MLP: one request is one item, as most clients send.
MLP_PATH = "/mlp"
MLP_REQUEST = json.dumps({"x": [0.25] * 16}).encode()
MLP_APP = ("--pythonpath", str(BENCH), "--module", "mlp_app:app")
# Threads per worker with batching on: as many requests at once as a batch holds.
MLP_THREADS = 32
# What BLAS may use in the peers, as uwsgi.ini sets it for ours: one thread per process.
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


MLP_UVICORN = [arg.replace("peer_fastapi:", "peer_fastapi_mlp:") for arg in UVICORN]


class PeerStack(BenchStack):
    """A peer serving the MLP with one BLAS thread per process, as ours has."""

    def spawn(self, argv: list[str], log_name: str, env: dict | None = None):
        return super().spawn(argv, log_name, {**env, **ONE_BLAS_THREAD} if env else env)


BATCHING_STACKS = [
    StackSpec(
        "ours-mlp",
        "ours, batching off",
        f"the shipped stack, app bench/mlp_app.py, {WORKERS} sync workers: one call a request",
        lambda: Stack(uwsgi_args=MLP_APP, ready_path="/readyz", exempt=LOAD_GENERATOR),
    ),
    StackSpec(
        "ours-mlp-batched",
        "ours, batching on",
        f"the same with MODELSERVER_THREADS={MLP_THREADS}: max_batch_size 32, "
        "max_batch_delay_ms 5, preferred_batch_size range(4, 33, 4)",
        lambda: Stack(
            uwsgi_args=MLP_APP,
            env={"MODELSERVER_THREADS": str(MLP_THREADS)},
            ready_path="/readyz",
            exempt=LOAD_GENERATOR,
        ),
    ),
    StackSpec(
        "ours-mlp-batched-any",
        "ours, batching on, any size",
        "the same without preferred_batch_size: each call takes all the queue holds, up to 32",
        lambda: Stack(
            uwsgi_args=(*MLP_APP, "--env", "MLP_ANY_SIZE=1"),
            env={"MODELSERVER_THREADS": str(MLP_THREADS)},
            ready_path="/readyz",
            exempt=LOAD_GENERATOR,
        ),
    ),
    StackSpec(
        "litserve-mlp",
        "LitServe, batching on",
        f"bench/peer_litserve.py: max_batch_size 32, batch_timeout 5 ms, {WORKERS} inference "
        "workers, one uvicorn API server on TCP; the same site with proxy_pass and keepalive",
        lambda: PeerStack(
            [str(VENV_BIN / "python"), str(BENCH / "peer_litserve.py"), "{backend}"],
            HTTP_PROXY,
            http=True,
            ready_path="/health",
            tcp_backend=True,
        ),
        needs=("litserve",),
        exact_body=False,
    ),
    StackSpec(
        "fastapi-mlp",
        "FastAPI + uvicorn, no batching",
        f"bench/peer_fastapi_mlp.py, uvicorn[standard], {WORKERS} workers on a unix socket; "
        "the same site with proxy_pass and keepalive",
        lambda: PeerStack(
            [*MLP_UVICORN, "--uds", "{socket}"],
            HTTP_PROXY,
            http=True,
            ready_path="/readyz",
        ),
        needs=("fastapi", "uvicorn", "uvloop", "httptools"),
        exact_body=False,
    ),
]
BATCHING_BY_NAME = {spec.name: spec for spec in BATCHING_STACKS}
