"""Separate machines on one box, for the scale-out tests: network namespaces on one bridge.

    <prefix>-lb   the bridge br0, 10.77.0.1: the load balancer (and rollout.sh, run there)
    <prefix>-cl   10.77.0.2: the clients
    <prefix>-h1.. 10.77.0.11, .12, ...: modelserver hosts, each its own nginx + uWSGI

The veth pairs are made inside the namespaces, so the root namespace gets no interface and no
route to these addresses: every request of the tests is sent from inside a namespace.

A host runs `python tests/helpers/netns_hosts.py serve STATE_DIR` inside its namespace: the real
stack (deploy/localstack.py's Stack) with the host site as `deploy/install.sh --print-site` renders
it, until SIGTERM (a graceful stop); SIGHUP restarts it with the uWSGI arguments in
STATE_DIR/release.json (new code). `upgrade STATE_DIR` does that and waits until the new stack is
ready, like install.sh; `on-host HOSTS_JSON ADDRESS CMD...` runs CMD in that host's namespace with
STATE_DIR in $MODELSERVER_TEST_HOST: rollout.sh's transport in the tests, in place of ssh.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
# Run as a script in a host's namespace, it imports like the tests: the project, then tests/.
sys.path[:0] = [str(PROJECT), str(PROJECT / "tests")]

from deploy.localstack import Stack, find_nginx, render_nginx_conf, replace  # noqa: E402
from helpers import wait_for  # noqa: E402

SUBNET = "10.77.0"
BALANCER_ADDRESS = f"{SUBNET}.1"
CLIENT_ADDRESS = f"{SUBNET}.2"
HOST_PORT = 5555


def ip(*args: str) -> str:
    """Run `ip ARGS` and return its output; fails loudly."""
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def in_ns(ns: str, *argv: str) -> list[str]:
    """argv, run inside network namespace ns."""
    return ["ip", "netns", "exec", ns, *argv]


class Network:
    """The namespaces and the bridge; a context manager that deletes them all on exit."""

    def __init__(self, prefix: str, hosts: int):
        self.lb = f"{prefix}-lb"
        self.client = f"{prefix}-cl"
        self.hosts = [f"{prefix}-h{i}" for i in range(1, hosts + 1)]
        self.addresses = {ns: f"{SUBNET}.{10 + i}" for i, ns in enumerate(self.hosts, 1)}
        self.created: list[str] = []

    def __enter__(self) -> "Network":
        try:
            self.create()
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.delete()

    def create(self) -> None:
        for ns in (self.lb, self.client, *self.hosts):
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.lb, "link", "add", "br0", "type", "bridge")
        ip("-n", self.lb, "addr", "add", f"{BALANCER_ADDRESS}/24", "dev", "br0")
        ip("-n", self.lb, "link", "set", "br0", "up")
        for ns, address in ((self.client, CLIENT_ADDRESS), *self.addresses.items()):
            peer = f"v-{ns.rsplit('-', 1)[1]}"
            ip(
                "-n",
                ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                self.lb,
            )
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", self.lb, "link", "set", peer, "master", "br0", "up")

    def delete(self) -> None:
        """Kill what still runs in each namespace (by PID), then delete the namespace."""
        for ns in self.created:
            kill_all(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.created = []

    def run(self, ns: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """argv inside ns, its output captured as text; does not check the exit status."""
        return subprocess.run(in_ns(ns, *argv), capture_output=True, text=True, timeout=timeout)

    def link(self, ns: str, state: str) -> None:
        """Cut ("down") or restore ("up") a host's only link."""
        ip("-n", ns, "link", "set", "eth0", state)


def pids_in(ns: str) -> list[int]:
    return [int(pid) for pid in ip("netns", "pids", ns).split()]


def kill_all(ns: str) -> None:
    """kill -9 of every process in namespace ns: a machine losing power."""
    for pid in pids_in(ns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- a host: the stack inside one namespace ---------------------------------------------------


class Host:
    """A host's stack run by `serve` in its namespace; state in a dir of the test's tmp_path."""

    def __init__(self, ns: str, address: str, state: Path, allow: str):
        self.ns, self.address, self.state = ns, address, state
        self.proc: subprocess.Popen | None = None
        state.mkdir(parents=True, exist_ok=True)
        # The site as install.sh renders it for this host; Stack writes the listen line itself.
        listen = f"{address}:{HOST_PORT}"
        site = render_host_site({"MODELSERVER_LISTEN": listen, "MODELSERVER_ALLOW": allow})
        (state / "site").write_text(site.replace(f"listen {listen};", "listen 5555;"))

    def start(self, uwsgi_args: tuple[str, ...] = (), timeout: float = 60) -> None:
        self.launch(uwsgi_args)
        self.wait_ready(timeout)

    def launch(self, uwsgi_args: tuple[str, ...] = ()) -> None:
        """Start `serve` in the namespace, with the app run with uwsgi_args; do not wait."""
        (self.state / "release.json").write_text(json.dumps(list(uwsgi_args)))
        (self.state / "generation").unlink(missing_ok=True)
        argv = [sys.executable, __file__, "serve", str(self.state)]
        with open(self.state / "serve.log", "ab") as log:
            self.proc = subprocess.Popen(
                in_ns(self.ns, *argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for_generation(self.state, 1, timeout, self.proc)

    def stop(self, timeout: float = 30) -> None:
        """A graceful stop: nginx finishes the requests in flight, then uWSGI stops."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout)
        self.proc = None

    def kill(self) -> None:
        """kill -9 of the whole stack: every process of the namespace at once."""
        kill_all(self.ns)
        if self.proc is not None:
            self.proc.wait(10)
        self.proc = None
        remove_stack_dir(self.state)

    def access_log(self) -> str:
        """The host nginx's access log (the stack's temp dir)."""
        return Path(stack_dir(self.state), "nginx-access.log").read_text()


def install_sh(*args: str, env: dict[str, str]) -> str:
    """deploy/install.sh ARGS with env added, as an ordinary command; its stdout."""
    command = [str(PROJECT / "deploy" / "install.sh"), *args]
    return subprocess.run(
        command, env={**os.environ, **env}, check=True, capture_output=True, text=True
    ).stdout


def render_host_site(env: dict[str, str]) -> str:
    return install_sh("--print-site", env=env)


# --- the balancer: nginx with the balancer site, in the lb namespace --------------------------


class Balancer:
    """nginx in namespace ns with the site `install.sh --print-balancer HOSTS` renders; its
    config, pid and logs in dir (the access log too: the shipped path is under /var/log)."""

    def __init__(self, ns: str, dir: Path, hosts: list[str], cert: Path, key: Path):
        self.ns, self.dir = ns, dir
        self.proc: subprocess.Popen | None = None
        dir.mkdir(parents=True, exist_ok=True)
        env = {"MODELSERVER_TLS_CERT": str(cert), "MODELSERVER_TLS_KEY": str(key)}
        site = install_sh("--print-balancer", *hosts, env=env)
        self.access_log = dir / "balancer-access.log"
        site = replace(site, "/var/log/nginx/modelserver-balancer.log", str(self.access_log))
        self.site = dir / "modelserver-site.conf"
        self.site.write_text(site)
        (dir / "nginx.conf").write_text(render_nginx_conf(str(dir)))
        shutil.copy("/etc/nginx/mime.types", dir)

    @property
    def nginx(self) -> list[str]:
        """nginx with this balancer's config: add -t, -s reload, or nothing to run it."""
        conf, errors = self.dir / "nginx.conf", self.dir / "nginx-error.log"
        # -e: the config's own error log (render_nginx_conf), from before the config is read.
        return [find_nginx(), "-p", str(self.dir), "-c", str(conf), "-e", str(errors)]

    def start(self, timeout: float = 10) -> None:
        subprocess.run(in_ns(self.ns, *self.nginx, "-t", "-q"), check=True)
        log = open(self.dir / "nginx.log", "ab")
        with log:
            self.proc = subprocess.Popen(in_ns(self.ns, *self.nginx), stdout=log, stderr=log)

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the balancer exited: {self.error_log()}")
            return ":443 " in ip("netns", "exec", self.ns, "ss", "-Hltn")

        wait_for(
            listening, timeout, message=lambda: f"the balancer did not start: {self.error_log()}"
        )

    @contextlib.contextmanager
    def changed(self, changes: dict[str, str]):
        """The site with exact replacements (old: new) for the duration, reloaded in and out.
        Not under load: a reload closes the clients' idle kept-alive connections."""
        original = self.site.read_text()
        site = original
        for old, new in changes.items():
            site = replace(site, old, new)
        try:
            self.site.write_text(site)
            self.reload()
            yield
        finally:
            self.site.write_text(original)
            self.reload()

    def reload(self) -> None:
        subprocess.run(in_ns(self.ns, *self.nginx, "-t", "-q"), check=True)
        subprocess.run(in_ns(self.ns, *self.nginx, "-s", "reload"), check=True)
        time.sleep(1)  # nginx starts new workers; the old ones, idle, exit

    def stop(self, timeout: float = 15) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def error_log(self) -> str:
        path = self.dir / "nginx-error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def log_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []


def stack_dir(state: Path) -> str:
    return (state / "stack-dir").read_text()


def remove_stack_dir(state: Path) -> None:
    """After a kill -9, nothing removed the stack's temp dir: do it."""
    if (state / "stack-dir").exists():
        subprocess.run(["rm", "-rf", stack_dir(state)], check=True)
        (state / "stack-dir").unlink()


def wait_for_generation(state: Path, at_least: int, timeout: float, proc=None) -> None:
    """Wait until the host's stack number `at_least` answers /readyz (serve writes the count)."""
    path = state / "generation"

    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            log = (state / "serve.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the host's stack exited with {proc.returncode}:\n{log}")
        return path.exists() and int(path.read_text() or 0) >= at_least

    wait_for(ready, timeout, message=f"host stack {state} not ready")


def serve(state: Path) -> int:
    """Run the host's stack until SIGTERM; SIGHUP: stop it gracefully, start the new release."""
    address = ip("-4", "-o", "addr", "show", "eth0").split()[3].split("/")[0]
    wanted: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: wanted.append("stop"))
    signal.signal(signal.SIGHUP, lambda *_: wanted.append("restart"))
    generation = 0
    while True:
        uwsgi_args = tuple(json.loads((state / "release.json").read_text()))
        # The clients' namespace is the tests' load generator: exempt from the per-client limits
        # (the hosts see its address through the balancer), which would measure the policy.
        stack = Stack(
            port=HOST_PORT,
            host=address,
            site_file=state / "site",
            uwsgi_args=uwsgi_args,
            exempt=(CLIENT_ADDRESS,),
        )
        with stack:
            (state / "stack-dir").write_text(stack.dir)
            generation += 1
            (state / "generation").write_text(str(generation))
            while not wanted:
                if stack.uwsgi.poll() is not None or stack.nginx.poll() is not None:
                    return 1
                time.sleep(0.05)
        if wanted.pop(0) == "stop":
            return 0


def upgrade(state: Path) -> int:
    """Restart the host's stack on the release in STATE/release.next.json; wait until ready."""
    generation = int((state / "generation").read_text())
    (state / "release.next.json").replace(state / "release.json")
    os.kill(int((state / "pid").read_text()), signal.SIGHUP)
    wait_for_generation(state, generation + 1, timeout=60)
    return 0


def on_host(hosts_json: Path, address: str, argv: list[str]) -> int:
    """rollout.sh's transport in the tests: run argv in the namespace of the host at address."""
    ns, state = json.loads(hosts_json.read_text())[address]
    command = in_ns(ns, "env", f"MODELSERVER_TEST_HOST={state}", *argv)
    return subprocess.run(command).returncode


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "serve":
        (Path(args[0]) / "pid").write_text(str(os.getpid()))
        return serve(Path(args[0]))
    if command == "upgrade":
        return upgrade(Path(args[0]))
    if command == "on-host":
        return on_host(Path(args[0]), args[1], args[2:])
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
