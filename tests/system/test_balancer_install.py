"""`deploy/install.sh --balancer` under a real systemd: TLS in front of the host installed there.

The box of test_systemd_service.py (its own, for this module): the host install, then the
balancer install on the same box in front of it, as an operator would on a front machine. The
tests run in file order, each on what the one before left, like those of the host install.
"""

import json
import os
import subprocess

import pytest

from helpers import wait_for
from helpers.installed import INSTALL, READY, REASON, RESULT, SNAPSHOT, SRC, installed_box, sh

pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no systemd box here: {REASON}")

BALANCER = [*INSTALL, "--balancer", "127.0.0.1:5555"]
SITE = "/etc/nginx/sites-available/modelserver-balancer"


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """A box with the host install, for this module: the balancer goes in front of it."""
    with installed_box(tmp_path_factory.mktemp("box")) as box:
        yield box


# The snapshot of the host install, and the certificate the balancer install makes.
FILES = SNAPSHOT.replace("/etc/nginx ", "/etc/nginx /etc/ssl/modelserver ")


def test_balancer_install_serves_over_tls_and_a_second_run_changes_nothing(box):
    result = box.run(BALANCER, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "made a self-signed certificate /etc/ssl/modelserver/balancer.crt" in result.stdout
    assert "disabled nginx's default site" in result.stdout
    assert result.stdout.strip().endswith(READY)  # its own check, over TLS
    assert sh(box, "curl -fsS -k https://127.0.0.1/pisqrt?a=25") == RESULT
    redirect = (
        "curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' http://127.0.0.1/pisqrt?a=25"
    )
    # nginx's old workers may take one more connection just after a reload: poll.
    wait_for(
        lambda: sh(box, redirect) == "301 https://127.0.0.1/pisqrt?a=25",
        5,
        interval=0.1,
        message=lambda: sh(box, redirect),
    )
    assert sh(box, "stat -c '%a %U' /etc/ssl/modelserver/balancer.key") == "600 root"
    before = sh(box, FILES)
    again = box.run(BALANCER, check=False, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.strip() == READY  # no "modelserver: ..." line: nothing was done
    assert sh(box, FILES) == before


def test_a_balancer_site_failing_nginx_t_is_refused_and_the_old_one_keeps_serving(box):
    site = sh(box, f"cat {SITE}")
    # The box has no DNS: nginx -t cannot resolve this host and fails.
    result = box.run([*INSTALL, "--balancer", "nosuchhost.invalid:5555"], check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nginx -t failed" in result.stdout + result.stderr
    assert sh(box, f"cat {SITE}") == site
    assert sh(box, "curl -fsS -k https://127.0.0.1/pisqrt?a=25") == RESULT


def test_host_options_are_kept_by_a_plain_upgrade_and_dropped_when_emptied(box):
    host_site = "cat /etc/nginx/sites-available/modelserver"
    allow = box.run(["env", "MODELSERVER_ALLOW=10.9.9.9", *INSTALL], check=False, timeout=300)
    assert allow.returncode == 0, allow.stdout + allow.stderr
    assert "    set_real_ip_from 10.9.9.9;" in sh(box, host_site)
    assert "    10.9.9.9 1;" in sh(box, host_site)
    # A plain run, as rollout.sh's upgrade does, keeps the host closed to others.
    plain = box.run(INSTALL, check=False, timeout=300)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert plain.stdout.strip() == READY  # nothing changed; loopback is still allowed
    assert "    set_real_ip_from 10.9.9.9;" in sh(box, host_site)
    assert sh(box, "curl -fsS -k https://127.0.0.1/pisqrt?a=25") == RESULT
    dropped = box.run(["env", "MODELSERVER_ALLOW=", *INSTALL], check=False, timeout=300)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert "10.9.9.9" not in sh(box, host_site)


# rollout.sh's ssh: a key of the test's own, the box's host key taken on first use.
SSH = (
    "ssh -i /root/.ssh/rollout -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
    " -o UserKnownHostsFile=/root/.ssh/rollout-hosts"
)
GIT = "git -c user.name=release -c user.email=release@localhost"
ORIGIN = "/srv/origin"  # where the hosts' checkouts pull from


def download(*packages: str) -> None:
    """Debian packages into apt's cache on this machine, not installed here (the test machine
    gets no sshd): the box, whose files lie over this machine's, installs them offline."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "--download-only", "-y", "-qq", "--no-install-recommends"]
    if subprocess.run([*argv, *packages], env=env, capture_output=True, timeout=300).returncode:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=300)
        subprocess.run([*argv, *packages], env=env, check=True, capture_output=True, timeout=300)


def release(box, number: int) -> None:
    """A new commit in the origin: pi_sqrt's docstring, which /openapi.json shows, says it."""
    sh(
        box,
        f'cd {ORIGIN} && sed -i \'s/^    """.*sqrt(a\\*pi)/    """Release {number}: sqrt(a*pi)/\''
        f" algo.py && {GIT} commit -qam 'release {number}'",
    )


@pytest.mark.parametrize(
    "user, home",
    [
        ("root", "/root"),  # no sudo on a Debian whose root has a password (as here)
        ("deploy", "/home/deploy"),  # docs/deploy.md's way: an ordinary user with sudo
    ],
)
def test_rollout_over_ssh_upgrades_the_host_to_its_checkouts_new_commit(box, user, home):
    # The host: a real sshd (the box's systemd runs it) that lets the user in with the test's
    # key, and the user's checkout ~/modelserver, a clone of an origin that then gets a release.
    if sh(box, f"test -e {ORIGIN} && echo yes || true") != "yes":
        download("openssh-server", "sudo")
        sh(
            box,
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-download"
            " --no-install-recommends openssh-server sudo && systemctl start ssh"
            " && install -d -m 0700 /root/.ssh"
            " && ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/rollout"
            " && useradd -m deploy && echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy"
            " && git config --system safe.directory '*'"
            f" && cp -a {SRC} {ORIGIN} && cd {ORIGIN} && git init -q && git add -A"
            f" && {GIT} commit -qm 'release 1'",
            timeout=300,
        )
    sh(
        box,
        f"install -d -m 0700 -o {user} {home}/.ssh"
        f" && install -m 0600 -o {user} /root/.ssh/rollout.pub {home}/.ssh/authorized_keys"
        f" && runuser -u {user} -- git clone -q {ORIGIN} {home}/modelserver",
    )
    number = 2 if user == "root" else 3
    release(box, number)
    # rollout.sh as shipped: its default upgrade, over ssh.
    remote = f"MODELSERVER_REMOTE={SSH} -l {user}"
    rollout = ["env", remote, f"{SRC}/deploy/rollout.sh", "127.0.0.1:5555"]
    result = box.run(rollout, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reloaded modelserver gracefully for the new code" in result.stdout
    assert result.stdout.strip().endswith("rollout: done: 127.0.0.1:5555 upgraded"), result.stdout
    # Through the balancer.
    document = json.loads(sh(box, "curl -fsS -k https://127.0.0.1/openapi.json"))
    summary = document["paths"]["/pisqrt"]["get"]["summary"]
    assert summary.startswith(f"Release {number}: sqrt(a*pi)"), summary
    assert sh(box, "systemctl is-active nginx modelserver").split() == ["active", "active"]


def test_uninstall_removes_the_balancer_site_too(box):
    result = box.run([*INSTALL, "--uninstall"], check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "removed the balancer site" in result.stdout
    for path in (SITE, "/etc/nginx/sites-enabled/modelserver-balancer"):
        assert box.run(["test", "-e", path], check=False).returncode == 1, path
    assert sh(box, "systemctl is-active nginx") == "active"
