"""Several machines: three hosts behind the nginx load balancer, each a network namespace.

Real components: each host runs nginx + uWSGI with the host site as install.sh renders it, the
balancer runs nginx with the balancer site install.sh renders, over TLS, and every request comes
from a client namespace (tests/helpers/netns_hosts.py). Under load (wrk, bounded in time), a host is
killed, cut off, stopped, and all are upgraded, each without a failed request.
"""

import json
import os
import re
import select
import shlex
import signal
import subprocess
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from deploy.localstack import PROJECT, find_nginx
from helpers import HELPERS, assert_json_error, wait_for
from helpers.docpages import doc_block
from helpers.netns_hosts import (
    BALANCER_ADDRESS,
    CLIENT_ADDRESS,
    HOST_PORT,
    SUBNET,
    Balancer,
    Host,
    Network,
    in_ns,
    install_sh,
    ip,
    pids_in,
    stack_dir,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

URL = f"https://{BALANCER_ADDRESS}/pisqrt?a=25"
RESULT = {"result": 8.86226925452758}
CONNECTIONS = 16  # wrk's clients: enough to keep all three hosts busy on this 2-core machine


def make_cert(dir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the balancer's address, and its key."""
    cert, key = dir / "balancer.crt", dir / "balancer.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=modelserver-test", "-addext", f"subjectAltName=IP:{BALANCER_ADDRESS}"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


class Cluster:
    """Three hosts, the balancer, and ways to reach them from the client namespace."""

    def __init__(self, net: Network, hosts: list[Host], balancer: Balancer, cert: Path):
        self.net, self.hosts, self.balancer, self.cert = net, hosts, balancer, cert

    def curl(self, url: str = URL, *options: str, ns: str | None = None) -> tuple:
        """One request with curl from ns (the client's by default): status, headers, body, s."""
        argv = ["curl", "-sS", "--cacert", str(self.cert), "--max-time", "30", *options]
        argv += ["-w", "\n%{http_code} %{content_type} %{time_total}", url]
        result = self.net.run(ns or self.net.client, *argv)
        assert result.returncode == 0, result.stderr
        body, _, last = result.stdout.rpartition("\n")
        status, rest = last.split(" ", 1)
        content_type, seconds = rest.rsplit(" ", 1)  # a Content-Type may hold spaces
        return int(status), {"content-type": content_type}, body.encode(), float(seconds)

    def wrk(self, seconds: float) -> subprocess.Popen:
        """wrk from the client namespace over TLS, bounded in time; finish with wrk_report()."""
        argv = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "30s"]
        argv += ["-s", str(HELPERS / "wrk_statuses.lua"), URL]
        return subprocess.Popen(in_ns(self.net.client, *argv), stdout=subprocess.PIPE, text=True)

    def up_hosts_answering(self) -> set[str]:
        """Which hosts answered the balancer's last 60 requests (from its access log)."""
        return {
            part.split(",")[-1].strip()
            for line in self.balancer.log_lines()[-60:]
            for part in [line.split("upstream=")[1].split(" upstream_status=")[0]]
        }


def wrk_report(proc: subprocess.Popen) -> dict:
    """wrk's result line (helpers/wrk_statuses.lua): statuses counted, socket errors, p99, max."""
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    report = json.loads(out.strip().splitlines()[-1])
    statuses = Counter()
    for per_thread in report["statuses"]:
        statuses.update({int(status): n for status, n in per_thread.items()})
    return {**report, "statuses": dict(statuses)}


def stop(load: subprocess.Popen) -> None:
    """End a wrk run whose test failed, by its PID (`ip netns exec` became wrk)."""
    load.kill()
    load.communicate()


def start_all(hosts: list[Host], release: tuple[str, ...] = ()) -> None:
    """Start every host that is not running, side by side, and wait until all are ready."""
    starting = [host for host in hosts if not host.running]
    for host in starting:
        host.launch(release)
    for host in starting:
        host.wait_ready()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale-out")
    with Network(f"ms{os.getpid()}", hosts=3) as net:
        cert, key = make_cert(tmp)
        hosts = [
            Host(ns, address, tmp / ns, allow=BALANCER_ADDRESS)
            for ns, address in net.addresses.items()
        ]
        upstreams = [f"{host.address}:{HOST_PORT}" for host in hosts]
        balancer = Balancer(net.lb, tmp / "balancer", upstreams, cert, key)
        try:
            start_all(hosts)
            balancer.start()
            yield Cluster(net, hosts, balancer, cert)
        finally:
            balancer.stop()
            for host in hosts:
                try:
                    host.stop()
                except subprocess.TimeoutExpired:
                    host.kill()


@pytest.fixture
def all_up(cluster):
    """Every host running and every link up at the start of a test."""
    for host in cluster.hosts:
        cluster.net.link(host.ns, "up")
    stopped = [host for host in cluster.hosts if not host.running]
    start_all(cluster.hosts)
    for host in stopped:  # the balancer tries them again after fail_timeout
        wait_for_traffic(cluster, host)
    return cluster


# --- configuration --------------------------------------------------------------------------


def test_balancer_site_passes_nginx_t_with_debians_nginx_conf(tmp_path):
    # Debian's own nginx.conf, with the balancer site as install.sh --balancer installs it (it
    # disables Debian's default site), and a self-signed certificate made here.
    cert, key = make_cert(tmp_path)
    env = {"MODELSERVER_TLS_CERT": str(cert), "MODELSERVER_TLS_KEY": str(key)}
    site = install_sh("--print-balancer", "10.77.0.11:5555", "10.77.0.12:5555", env=env)
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")  # nginx -t opens the log file
    (tmp_path / "modelserver-balancer").write_text(site)
    conf = Path("/etc/nginx/nginx.conf").read_text()
    conf = conf.replace("include /etc/nginx/sites-enabled/*;", f"include {tmp_path}/modelserver-*;")
    (tmp_path / "nginx.conf").write_text(conf)
    result = subprocess.run(
        [find_nginx(), "-t", "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr


def test_install_renders_each_host_and_refuses_bad_values():
    site = install_sh("--print-balancer", "10.0.0.5:5555", "[fd00::7]:80", env={})
    servers = [line.strip() for line in site.splitlines() if line.startswith("    server ")]
    assert servers == [
        "server 10.0.0.5:5555 max_fails=1 fail_timeout=5s;",
        "server [fd00::7]:80 max_fails=1 fail_timeout=5s;",
    ]
    env = {
        "MODELSERVER_LISTEN": "10.0.0.5:5555",
        "MODELSERVER_ALLOW": "10.0.0.1,10.0.1.0/24",
        "MODELSERVER_METRICS_ALLOW": "10.0.0.9",  # a Prometheus: may connect, not trusted
    }
    host_site = install_sh("--print-site", env=env)
    assert "    listen 10.0.0.5:5555;\n" in host_site
    assert "    set_real_ip_from 10.0.0.1;\n    set_real_ip_from 10.0.1.0/24;\n" in host_site
    assert "set_real_ip_from 10.0.0.9" not in host_site
    geo = host_site.split("$modelserver_client_allowed {\n")[1].split("}")[0]
    allowed = "default 0; 127.0.0.1 1; ::1 1; 10.0.0.5 1; 10.0.0.1 1; 10.0.1.0/24 1; 10.0.0.9 2;"
    assert geo.split() == allowed.split()
    # /metrics: this host, also on its listen address (a local Prometheus), and 10.0.0.9.
    metrics = host_site.split("location = /metrics {\n")[1].split("error_page")[0]
    assert [
        line.strip() for line in metrics.splitlines() if line.strip().startswith(("allow", "deny"))
    ] == ["allow 127.0.0.1;", "allow ::1;", "allow 10.0.0.5;", "allow 10.0.0.9;", "deny all;"]
    for args, env in [
        (("--print-balancer", "10.0.0.5"), {}),  # no port
        (("--print-balancer", "10.0.0.5:80;"), {}),
        (("--print-site",), {"MODELSERVER_ALLOW": "10.0.0.1; allow all"}),
        (("--print-site",), {"MODELSERVER_LISTEN": "host:80"}),
        (("--print-site",), {"MODELSERVER_METRICS_ALLOW": "10.0.0.9 all"}),
    ]:
        with pytest.raises(subprocess.CalledProcessError) as failed:
            install_sh(*args, env=env)
        assert "modelserver: " in failed.value.stderr


# --- TLS, and the hosts' view of clients ------------------------------------------------------


def test_tls_with_modern_protocols_only_and_http_redirected(all_up):
    for version in ("1.2", "1.3"):
        status, _, body, _ = all_up.curl(URL, f"--tlsv{version}", "--tls-max", version)
        assert status == 200, body
        assert json.loads(body) == RESULT
    status, _, body, _ = all_up.curl(f"http://{BALANCER_ADDRESS}/pisqrt?a=25", "-o", "/dev/null")
    assert status == 301, body
    redirect = all_up.curl(f"http://{BALANCER_ADDRESS}/pisqrt?a=25", "-L")
    assert redirect[0] == 200 and json.loads(redirect[2]) == RESULT
    # TLS 1.1, offered by a client that allows it (security level 0): the balancer refuses.
    old = all_up.net.run(
        all_up.net.client,
        *["openssl", "s_client", "-connect", f"{BALANCER_ADDRESS}:443", "-tls1_1"],
        *["-cipher", "DEFAULT@SECLEVEL=0"],
    )
    assert old.returncode != 0
    assert "alert protocol version" in old.stdout + old.stderr, old.stdout + old.stderr


def test_hosts_log_the_real_client_and_refuse_everyone_but_the_balancer(all_up):
    # Through the balancer, a forged X-Forwarded-For is replaced by the client's own address.
    status, _, body, _ = all_up.curl(URL + "&who=1", "-H", "X-Forwarded-For: 6.6.6.6")
    assert status == 200, body
    logged = [line for h in all_up.hosts for line in h.access_log().splitlines() if "who=1" in line]
    assert len(logged) == 1 and logged[0].startswith(f"{CLIENT_ADDRESS} "), logged
    host = all_up.hosts[0]
    direct = f"http://{host.address}:{HOST_PORT}/pisqrt?a=25"
    # The balancer itself may connect; anyone else, from any namespace, gets a JSON 403, even
    # when it claims to be the balancer.
    status, _, body, _ = all_up.curl(direct, ns=all_up.net.lb)
    assert status == 200, body
    for ns in (all_up.net.client, all_up.hosts[1].ns):
        for forged in ((), ("-H", f"X-Forwarded-For: {BALANCER_ADDRESS}")):
            response = all_up.curl(direct, *forged, ns=ns)
            assert_json_error(*response[:3], 403, "load balancers only")


def test_one_request_id_from_the_balancer_to_the_hosts_logs(all_up):
    # The balancer makes an id (or keeps the client's sane one) and sends it to the host: its
    # log and the host's JSON log name the same request.
    status, _, body, _ = all_up.curl(URL + "&traced=1")
    assert status == 200, body
    balancer_line = next(line for line in all_up.balancer.log_lines() if "traced=1" in line)
    request_id = balancer_line.rsplit("request_id=", 1)[1].strip()
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), balancer_line
    host_entries = [
        json.loads(line)
        for host in all_up.hosts
        for line in Path(stack_dir(host.state), "nginx-access.json").read_text().splitlines()
        if "traced=1" in line
    ]
    assert [entry["request_id"] for entry in host_entries] == [request_id]
    client_id = "client-trace-0001"
    status, _, body, _ = all_up.curl(URL + "&traced=2", "-H", f"X-Request-Id: {client_id}")
    assert status == 200, body
    assert any(
        "traced=2" in line and line.endswith(f"request_id={client_id}")
        for line in all_up.balancer.log_lines()
    )
    host_ids = [
        json.loads(line)["request_id"]
        for host in all_up.hosts
        for line in Path(stack_dir(host.state), "nginx-access.json").read_text().splitlines()
        if "traced=2" in line
    ]
    assert host_ids == [client_id]


def test_metrics_answer_the_host_itself_not_the_balancers_clients(all_up):
    host = all_up.hosts[0]
    # A Prometheus on the host scrapes its private address: allowed (install.sh adds it).
    status, _, body, _ = all_up.curl(f"http://{host.address}:{HOST_PORT}/metrics", ns=host.ns)
    assert status == 200, body
    assert b"modelserver_requests_total" in body
    # A client through the balancer is refused: the balancer says whom it is for.
    response = all_up.curl(f"https://{BALANCER_ADDRESS}/metrics")
    assert_json_error(*response[:3], 403, "/metrics is not read through a proxy")


def test_hosts_do_not_speak_the_uwsgi_protocol_to_the_network(all_up):
    host = all_up.hosts[0]
    # The only TCP port of a host is nginx's HTTP one; uWSGI has a unix socket only.
    listening = all_up.net.run(host.ns, "ss", "-Hltn").stdout.split("\n")
    assert [line.split()[3] for line in listening if line] == [f"{host.address}:{HOST_PORT}"]
    # A uwsgi-protocol request sent there, even from the balancer, gets nginx's HTTP 400.
    packet = (
        "import socket, struct\n"
        "v = b''.join(struct.pack('<H', len(x)) + x for x in (b'REQUEST_METHOD', b'GET',"
        " b'PATH_INFO', b'/pisqrt', b'QUERY_STRING', b'a=25'))\n"
        f"s = socket.create_connection(('{host.address}', {HOST_PORT}), timeout=5)\n"
        "s.sendall(struct.pack('<BHB', 0, len(v), 0) + v)\n"
        "print(s.recv(200).decode(errors='replace'))\n"
    )
    answer = all_up.net.run(all_up.net.lb, "python3", "-c", packet)
    assert answer.stdout.startswith("HTTP/1.1 400"), answer
    assert "result" not in answer.stdout


def docs_nft_commands() -> list[list[str]]:
    """The nftables rules against connection floods (docs/limits.md), as an operator copies them."""
    return [
        shlex.split(line.removeprefix("sudo ").split("#")[0])
        for line in doc_block("nft-flood").splitlines()
    ]


# Opens COUNT connections to ADDRESS:PORT and leaves them silent (a connection flood), prints how
# many were taken and how many refused, and holds them until its stdin closes (at most 60 s).
FLOOD = """
import select, socket, sys
address, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held, refused = [], 0
for _ in range(count):
    try:
        held.append(socket.create_connection((address, port), timeout=2))
    except ConnectionRefusedError:
        refused += 1
print(len(held), refused, flush=True)
select.select([sys.stdin], [], [], 60)
"""


def test_the_docs_firewall_rule_stops_a_connection_flood_from_one_source(all_up):
    host, net = all_up.hosts[0], all_up.net
    commands = docs_nft_commands()
    assert [command[:2] for command in commands] == [["nft", "add"]] * 3 + [["nft", "list"]]
    try:
        for command in commands:
            done = net.run(host.ns, *command)
            assert done.returncode == 0, done.stderr
        assert "ct count over 64 } reject with tcp reset" in done.stdout  # the listed table
        argv = ["python3", "-c", FLOOD, host.address, str(HOST_PORT), "70"]
        # Leaving the block, on a failure too, closes the flood's stdin: it ends, and is waited for.
        with subprocess.Popen(
            in_ns(net.client, *argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as flood:
            assert select.select([flood.stdout], [], [], 60)[0], "the flood did not report"
            assert flood.stdout.readline().split() == ["64", "6"]  # 64 taken, 6 reset at once
            # Meanwhile another source (the balancer) is served by that host as usual.
            status, _, body, _ = all_up.curl(
                f"http://{host.address}:{HOST_PORT}/pisqrt?a=25", ns=net.lb
            )
            assert status == 200, body
            assert json.loads(body) == RESULT
    finally:
        net.run(host.ns, "nft", "delete", "table", "inet", "modelserver")


# A greedy client: THREADS keep-alive connections from SOURCE to the balancer, each sending
# GET /pisqrt as fast as it is answered, for SECONDS; prints the statuses and one 429's answer.
GREEDY = """
import collections, http.client, json, ssl, sys, threading, time
source, balancer, cafile, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
context = ssl.create_default_context(cafile=cafile)
stop = time.monotonic() + seconds
counts, refusal = [], {}
def client():
    statuses = collections.Counter()
    connection = http.client.HTTPSConnection(
        balancer, context=context, source_address=(source, 0), timeout=10
    )
    while time.monotonic() < stop:
        connection.request("GET", "/pisqrt?a=25")
        response = connection.getresponse()
        body = response.read()
        statuses[response.status] += 1
        if response.status == 429:
            refusal.update(retry_after=response.getheader("Retry-After"), body=body.decode())
    counts.append(statuses)
threads = [threading.Thread(target=client) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"statuses": sum(counts, collections.Counter()), **refusal}))
"""


def test_behind_the_balancer_the_per_client_limits_count_each_real_client(all_up, figure):
    # Two more clients, 10.77.0.3 and .4, not exempt from the limits (.2, wrk's, is).
    net, greedy, other = all_up.net, f"{SUBNET}.3", f"{SUBNET}.4"
    for address in (greedy, other):
        ip("-n", net.client, "addr", "add", f"{address}/24", "dev", "eth0")
    try:
        argv = ["python3", "-c", GREEDY, greedy, BALANCER_ADDRESS, str(all_up.cert), "4"]
        done = net.run(net.client, *argv, timeout=60)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        figure("a greedy client through the balancer for 4 s: statuses", report["statuses"])
        # Each of the 3 hosts lets a client have 200 requests/s and a burst of 400: beyond, 429.
        assert set(report["statuses"]) == {"200", "429"}, report
        # At most what 3 hosts x (200/s for the 4 s, half a second's slack, + 400) let through.
        assert report["statuses"]["200"] <= 3 * (200 * 4.5 + 400), report
        assert report["retry_after"] == "1"
        assert json.loads(report["body"])["message"].startswith("too many requests: more than 200")
        # Right after, the balancer's other clients are not limited with it: the hosts see each
        # client's own address (X-Forwarded-For), not the balancer's.
        status, _, body, _ = all_up.curl(URL, "--interface", other)
        assert status == 200, body
        assert json.loads(body) == RESULT
    finally:
        for address in (greedy, other):
            ip("-n", net.client, "addr", "del", f"{address}/24", "dev", "eth0")


# --- failover under load ----------------------------------------------------------------------


def under_load(cluster, figure, name: str, event, seconds: float = 8, at: float = 2) -> dict:
    """A baseline wrk run, then one with event() at `at` s: both free of failures; the p99s."""
    before = wrk_report(cluster.wrk(3))
    logged_before = len(cluster.balancer.log_lines())
    load = cluster.wrk(seconds)
    try:
        time.sleep(at)
        event()
    except BaseException:
        stop(load)
        raise
    during = wrk_report(load)
    seen = balancer_view(cluster.balancer.log_lines()[logged_before:])
    figure(
        f"{name}: p99 before / during (ms), requests during",
        f"{before['p99_ms']} / {during['p99_ms']} (max {during['max_ms']}), "
        f"{during['statuses']}; at the balancer: {seen}",
    )
    for report in (before, during):
        assert report["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}, report
        assert set(report["statuses"]) == {200}, report
    # 499: wrk closed connections with a request in flight when its time was up; nothing else.
    assert set(seen["statuses"]) <= {"200", "499"}, seen
    assert seen["statuses"].get("499", 0) <= CONNECTIONS, seen
    return during


def balancer_view(lines: list[str]) -> dict:
    """From the balancer's access log: statuses; the requests retried on another host (their
    upstream lists two hosts) and the longest time one of them took; the requests over 1 s."""
    seconds = [float(line.split("request_time=")[1].split()[0]) for line in lines]
    retried = [
        took
        for line, took in zip(lines, seconds, strict=True)
        if "," in line.split("upstream=")[1].split(" upstream_status=")[0]
    ]
    return {
        "statuses": dict(Counter(line.split('" ')[1].split()[0] for line in lines)),
        "retried": len(retried),
        "retried_max_s": max(retried, default=0),
        "over_1s": sum(took > 1 for took in seconds),
    }


def wait_for_traffic(cluster, host: Host, timeout: float = 15) -> float:
    """Seconds until the balancer sends requests to host again (it probes after fail_timeout)."""

    def back_in_rotation() -> bool:
        if f"{host.address}:{HOST_PORT}" in cluster.up_hosts_answering():
            return True
        for _ in range(6):
            status, _, body, _ = cluster.curl()
            assert status == 200, body
        return False

    start = time.monotonic()
    wait_for(back_in_rotation, timeout, interval=0.2, message="the host got no traffic back")
    return time.monotonic() - start


def test_kill_9_of_a_host_under_load(all_up, figure):
    host = all_up.hosts[0]
    under_load(all_up, figure, "kill -9 of a host's whole stack", host.kill)
    host.start()
    figure(
        "kill -9: the host back in rotation after restart (s)",
        f"{wait_for_traffic(all_up, host):.1f}",
    )


def test_link_cut_under_load(all_up, figure):
    host = all_up.hosts[1]

    def cut_for_3_seconds():
        all_up.net.link(host.ns, "down")
        time.sleep(3)
        all_up.net.link(host.ns, "up")

    under_load(all_up, figure, "link of a host cut for 3 s", cut_for_3_seconds, seconds=10)
    figure("link cut: the host back in rotation (s)", f"{wait_for_traffic(all_up, host):.1f}")


def test_a_host_silent_for_good_under_load(all_up, figure):
    # A host that goes silent for good (power lost: no reset, nothing): requests in flight to it
    # wait out proxy_read_timeout, then run on the next host. Both timeouts scaled down
    # together (read 45 s -> 3 s, retry window 50 s -> 5 s), so that this takes seconds.
    host = all_up.hosts[1]
    scaled = {
        "proxy_read_timeout 45s;": "proxy_read_timeout 3s;",
        "proxy_next_upstream_timeout 50s;": "proxy_next_upstream_timeout 5s;",
    }
    with all_up.balancer.changed(scaled):
        try:
            event = partial(all_up.net.link, host.ns, "down")
            under_load(all_up, figure, "host silent for good (timeouts 3 s / 5 s)", event)
        finally:
            all_up.net.link(host.ns, "up")


def test_graceful_stop_of_a_host_under_load(all_up, figure):
    host = all_up.hosts[2]
    under_load(all_up, figure, "graceful stop of a host", host.stop)
    host.start()
    figure("graceful stop: the host back in rotation (s)", f"{wait_for_traffic(all_up, host):.1f}")


def test_a_hosts_502_is_retried_on_the_next_host(all_up):
    # uWSGI of one host killed, its nginx still up (the host's runner paused, so it does not
    # stop nginx in turn): that nginx answers 502, and the balancer tries the next host.
    host = all_up.hosts[0]
    os.kill(host.proc.pid, signal.SIGSTOP)
    try:
        for pid in pids_in(host.ns):
            if b"uWSGI" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        logged_before = len(all_up.balancer.log_lines())
        for _ in range(6):
            status, _, body, _ = all_up.curl()
            assert status == 200, body
            assert json.loads(body) == RESULT
    finally:
        os.kill(host.proc.pid, signal.SIGCONT)
    first = f"upstream={host.address}:{HOST_PORT}, "
    retried = [line for line in all_up.balancer.log_lines()[logged_before:] if first in line]
    assert retried and all("upstream_status=502, 200" in line for line in retried), retried
    host.proc.wait(15)  # the runner sees its uWSGI gone, stops nginx, removes its dir, exits


RELEASE_2 = '''\
"""The next release of the app, for the rolling upgrade test: it says so in a header."""
from wsgi import app as current


def app(environ, start_response):
    def start(status, headers, exc_info=None):
        return start_response(status, [*headers, ("X-Release", "2")], exc_info)

    return current(environ, start)
'''


def rollout_env(cluster, tmp_path: Path, **settings: str) -> dict:
    """rollout.sh's settings for the test balancer, with netns_hosts.py on-host in place of ssh."""
    hosts = {h.address: [h.ns, str(h.state)] for h in cluster.hosts}
    (tmp_path / "hosts.json").write_text(json.dumps(hosts))
    helper = f"{os.sys.executable} {HELPERS / 'netns_hosts.py'}"
    return {
        **os.environ,
        "MODELSERVER_BALANCER_SITE": str(cluster.balancer.site),
        "MODELSERVER_REMOTE": f"{helper} on-host {tmp_path / 'hosts.json'}",
        "MODELSERVER_UPGRADE": f'{helper} upgrade "$MODELSERVER_TEST_HOST"',
        **settings,
    }


def rollout(cluster, env: dict) -> subprocess.CompletedProcess:
    upstreams = [f"{h.address}:{HOST_PORT}" for h in cluster.hosts]
    argv = [str(PROJECT / "deploy" / "rollout.sh"), *upstreams]
    return subprocess.run(
        in_ns(cluster.net.lb, *argv),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rolling_upgrade_under_load(all_up, figure, tmp_path):
    (tmp_path / "release2").mkdir()
    (tmp_path / "release2" / "release2.py").write_text(RELEASE_2)
    release = ["--pythonpath", str(tmp_path / "release2"), "--module", "release2:app"]
    for host in all_up.hosts:
        (host.state / "release.next.json").write_text(json.dumps(release))
    site_before = all_up.balancer.site.read_text()
    # wrk runs until the rollout is over (then SIGINT ends it with its report).
    load_seconds = 60
    before = wrk_report(all_up.wrk(3))
    load = all_up.wrk(load_seconds)
    try:
        time.sleep(1)
        start = time.monotonic()
        done = rollout(all_up, rollout_env(all_up, tmp_path))
        seconds = time.monotonic() - start
        time.sleep(1)
    except BaseException:
        stop(load)
        raise
    load.send_signal(signal.SIGINT)
    during = wrk_report(load)
    figure(
        "rolling upgrade of 3 hosts: p99 before / during (ms), requests during",
        f"{before['p99_ms']} / {during['p99_ms']} (max {during['max_ms']}), "
        f"{during['statuses']}, rollout {seconds:.1f} s",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done:" in done.stdout
    assert seconds < load_seconds - 2, "the rollout outlasted the load: its end was not measured"
    assert during["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}, during
    assert set(during["statuses"]) == {200}, during
    # rollout.sh leaves the balancer's config as it was (it never marks a host down), and the
    # balancer sends requests to every host again.
    assert all_up.balancer.site.read_text() == site_before
    for host in all_up.hosts:
        wait_for_traffic(all_up, host)
        status, headers, body, _ = all_up.curl(
            f"http://{host.address}:{HOST_PORT}/pisqrt?a=25", "-D", "-", ns=all_up.net.lb
        )
        assert status == 200, body
        assert "X-Release: 2" in body.decode(), body


def test_rollout_stops_at_the_first_host_that_is_not_ready(all_up, tmp_path):
    # The "upgrade" stops the host's stack, waits until its port is closed, and starts nothing:
    # /readyz never answers again.
    stop = (
        'kill -TERM "$(cat "$MODELSERVER_TEST_HOST/pid")"; '
        f"for _ in $(seq 200); do ss -Hltn | grep -q :{HOST_PORT} || break; sleep 0.1; done"
    )
    env = rollout_env(all_up, tmp_path, MODELSERVER_UPGRADE=stop, MODELSERVER_READY_SECONDS="2")
    start = time.monotonic()
    done = rollout(all_up, env)
    first = f"{all_up.hosts[0].address}:{HOST_PORT}"
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{first} is not ready after 2 s; stopping here" in done.stderr
    assert time.monotonic() - start < 10
    # The first one stopped (its runner finishing), the others were not touched.
    assert all_up.hosts[0].proc.wait(15) == 0
    assert [host.running for host in all_up.hosts] == [False, True, True]
    assert "upgrading" not in done.stdout.replace(f"upgrading {first}", "")
    # And the balancer serves from them.
    status, _, body, _ = all_up.curl()
    assert status == 200, body


def test_with_every_host_down_the_client_gets_a_json_502_at_once(all_up):
    for host in all_up.hosts:
        host.proc.terminate()
    for host in all_up.hosts:
        host.stop()
    for _ in range(3):  # refused by each host, then "no live upstreams": both at once
        status, headers, body, seconds = all_up.curl()
        assert_json_error(status, headers, body, 502, "no model host is reachable")
        assert seconds < 0.5
