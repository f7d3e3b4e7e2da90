"""The production install under a real systemd: deploy/install.sh, then what systemctl users do.

One systemd box for the module, and the tests run in file order as an operator would: install,
check, crash, reload, upgrade, stop, reboot, reinstall, uninstall. The box has no network, so
pip installs from a wheelhouse built here first (PIP_NO_INDEX / PIP_FIND_LINKS).
"""

import json
import re
import subprocess
import time

import pytest

from deploy.localstack import PROJECT
from helpers import wait_for
from helpers.installed import (
    INSTALL,
    MODELS,
    READY,
    REASON,
    RESULT,
    SNAPSHOT,
    SRC,
    URL,
    installed_box,
    sh,
)

pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no systemd box here: {REASON}")

UNIT_FILE = PROJECT / "deploy" / "systemd" / "modelserver.service"
KEYS = "/etc/modelserver/api-keys"


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    with installed_box(tmp_path_factory.mktemp("box")) as box:
        yield box


def get(box) -> tuple[int, str]:
    """GET /pisqrt?a=25 through the installed nginx site, from inside the box."""
    result = box.run(["curl", "-sS", "-o", "/dev/stdout", "-w", "\n%{http_code}", URL], check=False)
    body, _, status = result.stdout.rpartition("\n")
    return int(status or 0), body.strip()


def main_pid(box) -> int:
    return int(sh(box, "systemctl show -p MainPID --value modelserver"))


def wait_for_answer(box, timeout: float) -> float:
    """Seconds until the service answers 200 through nginx; fails after timeout."""
    start = time.monotonic()
    wait_for(lambda: get(box)[0] == 200, timeout, message="no answer")
    return time.monotonic() - start


def start_load(box, seconds: float, threads: int = 8) -> subprocess.Popen:
    """tests/helpers/loadclient.py inside the box, in the background; finish with load_result()."""
    argv = [
        "nsenter",
        "-t",
        str(box.pid1),
        "-a",
        "python3",
        f"{SRC}/tests/helpers/loadclient.py",
        URL,
        str(seconds),
        str(threads),
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def load_result(load: subprocess.Popen) -> dict[str, int]:
    out, err = load.communicate(timeout=120)
    assert load.returncode == 0, err
    return json.loads(out)


# --- static checks, no box needed ---------------------------------------------------------


def test_unit_security_exposure_at_most_2():
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT_FILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    exposure = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)[1])
    assert exposure <= 2.0, result.stdout


# --- the installed service ------------------------------------------------------------------


def test_unit_verifies_without_warnings(box):
    result = box.run(
        ["systemd-analyze", "verify", "/etc/systemd/system/modelserver.service"], check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_installed_service_answers_as_modelserver_through_nginx(box):
    assert sh(box, "systemctl is-active modelserver") == "active"
    assert get(box) == (200, RESULT)
    users = sh(box, f"ps -o user= -p {main_pid(box)} --ppid {main_pid(box)}").split()
    assert users == ["modelserver"] * 3  # the master and 2 workers
    assert sh(box, "stat -c '%a %U %G' /run/modelserver/modelserver.sock") == (
        "660 modelserver www-data"
    )


# From inside the box: 200 POSTs from 127.0.0.2 whose bodies never finish, then 10 GETs from
# 127.0.0.1 (timed), then the status each of the 200 got so far (None: still waiting).
LIMITS_PROBE = """
import json, socket, time, urllib.request
held = []
for _ in range(200):
    sock = socket.socket()
    sock.bind(("127.0.0.2", 0))
    sock.connect(("127.0.0.1", 5555))
    sock.sendall(b"POST /pisqrt HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\n"
                 b"Content-Length: 100\\r\\n\\r\\n{")
    held.append(sock)
time.sleep(0.5)
latencies = []
for _ in range(10):
    start = time.monotonic()
    urllib.request.urlopen("http://127.0.0.1:5555/pisqrt?a=25", timeout=10).read()
    latencies.append(time.monotonic() - start)
statuses = []
for sock in held:
    sock.settimeout(0.05)
    try:
        statuses.append(int(sock.recv(64).split()[1]))
    except OSError:
        statuses.append(None)
print(json.dumps({"latencies": latencies, "statuses": statuses}))
"""


def test_per_client_limits_hold_with_debians_nginx_conf(box, figure):
    # The installed site under Debian's stock nginx.conf (worker_connections 768).
    result = json.loads(sh(box, ["python3", "-c", LIMITS_PROBE]))
    latencies, statuses = result["latencies"], result["statuses"]
    figure(
        "installed service: GET from 127.0.0.1 while 127.0.0.2 holds 200 slow bodies, max s",
        f"{max(latencies):.3f}",
    )
    assert max(latencies) < 1
    assert statuses.count(429) >= 200 - 32 - 10, statuses
    assert statuses.count(None) >= 30  # the 32 let in wait for their bodies


def test_key_file_is_private_and_keys_change_with_a_reload(box):
    assert sh(box, f"stat -c '%a %U %G' {KEYS}") == "640 root modelserver"
    assert get(box)[0] == 200  # empty: no key needed
    try:
        sh(box, f"echo box-key-1 > {KEYS} && systemctl reload modelserver")
        # systemctl reload returns before the reload is done.
        wait_for(lambda: get(box)[0] == 401, 15, message="the key taken in by the reload")
        keyed = box.run(["curl", "-s", "-H", "Authorization: Bearer box-key-1", URL], check=False)
        assert keyed.stdout.strip() == RESULT
        assert (
            box.run(
                [
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "http://127.0.0.1:5555/healthz",
                ],
                check=False,
            ).stdout
            == "200"
        )
    finally:
        sh(box, f": > {KEYS} && systemctl reload modelserver")
    wait_for_answer(box, timeout=15)


def test_other_users_cannot_use_the_socket(box):
    # Only the service and nginx's group: any other local user is refused.
    probe = (
        "import socket; s = socket.socket(socket.AF_UNIX); "
        "s.connect('/run/modelserver/modelserver.sock')"
    )
    result = box.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "python3", "-c", probe],
        check=False,
    )
    assert result.returncode != 0
    assert "PermissionError" in result.stderr


def test_metrics_of_the_installed_service(box):
    # The production paths: metrics files in the runtime dir, keyed by worker; uWSGI's stats
    # socket, the kernel's queue (netlink, allowed by the unit) and nginx's stub_status socket.
    assert get(box) == (200, RESULT)
    text = sh(box, "curl -fsS http://127.0.0.1:5555/metrics")
    for line in (
        'modelserver_requests_total{endpoint="pisqrt",method="GET",status="200"}',
        "modelserver_uwsgi_stats_up 1.0",
        "modelserver_uwsgi_listen_queue 0.0",
        "modelserver_uwsgi_workers 2.0",
        "modelserver_nginx_up 1.0",
        *(f'modelserver_model_loaded{{model="{model}"}} 1.0' for model in MODELS),
    ):
        assert line in text, text
    files = sh(box, "ls /run/modelserver/metrics").split()
    assert "counter_1.db" in files or "counter_2.db" in files, files
    assert sh(box, "stat -c %U /run/modelserver/metrics") == "modelserver"
    assert '"status":200' in sh(box, "tail -n 1 /var/log/nginx/modelserver.access.log")


def test_nginx_killed_starts_again_over_its_leftover_status_socket(box):
    # A killed nginx leaves its stub_status socket file behind and could not bind it again; the
    # drop-in install.sh adds to nginx.service removes it first.
    socket = "/run/modelserver-nginx-status.sock"
    sh(box, "systemctl kill -s KILL nginx")
    wait_for(
        lambda: sh(box, "systemctl is-active nginx || true") != "active",
        10,
        message="nginx to be dead",
    )
    assert box.run(["test", "-S", socket], check=False).returncode == 0  # left behind
    sh(box, "systemctl start nginx")
    assert sh(box, "systemctl is-active nginx") == "active"
    assert get(box) == (200, RESULT)
    assert "modelserver_nginx_up 1.0" in sh(box, "curl -fsS http://127.0.0.1:5555/metrics")


def test_kill_9_of_the_master_restarts_it_within_2_s(box, figure):
    old_pid = main_pid(box)
    restarts = int(sh(box, "systemctl show -p NRestarts --value modelserver"))
    sh(box, f"kill -9 {old_pid}")
    seconds = wait_for_answer(box, timeout=10)
    figure("answering again after kill -9 of the uWSGI master (s)", f"{seconds:.2f}")
    assert seconds < 2
    assert main_pid(box) != old_pid
    assert int(sh(box, "systemctl show -p NRestarts --value modelserver")) == restarts + 1


def test_reload_under_load_fails_no_request(box, figure):
    pid = main_pid(box)
    load = start_load(box, seconds=6)
    time.sleep(2)
    sh(box, "systemctl reload modelserver")
    time.sleep(0.3)
    sh(box, "systemctl reload modelserver")  # twice in quick succession must be safe too
    outcomes = load_result(load)
    figure("systemctl reload twice under load (outcomes)", outcomes)
    assert outcomes.keys() == {f"200 {RESULT}"}
    assert sum(outcomes.values()) > 100
    assert main_pid(box) == pid  # reloaded in place, not restarted
    # The running uWSGI reloaded, twice, while a second one answered (the reload's own log).
    journal = sh(box, "journalctl -u modelserver -o cat | tail -n 400")
    assert journal.count("binary reloading uWSGI") >= 2 and "handover: done" in journal


def test_upgrade_in_place_reloads_into_new_code_without_failures(box, figure):
    algo = box.src / "algo.py"
    original = algo.read_text()
    # A new release whose answers differ visibly: one more than before.
    algo.write_text(original.replace("    return result\n", "    return result + 1\n"))
    try:
        load = start_load(box, seconds=8)
        time.sleep(2)
        upgraded = box.run(INSTALL, check=False, timeout=300)
        outcomes = load_result(load)
        figure("install.sh upgrade under load (outcomes)", outcomes)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        assert "reloaded modelserver gracefully" in upgraded.stdout
        assert get(box) == (200, '{"result": 9.86226925452758}')
        new = f"200 {RESULT.replace('8.86', '9.86')}"
        assert outcomes.keys() == {f"200 {RESULT}", new}  # old, then new code; nothing else
    finally:
        algo.write_text(original)
        box.run(INSTALL, timeout=300)
    assert get(box) == (200, RESULT)


def test_failing_nginx_config_is_refused_and_the_old_one_keeps_serving(box):
    site = box.src / "deploy" / "nginx" / "modelserver"
    original = site.read_text()
    installed_before = sh(box, "md5sum /etc/nginx/sites-available/modelserver")
    site.write_text(original.replace("server_tokens off;", "server_tokens off; no_such_directive;"))
    try:
        result = box.run(INSTALL, check=False, timeout=300)
    finally:
        site.write_text(original)
    assert result.returncode == 1
    assert "nginx -t failed" in result.stdout
    assert sh(box, "md5sum /etc/nginx/sites-available/modelserver") == installed_before
    assert get(box) == (200, RESULT)


def test_stop_is_clean_and_quick(box, figure):
    start = time.monotonic()
    sh(box, "systemctl stop modelserver")
    seconds = time.monotonic() - start
    figure("systemctl stop (s)", f"{seconds:.2f}")
    assert box.run(["systemctl", "is-active", "modelserver"], check=False).stdout == "inactive\n"
    assert box.run(["test", "-e", "/run/modelserver"], check=False).returncode == 1
    assert box.run(["pgrep", "-u", "modelserver"], check=False).stdout == ""
    assert seconds < 45  # TimeoutStopSec
    sh(box, "systemctl start modelserver")
    assert get(box) == (200, RESULT)


def test_enabled_service_comes_back_after_reboot(box):
    box.poweroff()
    box.boot()
    assert sh(box, "systemctl is-enabled modelserver") == "enabled"
    wait_for_answer(box, timeout=10)
    assert sh(box, "systemctl is-active modelserver") == "active"


def test_second_install_changes_nothing(box):
    before, pid = sh(box, SNAPSHOT), main_pid(box)
    result = box.run(INSTALL, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == READY  # no "modelserver: ..." line: nothing was done
    assert sh(box, SNAPSHOT) == before
    assert main_pid(box) == pid


def test_uninstall_leaves_no_trace_and_nginx_serving(box):
    result = box.run([f"{SRC}/deploy/install.sh", "--uninstall"], check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in (
        "/opt/modelserver",
        "/etc/systemd/system/modelserver.service",
        "/etc/nginx/sites-available/modelserver",
        "/etc/nginx/sites-enabled/modelserver",
        "/run/modelserver",
        "/etc/modelserver",
        "/etc/systemd/system/nginx.service.d/modelserver.conf",
    ):
        assert box.run(["test", "-e", path], check=False).returncode == 1, path
    assert box.run(["id", "modelserver"], check=False).returncode == 1
    assert box.run(["getent", "group", "modelserver"], check=False).returncode == 2
    assert box.run(["pgrep", "-f", "uWSGI"], check=False).stdout == ""
    assert sh(box, "systemctl is-active nginx") == "active"
    default_site = box.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:80/"], check=False
    )
    assert default_site.stdout == "200"
