"""The batching policy in-process (modelserver.batching.Batcher): threads stand in for the
threads of a uWSGI worker; tests/stack/test_batching.py runs it through the real stack."""

import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from werkzeug.exceptions import BadRequest, InternalServerError, ServiceUnavailable

from modelserver.batching import Batcher
from modelserver.deadline import DeadlineExceeded
from modelserver.endpoints import serve, signature_of

FAR = 30.0  # a deadline no test reaches


def deadline(seconds: float = FAR) -> float:
    return time.perf_counter() + seconds


def doubled(calls: list):
    """A vectorised function: each row's one value doubled; records each call's rows."""

    def run(rows: list[list]) -> list:
        calls.append([row[0] for row in rows])
        return [row[0] * 2 for row in rows]

    return run


def submit_together(batcher: Batcher, requests: list[list[list]], run) -> list:
    """Every request submitted from its own thread while a blocker holds the function, so that
    they queue together, in order; the Pending of each."""
    release = threading.Event()
    started = threading.Event()

    def blocker_run(rows):
        started.set()
        release.wait(5)
        return run(rows)

    blocker = threading.Thread(target=batcher.submit, args=([[0]], blocker_run, deadline()))
    blocker.start()
    assert started.wait(5)
    answers = [None] * len(requests)

    def client(i):
        answers[i] = batcher.submit(requests[i], run, deadline())

    pool = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    queued = 0
    for thread, rows in zip(pool, requests, strict=True):
        thread.start()  # and queued before the next starts: the queue is in request order
        queued += len(rows)
        until = time.monotonic() + 5
        while batcher.queued_items < queued and time.monotonic() < until:
            time.sleep(0.001)
    release.set()
    for thread in [blocker, *pool]:
        thread.join(5)
    return answers


def test_queued_requests_are_one_call_and_each_gets_its_own_items():
    calls = []
    batcher = Batcher(max_items=8, max_delay=0)
    requests = [[[1]], [[2], [3]], [[4]], [[5], [6], [7]]]
    answers = submit_together(batcher, requests, doubled(calls))
    assert [a.results for a in answers] == [[2], [4, 6], [8], [10, 12, 14]]
    assert calls[1:] == [[1, 2, 3, 4, 5, 6, 7]]  # after the blocker's own call
    assert answers[0].batch_items == 7 and all(a.batch_items == 0 for a in answers[1:])


def test_a_call_holds_at_most_max_items_and_a_larger_request_goes_alone():
    calls = []
    batcher = Batcher(max_items=4, max_delay=0)
    requests = [[[1], [2], [3]], [[4], [5]], [[6], [7], [8], [9], [10]], [[11]]]
    answers = submit_together(batcher, requests, doubled(calls))
    assert [a.results for a in answers] == [[2 * v[0] for v in rows] for rows in requests]
    assert calls[1:] == [[1, 2, 3], [4, 5], [6, 7, 8, 9, 10], [11]]


def test_a_call_is_cut_back_to_the_largest_preferred_size_the_queue_makes():
    calls, queued = [], []
    batcher = Batcher(max_items=16, max_delay=0, preferred=frozenset({4, 8}))
    double = doubled(calls)

    def run(rows: list[list]) -> list:
        queued.append(batcher.queued_items)  # what is left for the next call
        return double(rows)

    requests = [[[i]] for i in range(1, 12)]
    answers = submit_together(batcher, requests, run)
    assert [a.results for a in answers] == [[2 * i] for i in range(1, 12)]
    # 11 items queued: 4 and 8 can be made, 8 is the largest; the 3 left out go next, as they are.
    assert calls[1:] == [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11]]
    assert queued[1:] == [3, 0]
    assert batcher.queued_items == 0 and not batcher.queue


def test_a_request_of_several_items_across_the_preferred_size_means_no_cut():
    calls = []
    batcher = Batcher(max_items=16, max_delay=0, preferred=frozenset({4, 8}))
    # 4, 5, 9, 13 items: 8, the largest size within 13, falls inside the third request.
    requests = [[[1], [2], [3], [4]], [[5]], [[6], [7], [8], [9]], [[10], [11], [12], [13]]]
    answers = submit_together(batcher, requests, doubled(calls))
    assert [a.results for a in answers] == [[2 * v[0] for v in rows] for rows in requests]
    assert calls[1:] == [list(range(1, 14))]


def test_the_leader_waits_only_for_the_items_a_preferred_size_takes():
    """After the blocker's call, 1 + 4 items are expected; the largest preferred size within 5
    is 4, so the leader goes once 4 are queued, not after the whole delay waiting for a fifth
    that the cut would leave out."""
    calls, times = [], []
    batcher = Batcher(max_items=8, max_delay=1.0, preferred=frozenset({4}))
    double = doubled(calls)

    def run(rows: list[list]) -> list:
        times.append(time.perf_counter())
        return double(rows)

    answers = submit_together(batcher, [[[1]], [[2]], [[3]], [[4]]], run)
    assert [a.results for a in answers] == [[2], [4], [6], [8]]
    assert calls == [[0], [1, 2, 3, 4]]
    assert times[1] - times[0] < 0.5


def test_a_request_left_out_of_a_cut_still_has_its_deadline():
    batcher = Batcher(max_items=8, max_delay=0, preferred=frozenset({4}))
    releases = [threading.Event() for _ in range(3)]  # one for each call, in turn
    calls = []

    def held(rows: list[list]) -> list:
        calls.append([row[0] for row in rows])
        releases[len(calls) - 1].wait(5)
        return [row[0] for row in rows]

    outcome = []

    def fifth():
        try:
            outcome.append(batcher.submit([[5]], held, deadline(0.3)))
        except DeadlineExceeded as error:
            outcome.append(error)

    leader = threading.Thread(target=batcher.submit, args=([[0]], held, deadline()))
    leader.start()
    while not batcher.busy:
        time.sleep(0.001)
    pool = [
        threading.Thread(target=batcher.submit, args=([[i]], held, deadline()))
        for i in (1, 2, 3, 4)
    ]
    pool.append(threading.Thread(target=fifth))
    for i, thread in enumerate(pool):
        thread.start()  # and queued before the next starts
        while batcher.queued_items < i + 1:
            time.sleep(0.001)
    releases[0].set()  # the first call ends: 4 of the 5 queued make the next, 5 is left out
    pool[-1].join(5)  # and that call holds the function past the fifth's deadline
    releases[1].set()
    for thread in [leader, *pool]:
        thread.join(5)
    assert calls[:2] == [[0], [1, 2, 3, 4]]
    assert isinstance(outcome[0], DeadlineExceeded)
    assert batcher.queued_items == 0 and not batcher.queue
    releases[2].set()
    assert batcher.submit([[6]], held, deadline()).results == [6]  # the next is served


def test_a_lone_request_after_a_lone_batch_does_not_wait():
    batcher = Batcher(max_items=32, max_delay=0.2)
    run = doubled([])
    batcher.submit([[1]], run, deadline())  # a new worker waits once: it assumes company
    start = time.perf_counter()
    assert batcher.submit([[2]], run, deadline()).results == [4]
    assert time.perf_counter() - start < 0.1


def test_a_crowded_batcher_waits_at_most_the_delay_for_more():
    calls = []
    batcher = Batcher(max_items=32, max_delay=0.05)
    start = time.perf_counter()
    pending = batcher.submit([[1]], doubled(calls), deadline())
    waited = time.perf_counter() - start
    assert pending.results == [2]
    assert 0.04 <= waited < 0.5
    assert pending.started - pending.arrived == pytest.approx(0.05, abs=0.04)


def test_the_next_batch_waits_for_the_clients_just_answered():
    """After a call of 1 item with 4 queued behind it, the next leader waits for 5 items: the
    4 and the first call's client sending again, not the 4 alone (which would leave that client
    to a batch of its own); and it goes as soon as they are there, well before the delay."""
    calls, times = [], []
    batcher = Batcher(max_items=8, max_delay=1.0)
    double = doubled(calls)
    returned = []

    def run(rows: list[list]) -> list:
        times.append(time.perf_counter())
        return double(rows)

    def client_sends_again():
        until = time.monotonic() + 5
        while not calls and time.monotonic() < until:  # the first call is answered
            time.sleep(0.001)
        time.sleep(0.05)
        returned.append(batcher.submit([[9]], run, deadline()))

    again = threading.Thread(target=client_sends_again)
    again.start()
    answers = submit_together(batcher, [[[1]], [[2]], [[3]], [[4]]], run)
    again.join(5)
    assert [a.results for a in answers] == [[2], [4], [6], [8]]
    assert returned[0].results == [18]
    assert calls == [[0], [1, 2, 3, 4, 9]]
    assert times[1] - times[0] < 0.5  # not the whole delay of 1 s


def test_a_bad_value_fails_only_its_request():
    def run(rows):
        if any(row[0] < 0 for row in rows):
            raise BadRequest("negative")
        return [row[0] for row in rows]

    answers = submit_together(Batcher(8, 0), [[[1]], [[-1]], [[3]]], run)
    assert answers[0].results == [1] and answers[2].results == [3]
    assert isinstance(answers[1].error, BadRequest) and answers[1].results is None


def test_an_exception_of_the_model_fails_only_the_request_that_caused_it():
    calls = []

    def run(rows):
        calls.append(len(rows))
        if any(row[0] == 2 for row in rows):
            raise InternalServerError("broken")
        return [row[0] for row in rows]

    batcher = Batcher(8, 0)
    answers = submit_together(batcher, [[[1]], [[2]], [[3]]], run)
    assert isinstance(answers[1].error, InternalServerError)
    assert [answers[0].results, answers[2].results] == [[1], [3]]
    assert calls[-4:] == [3, 1, 1, 1]  # the batch, then each of it alone
    assert batcher.submit([[4]], run, deadline()).results == [4]  # the next batch is served


@pytest.mark.parametrize(
    "when", ["the batch's call", "a call of one of its requests alone, after the batch failed"]
)
def test_the_deadline_during_a_call_fails_its_batch_and_runs_nothing_again(when):
    calls = []
    failing = 3 if when == "the batch's call" else 1

    def run(rows):
        calls.append(len(rows))
        if len(rows) == 3 and failing == 1:  # the batch fails: each of it runs alone
            raise BadRequest("one of these is wrong")
        if len(rows) == failing:  # the harakiri signal raises in whichever thread leads
            raise DeadlineExceeded()
        return [row[0] for row in rows]

    batcher = Batcher(8, 0)
    outcomes = [None] * 3

    def client(i):
        try:
            outcomes[i] = batcher.submit([[i]], run, deadline())
        except DeadlineExceeded as error:
            outcomes[i] = error

    release = threading.Event()
    blocker = threading.Thread(
        target=batcher.submit, args=([[9]], lambda rows: release.wait(5) and rows, deadline())
    )
    blocker.start()
    while not batcher.busy:
        time.sleep(0.001)
    pool = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for i, thread in enumerate(pool):
        thread.start()
        while batcher.queued_items < i + 1:
            time.sleep(0.001)
    release.set()
    for thread in [blocker, *pool]:
        thread.join(5)
    assert calls == ([3] if failing == 3 else [3, 1])  # nothing more after the deadline
    assert isinstance(outcomes[0], DeadlineExceeded)  # the leader: a 504, the worker recycled
    assert all(isinstance(pending.error, ServiceUnavailable) for pending in outcomes[1:])
    assert batcher.submit([[4]], doubled([]), deadline()).results == [8]  # the next is served


def test_a_request_waiting_past_its_deadline_gets_deadline_exceeded():
    batcher = Batcher(8, 0)
    release = threading.Event()

    def stuck(rows):
        release.wait(5)
        return [row[0] for row in rows]

    leader = threading.Thread(target=batcher.submit, args=([[1]], stuck, deadline()))
    leader.start()
    while not batcher.busy:
        time.sleep(0.001)
    start = time.perf_counter()
    with pytest.raises(DeadlineExceeded):
        batcher.submit([[2]], stuck, deadline(0.1))
    assert time.perf_counter() - start < 1
    assert not batcher.queue  # it left the queue
    release.set()
    leader.join(5)
    assert batcher.submit([[3]], stuck, deadline()).results == [3]


def vectorised(x: list[float]) -> list[float]:
    """Each value back."""
    return x


def single(a: float) -> float:
    """The value back."""
    return a


@pytest.mark.parametrize(
    ("func", "options", "words"),
    [
        (vectorised, {"max_batch_size": 0}, "max_batch_size is a whole number >= 1"),
        (vectorised, {"max_batch_size": 8.0}, "max_batch_size is a whole number >= 1"),
        (single, {"max_batch_size": 8}, "needs vectorized=True"),
        (vectorised, {"max_batch_size": 8, "max_batch_delay_ms": -1}, "from 0 to 1000 ms"),
        (vectorised, {"preferred_batch_size": [4]}, "preferred_batch_size needs max_batch_size"),
        (vectorised, {"max_batch_size": 8, "preferred_batch_size": [4, 16]}, r"past .*8: \[16\]"),
        (vectorised, {"max_batch_size": 8, "preferred_batch_size": 4}, "list of whole numbers"),
        (
            vectorised,
            {"max_batch_size": 8, "preferred_batch_size": range(0, 9, 4)},
            r"not whole numbers >= 1: \[0\]",
        ),
        (
            vectorised,
            {"max_batch_size": 8, "preferred_batch_size": [4.0]},
            r"numbers >= 1: \[4.0\]",
        ),
        (
            vectorised,
            {"max_batch_size": 8, "preferred_batch_size": (n for n in [4])},
            "list of whole numbers",
        ),
    ],
)
def test_batching_options_are_checked_at_startup(func, options, words):
    with pytest.raises(TypeError, match=words):
        signature_of("f", serve(func, vectorized=func is vectorised, **options))


def test_a_batching_endpoint_keeps_its_options():
    entry = serve(vectorised, vectorized=True, max_batch_size=8, max_batch_delay_ms=2)
    sig = signature_of("f", entry)
    assert (sig.max_batch_size, sig.max_batch_delay_ms) == (8, 2)
    assert sig.preferred_batch_size == frozenset()
    preferring = serve(
        vectorised, vectorized=True, max_batch_size=32, preferred_batch_size=range(4, 33, 4)
    )
    assert signature_of("h", preferring).preferred_batch_size == frozenset(range(4, 33, 4))
    none = serve(vectorised, vectorized=True, max_batch_size=8, preferred_batch_size=None)
    assert signature_of("i", none).preferred_batch_size == frozenset()
    numpy_sizes = replace(none, preferred_batch_size=list(np.arange(4, 9, 4)))
    assert signature_of("j", numpy_sizes).preferred_batch_size == frozenset({4, 8})
    assert signature_of("g", vectorised).max_batch_size is None
