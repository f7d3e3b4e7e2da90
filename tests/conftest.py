"""Fixtures: the Flask app and test client, and the real stack (nginx -> uWSGI) on a free port.
No fixture here imports more than the app needs: the unit layer runs with these alone."""

import pytest

from deploy.localstack import Stack
from helpers import FIGURES, SERVED_APP, record_figure, uwsgi_app
from server import create_app


@pytest.fixture
def app():
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def stack():
    """One real nginx + uWSGI for the session, serving a user's functions (usermodels.SERVED)
    and the test routes, not the demos; stopping it fails if a process or socket leaks.

    Its clients (127.0.0.1) are exempt from the per-client limits: the suite's load tests and
    its fuzzing come from that one address. tests/stack/test_abuse.py runs the limits as shipped."""
    with Stack(uwsgi_args=SERVED_APP, exempt=("127.0.0.1",)) as running:
        yield running


@pytest.fixture(scope="session")
def registry_stack():
    """The same, serving registry.py as shipped: what the demos' own stack tests call."""
    with Stack(exempt=("127.0.0.1",)) as running:
        yield running


@pytest.fixture(scope="session")
def user_stack():
    """The real stack serving a user's functions (tests/helpers/usermodels.py), not the demos.
    One of its models fails to load on purpose: /readyz is 503, so it waits for /healthz."""
    with Stack(uwsgi_args=uwsgi_app("testapps:user_app"), ready_path="/healthz") as running:
        yield running


@pytest.fixture
def figure():
    """record_figure, as a fixture for tests."""
    return record_figure


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("measured figures")
        for name, value in FIGURES:
            terminalreporter.write_line(f"{name}: {value}")
