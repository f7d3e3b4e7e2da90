"""podman for the container tests: the image built from a locally made base, containers that are
removed whatever happens, and the project's balancer site on loopback in front of them.

This machine's quirks live here, never in the image: crun cannot start containers (cgroups in
hybrid mode) and podman's default ulimits cannot be set, so every podman call gets a
containers.conf choosing runc and limits the machine allows; pip inside the build reaches PyPI
through a local certificate authority, so the host's CA bundle is mounted for the build only.
"""

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from deploy.localstack import (
    PROJECT,
    find_nginx,
    free_port,
    process_tree,
    render_nginx_conf,
    replace,
)
from helpers import wait_for
from helpers.netns_hosts import install_sh

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
"""
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# Every name this module gives a container starts so, with the test run's PID: a run that died
# leaves nothing another run could mistake for its own.
PREFIX = f"modelserver-test-{os.getpid()}"
_names = itertools.count(1)


def podman_env() -> dict[str, str]:
    """The environment of every podman call: CONTAINERS_CONF for this machine (see above)."""
    conf = Path(tempfile.gettempdir(), "modelserver-test-containers.conf")
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    """`podman ARGS`; its output as text. Fails with podman's own words when check is set."""
    result = subprocess.run(
        ["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{result.stderr}")
    return result


def build_image(context: Path, tag: str, timeout: float = 600) -> float:
    """Build the Dockerfile of context with deploy/container/build.sh from the base images made
    locally (BASE=local), tagged tag; seconds it took."""
    args = []
    if HOST_CA.exists():  # this machine's CA, for pip's step only; the image does not keep it
        args = ["-v", f"{HOST_CA}:/tmp/host-ca.crt:ro", "--build-arg", "PIP_CERT=/tmp/host-ca.crt"]
    env = {**podman_env(), "BASE": "local", "CONTEXT": str(context), "TAGS": tag}
    started = time.monotonic()
    result = subprocess.run(
        [str(PROJECT / "deploy" / "container" / "build.sh"), "--quiet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"the image did not build:\n{result.stdout}\n{result.stderr}"
    return time.monotonic() - started


def get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Container:
    """One container of an image, nginx's port published on 127.0.0.1 only; a context manager
    that removes it (by its id) on exit, also when the test failed."""

    def __init__(self, image: str, *options: str, port: int | None = None, inner: int = 8080):
        self.image, self.options, self.inner = image, options, inner
        self.port = port or free_port()
        self.name = f"{PREFIX}-{next(_names)}"
        self.id: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Container":
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def start(self, timeout: float = 60) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """podman run, not waiting for the app."""
        argv = ["run", "-d", "--name", self.name, "-p", f"127.0.0.1:{self.port}:{self.inner}"]
        self.id = podman(*argv, *self.options, self.image).stdout.strip()

    def restart(self) -> None:
        """The same container started again after a stop or a kill (same port)."""
        podman("start", self.id)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if not self.running():
                raise AssertionError(f"the container exited:\n{self.logs()}")
            try:
                return get(f"{self.url}/readyz")[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout, 0.1, message=lambda: f"not ready:\n{self.logs()}")

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.id).stdout.strip()

    def logs(self) -> str:
        result = podman("logs", self.id, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def stop(self, timeout: int = 30) -> float:
        """podman stop (SIGTERM, SIGKILL after timeout s); seconds it took."""
        started = time.monotonic()
        podman("stop", "-t", str(timeout), self.id, timeout=timeout + 30)
        return time.monotonic() - started

    def remove(self) -> None:
        if self.id is not None:
            podman("rm", "-f", "-t", "0", self.id, check=False)
            self.id = None


def pss_kib(pid: int) -> int:
    """Proportional set size of pid and its descendants (shared pages split between them)."""
    total = 0
    for each in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total


def bridge_gateway() -> str:
    """The address containers see a client of a published port come from: the default bridge's
    gateway (10.88.0.1), not loopback."""
    (network,) = json.loads(podman("network", "inspect", "podman").stdout)
    return network["subnets"][0]["gateway"]


class LoopbackBalancer:
    """nginx with the project's balancer site (`install.sh --print-balancer`), TLS on a loopback
    port, in front of upstreams; its config, pid and logs in dir."""

    def __init__(self, dir: Path, upstreams: list[str]):
        self.dir, self.port = dir, free_port()
        self.proc: subprocess.Popen | None = None
        dir.mkdir(parents=True, exist_ok=True)
        cert, key = dir / "balancer.crt", dir / "balancer.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
            + ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )
        env = {"MODELSERVER_TLS_CERT": str(cert), "MODELSERVER_TLS_KEY": str(key)}
        site = install_sh("--print-balancer", *upstreams, env=env)
        self.access_log = dir / "balancer-access.log"
        # TLS on loopback only; the plain-HTTP redirect and IPv6 are not needed here.
        tls = "    listen 443 ssl;\n    listen [::]:443 ssl;"
        http = "    listen 80;\n    listen [::]:80;"
        for old, new in {
            "/var/log/nginx/modelserver-balancer.log": str(self.access_log),
            tls: f"    listen 127.0.0.1:{self.port} ssl;",
            http: f"    listen 127.0.0.1:{free_port()};",
        }.items():
            site = replace(site, old, new)
        (dir / "modelserver-site.conf").write_text(site)
        (dir / "nginx.conf").write_text(render_nginx_conf(str(dir)))
        shutil.copy("/etc/nginx/mime.types", dir)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> "LoopbackBalancer":
        nginx = [find_nginx(), "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")]
        nginx += ["-e", str(self.dir / "nginx-error.log")]
        subprocess.run([*nginx, "-t", "-q"], check=True)
        with open(self.dir / "nginx.log", "ab") as log:
            self.proc = subprocess.Popen(nginx, stdout=log, stderr=log)
        try:
            wait_for(self.listening, 10, message="the balancer does not listen")
        except BaseException:
            self.__exit__()
            raise
        return self

    def listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"the balancer exited: {(self.dir / 'nginx-error.log').read_text()}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []


@contextlib.contextmanager
def containers(image: str, count: int, *options: str) -> Iterator[list[Container]]:
    """count containers of image, started side by side; all removed on exit."""
    started: list[Container] = []
    try:
        for _ in range(count):
            started.append(Container(image, *options))
            started[-1].launch()
        for container in started:
            container.wait_ready()
        yield started
    finally:
        for container in started:
            container.remove()
