"""The deadline of every request: past it a request is answered 504 and its worker replaced.

A sync worker leaves the timing to uWSGI's harakiri and turns its signal into the 504. A worker
with threads times each request itself (Watchdog): uWSGI 2.0 keeps one harakiri clock per
worker, which each of its threads sets when a request starts, clears when one ends, and moves
on while it reads a POST's body, so it stops requests that are not late and misses those that
are (docs/batching.md). uwsgi.ini turns it off for threads and hands its value to the app."""

import ctypes
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable

from werkzeug.exceptions import HTTPException

# uwsgi.ini's harakiri-graceful-signal: uWSGI sends it to a worker whose request ran past
# harakiri, a few seconds before it kills the worker.
DEADLINE_SIGNAL = signal.SIGSYS
# Set by uwsgi.ini (harakiri's value) where the app, not uWSGI, times each request.
DEADLINE_VARIABLE = "MODELSERVER_DEADLINE_SECONDS"
# Without either (Flask's development server, the test client), a request this old is stuck.
DEFAULT_DEADLINE_SECONDS = 30.0
# harakiri-graceful-timeout's default here: how long a stopped request may take to end.
DEFAULT_GRACE_SECONDS = 5.0
# How often the watchdog looks, as often as uWSGI's master looks at harakiri.
TICK_SECONDS = 1.0
# The watchdog of this worker, where the app times its requests (None: uWSGI's harakiri does).
WATCHDOG: "Watchdog | None" = None
LOG = logging.getLogger(__name__)


class DeadlineExceeded(HTTPException):
    """The request ran past its deadline; answered 504, then the worker is recycled."""

    code = 504
    description = "the request ran past the server's time limit and was stopped"


def deadline_seconds() -> float:
    """The time a request may take before it is stopped: the app's, else uWSGI's harakiri."""
    if os.environ.get(DEADLINE_VARIABLE):
        return float(os.environ[DEADLINE_VARIABLE])
    try:
        import uwsgi
    except ImportError:
        return DEFAULT_DEADLINE_SECONDS
    return float(uwsgi.opt.get("harakiri") or DEFAULT_DEADLINE_SECONDS)


def seconds_left() -> float:
    """The time this request may still wait for something of its own (the batcher's wait),
    ending a look before the watchdog would stop it: a stop raised inside such a wait could
    leave what it waits on half-changed."""
    began = WATCHDOG.running.get(threading.get_ident()) if WATCHDOG else None
    if began is None:
        return deadline_seconds()
    return began + WATCHDOG.seconds - TICK_SECONDS - time.monotonic()


def stop_requests_at_the_deadline(app) -> None:
    """Under uWSGI, stop each request at its deadline: in a sync worker harakiri's signal raises
    DeadlineExceeded inside it; where uwsgi.ini hands the deadline to the app, a Watchdog does.
    A worker with threads and uWSGI's harakiri on would stop requests that are not late, so the
    app refuses to start."""
    global WATCHDOG
    try:
        import uwsgi
    except ImportError:
        return
    signal.signal(DEADLINE_SIGNAL, raise_deadline_exceeded)
    harakiri = int(uwsgi.opt.get("harakiri") or 0)
    threads = int(uwsgi.opt.get("threads") or 1)
    if threads > 1 and harakiri > 0:
        raise RuntimeError(
            f"uWSGI's harakiri ({harakiri} s) is on in workers with {threads} threads, where "
            "uWSGI 2.0 stops requests that are not late: set MODELSERVER_THREADS instead of "
            "--threads (uwsgi.ini then hands the deadline to the app), or add --harakiri 0 "
            f"--env {DEADLINE_VARIABLE}={harakiri}"
        )
    if os.environ.get(DEADLINE_VARIABLE):
        grace = float(uwsgi.opt.get("harakiri-graceful-timeout") or DEFAULT_GRACE_SECONDS)
        WATCHDOG = Watchdog(deadline_seconds(), grace)
        app.wsgi_app = WATCHDOG.watched(app.wsgi_app)


def raise_deadline_exceeded(signum, frame):
    raise DeadlineExceeded()


def recycle_this_worker() -> None:
    """Ask uWSGI to replace this worker (SIGHUP: finish, exit, respawn): an interrupted request
    may have left its state half-changed."""
    os.kill(os.getpid(), signal.SIGHUP)


def kill_this_worker() -> None:
    """End this worker now (the master respawns it): what harakiri does to code stuck in C."""
    os.kill(os.getpid(), signal.SIGKILL)


def exit_unless_disarmed(seconds: float | None) -> None:
    """End this worker in `seconds` (None: not at all) from a thread of C, which runs when no
    Python can, and write every thread's traceback to the log first."""
    if seconds is None:
        faulthandler.cancel_dump_traceback_later()
    else:
        faulthandler.dump_traceback_later(seconds, exit=True)


def raise_in(thread: int, error: type[BaseException] | None) -> None:
    """Raise error in another thread at its next Python instruction (None: cancel one that
    has not been raised yet). The C API's PyThreadState_SetAsyncExc, called holding the GIL."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread), ctypes.py_object(error) if error else ctypes.py_object()
    )


class Watchdog:
    """The deadline of every request of a worker, each timed from its own start by a thread of
    the worker's. A request past it gets DeadlineExceeded raised in its own thread (answered
    504, the worker then recycled, as in a sync worker). One still in Python `grace` seconds
    later is stuck where Python cannot reach it (in C): the worker is killed, as harakiri does.
    Code that never lets go of the GIL stops this thread too; for it, a timer of C
    (`backstop`) ends the worker a little past that kill unless each look moves it on."""

    def __init__(
        self,
        seconds: float,
        grace: float,
        backstop: Callable[[float | None], None] = exit_unless_disarmed,
        recycle: Callable[[], None] = recycle_this_worker,
        kill: Callable[[], None] = kill_this_worker,
    ):
        self.seconds = seconds
        self.grace = grace
        self.backstop = backstop
        self.recycle = recycle
        self.kill = kill
        self.lock = threading.Lock()
        self.running: dict[int, float] = {}  # thread -> when its request began (monotonic)
        self.stopped: dict[int, float] = {}  # thread -> when its request was told to stop
        self.armed = False  # the backstop
        self.thread: threading.Thread | None = None  # started by the first request, after fork

    def watched(self, wsgi_app: Callable) -> Callable:
        """wsgi_app with each request timed from its start to the end of its answer."""

        def app(environ: dict, start_response: Callable):
            self.begin()
            try:
                return Timed(wsgi_app(environ, start_response), self.end)
            except BaseException:
                self.end()
                raise

        return app

    def begin(self) -> None:
        thread = threading.get_ident()
        with self.lock:
            self.running[thread] = time.monotonic()
            self.stopped.pop(thread, None)  # left by an end that a stop cut short
            if self.thread is None:
                self.thread = threading.Thread(target=self.watch, name="deadline", daemon=True)
                self.thread.start()
            if not self.armed:  # armed now, in case this request stops Python before a look
                self.armed = True
                self.backstop(self.seconds + self.grace + 3 * TICK_SECONDS)

    def end(self) -> None:
        thread = threading.get_ident()
        while True:
            try:
                with self.lock:
                    self.running.pop(thread, None)
                    told = self.stopped.pop(thread, None)
                if told is not None:  # a stop not raised yet must not reach the next request
                    raise_in(thread, None)
                return
            except DeadlineExceeded:
                continue  # the stop arrived as the request was ending: end it all the same

    def watch(self) -> None:
        while True:
            time.sleep(TICK_SECONDS)
            try:
                self.check(time.monotonic())
            except Exception:  # a look that failed must not end the looking
                LOG.exception("the deadline's watchdog failed to look")

    def check(self, now: float) -> None:
        """Stop the requests past their deadline; kill the worker if one stopped is stuck."""
        in_python = sys._current_frames()
        with self.lock:
            late = self.stop_late(now)
            stuck = self.stuck(now, in_python)
            oldest = min(self.running.values(), default=None)
            self.armed = oldest is not None
            # Past the kill below, which makes it moot unless this thread cannot run.
            margin = self.seconds + self.grace + 3 * TICK_SECONDS
            self.backstop(None if oldest is None else oldest + margin - now)
        if late:
            LOG.error(
                "%d request(s) ran past the deadline (%g s): stopped", len(late), self.seconds
            )
            self.recycle()  # no new requests here; those running may end
        if stuck:
            LOG.error("a request stopped %g s ago is still running: worker killed", self.grace)
            self.kill()

    def stop_late(self, now: float) -> list[int]:
        """Raise the stop in the threads of requests past their deadline, once each."""
        late = [
            thread
            for thread, began in self.running.items()
            if thread not in self.stopped and now - began >= self.seconds
        ]
        for thread in late:
            self.stopped[thread] = now
            raise_in(thread, DeadlineExceeded)
        return late

    def stuck(self, now: float, in_python: dict) -> bool:
        """Whether a request told to stop `grace` ago still runs Python. One whose thread is out
        of Python took its stop as its answer ended (where its end could not run): it is over."""
        overdue = [thread for thread, told in self.stopped.items() if now - told >= self.grace]
        for thread in overdue:
            if thread not in in_python:
                self.running.pop(thread, None)
                self.stopped.pop(thread, None)
        return any(thread in in_python for thread in overdue)


class Timed:
    """A WSGI answer whose close ends its request's timing, whatever its own close raises."""

    __slots__ = ("body", "end")

    def __init__(self, body: Iterable[bytes], end: Callable[[], None]):
        self.body = body
        self.end = end

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.end()
