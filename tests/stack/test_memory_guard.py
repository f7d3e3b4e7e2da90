"""The memory guard: a worker whose resident memory passes MODELSERVER_MAX_RSS_MB is replaced,
after answering, and no request fails on the way."""

import json

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
@pytest.mark.parametrize("threads", [(), ("--threads", "4")], ids=["sync", "threads"])
def test_a_worker_past_its_memory_limit_is_replaced_and_no_request_fails(monkeypatch, threads):
    monkeypatch.setenv("MODELSERVER_MAX_RSS_MB", str(LIMIT_MB))
    with Stack(uwsgi_args=(*uwsgi_app("testapps:flask_app"), *threads)) as stack:
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
