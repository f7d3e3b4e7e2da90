"""A command run as a user runs `make run` in a terminal: its own process group, its output read
line by line, Ctrl-C, and nothing left behind."""

import os
import queue
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from deploy.localstack import PROJECT
from helpers import wait_for

# The line the local stack prints once it answers.
UP = re.compile(r"modelserver is up: (\S+) +\(uWSGI pid (\d+), nginx pid (\d+)")


def ignore_interrupts() -> None:
    """What a shell does to a background job it starts: SIGINT and SIGQUIT ignored."""
    for number in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(number, signal.SIG_IGN)


class Run:
    """A command in its own process group, its output collected line by line by a thread."""

    def __init__(self, argv: list[str], cwd: Path = PROJECT, background: bool = False):
        """background: started as a shell starts a background job (`make run &`), with SIGINT
        and SIGQUIT ignored, which its own children inherit."""
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=subprocess.PIPE,
            text=True,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=ignore_interrupts if background else None,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        """The first line of output that matches, within timeout s; the command killed and the
        output shown if none does or the command ends first."""

        def next_line_matching() -> re.Match | None:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                ended = self.proc.poll() is not None and self.lines.empty()
                assert not ended, f"the command ended with {self.proc.returncode}"
                return None
            self.output.append(line)
            return pattern.search(line)

        try:
            return wait_for(next_line_matching, timeout, interval=0)
        except AssertionError as failure:
            self.kill()
            output = "".join(self.output)
            pytest.fail(f"no {pattern.pattern!r} in the output ({failure}):\n{output}")

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
