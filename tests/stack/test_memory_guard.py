"""The memory guard: a worker whose resident memory passes MODELSERVER_MAX_RSS_MB is replaced,
after answering, and no request fails on the way."""

import json
import re
import time
from pathlib import Path

import pytest

from deploy.localstack import Stack
from helpers import uwsgi_app, wait_for

# Far above an idle worker (about 50 MB with numpy and the demos), far below what /grow adds.
LIMIT_MB = 150


def pid_of(stack: Stack, path: str) -> int:
    status, _, body = stack.request("GET", path)
    assert status == 200, body
    return json.loads(body)["pid"]


# Sync workers, and workers with threads (for batching), whose threads all wait for requests.
@pytest.mark.parametrize("threads", [{}, {"MODELSERVER_THREADS": "4"}], ids=["sync", "threads"])
def test_a_worker_past_its_memory_limit_is_replaced_and_no_request_fails(monkeypatch, threads):
    monkeypatch.setenv("MODELSERVER_MAX_RSS_MB", str(LIMIT_MB))
    with Stack(uwsgi_args=uwsgi_app("testapps:flask_app"), env=threads) as stack:
        before = {pid_of(stack, "/pid") for _ in range(20)}
        grown = pid_of(stack, f"/grow?mb={2 * LIMIT_MB}")
        assert grown in before
        answered: list[int] = []

        def replaced() -> bool:
            answered.append(pid_of(stack, "/pid"))  # every one must be a 200
            return grown not in answered[-10:] and len(set(answered[-10:]) - before) > 0

        # The worker looks once a second, between requests, and leaves after answering the one
        # it serves; the master forks its successor from the preloaded app.
        wait_for(replaced, 15, interval=0.02, message=lambda: f"answered by {answered[-20:]}")


def test_a_model_loaded_in_each_worker_is_not_counted_against_the_limit(monkeypatch):
    """A model larger than the limit, loaded after the fork, would have every worker replaced
    as soon as it loads, again and again: the limit counts from what the worker held then."""
    monkeypatch.setenv("MODELSERVER_MAX_RSS_MB", str(LIMIT_MB))
    monkeypatch.setenv("TEST_MODEL_MB", str(LIMIT_MB + 50))
    with Stack(uwsgi_args=uwsgi_app("testapps:worker_model_app")) as stack:
        status, _, body = stack.request("GET", "/ballast")
        assert status == 200, body
        assert json.loads(body) == {"result": LIMIT_MB + 50}
        log = Path(stack.dir, "uwsgi.log")
        time.sleep(3)  # three looks of the guard in each worker
        assert "past MODELSERVER_MAX_RSS_MB" not in log.read_text()
        grown = pid_of(stack, f"/grow?mb={2 * LIMIT_MB}")  # past the limit beyond the model
        wait_for(lambda: "past MODELSERVER_MAX_RSS_MB" in log.read_text(), 15)
        line = next(row for row in log.read_text().splitlines() if "past MODELSERVER" in row)
        assert f"worker {grown} holds" in line, line
        models_mb = int(re.search(r"\((\d+) MB once its models had loaded\)", line).group(1))
        assert LIMIT_MB + 50 <= models_mb < LIMIT_MB + 100, line  # the model and the worker
