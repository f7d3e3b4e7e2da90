"""Plain helpers the tests import (fixtures live in the conftest.py files): the one JSON error
shape, request bodies, the one way to wait for a condition, figures and artifacts of a run."""

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from deploy.localstack import PROJECT
from modelserver.handover import accepting_workers

T = TypeVar("T")

# This folder: uWSGI finds the test apps (testapps.py, bigmodel_app.py) on it.
HELPERS = Path(__file__).resolve().parent
ARTIFACTS = PROJECT / ".artifacts"  # screenshots, for a person to look at


def fifo_reload(stack) -> None:
    """uWSGI's graceful reload ("r" to the master FIFO) once every worker takes requests, as
    modelserver/handover.py sends it for `systemctl reload`.
    A worker still starting has no handler for the master's SIGHUP yet: it misses the reload,
    which then waits for it until worker-reload-mercy (40 s)."""
    wait_for(lambda: accepting_workers(stack.socket_path), 30, message=stack.logs)
    Path(stack.socket_path + ".fifo").write_text("r")


def scrape(stack) -> dict[tuple, float]:
    """Every sample of a stack's /metrics: (name, sorted labels) -> value."""
    status, headers, body = stack.request("GET", "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version="), headers
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def uwsgi_app(module: str) -> tuple[str, ...]:
    """uWSGI arguments that serve a test app of this folder, e.g. "testapps:flask_app"."""
    return ("--pythonpath", str(HELPERS), "--module", module)


# uWSGI arguments of the app the framework's stack tests serve: a user's functions
# (usermodels.SERVED) and the test routes, so that they hold with the demos removed.
SERVED_APP = uwsgi_app("testapps:served_app")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "the condition did not hold",
) -> T:
    """Call predicate every interval s until it returns something truthy, and return that.
    After timeout s the test fails with message (a callable: called then, to show late state,
    a log say). The predicate may fail sooner itself, e.g. when the process it waits on died."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout} s)")
        time.sleep(interval)
    return result


def answer_of(response) -> tuple[int, dict, bytes]:
    """A Flask test client's response as the stack's requests give one: status, headers by
    lower-case name, body."""
    return response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.data


def assert_json_error(
    status: int, headers: dict, body: bytes, expected_status: int, *words: str
) -> str:
    """The one error shape: the status, JSON content, {"message": "..."} naming each word."""
    assert status == expected_status, body
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert list(payload) == ["message"], payload
    for word in words:
        assert word in payload["message"], (word, payload["message"])
    return payload["message"]


def multipart(*fields: tuple[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type: each (name, bytes) a field; a field
    named "image" is sent as a file, the others as text."""
    boundary = "modelserver-test-boundary"
    parts = []
    for i, (name, data) in enumerate(fields):
        filename = f'; filename="f{i}.png"' if name == "image" else ""
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'
        parts.append(head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def upload(stack, path: str, body: bytes, content_type: str) -> tuple:
    """POST an upload to path from 127.0.0.1, one upload after another (see one_after_another)."""
    headers = {"Content-Type": content_type}
    return one_after_another(lambda: stack.request("POST", path, body, headers, timeout=30))


def one_after_another(send: Callable[[], tuple]) -> tuple:
    """send()'s answer, for an upload sent right after the last one's answer. nginx frees a
    request's place in the per-client count just after the answer leaves, so the upload may find
    it still taken: one 429 (Retry-After) then, and a second try."""
    answer = send()
    if answer[0] == 429:
        time.sleep(0.2)
        answer = send()
    return answer


def copy_checkout(dest: Path) -> Path:
    """The checkout without venv, caches and git: what a user would copy to a server."""
    ignore = shutil.ignore_patterns(
        ".venv", ".git", ".cache", "__pycache__", ".*_cache", ".hypothesis"
    )
    return Path(shutil.copytree(PROJECT, dest, ignore=ignore))


FIGURES: list[tuple[str, str]] = []


def record_figure(name: str, value) -> None:
    """A measured figure, printed in a summary at the end of the run."""
    FIGURES.append((name, str(value)))
