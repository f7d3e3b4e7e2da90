"""The harakiri deadline: uWSGI's signal turned into a 504 inside the request, and the worker
that ran past it replaced."""

import os
import signal

from werkzeug.exceptions import HTTPException

# uwsgi.ini's harakiri-graceful-signal: uWSGI sends it to a worker whose request ran past
# harakiri, a few seconds before it kills the worker.
DEADLINE_SIGNAL = signal.SIGSYS


class DeadlineExceeded(HTTPException):
    """The request ran past uWSGI's harakiri; answered 504, then the worker is recycled."""

    code = 504
    description = "the request ran past the server's time limit and was stopped"


def stop_requests_at_the_deadline() -> None:
    """Under uWSGI, turn the harakiri signal into DeadlineExceeded inside the running request."""
    try:
        import uwsgi  # noqa: F401  (exists only inside uWSGI, the one server with harakiri)
    except ImportError:
        return
    signal.signal(DEADLINE_SIGNAL, raise_deadline_exceeded)


def raise_deadline_exceeded(signum, frame):
    raise DeadlineExceeded()


def recycle_this_worker() -> None:
    """Ask uWSGI to replace this worker (SIGHUP: finish, exit, respawn): an interrupted request
    may have left its state half-changed."""
    os.kill(os.getpid(), signal.SIGHUP)
