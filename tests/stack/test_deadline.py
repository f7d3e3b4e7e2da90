"""The deadline in workers with threads (modelserver/deadline.py's watchdog; uwsgi.ini turns
uWSGI's harakiri off there): each request is stopped at its own deadline, never another's, and
a request is never stopped early. (test_reliability.py: the stuck request, sync and threads.)"""

import json
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from deploy.localstack import NotStarted, Stack
from helpers import SERVED_APP, assert_json_error

JSON = {"Content-Type": "application/json"}


def uwsgi_packet(variables: dict[str, str]) -> bytes:
    """A request's header in the uwsgi protocol, as nginx sends it to uWSGI's socket."""
    pairs = b"".join(
        len(part).to_bytes(2, "little") + part
        for name, value in variables.items()
        for part in (name.encode(), value.encode())
    )
    return b"\0" + len(pairs).to_bytes(2, "little") + b"\0" + pairs


def test_each_stuck_request_gets_its_own_504_while_the_others_are_answered(figure):
    # One worker of 4 threads, a deadline of 2 s: three requests stuck in it, and a quick one
    # beside them, many times. Each stuck one is stopped in its own thread, not the main one.
    argv = (*SERVED_APP, "--processes", "1", "--env", "MODELSERVER_DEADLINE_SECONDS=2")
    threads = {"MODELSERVER_THREADS": "4"}
    with Stack(uwsgi_args=argv, env=threads, exempt=("127.0.0.1",)) as stack:
        stuck: list = []

        def stick() -> None:
            started = time.monotonic()
            answer = stack.request("GET", "/slow?seconds=20", timeout=30)
            stuck.append((time.monotonic() - started, answer))

        clients = [threading.Thread(target=stick) for _ in range(3)]
        for client in clients:
            client.start()
        quick = Counter()
        end = time.monotonic() + 4  # past the stops, at 2-3 s, and the worker's recycling
        while time.monotonic() < end:  # bounded in time, and in count by the pause
            quick[stack.request("GET", "/half?a=25", timeout=10)[0]] += 1
            time.sleep(0.02)
        for client in clients:
            client.join(30)
        figure(
            "3 stuck requests of one worker, deadline 2 s: seconds", [f"{s:.2f}" for s, _ in stuck]
        )
    assert set(quick) == {200} and quick[200] > 10, quick
    assert len(stuck) == 3
    for seconds, answer in stuck:
        assert_json_error(*answer, 504, "time limit")
        assert 1.5 <= seconds < 4


def test_a_body_read_beside_requests_that_end_is_not_stopped(figure):
    # uWSGI 2.0 adds harakiri's 30 s to its worker's one clock while it reads a POST's body; a
    # request of another thread that ended meanwhile had set that clock to 0, so it read 30:
    # a time long past, and the master stopped the worker at once. Here a body comes to the
    # worker's socket in three pieces, with a request answered between them, and uWSGI's log
    # then says whether anything was stopped.
    argv = (*SERVED_APP, "--processes", "1")
    with Stack(uwsgi_args=argv, env={"MODELSERVER_THREADS": "2"}) as stack:
        body = json.dumps({"a": 25}).encode()
        header = uwsgi_packet(
            {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/half",
                "REQUEST_URI": "/half",
                "QUERY_STRING": "",
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(body)),
                "SERVER_PROTOCOL": "HTTP/1.1",
                "SERVER_NAME": "localhost",
                "SERVER_PORT": "80",
                "REMOTE_ADDR": "127.0.0.1",
                "HTTP_HOST": "localhost",
            }
        )
        answers = Counter()
        with socket.socket(socket.AF_UNIX) as raw:
            raw.settimeout(10)
            raw.connect(stack.socket_path)
            raw.sendall(header + body[:1])
            time.sleep(0.3)
            answers[stack.request("GET", "/half?a=25")[0]] += 1  # ends while the body is read
            raw.sendall(body[1:2])
            time.sleep(1.5)  # the master looks once a second
            raw.sendall(body[2:])
            reply = b""
            while chunk := raw.recv(65536):
                reply += chunk
        end = time.monotonic() + 2.5  # and a stop would be seen in these
        while time.monotonic() < end:
            answers[stack.request("GET", "/half?a=25", timeout=5)[0]] += 1
            time.sleep(0.05)
        log = Path(stack.dir, "uwsgi.log").read_text(errors="replace")
    figure("a body read in pieces beside ended requests: answers", dict(answers))
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert reply.endswith(b'{"result": 12.5}\n'), reply[-200:]
    assert set(answers) == {200}, answers
    assert "HARAKIRI" not in log and "deadline" not in log, log[-2000:]


def test_code_that_never_lets_go_of_the_gil_is_killed_by_the_backstop(figure):
    # The watchdog's thread cannot run either; the backstop, a timer of C armed at each look
    # (2 + 1 + 3 s past the oldest request), ends the worker. Other requests answered and
    # ending beside it (which disarm uWSGI's own user harakiri) do not disarm it.
    argv = (
        *SERVED_APP,
        "--processes", "1",
        "--env", "MODELSERVER_DEADLINE_SECONDS=2",
        "--harakiri-graceful-timeout", "1",
    )  # fmt: skip
    changes = {"uwsgi_next_upstream_timeout 5s;": "uwsgi_next_upstream_timeout 1s;"}
    threads = {"MODELSERVER_THREADS": "4"}
    with Stack(uwsgi_args=argv, site_changes=changes, env=threads, exempt=("127.0.0.1",)) as stack:
        beside = Counter()
        held = threading.Event()

        def load() -> None:
            stop = time.monotonic() + 30
            while not held.is_set() and time.monotonic() < stop:  # bounded in time and count
                beside[stack.request("GET", "/half?a=25", timeout=15)[0]] += 1
                time.sleep(0.01)

        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(1.5)  # looks of the watchdog with requests running
        start = time.monotonic()
        response = stack.request("GET", "/slow?gil=1", timeout=20)
        seconds = time.monotonic() - start
        held.set()
        loader.join(20)
        figure(
            "a request holding the GIL beside others, deadline 2 s: answered after (s), others",
            f"{seconds:.2f}, {dict(beside)}",
        )
        assert_json_error(*response, 502)
        assert 4 <= seconds < 9  # not nginx's 40 s
        assert beside[200] > 10 and set(beside) <= {200, 502}  # those the killed worker held
        assert stack.request("GET", "/half?a=25")[0] == 200  # a new worker answers
        log = Path(stack.dir, "uwsgi.log").read_text(errors="replace")
        assert re.search(r"Timeout \(0:00:0[56]\)!", log)  # the backstop's tracebacks, then exit


def test_threads_with_uwsgis_harakiri_on_stop_the_start():
    # --threads on the command line, past uwsgi.ini's MODELSERVER_THREADS: harakiri stays on.
    with pytest.raises(NotStarted) as failed:
        with Stack(uwsgi_args=(*SERVED_APP, "--threads", "4")):
            pass
    assert "uWSGI's harakiri (30 s) is on in workers with 4 threads" in str(failed.value)
    assert "set MODELSERVER_THREADS instead of --threads" in str(failed.value)
