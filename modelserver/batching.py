"""Adaptive batching: the concurrent requests of one worker to one endpoint, answered by one call.

A uWSGI worker with threads ($MODELSERVER_THREADS, uwsgi.ini) runs that many requests at once.
Those that call the same batching endpoint (serve(..., max_batch_size=N)) queue here, already
validated. The first in the queue when the function is free leads: it waits until the items it
can expect are queued, or max_batch_delay_ms has passed since the function became free for it
(as TorchServe and LitServe count it; 0: no wait at all, the batch is whatever is queued,
Triton's default), takes requests in arrival order up to max_batch_size items (with
preferred_batch_size, cut back to the largest of those sizes within them, where the requests
make it exactly, and waiting only for as many), calls the
function once with their items concatenated and hands each request its own results. The items
it can expect are the last batch's (their clients are likely to send again once answered) and
those that queued while it ran, up to max_batch_size: a lone client (c=1) never waits, and under
load the wait lets the clients just answered join the next call instead of leaving it to those
that queued meanwhile, which would split the load into two half batches. The requests not taken
wait their turn; one of them leads the next batch. There is no batcher thread: the leader
is a request's own thread, so a lone request pays no hand-over between threads, and nothing has
to be started again in a freshly forked worker.

Failures stay with the request that caused them: when the batch's call raises, each request of
the batch is called alone, and gets its own answer or its own JSON error (a ValueError, a
client's bad value: a 400; any other exception, such as a KeyError for a word the model does not
know: a 500). A function that fails on every batch is then called once more per request.
A request that waits past the deadline (modelserver.deadline) is answered 504 by its own thread
and the worker is recycled; a call past it is stopped by the deadline's watchdog.
"""

import logging
import operator
import reprlib
import threading
import time
from collections import deque
from collections.abc import Callable

from werkzeug.exceptions import HTTPException, ServiceUnavailable

from modelserver.deadline import DeadlineExceeded

try:
    import uwsgi
except ImportError:  # not under uWSGI
    uwsgi = None


class Pending:
    """One request's items in the queue, and what became of them."""

    __slots__ = ("rows", "arrived", "started", "results", "error", "batch_items", "done", "wake")

    def __init__(self, rows: list[list]):
        self.rows = rows
        self.arrived = time.perf_counter()
        self.started = self.arrived  # when its batch's call began
        self.results: list | None = None
        self.error: HTTPException | None = None
        self.batch_items = 0  # the items of the call it was in (0: it led none)
        self.done = False
        # Set when its batch is answered or it is first in line: each request is woken alone,
        # since waking every waiter after each batch (a Condition's notify_all) cost half the
        # worker's time at c=64.
        self.wake = threading.Event()


class Batcher:
    """The queue of one endpoint in one worker."""

    def __init__(self, max_items: int, max_delay: float, preferred: frozenset[int] = frozenset()):
        self.max_items = max_items
        self.max_delay = max_delay
        self.preferred = preferred  # item counts a call is cut back to where it can be (take())
        self.lock = threading.Lock()
        self.more = threading.Condition(self.lock)  # a full batch is queued: the leader goes
        self.queue: deque[Pending] = deque()
        self.queued_items = 0
        self.busy = False  # a leader is gathering or calling
        # The items the next batch can expect soon: the last batch's, whose clients are likely
        # to send again once answered, and those that queued while it ran. A new worker expects
        # a full batch, so a burst's first call is not a batch of one.
        self.expected = max_items
        self.wanted = max_items  # what the gathering leader waits for

    def submit(self, rows: list[list], run: Callable[[list[list]], list], deadline: float):
        """rows answered through run(all rows of a batch) -> one result per row, in order.

        Returns the Pending, done: its results, or the error to answer with. Raises
        DeadlineExceeded past deadline (a time.perf_counter() value).
        """
        mine = Pending(rows)
        with self.lock:
            self.queue.append(mine)
            self.queued_items += len(rows)
            if self.queued_items >= self.wanted:
                self.more.notify()
            batch = self.lead(mine)
        while batch is None:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not mine.wake.wait(remaining):
                with self.lock:
                    if mine.done:
                        return mine
                    self.give_up(mine)
                raise DeadlineExceeded()
            if mine.done:  # answered: done is written before the wake, and never undone
                return mine
            with self.lock:
                if mine.done:
                    return mine
                # Cleared under the lock, where done and busy change: a wake set after this
                # comes from a later change, and one set before it is looked at here.
                mine.wake.clear()
                batch = self.lead(mine)
        try:
            self.call(batch, run)
        finally:
            with self.lock:
                self.busy = False
                # Before any of the batch is answered: none of its clients has sent again yet.
                self.expected = sum(len(pending.rows) for pending in batch) + self.queued_items
                for pending in batch:
                    if not pending.done:  # interrupted (the deadline signal): answer them all
                        pending.error = pending.error or ServiceUnavailable(
                            "the batch this request was in was interrupted; try again"
                        )
                        pending.done = True
                woken = batch[1:] + ([self.queue[0]] if self.queue else [])  # and the next leader
            # Outside the lock: a woken thread that needs it at once would only wait again.
            for pending in woken:
                pending.wake.set()
        return mine

    def lead(self, mine: Pending) -> list[Pending] | None:
        """The batch mine leads, gathered, if it is first in line and the function is free."""
        if self.busy or not self.queue or self.queue[0] is not mine:
            return None
        self.busy = True
        return self.gather(mine)

    def gather(self, leader: Pending) -> list[Pending]:
        """The next batch, the leader's first: once the items it can expect are queued, or the
        delay has passed since the function became free for it."""
        until = time.perf_counter() + self.max_delay
        self.wanted = self.usable(min(self.expected, self.max_items))
        while self.queued_items < self.wanted:
            remaining = until - time.perf_counter()
            if remaining <= 0:
                break
            self.more.wait(remaining)
        return self.take()

    def usable(self, items: int) -> int:
        """The largest preferred size of at most items, where there is one; else items."""
        return max((size for size in self.preferred if size <= items), default=items)

    def take(self) -> list[Pending]:
        """The requests of the next call, in arrival order: as many as max_items holds (at least
        one). With preferred sizes, cut back to the largest of them within that, if the first
        requests' items make it exactly; those left out lead the next call. A cut so drops less
        than the step between two preferred sizes; a request of several items that straddles
        the size means no cut."""
        counts, items = {}, 0  # items of the first requests -> how many requests
        for pending in self.queue:
            if counts and items + len(pending.rows) > self.max_items:
                break
            items += len(pending.rows)
            counts[items] = len(counts) + 1
        size = self.usable(items)
        cut = size if size in counts else items
        self.queued_items -= cut
        return [self.queue.popleft() for _ in range(counts[cut])]

    def give_up(self, mine: Pending) -> None:
        """A request leaving the queue unanswered; if it was first, another may lead now."""
        if mine in self.queue:
            first = self.queue[0] is mine
            self.queue.remove(mine)
            self.queued_items -= len(mine.rows)
            if first and self.queue and not self.busy:
                self.queue[0].wake.set()

    def call(self, batch: list[Pending], run: Callable[[list[list]], list]) -> None:
        """One call for the whole batch; if it fails, each request alone."""
        started = time.perf_counter()
        rows = [row for pending in batch for row in pending.rows]
        batch[0].batch_items = len(rows)
        for pending in batch:
            pending.started = started
        try:
            results = run(rows)
        except DeadlineExceeded:  # the worker's time is up: no request of it runs again
            raise
        except HTTPException as error:
            if len(batch) == 1:
                settle(batch[0], None, error)
                return
            for pending in batch:  # whose item was it? each alone tells
                try:
                    settle(pending, run(pending.rows), None)
                except DeadlineExceeded:
                    raise
                except HTTPException as alone:
                    settle(pending, None, alone)
            return
        offset = 0
        for pending in batch:
            settle(pending, results[offset : offset + len(pending.rows)], None)
            offset += len(pending.rows)


def settle(pending: Pending, results: list | None, error: HTTPException | None) -> None:
    pending.results, pending.error, pending.done = results, error, True


BATCHERS: dict[str, Batcher] = {}
CREATING = threading.Lock()


def batcher_of(
    name: str, max_items: int, max_delay: float, preferred: frozenset[int] = frozenset()
) -> Batcher:
    """The endpoint's batcher in this process, made on first use (after the fork)."""
    found = BATCHERS.get(name)
    if found is None:
        with CREATING:
            found = BATCHERS.setdefault(name, Batcher(max_items, max_delay, preferred))
    return found


def concurrent_requests() -> bool:
    """Whether this process runs requests side by side: a uWSGI worker with threads, or a
    server of threads without uWSGI (Flask's development server). A sync uWSGI worker runs one
    at a time: there, every batch would be a single request, made to wait for nothing."""
    if uwsgi is None:
        return True
    return int(uwsgi.opt.get("threads", b"1") or 1) > 1


# --- serve()'s batching options, checked at startup (endpoints.signature_of) -----------------


def check_batching(where: str, endpoint) -> frozenset[int]:
    """max_batch_size: a whole number >= 1, for a vectorised function; the delay: >= 0 ms; the
    preferred sizes, returned: whole numbers from 1 to max_batch_size."""
    size, delay = endpoint.max_batch_size, endpoint.max_batch_delay_ms
    preferred = preferred_sizes(where, endpoint.preferred_batch_size)
    if size is None:
        if preferred:
            raise TypeError(f"{where}: preferred_batch_size needs max_batch_size")
        return preferred
    if type(size) is not int or size < 1:
        raise TypeError(f"{where}: max_batch_size is a whole number >= 1; got {size!r}")
    if not endpoint.vectorized:
        raise TypeError(
            f"{where}: max_batch_size batches items into one call, which needs vectorized=True"
        )
    if type(delay) not in (int, float) or not 0 <= delay <= 1000:
        raise TypeError(f"{where}: max_batch_delay_ms is from 0 to 1000 ms; got {delay!r}")
    if outside := sorted(n for n in preferred if n > size):
        raise TypeError(
            f"{where}: preferred_batch_size holds sizes past max_batch_size={size}: {outside}"
        )
    return preferred


def preferred_sizes(where: str, sizes: object) -> frozenset[int]:
    """preferred_batch_size as a set: whole numbers >= 1 (numpy's too), in a list, tuple, set
    or range; None or empty: none."""
    if sizes is None:
        return frozenset()
    if not isinstance(sizes, (list, tuple, set, frozenset, range)):
        raise TypeError(
            f"{where}: preferred_batch_size is a list of whole numbers >= 1, such as "
            f"range(4, 33, 4); got {reprlib.repr(sizes)}"
        )
    found = [whole(n) for n in sizes]
    if wrong := [n for n, w in zip(sizes, found, strict=True) if w is None or w < 1]:
        raise TypeError(
            f"{where}: preferred_batch_size holds sizes that are not whole numbers >= 1: "
            f"{reprlib.repr(wrong)}"
        )
    return frozenset(found)


def whole(n: object) -> int | None:
    """n as an int if it is a whole number (an int or numpy's integers, not a bool)."""
    if isinstance(n, bool):
        return None
    try:
        return operator.index(n)
    except TypeError:
        return None


def warn_without_threads(logger: logging.Logger, signatures: list) -> None:
    """At startup: endpoints that batch, in workers that run one request at a time, are called
    once per request; the log says how to turn batching on."""
    names = [sig.name for sig in signatures if sig.max_batch_size]
    if names and not concurrent_requests():
        logger.warning(
            "ENDPOINTS %s batch concurrent requests, but each worker runs one request at a "
            "time: they are called once per request until the workers have threads "
            "(MODELSERVER_THREADS=32, docs/batching.md)",
            ", ".join(names),
        )
