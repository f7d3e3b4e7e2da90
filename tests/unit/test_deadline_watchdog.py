"""The watchdog that times each request of a worker with threads (modelserver/deadline.py),
in one process: the stop, the kill of a worker stuck past the grace, the backstop, and a stop
that must not outlive its request. (stack/test_deadline.py: the same in uWSGI.)"""

import threading
import time

import pytest

from modelserver import deadline
from modelserver.deadline import DeadlineExceeded, Timed, Watchdog, raise_in

NOW = 1000.0  # a monotonic time the tests set the requests' starts against


class Recorded:
    """A watchdog whose recycles, kills and backstops are written down instead of done."""

    def __init__(self, seconds: float = 30, grace: float = 5):
        self.events: list = []
        self.watchdog = Watchdog(
            seconds,
            grace,
            backstop=lambda n: self.events.append(("backstop", n)),
            recycle=lambda: self.events.append("recycle"),
            kill=lambda: self.events.append("kill"),
        )
        self.watchdog.thread = threading.current_thread()  # no thread of its own: tests check


def blocked_thread(outcome: list) -> tuple[threading.Thread, threading.Event]:
    """A thread in Python's call of C (an Event's wait) until released, like a model's call
    stuck in C; what it then raises, if anything, goes to outcome."""
    release = threading.Event()

    def run() -> None:
        try:
            release.wait(10)
            for _ in range(1000):  # Python instructions, where a stop is raised
                pass
            outcome.append("ended")
        except DeadlineExceeded:
            outcome.append("stopped")

    thread = threading.Thread(target=run)
    thread.start()
    return thread, release


def test_a_request_past_its_deadline_is_stopped_in_its_own_thread():
    recorded, outcome, young = Recorded(), [], []
    thread, release = blocked_thread(outcome)
    other, release_other = blocked_thread(young)
    recorded.watchdog.running[thread.ident] = NOW - 30
    recorded.watchdog.running[other.ident] = NOW - 29
    recorded.watchdog.check(NOW)
    release.set()
    release_other.set()
    thread.join(10)
    other.join(10)
    assert outcome == ["stopped"]
    assert young == ["ended"]  # a second younger, in the same worker
    assert recorded.events == [("backstop", 8), "recycle"]  # the oldest's 30 + 5 + 3 looks, - 30


def test_a_request_still_in_python_after_the_grace_has_its_worker_killed():
    recorded, outcome = Recorded(), []
    thread, release = blocked_thread(outcome)
    recorded.watchdog.running[thread.ident] = NOW - 30
    recorded.watchdog.check(NOW)
    recorded.watchdog.check(NOW + 4)
    assert recorded.events == [("backstop", 8), "recycle", ("backstop", 4)]
    recorded.watchdog.check(NOW + 5)
    release.set()
    thread.join(10)
    assert recorded.events[3:] == [("backstop", 3), "kill"]
    assert outcome == ["stopped"]  # told once: the stop was waiting in its thread


def test_a_stopped_request_whose_thread_left_python_is_over_not_stuck():
    # Its stop was raised as its answer closed, before the end of its timing could run.
    recorded = Recorded()
    recorded.watchdog.running[12345] = NOW - 30  # no such thread: none of its frames in Python
    recorded.watchdog.check(NOW)
    recorded.watchdog.check(NOW + 5)
    assert "kill" not in recorded.events
    assert recorded.watchdog.running == {} and recorded.watchdog.stopped == {}
    assert recorded.events[-1] == ("backstop", None)  # nothing running: disarmed


def test_a_request_that_finds_the_worker_idle_arms_the_backstop():
    recorded = Recorded()
    recorded.watchdog.begin()
    recorded.watchdog.begin()  # another thread's, beside it, would not
    recorded.watchdog.end()
    assert recorded.events == [("backstop", 38)]  # 30 + 5 + 3 looks


def test_an_idle_worker_disarms_the_backstop():
    recorded = Recorded()
    recorded.watchdog.check(NOW)
    assert recorded.events == [("backstop", None)]
    assert not recorded.watchdog.armed


def test_a_stop_not_yet_raised_is_cancelled():
    outcome = []
    thread, release = blocked_thread(outcome)
    raise_in(thread.ident, DeadlineExceeded)
    raise_in(thread.ident, None)
    release.set()
    thread.join(10)
    assert outcome == ["ended"]


def test_a_new_request_of_a_thread_starts_with_no_stop():
    recorded = Recorded()
    watchdog = recorded.watchdog
    watchdog.running[threading.get_ident()] = NOW - 40
    watchdog.stopped[threading.get_ident()] = NOW - 10  # its end was lost
    watchdog.begin()
    assert watchdog.stopped == {}
    watchdog.check(time.monotonic() + 1)
    assert "kill" not in recorded.events and "recycle" not in recorded.events
    watchdog.end()


def test_a_watched_app_is_timed_until_its_answer_is_closed():
    recorded = Recorded()
    watchdog = recorded.watchdog
    seen = []

    def app(environ, start_response):
        seen.append(dict(watchdog.running))
        return iter([b"a", b"b"])

    body = watchdog.watched(app)({}, None)
    assert list(body) == [b"a", b"b"]
    assert threading.get_ident() in seen[0]
    assert threading.get_ident() in watchdog.running  # until the server closes the answer
    body.close()
    assert watchdog.running == {}


def test_an_answer_whose_close_raises_still_ends_its_request():
    ended = []

    class Failing:
        def __iter__(self):
            return iter([b"a"])

        def close(self):
            raise RuntimeError("a generator that would not close")

    with pytest.raises(RuntimeError):
        Timed(Failing(), lambda: ended.append(True)).close()
    assert ended == [True]


def test_a_watched_app_that_raises_ends_its_request():
    watchdog = Recorded().watchdog

    def app(environ, start_response):
        raise OSError("client gone")

    with pytest.raises(OSError):
        watchdog.watched(app)({}, None)
    assert watchdog.running == {}


def test_a_wait_of_the_request_ends_a_look_before_its_stop(monkeypatch):
    watchdog = Recorded().watchdog
    monkeypatch.setattr(deadline, "WATCHDOG", watchdog)
    watchdog.running[threading.get_ident()] = time.monotonic() - 10
    assert 18.9 < deadline.seconds_left() <= 19.0  # 30 s from its start, less 10, less a look
