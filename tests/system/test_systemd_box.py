"""SystemdBox really boots systemd, runs units in it, keeps the host untouched and cleans up."""

import glob
import os
import time
from pathlib import Path

import pytest

from helpers.systemd_box import SystemdBox, cannot_boot_reason

REASON = cannot_boot_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

PROBE_UNIT = """\
[Unit]
Description=SystemdBox probe

[Service]
User=boxprobe
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""

# Global kernel settings that systemd-sysctl would change if the box could write /proc/sys.
HOST_SYSCTLS = ("/proc/sys/fs/protected_regular", "/proc/sys/fs/protected_fifos")


@pytest.fixture
def box(tmp_path):
    with SystemdBox(binds={str(tmp_path): "/srv/box-bind"}) as booted:
        yield booted


def install_probe_unit(box: SystemdBox) -> None:
    box.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "boxprobe"])
    box.run(["tee", "/etc/systemd/system/box-probe.service"], input=PROBE_UNIT)
    box.systemctl("daemon-reload")


def test_boots_within_20_seconds():
    started = time.monotonic()
    with SystemdBox() as box:
        state = box.wait_until_running(timeout=20)
        booted = time.monotonic() - started
        assert state in ("running", "degraded")
        assert booted < 20
        result = box.run(["cat", "/proc/1/comm"])
    assert result.stdout == "systemd\n"


def test_unit_runs_as_its_system_user(box):
    install_probe_unit(box)

    box.systemctl("start", "box-probe.service")

    active = box.systemctl("is-active", "box-probe.service", check=False)
    assert active.returncode == 0, active.stdout
    main_pid = box.systemctl("show", "--property=MainPID", "--value", "box-probe.service").stdout
    owner = box.run(["ps", "-o", "user=", "-p", main_pid.strip()])
    assert owner.stdout.strip() == "boxprobe"


def test_enabled_unit_starts_again_after_reboot(box):
    install_probe_unit(box)
    box.systemctl("enable", "--now", "box-probe.service")

    box.poweroff()
    box.boot()

    active = box.systemctl("is-active", "box-probe.service", check=False)
    assert active.returncode == 0, box.log_text()
    assert active.stdout == "active\n"


def test_units_enabled_on_the_host_stay_off_in_the_box(box):
    wants = Path("/etc/systemd/system").glob("*.wants/*.service")
    host_enabled = sorted(unit.name for unit in wants)
    if not host_enabled:
        pytest.skip("this host enables no services")

    result = box.systemctl("is-enabled", *host_enabled, check=False)

    assert result.returncode == 1, result.stdout  # 0 would mean at least one is enabled
    assert "enabled" not in result.stdout.split()


def test_masked_units_are_masked():
    with SystemdBox(mask=["box-masked.service"]) as box:
        result = box.systemctl("is-enabled", "box-masked.service", check=False)
    assert result.returncode == 1
    assert result.stdout == "masked\n"


def test_host_files_and_kernel_settings_are_untouched():
    sysctls = {path: Path(path).read_text() for path in HOST_SYSCTLS}
    passwd = Path("/etc/passwd").read_text()

    with SystemdBox() as box:
        box.run("echo probe > /etc/box-probe && useradd --system boxhostprobe")
        inside = box.run(["cat", "/etc/box-probe"])

    assert inside.stdout == "probe\n"
    assert not os.path.exists("/etc/box-probe")
    assert Path("/etc/passwd").read_text() == passwd
    assert {path: Path(path).read_text() for path in HOST_SYSCTLS} == sysctls


def test_binds_share_a_host_directory(box, tmp_path):
    box.run("echo from-box > /srv/box-bind/probe")

    assert (tmp_path / "probe").read_text() == "from-box\n"


def test_network_is_private_loopback_only(box):
    links = box.run(["ip", "-brief", "link"])

    assert [line.split()[0] for line in links.stdout.splitlines()] == ["lo"]
    assert "UP" in links.stdout


def test_close_leaves_nothing_behind():
    with open("/proc/mounts") as mounts:
        mounts_before = mounts.read()
    box = SystemdBox()
    box.boot()
    pid1, cgroup_dir, workdir = box.pid1, box.cgroup_dir, box.workdir

    box.close()

    assert not os.path.exists(f"/proc/{pid1}")
    assert glob.glob(f"/sys/fs/cgroup/*/{os.path.basename(cgroup_dir)}") == []
    assert not os.path.exists(workdir)
    with open("/proc/mounts") as mounts:
        assert mounts.read() == mounts_before
