"""PID 1 of the modelserver image: nginx in front of uWSGI, one foreground process tree.

    entrypoint.py            render the site, start uWSGI and nginx, wait; SIGTERM drains
    entrypoint.py health     exit 0 when /readyz answers 200 (the image's HEALTHCHECK)

The site is the host install's own (deploy/nginx/modelserver), rendered by `install.sh
--print-site` with the same variables as on a host (MODELSERVER_ALLOW, MODELSERVER_METRICS_ALLOW)
and the port from $PORT (8080 by default, as Cloud Run sets it); three of its paths are changed
for the container, each checked. uWSGI runs the project's uwsgi.ini unchanged.

Why a PID 1 of its own: a container's PID 1 gets no default signal handling and must reap
orphans, and nginx and uWSGI must stop in order: SIGTERM (podman stop, Kubernetes) makes nginx
stop accepting and finish the requests in flight (SIGQUIT), then uWSGI's workers finish theirs
and exit (SIGTERM, uwsgi.ini's graceful stop); then this exits 0. If either server exits by
itself, the other is stopped the same way and this exits 1, so the orchestrator restarts it.
SIGHUP reloads both (a new site; uWSGI's graceful reload: new workers, requests waiting while the
app and its models load again). Code that fails to load then ends uWSGI and so the container,
unlike the handover of systemctl reload on a host: in a container, new code comes as a new image.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

PREFIX = Path(__file__).resolve().parents[2]  # /opt/modelserver: app/, venv/, deploy/
RUN_DIR = Path("/run/modelserver")  # the site's and uwsgi.ini's socket directory
NGINX_CONF = "/etc/nginx/nginx.conf"  # deploy/container/nginx.conf; includes RUN_DIR/site.conf
DEFAULT_PORT = "8080"
# Addresses (or networks) as install.sh accepts them.
ADDRESS = re.compile(r"^[0-9a-fA-F.:]+(/[0-9]+)?$")

# What the container changes in the rendered host site: old text, new text. Each must be there
# exactly once, or the start fails naming it (an edit of the site moved it).
CONTAINER_PATHS = {
    # Each request's JSON line to the container's output, not to a file.
    "access_log /var/log/nginx/modelserver.access.log modelserver_json;": (
        "access_log /dev/stdout modelserver_json;"
    ),
    # Everything written lives in the one writable directory.
    "listen unix:/run/modelserver-nginx-status.sock;": (
        f"listen unix:{RUN_DIR}/nginx-status.sock;"
    ),
    "include /etc/modelserver/exempt-clients;": f"include {RUN_DIR}/exempt-clients;",
}


def port() -> str:
    value = os.environ.get("PORT") or DEFAULT_PORT
    if not value.isdigit() or not 0 < int(value) < 65536:
        sys.exit(f"modelserver: PORT must be a TCP port number, got {value!r}")
    return value


def check_counts() -> None:
    """The settings uwsgi.ini reads as whole numbers: with MODELSERVER_WORKERS=abc uWSGI would
    start with no worker and leave every request to nginx's timeout."""
    counts = (("MODELSERVER_WORKERS", 1), ("MODELSERVER_THREADS", 1), ("MODELSERVER_MAX_RSS_MB", 0))
    for name, least in counts:
        value = os.environ.get(name)
        if value is not None and not (value.isdigit() and int(value) >= least):
            sys.exit(f"modelserver: {name} must be a whole number >= {least}, got {value!r}")


def exempt_clients() -> str:
    """The site's exempt-clients file from $MODELSERVER_EXEMPT_CLIENTS (addresses or networks,
    comma-separated): clients the per-client limits do not count, "ADDRESS 1;" a line."""
    lines = ["# from MODELSERVER_EXEMPT_CLIENTS"]
    for address in filter(None, os.environ.get("MODELSERVER_EXEMPT_CLIENTS", "").split(",")):
        address = address.strip()
        if not ADDRESS.match(address):
            sys.exit(f"modelserver: MODELSERVER_EXEMPT_CLIENTS: not an address: {address!r}")
        lines.append(f"{address} 1;")
    return "\n".join(lines) + "\n"


def render_site() -> str:
    """The host site as install.sh renders it, listening on $PORT, with the container's paths."""
    env = {**os.environ, "MODELSERVER_LISTEN": port()}
    result = subprocess.run(
        [str(PREFIX / "deploy" / "install.sh"), "--print-site"],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(result.stderr.strip() or "modelserver: the site could not be rendered")
    site = result.stdout
    for old, new in CONTAINER_PATHS.items():
        if site.count(old) != 1:
            sys.exit(f"modelserver: expected {old!r} once in the site, found it {site.count(old)}")
        site = site.replace(old, new)
    return site


def prepare() -> None:
    """A fresh run directory: no sockets of an earlier run, an empty metrics directory (its
    counts would be summed with the new ones), the site and the exempt clients."""
    # A container started again after a kill finds its old sockets: nginx cannot bind over one.
    for stale in RUN_DIR.glob("*.sock*"):
        stale.unlink()
    check_counts()
    metrics = RUN_DIR / "metrics"
    shutil.rmtree(metrics, ignore_errors=True)
    metrics.mkdir(parents=True)
    # Where the app spools a large upload's part: the root filesystem, /tmp included, may be
    # read-only (a Docker --read-only with one tmpfs, Kubernetes' readOnlyRootFilesystem).
    (RUN_DIR / "tmp").mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(RUN_DIR / "tmp")
    (RUN_DIR / "exempt-clients").write_text(exempt_clients())
    (RUN_DIR / "site.conf").write_text(render_site())
    check = subprocess.run(["nginx", "-t", "-q", "-e", "stderr", "-c", NGINX_CONF])
    if check.returncode != 0:
        sys.exit("modelserver: nginx -t failed (above)")


class Servers:
    """uWSGI and nginx, children of this PID 1, and what each signal does to them."""

    def __init__(self) -> None:
        uwsgi = [str(PREFIX / "venv" / "bin" / "uwsgi"), "--ini", str(PREFIX / "app" / "uwsgi.ini")]
        self.uwsgi = subprocess.Popen(uwsgi, stdin=subprocess.DEVNULL)
        self.nginx = subprocess.Popen(["nginx", "-e", "stderr", "-c", NGINX_CONF])
        self.running = {self.uwsgi.pid: self.uwsgi, self.nginx.pid: self.nginx}
        self.stopping = False

    def signal(self, proc: subprocess.Popen, signum: int) -> None:
        if proc.pid in self.running:
            os.kill(proc.pid, signum)

    def stop(self, *_) -> None:
        """The drain's first step: nginx takes no new connection and finishes its requests."""
        if not self.stopping:
            self.stopping = True
            self.signal(self.nginx, signal.SIGQUIT)
            if self.nginx.pid not in self.running:
                self.stop_uwsgi()

    def stop_uwsgi(self, *_) -> None:
        """SIGTERM to uWSGI, and again each second until it has exited: one that comes while it
        still loads the app, before it takes SIGTERM as a drain (uwsgi.ini's hook-master-start),
        is lost. Once draining, it takes another as the same drain."""
        self.signal(self.uwsgi, signal.SIGTERM)
        signal.alarm(1)  # serve() made SIGALRM call this again

    def reload(self, *_) -> None:
        """New workers from the code as it is (uwsgi.ini's master FIFO), nginx with a new site."""
        if not self.stopping:
            with open(RUN_DIR / "modelserver.sock.fifo", "w") as fifo:
                fifo.write("r")
            self.signal(self.nginx, signal.SIGHUP)

    def wait(self) -> int:
        """Reap every child (orphans too: this is PID 1) until both servers have exited."""
        status = 0
        while self.running:
            pid, _ = os.wait()
            proc = self.running.pop(pid, None)
            if proc is None:
                continue  # an orphan re-parented to PID 1, now reaped
            proc.returncode = 0  # reaped here: Popen must not wait for it again
            if not self.stopping:
                status = 1  # a server died by itself: stop the other, exit non-zero
                print(f"modelserver: {Path(proc.args[0]).name} exited; stopping", file=sys.stderr)
                self.stop()
            elif proc is self.nginx:
                self.stop_uwsgi()  # nginx's last requests are answered
        return status


def serve() -> int:
    # PID 1 ignores a signal it has no handler for: a stop before the servers run ends here.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    prepare()
    servers = Servers()
    signal.signal(signal.SIGTERM, servers.stop)
    signal.signal(signal.SIGINT, servers.stop)
    signal.signal(signal.SIGHUP, servers.reload)
    signal.signal(signal.SIGALRM, servers.stop_uwsgi)
    return servers.wait()


def health() -> int:
    """0 when the app answers /readyz through nginx (every model loaded), else 1."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port()}/readyz", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as error:
        print(f"modelserver: not ready: {error}", file=sys.stderr)
        return 1


def main(argv: list[str]) -> int:
    if argv == ["health"]:
        return health()
    if argv:  # any other command runs in place of the servers (a shell, to look around)
        os.execvp(argv[0], argv)
    return serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
