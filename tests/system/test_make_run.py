"""`make run` as a user runs it: start, answer through nginx, Ctrl-C, nothing left behind."""

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from deploy.localstack import PROJECT, alive, free_port
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


def check_run(argv: list[str]) -> None:
    """Start argv, call each GET URL it prints through its nginx, Ctrl-C it, find nothing left."""
    run = Run(argv)
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


def test_make_run_serves_and_stops_on_ctrl_c():
    check_run(["make", "run", f"PORT={free_port()}"])


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
