"""Fixtures: the Flask app and test client, and the real stack (nginx -> uWSGI) on a free port."""

import json
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from deploy.localstack import PROJECT, Stack
from server import create_app


@pytest.fixture
def app():
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def stack():
    """One real nginx + uWSGI for the session; stopping it fails if a process or socket leaks.

    Its clients (127.0.0.1) are exempt from the per-client limits: the suite's load tests and
    its fuzzing come from that one address. tests/test_abuse.py runs the limits as shipped."""
    with Stack(exempt=("127.0.0.1",)) as running:
        yield running


@pytest.fixture(scope="session")
def user_stack():
    """The real stack serving a user's functions (tests/usermodels.py) instead of the demos.
    One of its models fails to load on purpose: /readyz is 503, so it waits for /healthz."""
    tests = str(Path(__file__).parent)
    uwsgi_args = ("--pythonpath", tests, "--module", "testapps:user_app")
    with Stack(uwsgi_args=uwsgi_args, ready_path="/healthz") as running:
        yield running


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Headless, and quiet: this machine's network is closed, and Chromium's background services
# would keep trying to reach it. --no-sandbox: CI runs as root, where the sandbox refuses.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: sudo apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


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


def copy_checkout(dest: Path) -> Path:
    """The checkout without venv, caches and git: what a user would copy to a server."""
    ignore = shutil.ignore_patterns(
        ".venv", ".git", ".cache", "__pycache__", ".*_cache", ".hypothesis"
    )
    return Path(shutil.copytree(PROJECT, dest, ignore=ignore))


ARTIFACTS = PROJECT / ".artifacts"  # screenshots, for a person to look at

FIGURES: list[tuple[str, str]] = []


def record_figure(name: str, value) -> None:
    """A measured figure, printed in a summary at the end of the run."""
    FIGURES.append((name, str(value)))


@pytest.fixture
def figure():
    """record_figure, as a fixture for tests."""
    return record_figure


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("measured figures")
        for name, value in FIGURES:
            terminalreporter.write_line(f"{name}: {value}")
