"""The real stack, nginx -> unix socket -> uWSGI -> Flask: what only it can show."""

import json
import os
import signal
import threading
import time
from pathlib import Path

from deploy.localstack import Stack, alive, process_tree
from helpers import assert_json_error, uwsgi_app, wait_for


def test_socket_is_660_and_three_uwsgi_processes(stack):
    assert os.stat(stack.socket_path).st_mode & 0o777 == 0o660
    uwsgi_pids = [
        pid for pid in stack.pids() if "uWSGI" in Path(f"/proc/{pid}/cmdline").read_text()
    ]
    assert len(uwsgi_pids) == 3  # the master and 2 workers


def test_long_query_string_and_header_fit_in_uwsgi_buffer(user_stack):
    # 7 KB of query and a 7 KB header: above uWSGI's default 4 KB buffer, below nginx's limits.
    status, _, body = user_stack.request(
        "GET", "/sentiment?text=" + "good%20" * 1000, headers={"X-Long": "x" * 7000}
    )
    assert status == 200, body
    assert json.loads(body) == {"result": {"score": 1, "words": 1000}}


def test_request_line_over_8k_is_414_json(stack):
    assert_json_error(*stack.request("GET", "/healthz?a=" + "1" * 9000), 414, "request line")


def test_methods_nginx_refuses_are_405_json_naming_them(stack):
    status, headers, body = stack.request("TRACE", "/pisqrt?a=25")
    assert_json_error(
        status, headers, body, 405, "method TRACE not allowed", "GET, HEAD, OPTIONS, POST"
    )
    assert headers["allow"] == "GET, HEAD, OPTIONS, POST"
    status, headers, body = stack.request("POST", "/static/docs.css", body=b"{}")
    assert_json_error(status, headers, body, 405, "method POST not allowed", "GET, HEAD")
    assert headers["allow"] == "GET, HEAD"


def test_a_condition_the_page_does_not_meet_is_412_json(stack):
    status, headers, body = stack.request("GET", "/static/docs.css", headers={"If-Match": '"x"'})
    assert_json_error(status, headers, body, 412, "If-Match")


def test_header_over_8k_is_431_json(stack):
    assert_json_error(
        *stack.request("GET", "/healthz", headers={"X-Big": "x" * 9000}),
        431,
        "headers too large",
    )


def test_body_over_10mb_is_413_json_from_nginx(user_stack):
    body = b"x" * (10 * 1024 * 1024 + 1)
    response = user_stack.request("POST", "/sentiment", body=body)
    assert_json_error(*response, 413, "at most 10 MB")


def test_json_body_over_1mb_is_413_json_from_the_app(user_stack):
    body = b"x" * (1024 * 1024 + 1)
    headers = {"Content-Type": "application/json"}
    response = user_stack.request("POST", "/sentiment", body, headers)
    assert_json_error(*response, 413, "at most 1 MB")


def test_error_page_location_is_not_public(stack):
    assert_json_error(*stack.request("GET", "/_modelserver_error.json"), 404, "no such path")


def test_uwsgi_down_is_502_json():
    with Stack() as stack:
        workers = process_tree(stack.uwsgi.pid)[1:]
        os.kill(stack.uwsgi.pid, signal.SIGKILL)
        stack.uwsgi.wait(5)
        # The workers notice their master is gone within a second (no-orphans) and exit; until
        # then one may still answer from the socket's backlog.
        wait_for(lambda: not any(alive(pid) for pid in workers), 5, message=f"alive: {workers}")
        assert_json_error(*stack.request("GET", "/healthz"), 502, "not running")


def test_upstream_timeout_is_504_json():
    # A test app that sleeps, and nginx told to wait 1 s instead of 40 s.
    uwsgi_args = uwsgi_app("testapps:flask_app")
    with Stack(
        uwsgi_args=uwsgi_args, site_changes={"uwsgi_read_timeout 40s;": "uwsgi_read_timeout 1s;"}
    ) as stack:
        assert_json_error(*stack.request("GET", "/slow?seconds=3"), 504, "did not answer")


def test_uwsgi_removes_its_socket_on_stop():
    with Stack() as other:
        other.uwsgi.send_signal(signal.SIGINT)
        assert other.uwsgi.wait(10) == 0
        assert not os.path.exists(other.socket_path)  # vacuum, before the run dir goes


def test_stop_leaves_no_process_or_directory():
    with Stack() as stack:
        pids = stack.pids()
        assert len(pids) >= 4  # uWSGI master + 2 workers, nginx master + workers
    # stop() itself raises on a leak; check once more from the outside.
    wait_for(
        lambda: [pid for pid in pids if alive(pid)] == [],
        5,
        message=lambda: f"alive: {[pid for pid in pids if alive(pid)]}",
    )
    assert not os.path.exists(stack.dir)


def test_sigterm_lets_requests_in_flight_finish():
    # systemd stops with SIGTERM: a request already running must get its answer, not a 502.
    with Stack(uwsgi_args=uwsgi_app("testapps:flask_app")) as stack:
        answers = []
        request = threading.Thread(
            target=lambda: answers.append(stack.request("GET", "/slow?seconds=2"))
        )
        request.start()
        time.sleep(0.5)
        stack.uwsgi.send_signal(signal.SIGTERM)
        request.join(10)
        assert stack.uwsgi.wait(10) == 0
    status, _, body = answers[0]
    assert status == 200, body
    assert json.loads(body)["slept"] == 2.0
