"""The image of the whole stack, through real podman: built once from base images made here from
Debian packages (tests/helpers/containers.py); run, read-only, drained on SIGTERM; three
containers behind the project's balancer under wrk load, stopped, killed and replaced one by one
by an image holding a user's own model, with no failed request."""

import http.client
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections import Counter

import pytest

from deploy.localstack import PROJECT
from helpers import HELPERS, copy_checkout, record_figure, wait_for
from helpers.containers import (
    Container,
    LoopbackBalancer,
    bridge_gateway,
    build_image,
    containers,
    podman,
    podman_env,
    pss_kib,
)
from helpers.predict_cases import SEVEN, check, drawing, encode
from helpers.type_cases import form

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="podman and mmdebstrap run as root here")

TAG = f"localhost/modelserver:test-{os.getpid()}"
NEW_TAG = f"localhost/modelserver:test-new-{os.getpid()}"
RESULT = {"result": 8.86226925452758}
SEVEN_PNG = encode(drawing(SEVEN), "PNG")
# Larger than nginx's in-memory body buffer (16 KB): written to its temp path on the way.
PADDING = b"\0" * 600_000  # after the image's end, which the decoder ignores
SEVEN_BIG_JPEG = encode(drawing(SEVEN).resize((1000, 1000)).convert("RGB"), "JPEG")

# A user's own model, the README's way: a module at the top of the checkout and one registry line.
MY_MODEL = '''"""A user's own model."""


def double(x: float) -> float:
    """Twice x."""
    return 2 * x
'''
REGISTRY_START = "ENDPOINTS: dict[str, Callable | Endpoint] = {\n"
CONNECTIONS = 16  # wrk's clients: enough to keep three containers busy on this 2-core machine


def request(url: str, method: str = "GET", path: str = "/", body=None, headers=None) -> tuple:
    """One plain HTTP request: status, headers (lower-case names), body."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def image():
    """The image of this checkout, built once; its size and build time recorded."""
    seconds = build_image(PROJECT, TAG)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", TAG).stdout)
    record_figure(
        "container image: build s (layers cached after the first), size MB",
        f"{seconds:.0f} s, {size / 1e6:.0f} MB",
    )
    try:
        yield TAG
    finally:
        podman("rmi", "-f", TAG, check=False)


@pytest.fixture(scope="module")
def new_image(image, tmp_path_factory):
    """The same checkout plus a user's model (my_model.py and its registry line): no file list,
    Dockerfile or install rule edited."""
    app = copy_checkout(tmp_path_factory.mktemp("container") / "app")
    (app / "my_model.py").write_text(MY_MODEL)
    edit(app / "registry.py", "import algo\n", "import algo\nimport my_model\n")
    edit(app / "registry.py", REGISTRY_START, REGISTRY_START + '    "double": my_model.double,\n')
    build_image(app, NEW_TAG)
    try:
        yield NEW_TAG
    finally:
        podman("rmi", "-f", NEW_TAG, check=False)


def test_the_image_serves_the_api_through_its_nginx_as_non_root(image):
    with Container(image) as box:
        status, _, body = request(box.url, path="/pisqrt?a=25")
        assert status == 200, body
        assert json.loads(body) == RESULT
        png = {"Content-Type": "image/png"}
        check(*request(box.url, "POST", "/predict", SEVEN_PNG, png), 200, 7)
        # Every process, PID 1 (the entrypoint) included, is the image's own user.
        top = podman("top", box.id, "user", "pid", "args").stdout.splitlines()[1:]
        assert {line.split()[0] for line in top} == {"modelserver"}, top
        assert any(line.split()[1] == "1" and "entrypoint.py" in line for line in top), top
        # /metrics through a published port comes from the bridge, not loopback: refused as
        # shipped (MODELSERVER_METRICS_ALLOW opens it, test_read_only_...).
        status, _, body = request(box.url, path="/metrics")
        assert status == 403, body
        assert podman("healthcheck", "run", box.id, check=False).returncode == 0, box.logs()
        # Logs on the container's output: nginx's JSON line of each request, with its id.
        lines = [json.loads(line) for line in box.logs().splitlines() if line.startswith("{")]
        assert any(line["uri"] == "/pisqrt?a=25" and line["request_id"] for line in lines), lines
        memory = pss_kib(int(box.inspect("{{.State.Pid}}")))
        record_figure("container memory after a few requests (PSS, MB)", f"{memory / 1024:.0f}")


def test_read_only_root_with_one_tmpfs_and_port_from_the_environment(image):
    gateway = bridge_gateway()
    options = ["--read-only", "--read-only-tmpfs=false"]
    options += ["--tmpfs", "/run/modelserver:mode=1777"]
    options += ["-e", "PORT=9090", "-e", f"MODELSERVER_METRICS_ALLOW={gateway}"]
    with Container(image, *options, inner=9090) as box:
        status, _, body = request(box.url, path="/pisqrt?a=25")
        assert status == 200, body
        assert json.loads(body) == RESULT
        jpeg = {"Content-Type": "image/jpeg"}
        check(*request(box.url, "POST", "/predict", SEVEN_BIG_JPEG, jpeg), 200, 7)
        # A form's part past 500 KB is spooled to a file: in the one writable directory.
        body, content_type = form(("image", "7.jpg", "image/jpeg", SEVEN_BIG_JPEG + PADDING))
        form_type = {"Content-Type": content_type}
        check(*request(box.url, "POST", "/predict", body, form_type), 200, 7)
        status, _, body = request(box.url, path="/metrics")
        assert status == 200, body
        assert b"modelserver_requests_total" in body
        denied = podman("exec", box.id, "touch", "/opt/modelserver/app/x", check=False)
        assert denied.returncode != 0
        assert "Read-only file system" in denied.stderr


def test_sigterm_drains_the_request_in_flight_and_exits_0(image):
    with Container(image) as box:
        # A request in flight: its headers and part of its body sent, the rest after the stop.
        head = (
            f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
            f"Content-Length: {len(SEVEN_PNG)}\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", box.port), timeout=30) as client:
            client.sendall(head.encode() + SEVEN_PNG[:100])
            time.sleep(0.3)
            started = time.monotonic()
            stop = subprocess.Popen(
                ["podman", "stop", "-t", "30", box.id],
                env=podman_env(),
                stdout=subprocess.DEVNULL,
            )
            try:
                # nginx takes no new connection once it drains...
                wait_for(lambda: refused(box.port), 10, message="nginx still accepts")
                # ...and answers the one in flight.
                client.sendall(SEVEN_PNG[100:])
                answer = b""
                while chunk := client.recv(65536):
                    answer += chunk
                # Closed at once: nginx would wait for the client to close (lingering close).
                client.close()
            finally:
                stop.wait(60)
        took = time.monotonic() - started
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer
        assert json.loads(body)["result"]["label"] == 7
        assert box.inspect("{{.State.ExitCode}}") == "0", box.logs()
        assert "goodbye to uWSGI" in box.logs()
        assert took < 10, took
        record_figure("container stop with a request in flight (s)", f"{took:.1f}")


def test_a_stop_while_the_app_loads_is_a_prompt_exit_0(image):
    """uWSGI takes SIGTERM as a drain only once its app is loaded; one that came before was lost
    and the container waited out its grace period, to be killed. (A stop in the first tenth of a
    second, before Python runs the entrypoint, is dropped by the kernel: PID 1 has no handler.)"""
    box = Container(image)
    try:
        box.launch()  # not waiting for it to be ready: stopped as uWSGI starts
        wait_for(lambda: "uWSGI" in box.logs(), 30, 0.02, message="uWSGI did not start")
        took = box.stop(timeout=20)
        assert box.inspect("{{.State.ExitCode}}") == "0", box.logs()
        assert took < 10, (took, box.logs())
    finally:
        box.remove()


@pytest.mark.parametrize(
    "setting", ["MODELSERVER_WORKERS=abc", "MODELSERVER_WORKERS=0", "MODELSERVER_THREADS=abc"]
)
def test_a_worker_count_that_is_no_number_stops_the_start(image, setting):
    box = Container(image, "-e", setting)
    try:
        box.launch()
        wait_for(lambda: not box.running(), 30, message="still running")
        assert box.inspect("{{.State.ExitCode}}") == "1", box.logs()
        name = setting.partition("=")[0]
        assert f"{name} must be a whole number >= 1" in box.logs()
    finally:
        box.remove()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def docs_run_options() -> list[str]:
    """The options of each `podman run -d ... modelserver:latest` line of docs/container.md."""
    docs = (PROJECT / "docs" / "container.md").read_text()
    return re.findall(r"^podman run -d (.*) modelserver:latest$", docs, re.M)


@pytest.mark.parametrize("options", docs_run_options())
def test_the_docs_podman_run_lines_serve(image, options):
    """As written, but for the name and the published port: a free one of this run's."""
    args = shlex.split(options)
    if "--name" in args:
        del args[args.index("--name") : args.index("--name") + 2]
    published = args.index("-p")
    assert args[published + 1].startswith("127.0.0.1:"), "the docs publish on loopback"
    del args[published : published + 2]
    with Container(image, *args) as box:
        status, _, body = request(box.url, path="/pisqrt?a=25")
        assert status == 200, body
        assert json.loads(body) == RESULT


def test_a_users_model_is_in_the_image_with_no_list_edited(new_image):
    listed = podman("run", "--rm", new_image, "ls", "/opt/modelserver/app").stdout.split()
    assert "my_model.py" in listed, listed
    with Container(new_image) as box:
        status, _, body = request(box.url, path="/double?x=21")
        assert status == 200, body
        assert json.loads(body) == {"result": 42.0}


# --- three containers behind the balancer, under load -----------------------------------------


@pytest.fixture(scope="module")
def cluster(image, tmp_path_factory):
    """Three containers of the image and the project's balancer site in front, on loopback. The
    containers trust the balancer (it reaches them from the bridge's gateway) for the client's
    address, and exempt that client (wrk, 127.0.0.1) from the per-client limits."""
    options = ["-e", f"MODELSERVER_ALLOW={bridge_gateway()}"]
    options += ["-e", "MODELSERVER_EXEMPT_CLIENTS=127.0.0.1"]
    with containers(image, 3, *options) as boxes:
        upstreams = [f"127.0.0.1:{box.port}" for box in boxes]
        with LoopbackBalancer(tmp_path_factory.mktemp("balancer"), upstreams) as balancer:
            balancer.boxes, balancer.options = boxes, options
            yield balancer


def wrk(balancer: LoopbackBalancer, seconds: float, path: str = "/pisqrt?a=25"):
    """wrk over TLS to the balancer, bounded in time; finish with wrk_report()."""
    argv = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "30s"]
    argv += ["-s", str(HELPERS / "wrk_statuses.lua"), balancer.url + path]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def wrk_report(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    report = json.loads(out.strip().splitlines()[-1])
    statuses = Counter()
    for per_thread in report["statuses"]:
        statuses.update({int(status): n for status, n in per_thread.items()})
    return {**report, "statuses": dict(statuses)}


def under_load(balancer, name: str, event, seconds: float = 8, at: float = 2) -> None:
    """A baseline wrk run, then one with event() at `at` s (wrk ends at `seconds`, or when
    event returns, whichever is later): both free of failures; the figures recorded."""
    before = wrk_report(wrk(balancer, 3))
    load = wrk(balancer, 120)
    try:
        time.sleep(at)
        event()
        time.sleep(max(0.0, seconds - at))
        load.send_signal(signal.SIGINT)  # wrk prints its report and exits
        during = wrk_report(load)
    finally:
        if load.poll() is None:
            load.kill()
            load.communicate()
    record_figure(
        f"containers behind the balancer, {name}: p99 before / during (ms), requests during",
        f"{before['p99_ms']} / {during['p99_ms']} (max {during['max_ms']}), {during['statuses']}",
    )
    for report in (before, during):
        assert report["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}, report
        assert set(report["statuses"]) == {200}, report


def test_podman_stop_of_one_under_load_fails_no_request(cluster):
    box = cluster.boxes[0]
    under_load(cluster, "podman stop of one", lambda: box.stop())
    assert box.inspect("{{.State.ExitCode}}") == "0", box.logs()
    box.restart()


def test_podman_kill_of_one_under_load_fails_no_request(cluster):
    box = cluster.boxes[1]
    under_load(cluster, "podman kill -s KILL of one", lambda: podman("kill", "-s", "KILL", box.id))
    box.restart()


def back_in_rotation(balancer: LoopbackBalancer, port: int, offset: int) -> bool:
    """Whether the balancer has had a 200 from the container on port since offset (bytes) of its
    access log."""
    with balancer.access_log.open("rb") as log:
        log.seek(offset)
        return f"upstream=127.0.0.1:{port} upstream_status=200".encode() in log.read()


def test_rolling_replace_with_a_new_image_under_load(cluster, new_image):
    def replace_all() -> None:
        for i, old in enumerate(cluster.boxes):
            old.stop()
            old.remove()
            new = Container(new_image, *cluster.options, port=old.port)
            cluster.boxes[i] = new  # removed by the fixture, whatever happens next
            offset = cluster.access_log.stat().st_size
            new.start()
            # A container the balancer found failed while it started gets requests again only
            # after fail_timeout (5 s): stopping the next one before then can leave none in
            # rotation. deploy/rollout.sh waits the same way for a host.
            wait_for(
                lambda port=new.port, offset=offset: back_in_rotation(cluster, port, offset),
                15,
                0.5,
                message="the balancer sent the new container no request",
            )

    under_load(cluster, "rolling replace of all 3", replace_all, seconds=0)
    # The new code answers on every container, and through the balancer.
    context = ssl._create_unverified_context()  # the balancer's self-signed test certificate
    with urllib.request.urlopen(f"{cluster.url}/double?x=21", context=context) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"result": 42.0}
    for box in cluster.boxes:
        status, _, body = request(box.url, path="/double?x=21")
        assert status == 200, body
        assert json.loads(body) == {"result": 42.0}
