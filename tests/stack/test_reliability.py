"""The real stack on its worst minute: stuck requests, crashed workers, reloads, bursts, limits."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from deploy.localstack import Stack, alive, process_tree
from helpers import HELPERS, SERVED_APP, assert_json_error, wait_for

# A user's functions (usermodels.SERVED) and the test routes, as the session's `stack` serves.
CALL, RESULT = "/norm?values=3&values=4", '{"result": 5.0}'
# The load below comes from one address, past the site's per-client limits (test_abuse.py tests
# those): it is exempt, as the session's `stack` is.
LOAD_GENERATOR = ("127.0.0.1",)


def wrk(url: str, connections: int, seconds: int) -> dict:
    """wrk against url, bounded in time; its socket errors and the responses counted by status."""
    argv = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(HELPERS / "wrk_statuses.lua"),
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    statuses = Counter()
    for per_thread in report["statuses"]:
        statuses.update({int(status): n for status, n in per_thread.items()})
    return {"statuses": dict(statuses), "errors": report["errors"], "p99_ms": report["p99_ms"]}


def load(stack: Stack, seconds: float, threads: int = 8) -> subprocess.Popen:
    """tests/helpers/loadclient.py against the stack in the background: finish with outcomes()."""
    argv = [
        sys.executable,
        str(HELPERS / "loadclient.py"),
        f"{stack.url}{CALL}",
        str(seconds),
        str(threads),
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def outcomes(client: subprocess.Popen) -> dict[str, int]:
    out, _ = client.communicate(timeout=120)
    assert client.returncode == 0
    return json.loads(out)


def workers(stack: Stack) -> set[int]:
    """The uWSGI workers' PIDs now."""
    return set(process_tree(stack.uwsgi.pid)) - {stack.uwsgi.pid}


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])


def seconds_until(condition, timeout: float) -> float:
    """Seconds until condition() holds; fails after timeout."""
    start = time.monotonic()
    wait_for(condition, timeout, interval=0.01)
    return time.monotonic() - start


# --- health ---------------------------------------------------------------------------------


def test_health_checks_answer_and_are_not_logged_by_nginx(stack):
    log = Path(stack.dir, "nginx-access.log")
    logged_before = log.stat().st_size
    status, _, body = stack.request("GET", "/healthz")
    assert status == 200, body
    assert json.loads(body) == {"status": "ok"}
    status, _, body = stack.request("GET", "/readyz")
    assert status == 200, body
    assert json.loads(body)["status"] == "ready"
    stack.request("GET", "/norm?values=2")

    # nginx logs a request once its answer is sent, so the client may read the log first; the
    # lines are written in order, so once this one is there the health checks' would be too.
    def logged_since() -> str | None:
        text = log.read_bytes()[logged_before:].decode()
        return text if "/norm?values=2 " in text else None

    new_lines = wait_for(logged_since, 5, message="nginx did not log GET /norm")
    assert "/healthz" not in new_lines and "/readyz" not in new_lines


# --- timeouts -------------------------------------------------------------------------------


# The deadline lowered from 30 s to 2 s: uWSGI's harakiri in sync workers; in workers with
# threads the app's, which uwsgi.ini hands it with harakiri off.
DEADLINE_2S = {
    "sync": ((*SERVED_APP, "--harakiri", "2"), {}),
    "threads": (
        (*SERVED_APP, "--env", "MODELSERVER_DEADLINE_SECONDS=2"),
        {"MODELSERVER_THREADS": "4"},
    ),
}


@pytest.mark.parametrize("workers_kind", DEADLINE_2S)
def test_stuck_request_gets_json_504_and_its_worker_is_recycled(figure, workers_kind):
    argv, env = DEADLINE_2S[workers_kind]
    with Stack(uwsgi_args=argv, env=env) as stack:
        before = workers(stack)
        answers = []
        stuck = threading.Thread(
            target=lambda: answers.append(stack.request("GET", "/slow?seconds=20", timeout=30))
        )
        start = time.monotonic()
        stuck.start()
        time.sleep(0.5)
        # The other worker keeps serving while one is stuck.
        status, _, body = stack.request("GET", CALL, timeout=2)
        assert status == 200, body
        assert body.decode().strip() == RESULT
        stuck.join(30)
        seconds = time.monotonic() - start
        message = assert_json_error(*answers[0], 504, "time limit")
        wait_for(lambda: len(workers(stack)) == 2 and workers(stack) != before, 5, interval=0.01)
        replaced = before - workers(stack)
    figure(
        f"stuck request answered, {workers_kind} (deadline 2 s)",
        f"{seconds:.2f} s: 504 {message!r}",
    )
    assert 1.5 <= seconds < 4  # the deadline is checked once a second
    assert len(replaced) == 1  # the stuck worker, recycled; the other one kept serving


@pytest.mark.parametrize("workers_kind", DEADLINE_2S)
def test_request_stuck_in_c_is_killed_with_json_502_and_worker_respawned(workers_kind):
    # One sleep with the signal blocked plays code that cannot be interrupted: the worker is
    # killed (by uWSGI, or by the app's watchdog in a worker with threads). The timings are
    # scaled down together: the deadline 30 -> 2 s, the kill 5 -> 1 s later, and nginx's retry
    # window 5 -> 1 s, which keeps a killed request from being run twice.
    argv, env = DEADLINE_2S[workers_kind]
    argv = (*argv, "--harakiri-graceful-timeout", "1")
    changes = {"uwsgi_next_upstream_timeout 5s;": "uwsgi_next_upstream_timeout 1s;"}
    with Stack(uwsgi_args=argv, site_changes=changes, env=env) as stack:
        before = workers(stack)
        start = time.monotonic()
        response = stack.request("GET", "/slow?seconds=20&block=1", timeout=30)
        assert_json_error(*response, 502, "died")
        assert time.monotonic() - start < 5  # once, not retried
        wait_for(lambda: len(workers(stack)) == 2 and workers(stack) != before, 5, interval=0.01)
        assert stack.request("GET", CALL)[0] == 200


# --- limits ---------------------------------------------------------------------------------


def test_largest_request_nginx_accepts_fits_through_uwsgi(stack):
    # An 8 KB request line and three 8 KB headers: nginx's limits, never uWSGI's 502.
    path = "/norm?values=3&values=" + "0" * (8192 - len(f"GET {CALL} HTTP/1.1\r\n") - 2) + "4"
    headers = {f"X-Big-{i}": "x" * 8000 for i in range(3)}
    status, _, body = stack.request("GET", path, headers=headers)
    assert status == 200, body
    assert body.decode().strip() == RESULT


# --- overload -------------------------------------------------------------------------------


def test_1024_clients_against_2_workers_all_get_answers(stack, figure):
    report = wrk(f"{stack.url}{CALL}", connections=1024, seconds=8)
    figure("c=1024 for 8 s against 2 workers", report)
    assert report["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert set(report["statuses"]) <= {200, 429}
    assert report["statuses"].get(200, 0) > 1000


def test_beyond_the_bound_clients_get_a_fast_json_429(stack, figure):
    # 2,048 clients: 1,024 are served through uWSGI's queue, the rest get 429 at once.
    report = wrk(f"{stack.url}{CALL}", connections=2048, seconds=5)
    figure("c=2048 for 5 s against 2 workers", report)
    assert report["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert set(report["statuses"]) == {200, 429}


def test_the_429_of_a_full_queue_is_json():
    # A bound of 1 and one slow request in flight: the next request is over the bound.
    changes = {"limit_conn modelserver_requests 1024;": "limit_conn modelserver_requests 1;"}
    with Stack(uwsgi_args=SERVED_APP, site_changes=changes) as stack:
        slow = threading.Thread(target=stack.request, args=("GET", "/slow?seconds=2"))
        slow.start()
        time.sleep(0.5)
        start = time.monotonic()
        assert_json_error(*stack.request("GET", CALL), 429, "overloaded")
        assert time.monotonic() - start < 0.5  # fast, not after the queue
        slow.join(10)


# --- recovery -------------------------------------------------------------------------------


def test_kill_9_of_a_worker_under_load(stack, figure):
    client = load(stack, seconds=4, threads=8)
    time.sleep(1.5)
    victim = min(workers(stack))
    os.kill(victim, signal.SIGKILL)
    respawn = seconds_until(lambda: len(workers(stack) - {victim}) == 2, timeout=5)
    seen = outcomes(client)
    figure("kill -9 of a worker under load: respawn (s)", f"{respawn:.3f}")
    figure("kill -9 of a worker under load: outcomes", seen)
    # The master reaps dead workers in its once-a-second check: up to about 1 s.
    assert respawn < 1.5
    # The request in flight on that worker is retried by nginx on the other one.
    assert seen.keys() == {f"200 {RESULT}"}


def test_graceful_reloads_under_load_fail_nothing(figure):
    # Two reloads in quick succession through the master FIFO, as `systemctl reload` does.
    with Stack(uwsgi_args=SERVED_APP, exempt=LOAD_GENERATOR) as stack:
        client = load(stack, seconds=6, threads=8)
        time.sleep(1.5)
        for _ in range(2):
            Path(stack.socket_path + ".fifo").write_text("r")
            time.sleep(0.3)
        seen = outcomes(client)
        log = Path(stack.dir, "uwsgi.log").read_text()
        assert stack.uwsgi.poll() is None  # the master survived both
    figure("two graceful reloads under load: outcomes", seen)
    assert log.count("binary reloading uWSGI") >= 1
    assert seen.keys() == {f"200 {RESULT}"}
    assert sum(seen.values()) > 100


def test_worker_recycling_is_invisible_to_clients(figure):
    # Recycle every 3,000 requests (production: about a million) under load: no request fails.
    argv = ("--max-requests", "3000", "--max-requests-delta", "0", "--min-worker-lifetime", "0")
    with Stack(uwsgi_args=(*SERVED_APP, *argv), exempt=LOAD_GENERATOR) as stack:
        seen = outcomes(load(stack, seconds=8, threads=8))
        recycled = Path(stack.dir, "uwsgi.log").read_text().count("Respawned uWSGI worker")
    figure("max-requests=3000 under load: recycles, outcomes", f"{recycled}, {seen}")
    assert recycled >= 2
    assert seen.keys() == {f"200 {RESULT}"}


# --- memory ---------------------------------------------------------------------------------


# 15 s in `make test`; `make soak` sets 600.
LOAD_SECONDS = int(os.environ.get("MODELSERVER_LOAD_SECONDS", "15"))


def test_64_clients_get_only_200s_and_workers_do_not_grow(stack, figure):
    url = f"{stack.url}{CALL}"
    wrk(url, connections=64, seconds=5)  # warm up: first requests allocate caches
    pids = workers(stack)
    before = {pid: rss_kb(pid) for pid in pids}
    report = wrk(url, connections=64, seconds=LOAD_SECONDS)
    assert workers(stack) == pids  # the same workers, so their growth is comparable
    growth = {pid: rss_kb(pid) / before[pid] - 1 for pid in pids}
    figure(f"c=64 for {LOAD_SECONDS} s", report)
    figure("RSS growth per worker over it", {pid: f"{g:+.2%}" for pid, g in growth.items()})
    assert report["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert set(report["statuses"]) == {200}
    assert all(g < 0.05 for g in growth.values())
    assert all(alive(pid) for pid in pids)
