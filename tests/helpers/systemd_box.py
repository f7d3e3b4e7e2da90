"""Boot a real systemd as PID 1 in fresh namespaces, so tests can run `systemctl` against it.

The recipe and its measurements are in /work/shared/notes/real-systemd.md. In short: the box's root
is an overlay whose lower layer is the host's `/` and whose upper layer is a tmpfs, so the host's
files are never modified; the box has its own PID, mount, UTS, IPC, network (loopback only) and
cgroup namespaces. Usage:

    with SystemdBox(binds={str(checkout): "/srv/modelserver-src"}) as box:
        box.systemctl("start", "nginx")
        assert box.systemctl("is-active", "nginx", check=False).stdout == "active\n"

The upper tmpfs is held by a "keeper" process, not by the box, so it survives `poweroff()`: a
following `boot()` starts a new systemd on the same files, which is how a test checks that enabled
units come back at boot.

What a test sees inside the box:
- No network but loopback: install offline, e.g. pip with PIP_NO_INDEX=1 and PIP_FIND_LINKS set to
  a bound wheelhouse.
- None of the host's enabled units is enabled: nginx is installed but off until a test enables it.
- `PrivateTmp=` hides /tmp, so bind code from the host's /tmp to another path (`binds`); binds are
  read-write and writes through them reach the host.
- /proc/sys and /sys are read-only; MemoryMax=, CPUQuota=, TasksMax= are not enforced.
- systemd's status lines go to console.log in `workdir` (`log_text()`); service output goes to the
  box's journal: `box.run(["journalctl", "-u", UNIT])`, before `close()`.
"""

import contextlib
import itertools
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import termios
import time

from helpers import wait_for

SYSTEMD_BINARY = "/lib/systemd/systemd"
TOOLS = ("unshare", "nsenter", "setpriv", "pgrep", "ip", "sh")

# The console units would fight over a terminal the box does not have; timesyncd would try to set
# the host's clock.
ALWAYS_MASKED = ("getty.target", "console-getty.service", "systemd-timesyncd.service")

# systemd's own default environment: inside the box `python3` must be Debian's, not a pyenv shim
# inherited from the caller.
BOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}

# If the caller dies without close(), the kernel kills what it started instead of leaking a box.
# The signal follows the *thread* that started the process: boot boxes from the main thread.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]

# Holds a private mount namespace with the box's state tmpfs; it outlives each boot of the box.
KEEPER_SCRIPT = """
set -e
mount -t tmpfs -o mode=700 systemd-box "$0"
mkdir "$0/upper" "$0/work" "$0/root"
exec sleep infinity
"""

# Runs as PID 1 of the new namespaces with the state dir as $1; builds the root in $1/root.
BUILD_ROOT = r"""
set -eu
state=$1
shift  # the other arguments are the units to mask
root=$state/root
mount -t overlay overlay -o "lowerdir=/,upperdir=$state/upper,workdir=$state/work" "$root"
mount -t proc proc "$root/proc"
# Kernel tunables are shared with the host: systemd-sysctl would set the host's fs.protected_*.
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
# Read-only /sys, as systemd expects in a container: udev and friends stay off the host's devices.
mount --rbind /sys "$root/sys"
mount -o remount,bind,ro "$root/sys"
# The host's cgroup mounts give way to a cgroup2 rooted at this box's cgroup namespace.
umount -R "$root/sys/fs/cgroup"
mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
# A minimal /dev: with the host's, agetty grabs the real serial console.
mount -t tmpfs -o mode=755,nosuid dev "$root/dev"
for node in null zero full random urandom tty; do
    touch "$root/dev/$node"
    mount --bind "/dev/$node" "$root/dev/$node"
done
# The box's console is the launcher's stdout: a pty whose other end is copied to console.log.
touch "$root/dev/console"
mount --bind /proc/self/fd/1 "$root/dev/console"
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
mount -t tmpfs -o mode=755,nosuid,nodev run "$root/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmp "$root/tmp"
ip link set lo up
"""

# Only on the first boot, so that what a test enables or unmasks survives a reboot.
FIRST_BOOT = r"""
if [ ! -e "$state/prepared" ]; then
    # The box starts with none of the host's enabled units (nginx, postgresql, timers...):
    # a test enables what it needs.
    rm -f "$root"/etc/systemd/system/*.wants/*
    # ...nor their aliases made by `enable` (dbus-org.freedesktop.Avahi.service and the like),
    # which count as enabled too. Masks (links to /dev/null) stay.
    for link in "$root"/etc/systemd/system/*; do
        if [ -L "$link" ]; then
            case $(readlink "$link") in /lib/systemd/* | /usr/lib/systemd/*) rm -f "$link" ;; esac
        fi
    done
    for unit in "$@"; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    touch "$state/prepared"
fi
"""

START_SYSTEMD = r"""
cd "$root"
pivot_root . .
umount -l .
export container=unshare
# Without these capabilities systemd cannot load modules into, or set the clock of, the host kernel.
exec setpriv --bounding-set -sys_module,-sys_time -- /lib/systemd/systemd --system --show-status=yes
"""


def cannot_boot_reason() -> str | None:
    """None if this machine can boot a SystemdBox, else a one-line reason."""
    if os.geteuid() != 0:
        return "SystemdBox needs root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"SystemdBox needs {', '.join(missing)}"
    if not os.access(SYSTEMD_BINARY, os.X_OK):
        return f"SystemdBox needs {SYSTEMD_BINARY}"
    if cgroup2_mount() is None:
        return "SystemdBox needs a cgroup2 mount"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--net", "--cgroup", "true"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if probe.returncode != 0:
        return f"SystemdBox cannot create namespaces: {probe.stderr.strip()}"
    return None


def cgroup2_mount() -> str | None:
    """Where the cgroup2 hierarchy is mounted (/sys/fs/cgroup/unified on hybrid hosts)."""
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, mountpoint, fstype, *_ = line.split()
            if fstype == "cgroup2":
                return mountpoint
    return None


class SystemdBox:
    """A real systemd as PID 1 on a throw-away overlay of the host's root; see the module doc."""

    _serial = itertools.count()

    def __init__(
        self,
        binds: dict[str, str] | None = None,
        mask: list[str] | None = None,
        workdir: str | None = None,
    ) -> None:
        """binds: host path -> path in the box (read-write); mask: extra units to mask;
        workdir: keep the box's files (boot script, console.log) there instead of a temp dir."""
        self.binds = dict(binds or {})
        self.mask = [*ALWAYS_MASKED, *(mask or [])]
        self._owns_workdir = workdir is None
        self.workdir = tempfile.mkdtemp(prefix="systemd-box-") if workdir is None else workdir
        self.log_path = os.path.join(self.workdir, "console.log")
        self.cgroup_dir = os.path.join(
            cgroup2_mount() or "/sys/fs/cgroup", f"systemd-box-{os.getpid()}-{next(self._serial)}"
        )
        self.pid1: int | None = None
        self._state = os.path.join(self.workdir, "state")
        self._keeper: subprocess.Popen | None = None
        self._launcher: subprocess.Popen | None = None
        self._console_copier: subprocess.Popen | None = None

    def __enter__(self) -> "SystemdBox":
        try:
            self.boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def boot(self, timeout: float = 30) -> str:
        """Start systemd (on the files left by an earlier boot, if any); return running/degraded."""
        if self._keeper is None:
            self._start_keeper()
        script = os.path.join(self.workdir, "boot.sh")
        with open(script, "w") as file:
            file.write(self._boot_script())
        os.mkdir(self.cgroup_dir)
        self._launcher = self._launch(script)
        self.pid1 = wait_for(self._forked_pid1, 10, message="the box's PID 1 did not start")
        return self.wait_until_running(timeout)

    def poweroff(self, timeout: float = 20) -> None:
        """Shut the box down cleanly (kill -9 PID 1 after timeout s); its files stay for boot()."""
        with contextlib.suppress(subprocess.TimeoutExpired):  # a hung PID 1 is killed below
            self.run(["systemctl", "poweroff"], check=False, timeout=timeout)
        try:
            self._launcher.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid1, signal.SIGKILL)
            self._launcher.wait(10)
        # cat stops at end of file, once the last process holding the console has gone.
        self._console_copier.wait(10)
        self._launcher = self.pid1 = self._console_copier = None
        self._remove_cgroup()

    def close(self) -> None:
        """Power off, then drop the box's files and every process, mount and cgroup it made."""
        try:
            if self._launcher is not None:
                self.poweroff()
        finally:
            if self._keeper is not None:
                self._keeper.kill()
                self._keeper.wait(10)
                self._keeper = None
            if self._owns_workdir:
                shutil.rmtree(self.workdir)

    def run(
        self,
        args: list[str] | str,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run args (a string goes to `sh -c`) as root inside all of the box's namespaces.

        On timeout only nsenter is killed: the command itself lives on until poweroff."""
        argv = ["sh", "-c", args] if isinstance(args, str) else args
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-a", "--", *argv],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=BOX_ENV,
        )
        if check and result.returncode != 0:
            error = subprocess.CalledProcessError(
                result.returncode, argv, result.stdout, result.stderr
            )
            error.add_note(f"stdout: {result.stdout}\nstderr: {result.stderr}")
            raise error
        return result

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`systemctl ARGS` inside the box."""
        return self.run(["systemctl", *args], check=check)

    def wait_until_running(self, timeout: float = 30) -> str:
        """Wait until boot has finished; return "running" or "degraded" (and print what failed)."""

        def finished() -> str | None:
            if self._launcher.poll() is not None:
                raise RuntimeError(f"the box exited during boot:\n{self.log_text()}")
            state = self.systemctl("is-system-running", check=False).stdout.strip()
            return state if state in ("running", "degraded") else None

        state = wait_for(finished, timeout, message="the box did not finish booting")
        if state == "degraded":
            failed = self.systemctl("list-units", "--failed", "--no-legend", check=False).stdout
            print(f"systemd-box is degraded, failed units:\n{failed}")
        return state

    def log_text(self) -> str:
        """What systemd wrote to its console (stdout/stderr) during every boot so far."""
        with open(self.log_path, newline="") as log:
            return log.read().replace("\r", "")  # systemd writes \r\n and the pty adds a \r

    def _boot_script(self) -> str:
        lines = [BUILD_ROOT]
        for host, inside in self.binds.items():
            target = '"$root"' + shlex.quote(inside)
            if os.path.isdir(host):
                lines.append(f"mkdir -p {target}")
            else:
                lines.append(f'mkdir -p "$(dirname {target})" && touch {target}')
            lines.append(f"mount --rbind {shlex.quote(host)} {target}")
        lines += [FIRST_BOOT, START_SYSTEMD]
        return "\n".join(lines)

    def _launch(self, script: str) -> subprocess.Popen:
        """Start `unshare`, whose forked child runs script as PID 1 of the new namespaces."""
        unshare = shlex.join(
            [
                *DIE_WITH_PARENT,
                *("nsenter", "-t", str(self._keeper.pid), "-m", "--"),
                *("unshare", "--pid", "--fork", "--kill-child", "--mount", "--uts", "--ipc"),
                *("--net", "--cgroup", "--propagation", "private", "--"),
                *("sh", script, self._state, *self.mask),
            ]
        )
        # Only the launcher moves into the box's cgroup, never the caller.
        command = f"echo $$ > {shlex.quote(self.cgroup_dir)}/cgroup.procs && exec {unshare}"
        console = self._start_console_copier()
        try:
            # A new session: Ctrl-C in the caller's terminal reaches only the caller, which then
            # powers the box off.
            return subprocess.Popen(
                ["sh", "-c", command],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=console,
                env=BOX_ENV,
                start_new_session=True,
            )
        finally:
            os.close(console)

    def _start_console_copier(self) -> int:
        """Return a pty for the box's console; `cat` copies it to console.log until the box ends.

        systemd prints its status ("Started ...", "Failed to start ...") only to a terminal."""
        copied, console = os.openpty()
        termios.tcsetwinsize(console, (50, 250))  # wide enough not to cut unit names
        with open(self.log_path, "a") as log:
            log.write(f"--- boot at {time.strftime('%H:%M:%S')}\n")
            log.flush()
            self._console_copier = subprocess.Popen(
                ["cat"], stdin=copied, stdout=log, stderr=subprocess.DEVNULL, start_new_session=True
            )
        os.close(copied)
        return console

    def _start_keeper(self) -> None:
        os.makedirs(self._state, exist_ok=True)
        self._keeper = subprocess.Popen(
            [
                *DIE_WITH_PARENT,
                *("unshare", "--mount", "--propagation", "private", "--"),
                *("sh", "-c", KEEPER_SCRIPT, self._state),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        # /proc/PID/root shows the keeper's mounts, so this sees the tmpfs only once it is ready.
        ready = f"/proc/{self._keeper.pid}/root{self._state}/root"

        def keeper_ready() -> bool:
            if self._keeper.poll() is not None:
                raise RuntimeError(f"the state keeper exited with {self._keeper.returncode}")
            return os.path.isdir(ready)

        wait_for(keeper_ready, 10, message="the state keeper did not mount its tmpfs")

    def _forked_pid1(self) -> int | None:
        """The host PID of the child that `unshare --fork` made, once it exists."""
        if self._launcher.poll() is not None:
            raise RuntimeError(f"the box exited during boot:\n{self.log_text()}")
        children = subprocess.run(
            ["pgrep", "-P", str(self._launcher.pid)], capture_output=True, text=True, timeout=10
        ).stdout.split()
        return int(children[0]) if children else None

    def _remove_cgroup(self) -> None:
        """rmdir the box's cgroup and what systemd created below it, deepest first."""
        for path, _, _ in os.walk(self.cgroup_dir, topdown=False):
            os.rmdir(path)
