"""async functions and generators run on the worker's loop (modelserver.eventloop), interrupted
as the harakiri signal interrupts them: inside the loop, in the main thread."""

import asyncio
import signal

import pytest

from modelserver.deadline import DeadlineExceeded
from modelserver.eventloop import drive, plain, run


@pytest.fixture
def deadline_in():
    """Raise DeadlineExceeded in this thread after `seconds`, as uWSGI's signal does."""

    def raise_deadline(signum, frame):
        raise DeadlineExceeded()

    previous = signal.signal(signal.SIGALRM, raise_deadline)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_an_async_generator_stopped_at_the_deadline_says_so_and_cleans_up(deadline_in):
    steps = []

    async def stuck():
        try:
            yield 1
            await asyncio.sleep(60)
            yield 2
        finally:
            steps.append("finally")

    items = drive(stuck())
    assert next(items) == 1
    deadline_in(0.1)
    with pytest.raises(DeadlineExceeded):  # not aclose()'s RuntimeError in its place
        next(items)
    assert steps == ["finally"]
    assert run(asyncio.sleep(0, "the loop serves on")) == "the loop serves on"


def test_an_async_function_stopped_at_the_deadline_is_cancelled(deadline_in):
    steps = []

    async def stuck() -> float:
        try:
            await asyncio.sleep(60)
        finally:
            steps.append("finally")
        return 1.0

    deadline_in(0.1)
    with pytest.raises(DeadlineExceeded):
        plain(stuck)()
    assert steps == ["finally"]
    assert run(asyncio.sleep(0, "the loop serves on")) == "the loop serves on"
