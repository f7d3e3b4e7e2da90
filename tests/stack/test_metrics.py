"""/metrics through the real stack: exact over both workers, through kill -9 and reloads."""

import http.client
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deploy.localstack import Stack, alive, process_tree
from helpers import (
    SERVED_APP,
    assert_json_error,
    fifo_reload,
    scrape,
    uwsgi_app,
    value,
    wait_for,
)
from helpers.netns_hosts import install_sh
from modelserver.serverstats import unix_listen_queue

# The app's own metrics: summed from the workers' files, they must never go backwards. uWSGI's
# and nginx's (modelserver_uwsgi_*, modelserver_nginx_*) are those servers' own, read live.
APP_METRICS = (
    "modelserver_requests_total",
    "modelserver_request_duration_seconds",
    "modelserver_model_duration_seconds",
    "modelserver_batch_size",
)


@pytest.fixture(scope="module")
def metrics_stack():
    """A stack of its own (2 workers, a user's functions), so no other test's requests move
    its counts."""
    # Its load comes from 127.0.0.1, exempt from the per-client limits (they would answer 429).
    with Stack(uwsgi_args=(*SERVED_APP, "--processes", "2"), exempt=("127.0.0.1",)) as running:
        yield running


def app_samples(samples: dict) -> dict:
    return {key: v for key, v in samples.items() if key[0].startswith(APP_METRICS)}


def send(stack: Stack, paths: list[str]) -> list[int]:
    """The requests on 8 threads at once, so both workers take a share; their statuses."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda path: stack.request("GET", path)[0], paths))


def worker_requests(samples: dict) -> dict[str, float]:
    return {
        dict(labels)["worker"]: v
        for (name, labels), v in samples.items()
        if name == "modelserver_uwsgi_worker_requests_total"
    }


def assert_exact(stack: Stack, ok: int = 300, bad: int = 7) -> None:
    """ok good and bad invalid requests, spread over both workers, raise the counts by exactly
    that much: the 400s apart, the histograms by all of them."""
    before = scrape(stack)
    statuses = send(stack, [f"/norm?values={i}" for i in range(ok)] + ["/norm?values=x"] * bad)
    assert statuses.count(200) == ok and statuses.count(400) == bad, statuses
    after = scrape(stack)
    served = worker_requests(after)
    spread = {w: served[w] - worker_requests(before).get(w, 0) for w in served}
    assert len(spread) == 2 and all(n > 0 for n in spread.values()), spread

    def rise(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    total = "modelserver_requests_total"
    assert rise(total, endpoint="norm", method="GET", status="200") == ok
    assert rise(total, endpoint="norm", method="GET", status="400") == bad
    duration = "modelserver_request_duration_seconds"
    assert rise(f"{duration}_count", endpoint="norm") == ok + bad
    assert rise(f"{duration}_bucket", endpoint="norm", le="+Inf") == ok + bad
    # The function runs only for the valid ones; a GET is not a batch.
    assert rise("modelserver_model_duration_seconds_count", model="norm") == ok
    assert rise("modelserver_batch_size_count", endpoint="norm") == 0


def test_batch_sizes(metrics_stack):
    before = scrape(metrics_stack)
    for values in ([1, 25, 0], [4] * 40):
        body = json.dumps([{"values": [v]} for v in values]).encode()
        headers = {"Content-Type": "application/json"}
        status, _, answer = metrics_stack.request("POST", "/norm", body, headers)
        assert status == 200, answer
    after = scrape(metrics_stack)
    batch = "modelserver_batch_size"
    assert (
        value(after, f"{batch}_count", endpoint="norm")
        - value(before, f"{batch}_count", endpoint="norm")
        == 2
    )
    assert (
        value(after, f"{batch}_sum", endpoint="norm")
        - value(before, f"{batch}_sum", endpoint="norm")
        == 43
    )
    for le, rise in (("2.0", 0), ("5.0", 1), ("50.0", 2)):
        bucket = value(after, f"{batch}_bucket", endpoint="norm", le=le)
        assert bucket - value(before, f"{batch}_bucket", endpoint="norm", le=le) == rise


def assert_nothing_went_back(before: dict, after: dict) -> None:
    went_back = {
        k: (v, after.get(k)) for k, v in app_samples(before).items() if after.get(k, 0) < v
    }
    assert not went_back, went_back


def workers(stack: Stack) -> set[int]:
    """The live workers' PIDs (a killed one stays in the tree as a zombie for a moment)."""
    return {pid for pid in process_tree(stack.uwsgi.pid) if alive(pid)} - {stack.uwsgi.pid}


def test_counts_are_exact_over_both_workers(metrics_stack):
    assert_exact(metrics_stack)


def test_model_loaded_and_servers_figures(metrics_stack):
    samples = scrape(metrics_stack)
    assert value(samples, "modelserver_model_loaded", model="iris") == 1
    assert value(samples, "modelserver_uwsgi_stats_up") == 1
    assert value(samples, "modelserver_uwsgi_workers") == 2
    # The scrape itself is running in one worker.
    assert value(samples, "modelserver_uwsgi_busy_workers") >= 1
    assert value(samples, "modelserver_uwsgi_listen_queue_limit") == 1024
    assert samples[("modelserver_uwsgi_listen_queue", ())] == 0  # read from the kernel
    assert value(samples, "modelserver_nginx_up") == 1
    assert value(samples, "modelserver_nginx_active_connections") >= 1


def test_kill_9_of_a_worker_loses_no_count(metrics_stack):
    send(metrics_stack, ["/norm?values=1"] * 50)
    before = scrape(metrics_stack)
    old = workers(metrics_stack)
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in workers(metrics_stack) and len(workers(metrics_stack)) == 2, 20)
    after = scrape(metrics_stack)
    assert_nothing_went_back(before, after)
    respawns = sum(
        v for (name, _), v in after.items() if name == "modelserver_uwsgi_worker_respawns_total"
    )
    assert respawns >= 1, after
    # The new worker counts on in its predecessor's file: still exact, no file per PID.
    assert_exact(metrics_stack)
    files = sorted(p.name for p in Path(metrics_stack.dir, "metrics").iterdir())
    assert all(name.rsplit("_", 1)[1] in {"0.db", "1.db", "2.db"} for name in files), files


def test_graceful_reload_loses_no_count(metrics_stack):
    send(metrics_stack, ["/norm?values=1"] * 50)
    before = scrape(metrics_stack)
    old = workers(metrics_stack)
    log = Path(metrics_stack.dir, "uwsgi.log")
    reloads = log.read_text().count("binary reloading uWSGI")
    # What `systemctl reload` does (deploy/systemd/modelserver.service).
    fifo_reload(metrics_stack)
    wait_for(lambda: log.read_text().count("binary reloading uWSGI") > reloads, 20)
    wait_for(lambda: len(workers(metrics_stack)) == 2 and not workers(metrics_stack) & old, 20)
    wait_for(lambda: metrics_stack.request("GET", "/readyz")[0] == 200, 20)
    after = scrape(metrics_stack)
    assert_nothing_went_back(before, after)
    assert value(after, "modelserver_model_loaded", model="iris") == 1
    assert_exact(metrics_stack)


def test_a_handover_reload_counts_every_request_answered_on_the_way(metrics_stack):
    # What `systemctl reload` runs: a second uWSGI answers while the first reloads; the requests
    # it answers are counted in the same files, under worker keys of its own.
    before = scrape(metrics_stack)
    statuses: list[int] = []
    done = threading.Event()

    def steady_client() -> None:
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            statuses.append(metrics_stack.request("GET", "/norm?values=1")[0])
            time.sleep(0.01)

    client = threading.Thread(target=steady_client)
    client.start()
    try:
        metrics_stack.reload()
    finally:
        done.set()
        client.join()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    after = scrape(metrics_stack)
    assert_nothing_went_back(before, after)
    total = "modelserver_requests_total"
    labels = {"endpoint": "norm", "method": "GET", "status": "200"}
    assert value(after, total, **labels) - value(before, total, **labels) == len(statuses)
    assert_exact(metrics_stack)


def request_from(
    source: str, stack: Stack, path: str, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    """GET path through the stack's nginx from another loopback address."""
    conn = http.client.HTTPConnection(
        stack.host, stack.port, timeout=10, source_address=(source, 0)
    )
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        conn.close()


def test_metrics_refused_from_an_address_not_allowed(metrics_stack):
    # 127.0.0.2 is loopback too, but the site allows only 127.0.0.1 and ::1.
    status, headers, body = request_from("127.0.0.2", metrics_stack, "/metrics")
    assert_json_error(status, headers, body, 403, "/metrics")
    assert "modelserver_requests_total" not in body.decode()
    # The API itself still answers that address.
    status, _, body = request_from("127.0.0.2", metrics_stack, "/norm?values=3&values=4")
    assert status == 200, body
    assert json.loads(body) == {"result": 5.0}


@pytest.mark.parametrize(
    "header", [{"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}]
)
def test_metrics_refused_through_a_proxy_from_an_allowed_address(metrics_stack, header):
    # An Ingress or a balancer connects from an allowed address on behalf of anyone.
    status, headers, body = request_from("127.0.0.1", metrics_stack, "/metrics", header)
    assert_json_error(status, headers, body, 403, "/metrics is not read through a proxy")
    assert "modelserver_requests_total" not in body.decode()
    status, _, body = request_from("127.0.0.1", metrics_stack, "/metrics")
    assert status == 200, body


def test_a_remote_prometheus_reads_metrics_and_nothing_else(tmp_path):
    # A host behind a balancer (127.0.0.5) with a Prometheus on 127.0.0.2, as install.sh
    # renders the site; anyone else (127.0.0.3) is refused everything.
    env = {"MODELSERVER_ALLOW": "127.0.0.5", "MODELSERVER_METRICS_ALLOW": "127.0.0.2"}
    (tmp_path / "site").write_text(install_sh("--print-site", env=env))
    with Stack(uwsgi_args=SERVED_APP, site_file=tmp_path / "site") as stack:
        status, _, body = request_from("127.0.0.2", stack, "/metrics")
        assert status == 200, body
        assert b"modelserver_requests_total" in body
        proxied = {"X-Forwarded-For": "203.0.113.9"}  # an Ingress's request from that address
        status, headers, body = request_from("127.0.0.2", stack, "/metrics", proxied)
        assert_json_error(status, headers, body, 403, "/metrics is not read through a proxy")
        status, headers, body = request_from("127.0.0.2", stack, "/norm?values=4")
        assert_json_error(status, headers, body, 403, "may read /metrics only")
        for path in ("/metrics", "/norm?values=4"):
            status, headers, body = request_from("127.0.0.3", stack, path)
            assert_json_error(status, headers, body, 403, "load balancers only")
        status, _, body = request_from("127.0.0.5", stack, "/norm?values=4")  # the balancer
        assert status == 200, body


def test_listen_queue_is_read_from_the_kernel():
    # uWSGI's stats say 0 for a unix socket's queue on a stock kernel; sock_diag tells the truth.
    # (A scrape would wait in that same queue, so the function is asked directly.)
    uwsgi_args = uwsgi_app("testapps:flask_app")
    with Stack(uwsgi_args=uwsgi_args) as stack:
        assert unix_listen_queue(stack.socket_path) == 0
        with ThreadPoolExecutor(6) as pool:
            slow = [pool.submit(stack.request, "GET", "/slow?seconds=1.5") for _ in range(6)]
            wait_for(lambda: unix_listen_queue(stack.socket_path) == 4, 5)
            assert [future.result()[0] for future in slow] == [200] * 6
