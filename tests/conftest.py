"""Fixtures: the Flask app and test client, and the real stack (nginx -> uWSGI) on a free port."""

import json

import pytest

from deploy.localstack import Stack
from server import create_app


@pytest.fixture
def app():
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def stack():
    """One real nginx + uWSGI for the session; stopping it fails if a process or socket leaks."""
    with Stack() as running:
        yield running


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
