"""Run the whole stack on one machine without root or systemd: nginx -> unix socket -> uWSGI.

uWSGI runs with the project's uwsgi.ini and nginx with the project's site file, changed in two
values only: the listen address (loopback, any port) and the socket path (a temp dir). Everything
the run writes lives in that temp dir, removed on stop. `make run` and the tests use this module.

    python deploy/localstack.py --port 5555     # Ctrl-C stops both and removes the temp dir
"""

import argparse
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SITE_FILE = PROJECT / "deploy" / "nginx" / "modelserver"
SITE_LISTEN = "listen 5555;"
SITE_SOCKET = "unix:/run/modelserver/modelserver.sock"
SITE_ROOT = "root /opt/modelserver/app;"  # where the page's static/ directory is installed
# The site's file of addresses exempt from its per-client limits (empty as installed).
SITE_EXEMPT = "    include /etc/modelserver/exempt-clients;\n"
SITE_ACCESS_LOG = "access_log /var/log/nginx/modelserver.access.log modelserver_json;"
SITE_NGINX_STATUS = "listen unix:/run/modelserver-nginx-status.sock;"
SITE_JSON_FORMAT = "log_format modelserver_json escape=json"
# nginx's combined format for make run's second log, with the request line the JSON log
# writes: an API key sent in the URL redacted (the site's maps).
COMBINED_FORMAT = (
    "log_format modelserver_combined '$remote_addr - $remote_user [$time_local] "
    '"$modelserver_logged_method $modelserver_logged_uri $server_protocol" '
    """$status $body_bytes_sent "$http_referer" "$http_user_agent"'; """
)
READY_PATH = "/readyz"  # 200 once the app and its models are loaded
# How long a start waits for that: models load before the app answers at all.
LOAD_SECONDS = float(os.environ.get("MODELSERVER_LOAD_SECONDS", "120"))
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")

NGINX_CONF = """\
# Generated for a local run; production uses the distribution's nginx.conf and includes the site
# file from sites-enabled. Every path is in this run's temp dir, so no root is needed.
daemon off;
{user}
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;

events {{
    # Each proxied request holds two connections (client and uWSGI): room for 2,048 clients.
    worker_connections 4096;
}}

http {{
    include {dir}/mime.types;
    default_type application/octet-stream;
    sendfile on;
    access_log {dir}/nginx-access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    include {dir}/modelserver-site.conf;
}}
"""


def find_nginx() -> str | None:
    """The nginx binary; /usr/sbin is not on an ordinary user's PATH on Debian."""
    return shutil.which("nginx") or next(
        (p for p in NGINX_CANDIDATES if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def replace(text: str, old: str, new: str, times: int = 1) -> str:
    """Replace old, which must occur `times` times: fail loudly if an edit of the file moved it."""
    count = text.count(old)
    if count != times:
        raise ValueError(f"expected {old!r} {times} times in {SITE_FILE}, found it {count} times")
    return text.replace(old, new)


def render_site(
    site: str,
    port: int,
    socket_path: str,
    changes: dict[str, str],
    host: str = "127.0.0.1",
    exempt: tuple[str, ...] = (),
) -> str:
    """The project's site file, listening on host:port (loopback by default), passing to
    socket_path, serving the page from this checkout.

    changes: further exact replacements, for tests that need e.g. a shorter timeout.
    exempt: client addresses the per-client limits do not apply to (a test's load generator).
    """
    site = replace(site, SITE_SOCKET, f"unix:{socket_path}", times=2)  # main and retry entry
    run_dir = os.path.dirname(socket_path)
    exempt_lines = [f"    {address} 1;\n" for address in exempt] or ["    # none exempt\n"]
    changes = {
        SITE_LISTEN: f"listen {host}:{port};",
        SITE_ROOT: f"root {PROJECT};",
        SITE_EXEMPT: "".join(exempt_lines),
        # The JSON log in the run dir, and the combined one as well (people and tests read it).
        SITE_ACCESS_LOG: f"access_log {run_dir}/nginx-access.json modelserver_json; "
        f"access_log {run_dir}/nginx-access.log modelserver_combined;",
        SITE_NGINX_STATUS: f"listen unix:{run_dir}/nginx-status.sock;",
        SITE_JSON_FORMAT: COMBINED_FORMAT + SITE_JSON_FORMAT,
        **changes,
    }
    for old, new in changes.items():
        site = replace(site, old, new)
    return site


def render_nginx_conf(run_dir: str) -> str:
    """The main nginx.conf of a local run; as root, workers run as root to reach the 660 socket."""
    user = "user root root;" if os.geteuid() == 0 else ""
    return NGINX_CONF.format(dir=run_dir, user=user)


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants that are alive now (Linux /proc)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").glob("*"):
                todo += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the process ended while we looked
            pass
    return pids


def command_line(pid: int) -> str:
    """What a process runs, for a message naming it ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200].strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class NotStarted(RuntimeError):
    """A process of the stack ended before the app answered."""


class Stack:
    """nginx on 127.0.0.1:port in front of uWSGI, in a temp dir; a context manager.

    host: another local address to listen on (a test host in a network namespace); site_file:
    the host site as deploy/install.sh renders it, instead of the shipped one.
    """

    def __init__(
        self,
        port: int | None = None,
        uwsgi_args: tuple[str, ...] = (),
        site_changes: dict[str, str] | None = None,
        log_to_terminal: bool = False,
        ready_path: str = READY_PATH,
        host: str = "127.0.0.1",
        site_file: Path = SITE_FILE,
        exempt: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        self.port = port or free_port()
        self.host = host
        self.site_file = site_file
        self.uwsgi_args = uwsgi_args
        self.site_changes = site_changes or {}
        self.log_to_terminal = log_to_terminal
        self.ready_path = ready_path
        self.exempt = exempt
        self.env = env or {}  # uWSGI's environment beyond this process's, e.g. MODELSERVER_THREADS
        self.dir = tempfile.mkdtemp(prefix="modelserver-")
        self.socket_path = os.path.join(self.dir, "uwsgi.sock")
        self.uwsgi: subprocess.Popen | None = None
        self.nginx: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = LOAD_SECONDS) -> None:
        nginx = find_nginx()
        if nginx is None:
            raise RuntimeError("nginx is not installed: sudo apt-get install nginx")
        self.write_nginx_config()
        self.check_nginx_config(nginx)
        self.uwsgi = self.spawn(self.uwsgi_command(), "uwsgi.log", env=self.uwsgi_env())
        self.nginx = self.spawn([nginx, *self.nginx_flags()], "nginx.log")
        self.wait_ready(timeout)

    def uwsgi_command(self) -> list[str]:
        return [self.uwsgi_binary(), "--ini", str(PROJECT / "uwsgi.ini"), *self.uwsgi_args]

    def uwsgi_env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.env,
            "MODELSERVER_SOCKET": self.socket_path,
            **self.metrics_env(),
        }

    def reload(self, timeout: float = 300) -> None:
        """New code and models live with no request refused (modelserver/handover.py: a second
        uWSGI answers while this one reloads); RuntimeError if it failed (the old code serves)."""
        handover = self.spawn(
            [sys.executable, "-I", str(PROJECT / "modelserver" / "handover.py"), self.socket_path]
            + self.uwsgi_command(),
            "uwsgi.log",
            env=self.uwsgi_env(),
        )
        try:
            code = handover.wait(timeout)
        except subprocess.TimeoutExpired:
            handover.kill()
            handover.wait()
            raise
        if code != 0:
            if self.log_to_terminal:  # the app's error is above; nginx's logs are not about it
                raise RuntimeError(f"the reload failed ({code}); its output above says why")
            raise RuntimeError(f"the reload failed ({code}):\n{self.logs()}")

    def metrics_env(self) -> dict[str, str]:
        """Where uWSGI's workers count (emptied at start) and where nginx's stub_status is."""
        return {
            "MODELSERVER_METRICS_DIR": os.path.join(self.dir, "metrics"),
            "MODELSERVER_NGINX_STATUS": os.path.join(self.dir, "nginx-status.sock"),
        }

    def uwsgi_binary(self) -> str:
        """uWSGI from the virtualenv running this script."""
        return str(Path(sys.executable).parent / "uwsgi")

    def nginx_flags(self) -> list[str]:
        # -e: the error log before the config is read, so no /var/log write is attempted.
        return ["-p", self.dir, "-c", f"{self.dir}/nginx.conf", "-e", f"{self.dir}/nginx-error.log"]

    def write_nginx_config(self) -> None:
        for name in ("mime.types", "uwsgi_params"):  # the site file includes them relatively
            shutil.copy(f"/etc/nginx/{name}", self.dir)
        site = render_site(
            self.site_file.read_text(),
            self.port,
            self.socket_path,
            self.site_changes,
            self.host,
            self.exempt,
        )
        Path(self.dir, "modelserver-site.conf").write_text(site)
        Path(self.dir, "nginx.conf").write_text(render_nginx_conf(self.dir))

    def check_nginx_config(self, nginx: str) -> None:
        """nginx -t: a broken config fails here with nginx's own words."""
        result = subprocess.run(
            [nginx, "-t", "-q", *self.nginx_flags()], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{result.stderr}")

    def spawn(self, argv: list[str], log_name: str, env: dict | None = None) -> subprocess.Popen:
        output = None if self.log_to_terminal else open(os.path.join(self.dir, log_name), "ab")
        try:
            return subprocess.Popen(
                argv, stdout=output, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
            )
        finally:
            if output is not None:
                output.close()

    def wait_ready(self, timeout: float) -> None:
        """Poll through nginx until the app answers 200; fail early if a process died."""
        deadline = time.monotonic() + timeout
        answer = None  # the last answer that was not a 200, if any
        while True:
            for proc in (self.uwsgi, self.nginx):
                if proc is not None and proc.poll() is not None:
                    raise NotStarted(self.exited(proc))
            try:
                status, _, body = self.request("GET", self.ready_path)
                if status == 200:
                    return
                answer = f"{status} {body.decode(errors='replace').strip()}"
            except OSError:
                pass
            if time.monotonic() > deadline:
                said = f"GET {self.ready_path} answered {answer}" if answer else "no answer"
                raise TimeoutError(
                    f"{said} from {self.url} in {timeout} s (a model still loading? "
                    f"MODELSERVER_LOAD_SECONDS={timeout:g} says how long to wait):\n{self.logs()}"
                )
            time.sleep(0.05)

    def exited(self, proc: subprocess.Popen) -> str:
        """What to say of a process that ended while the stack started: its log's tail, or,
        when uWSGI wrote to the terminal, where the app's error already is."""
        name = Path(proc.args[0]).name
        if self.log_to_terminal and proc is self.uwsgi:
            return f"{name} exited with {proc.returncode}; its output above says why"
        return f"{name} exited with {proc.returncode}:\n{self.logs()}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict | None = None,
        timeout: float = 10,
    ) -> tuple[int, dict, bytes]:
        """One HTTP request through nginx: status, headers (lower-case names), body."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            conn.close()

    def pids(self) -> list[int]:
        """Every process of the stack: both masters and their workers."""
        return [
            pid
            for proc in (self.uwsgi, self.nginx)
            if proc and proc.poll() is None
            for pid in process_tree(proc.pid)
        ]

    def logs(self) -> str:
        """The tail of each log in the run dir, for error messages."""
        tails = []
        for log in sorted(Path(self.dir).glob("*.log")):
            tails.append(
                f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            )
        return "\n".join(tails)

    def stop(self, timeout: float = 15) -> None:
        """Stop nginx, then uWSGI (each by its PID), wait for every process, remove the temp dir.

        Raises if a process outlives the stop: a leak is a bug. The socket goes with the dir
        (uWSGI's vacuum removes it too, but not always after a reload: "changed inode").
        """
        pids = self.pids()
        # nginx first, so no new request reaches a uWSGI that is going away. SIGQUIT lets it
        # finish the requests in flight; SIGINT makes uWSGI stop (not reload) at once.
        for proc, sig in ((self.nginx, signal.SIGQUIT), (self.uwsgi, signal.SIGINT)):
            if proc is not None and proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        deadline = time.monotonic() + timeout
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        leaked = {pid: command_line(pid) for pid in pids if alive(pid)}
        for pid in leaked:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
        if leaked:
            raise RuntimeError(f"processes outlived the stop; killed them: {leaked}")


def served_endpoints(document: dict) -> list[tuple[str, str]]:
    """(method, path with an example query) of each function the app serves, from its OpenAPI
    document: whatever the registry holds, not a list kept here."""
    endpoints = []
    for path, item in document["paths"].items():
        if path.startswith("/v1/") or "requestBody" not in item.get("post", {}):
            continue
        if "get" in item:
            query = example_query(item["get"].get("parameters", []))
            endpoints.append(("GET", f"{path}?{query}" if query else path))
        else:
            endpoints.append(("POST", path))
    return endpoints


def example_query(parameters: list[dict]) -> str:
    """The parameters' examples as a query string the API reads: a list as the parameter
    repeated (?v=3&v=4), a bool as true or false, text URL-encoded. A parameter's own example
    (Field(examples=[...]), in its schema) comes first: a function that checks its input (a
    probability below 1, say) can make the listed URL one it answers; else its default, else its
    type's."""
    pairs = []
    for parameter in parameters:
        example = parameter["schema"].get("example", parameter.get("example"))
        if example is None:  # a type with no example to give (Field(pattern=...))
            continue
        name = parameter["name"]
        for value in example if isinstance(example, list) else [example]:
            pairs.append((name, json.dumps(value) if isinstance(value, bool) else value))
    return urllib.parse.urlencode(pairs)


def not_ready(stack: Stack) -> list[str]:
    """The lines that say why /readyz is not 200 (a model failed to load), or none."""
    status, _, body = stack.request("GET", READY_PATH)
    if status == 200:
        return []
    try:
        message = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode(errors="replace").strip()
    return [
        f"{READY_PATH} answers {status}: {message}.",
        "  The endpoints of those models answer 503 and the others serve; the log above says why.",
    ]


def interrupt(signum, frame) -> None:
    """SIGTERM stops the stack the same way as Ctrl-C."""
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt, which stops every stack started. SIGINT
    is set too: a background job (`make run &`) or a script inherits it ignored, and so would the
    processes started from here; uWSGI would then stop on its own handler, LitServe not at all."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


RELOADS: list[int] = []  # SIGHUPs not yet acted on


def ask_reload(signum, frame) -> None:
    """SIGHUP reloads the code and models, as `systemctl reload` does on a host."""
    RELOADS.append(signum)


def reload(stack: Stack) -> None:
    """stack.reload(), said on the terminal; a failed one leaves the running code serving."""
    print("reloading code and models...", flush=True)
    try:
        stack.reload()
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"the reload failed; the code that ran before still serves: {error}", flush=True)
    else:
        print("reloaded", flush=True)


def client_address(text: str) -> str:
    """An address or network, as nginx's geo block takes it."""
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IP address or network: {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run nginx + uWSGI + the app locally.")
    parser.add_argument("--port", type=int, default=5555, help="nginx port (default: %(default)s)")
    parser.add_argument(
        "--exempt",
        action="append",
        default=[],
        type=client_address,
        metavar="ADDRESS",
        help="a client the per-client limits do not apply to, such as a load generator on this "
        "machine (127.0.0.1); repeatable",
    )
    args = parser.parse_args(argv)
    stop_on_signals()
    signal.signal(signal.SIGHUP, ask_reload)
    try:
        # Up once the app answers: a model that failed to load leaves its endpoints at 503 and the
        # others serving (README), which the banner then says.
        with Stack(
            port=args.port, log_to_terminal=True, ready_path="/healthz", exempt=tuple(args.exempt)
        ) as stack:
            status, _, document = stack.request("GET", "/openapi.json")
            endpoints = served_endpoints(json.loads(document)) if status == 200 else []
            print(
                f"modelserver is up: {stack.url}  (uWSGI pid {stack.uwsgi.pid}, "
                f"nginx pid {stack.nginx.pid}; Ctrl-C stops)",
                *(f"  {method:<4} {stack.url}{path}" for method, path in endpoints),
                f"  docs {stack.url}/docs",
                *not_ready(stack),
                f"New code or models: kill -HUP {os.getpid()} reloads them, no request refused.",
                sep="\n",
                flush=True,
            )
            while stack.uwsgi.poll() is None and stack.nginx.poll() is None:
                if RELOADS:
                    RELOADS.clear()
                    reload(stack)
                time.sleep(0.2)
    except KeyboardInterrupt:
        print("modelserver stopped", flush=True)
        return 0
    except NotStarted as error:  # a registry entry the app cannot serve, say
        print(f"modelserver did not start: {error}", file=sys.stderr, flush=True)
        return 1
    print("a process of the stack exited by itself; the rest is stopped", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
