"""The fork of uWSGI's workers from the master: what must not cross it, and how a worker leaves.

A thread does not survive fork(): the worker gets the parent's memory, with the locks and
condition variables its threads held, but not the threads. A library that started a pool in the
master (onnxruntime, OpenMP's libgomp, torch) then waits in a worker for threads that are not
there: the first call or the exit handlers hang. So the master checks it has no thread but its
own before the workers fork, and names the model that started one.
"""

import atexit
import os
import signal
import sys
import time
from collections.abc import Callable

try:
    import uwsgi
except ImportError:  # not under uWSGI: no fork follows
    uwsgi = None

TASKS = "/proc/self/task"
# A thread a loader joined may still be leaving when it returns: how long to let it go.
SETTLE_SECONDS = 0.5


class ForkUnsafe(RuntimeError):
    """Threads in the uWSGI master before the workers fork."""


def before_fork() -> bool:
    """In the uWSGI master, with the workers still to be forked from it (no lazy-apps)."""
    return uwsgi is not None and uwsgi.worker_id() == 0


def threads() -> list[str]:
    """This process's threads but the calling one, by name (their /proc comm)."""
    names = []
    for task in os.listdir(TASKS):
        if int(task) == os.getpid():
            continue
        try:
            with open(f"{TASKS}/{task}/comm") as comm:
                names.append(comm.read().strip())
        except OSError:  # it ended while we looked
            pass
    return names


def settled_threads(before: int) -> list[str]:
    """threads(), once more than `before` have had SETTLE_SECONDS to end."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while len(found := threads()) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def check_loader(name: str, before: int) -> None:
    """Raise ForkUnsafe if model `name`'s loader left threads running in the master."""
    found = settled_threads(before)
    if len(found) > before:
        raise ForkUnsafe(
            f"model {name!r} left {len(found) - before} thread(s) running in the uWSGI master "
            f"({', '.join(sorted(found))}): a library's thread pool (onnxruntime, OpenMP, "
            "torch, ...). The workers fork from the master without those threads and would "
            f"hang in the library. Load it in each worker instead: serve(..., model=load_{name}, "
            'load="worker"), with the library imported inside the loader (onnxruntime starts a '
            "thread on import); or make the library start no thread, if it can be told to "
            "(OpenMP: OMP_NUM_THREADS=1)."
        )


def check_master() -> None:
    """Raise ForkUnsafe if any thread runs in the master now, whoever started it."""
    found = settled_threads(0)
    if found:
        raise ForkUnsafe(
            f"{len(found)} thread(s) running in the uWSGI master before the workers fork "
            f"({', '.join(sorted(found))}), started while the app was imported, not by a "
            "model's loader: the workers would hang in the library that started them. Import "
            'or create it inside a loader served with load="worker", or make it start no thread.'
        )


def after_fork(hook: Callable[[], None]) -> None:
    """Call hook in each worker once it is forked, before it takes a request (also after a
    respawn: a recycled or reloaded worker loads afresh)."""
    import uwsgidecorators  # importable only under uWSGI; chains the hooks of everyone

    uwsgidecorators.postfork(lambda: leaving_on_signals(hook))


# The signals by which the master stops (INT, TERM) or reloads (HUP) a worker, and QUIT.
LEAVING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def leaving_on_signals(hook: Callable[[], None]) -> None:
    """Call hook with the worker leaving at once on a stop or reload signal. uWSGI installs the
    worker's own handlers only after the fork hooks: a signal during a model's load would meet
    the master's (SIGINT: a KeyboardInterrupt inside the loader, and a worker that stays up and
    never exits, so the stop waits for it). A loading worker has no request to finish."""
    previous = {number: signal.signal(number, leave) for number in LEAVING_SIGNALS}
    try:
        hook()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


# Exit hooks that were installed before ours (uwsgi.atexit), run first by ours.
CHAINED: list[Callable[[], None]] = []


def leave(signum, frame) -> None:
    exit_worker_directly()


def exit_worker_directly() -> None:
    """In a worker, end the process as soon as Python's own exit work is done.

    uWSGI calls this (uwsgi.atexit) first among the exit handlers of every worker exit: a
    recycle, a harakiri, a reload, a stop. The C handlers that would follow include the
    libraries' own (C++ destructors of onnxruntime's module), which can wait forever in a
    forked worker for threads it does not have. Nothing of the service needs them: its metrics
    are in shared files, written at each count. Python's atexit functions still run and the
    standard streams are flushed; the master exits the ordinary way (it removes the socket).
    """
    if uwsgi.worker_id() == 0:
        return
    for hook in CHAINED:
        hook()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or gone: nothing to save
            pass
    os._exit(0)


def install_direct_exit() -> None:
    """Install exit_worker_directly for every worker forked from now on."""
    if uwsgi is not None and getattr(uwsgi, "atexit", None) is not exit_worker_directly:
        if callable(getattr(uwsgi, "atexit", None)):
            CHAINED.append(uwsgi.atexit)  # someone's exit hook, kept: it runs first
        uwsgi.atexit = exit_worker_directly
