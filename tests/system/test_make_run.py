"""`make run` as a user runs it: start, answer through nginx, Ctrl-C, nothing left behind."""

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from deploy.localstack import PROJECT, alive, free_port
from modelserver.endpoints import signature_of
from registry import ENDPOINTS

UP = re.compile(r"modelserver is up: (\S+) +\(uWSGI pid (\d+), nginx pid (\d+)")
DOCS = re.compile(r"^  docs (\S+)/docs$", re.MULTILINE)
SOCKET = re.compile(r"bound to UNIX address (\S+) ")


class Run:
    """A command in its own process group, its output collected line by line by a thread."""

    def __init__(self, argv: list[str], cwd: Path = PROJECT):
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=subprocess.PIPE,
            text=True,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.output.append(line)
            if match := pattern.search(line):
                return match
        self.kill()
        pytest.fail(f"no {pattern.pattern!r} in the output:\n{''.join(self.output)}")

    def interrupt(self, timeout: float) -> str:
        """Ctrl-C as a terminal sends it: SIGINT to the process group; returns all the output."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout)
        finally:
            self.kill()
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "".join(self.output)

    def kill(self) -> None:
        """Kill what is left of the group by its PID (the leader may be gone while its children
        are not); close the pipe once the reader is done."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # nothing left
            pass
        self.proc.wait()
        self.reader.join(5)
        self.proc.stdout.close()


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
            with urllib.request.urlopen(endpoint, timeout=10) as response:
                assert response.status == 200
                assert response.headers["Server"] == "nginx"
                assert "result" in json.loads(response.read())
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
