"""`make run` as a user runs it: start, answer through nginx, Ctrl-C, nothing left behind."""

import http.client
import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from deploy.localstack import PROJECT, alive, free_port
from helpers import copy_checkout
from helpers.commands import UP, Run
from modelserver.endpoints import signature_of
from registry import ENDPOINTS

DOCS = re.compile(r"^  docs (\S+)/docs$", re.MULTILINE)
SOCKET = re.compile(r"bound to UNIX address (\S+) ")


# The demos' GET endpoints (docs/digit-model.md): their listed examples must answer 200.
DEMOS = {"pisqrt"}


def get(url: str) -> tuple[int, dict, dict]:
    """GET url: the status, headers and JSON answer, an error's too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def check_run(argv: list[str], background: bool = False) -> None:
    """Start argv, call each GET URL it prints through its nginx, Ctrl-C it, find nothing left."""
    run = Run(argv, background=background)
    try:
        url, uwsgi_pid, nginx_pid = run.wait_for(UP, timeout=300).groups()
        run.wait_for(DOCS, timeout=10)  # the last line of the list of endpoints
        output = "".join(run.output)
        socket_path = SOCKET.search(output).group(1)
        printed = re.findall(r"^  GET  (\S+)$", output, re.MULTILINE)
        served = [
            name for name, entry in ENDPOINTS.items() if not signature_of(name, entry).takes_images
        ]
        assert len(printed) == len(served), output
        for endpoint in printed:
            status, headers, answer = get(endpoint)
            assert headers["Server"] == "nginx"
            # The demos answer their examples; a user's function may refuse its own (it checks
            # its input's length, say), with its JSON message.
            if urllib.parse.urlsplit(endpoint).path.lstrip("/") in DEMOS:
                assert (status, list(answer)) == (200, ["result"]), (endpoint, answer)
            else:
                assert list(answer) == (["result"] if status == 200 else ["message"]), answer
        output = run.interrupt(timeout=30)
    finally:
        run.kill()  # also when an assertion failed: no stack outlives the test
    assert "modelserver stopped" in output, output
    assert not alive(int(uwsgi_pid)) and not alive(int(nginx_pid))
    assert not os.path.exists(socket_path)
    assert not os.path.exists(os.path.dirname(socket_path))


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
def test_make_run_serves_and_stops_on_ctrl_c(background):
    # In the background, SIGINT is ignored unless the stack takes it back: kill -INT must stop it.
    check_run(["make", "run", f"PORT={free_port()}"], background)


def burst(url: str, count: int) -> Counter:
    """The statuses of count GETs of url sent one after another on one connection, as fast as
    they are answered: well past the 200 a second (bursts of 400) a client may send."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    statuses: Counter = Counter()
    try:
        for _ in range(count):
            conn.request("GET", f"{parts.path}?{parts.query}")
            response = conn.getresponse()
            response.read()
            statuses[response.status] += 1
    finally:
        conn.close()
    return statuses


@pytest.mark.parametrize("exempt", [False, True])
def test_make_run_exempts_the_clients_it_is_given_from_the_per_client_limits(exempt):
    run = Run(["make", "run", f"PORT={free_port()}", *(["EXEMPT=127.0.0.1"] if exempt else [])])
    try:
        url = run.wait_for(UP, timeout=300).group(1)
        statuses = burst(f"{url}/pisqrt?a=25", 1000)
        run.interrupt(timeout=30)
    finally:
        run.kill()
    if exempt:
        assert statuses == {200: 1000}, statuses
    else:
        assert set(statuses) == {200, 429} and statuses[200] >= 400, statuses


def readable_by_others(path: Path) -> bool:
    """True if every directory up to path lets other users in."""
    return all(os.stat(part).st_mode & 0o005 == 0o005 for part in [path, *path.parents])


@pytest.mark.skipif(os.geteuid() != 0, reason="as an ordinary user, every other test shows it")
def test_stack_runs_as_an_ordinary_user():
    if not readable_by_others(PROJECT / ".venv" / "bin"):
        pytest.skip(f"{PROJECT} is not readable by other users, so 'nobody' cannot run it")
    python = str(PROJECT / ".venv" / "bin" / "python")
    check_run(
        [
            "runuser",
            "-u",
            "nobody",
            "--",
            python,
            "deploy/localstack.py",
            "--port",
            str(free_port()),
        ]
    )


def test_make_run_says_so_when_the_app_does_not_start(tmp_path):
    # An app that refuses to start (here: a key file with no key) ends `make run` with the app's
    # message in uWSGI's output and one line that points at it, not a traceback of the runner.
    keys = tmp_path / "api-keys"
    keys.write_text("# the only key, commented out\n")
    # As from a shell: under `make test` this make would be a sub-make, and print its directory.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    env["MODELSERVER_API_KEYS_FILE"] = str(keys)
    done = subprocess.run(
        ["make", "run", f"PORT={free_port()}"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[-1].startswith("make: ***"), done.stdout
    assert lines[-2] == "modelserver did not start: uwsgi exited with 22; its output above says why"
    assert "holds comments but no key" in done.stdout
    assert 'localstack.py", line' not in done.stdout  # no frame of the runner's own


# A registry with a model whose loader fails, beside a function that needs none.
BROKEN_MODEL_REGISTRY = """
import algo
from modelserver.endpoints import serve


def load_broken():
    raise RuntimeError("weights file missing")


def uses_broken(model, x: float) -> float:
    return x


ENDPOINTS = {"pisqrt": algo.pi_sqrt, "broken": serve(uses_broken, model=load_broken)}
"""


def test_make_run_serves_the_others_when_a_model_fails_to_load(tmp_path):
    # As the README says of a model that fails to load: its endpoints answer 503, the others
    # serve, and the runner says so rather than waiting for a readiness that will not come.
    checkout = copy_checkout(tmp_path / "checkout")
    (checkout / "registry.py").write_text(BROKEN_MODEL_REGISTRY)
    python = str(PROJECT / ".venv" / "bin" / "python")
    run = Run([python, "deploy/localstack.py", "--port", str(free_port())], cwd=checkout)
    try:
        url = run.wait_for(UP, timeout=60).group(1)
        run.wait_for(re.compile("^New code or models: kill -HUP"), timeout=10)  # the banner's end
        output = "".join(run.output)
        assert "/readyz answers 503: not ready: model(s) not loaded: broken." in output, output
        assert "weights file missing" in output, output  # the loader's traceback, above
        assert get(f"{url}/pisqrt?a=25")[::2] == (200, {"result": 8.86226925452758})
        status, _, answer = get(f"{url}/broken?x=1")
        assert status == 503, answer
        assert answer == {"message": "the model 'broken' is not loaded; see /readyz"}
        output = run.interrupt(timeout=30)
    finally:
        run.kill()
    assert "modelserver stopped" in output, output
