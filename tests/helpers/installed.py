"""The production install in a real systemd box (deploy/install.sh, from a copy of the checkout),
as the tests of the host install and of the balancer install each start it for their module."""

import contextlib
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

from deploy.localstack import PROJECT
from helpers import copy_checkout
from helpers.systemd_box import SystemdBox, cannot_boot_reason
from modelserver.endpoints import signature_of
from registry import ENDPOINTS

REASON = cannot_boot_reason()

SRC = "/srv/modelserver-src"  # where the box sees the checkout
URL = "http://127.0.0.1:5555/pisqrt?a=25"
RESULT = '{"result": 8.86226925452758}'
# What install.sh prints last, its check of /readyz: every model of the registry loaded.
MODELS = sorted({signature_of(name, entry).model for name, entry in ENDPOINTS.items()} - {None})
READY = json.dumps({"status": "ready", "models": MODELS})
INSTALL = ["env", "PIP_NO_INDEX=1", "PIP_FIND_LINKS=/srv/wheels", f"{SRC}/deploy/install.sh"]
EXEMPT = "/etc/modelserver/exempt-clients"
# Everything the installer writes, with owners, modes and content hashes.
SNAPSHOT = (
    "find /opt/modelserver /etc/modelserver /etc/systemd/system /etc/nginx /etc/passwd /etc/group "
    "-xdev \\( -type f -o -type l \\) -printf '%p %U %G %m %l ' -exec md5sum {} \\; | sort"
)


# What else the directory holds, in its name's hash: a directory made before it held uWSGI's
# source is not taken for one that does.
WHEELHOUSE_HOLDS = b"uWSGI's source"


def wheelhouse() -> Path:
    """Wheels of requirements.txt and of the docs viewer for the box, built once per version,
    and uWSGI's source, which deploy/install-uwsgi.sh builds from."""
    requirements = PROJECT / "requirements.txt"
    viewer = PROJECT / "deploy" / "docs-viewer.sh"
    held = requirements.read_bytes() + viewer.read_bytes() + WHEELHOUSE_HOLDS
    digest = hashlib.sha256(held).hexdigest()[:12]
    wheels = PROJECT / ".cache" / f"wheels-{digest}"
    if not wheels.exists():
        building = wheels.with_suffix(".partial")
        shutil.rmtree(building, ignore_errors=True)
        # Built by the venv's Python, Debian's python3, which is also the box's.
        subprocess.run(
            [
                str(PROJECT / ".venv" / "bin" / "pip"),
                "wheel",
                "--quiet",
                "--use-pep517",
                "--no-cache-dir",
                "-r",
                str(requirements),
                "-w",
                str(building),
            ],
            check=True,
            timeout=600,
        )
        package = re.search(r"^PACKAGE=(\S+)", viewer.read_text(), re.MULTILINE)[1]
        pip_download = [str(PROJECT / ".venv" / "bin" / "pip"), "download", "--quiet", "--no-deps"]
        subprocess.run([*pip_download, "-d", str(building), package], check=True, timeout=300)
        pin = re.search(r"^uWSGI==\S+", requirements.read_text(), re.MULTILINE)[0]
        source = [*pip_download, "--no-binary", ":all:", "-d", str(building), pin]
        subprocess.run(source, check=True, timeout=300)
        building.rename(wheels)
    return wheels


@contextlib.contextmanager
def installed_box(workdir: Path):
    """A box with the host installed from a copy of the checkout in workdir; box.src is that copy,
    which tests change to play a new release."""
    src = copy_checkout(workdir / "src")
    with SystemdBox(binds={str(src): SRC, str(wheelhouse()): "/srv/wheels"}) as box:
        box.src = src
        installed = box.run(INSTALL, check=False, timeout=600)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        # The tests' load comes from 127.0.0.1: exempt it from the per-client limits, as an
        # operator would exempt a load generator (test_per_client_limits_... uses 127.0.0.2).
        sh(box, f"echo '127.0.0.1 1;' > {EXEMPT} && systemctl reload nginx")
        yield box


def sh(box, command: str, timeout: float = 60) -> str:
    """Run a shell command in the box; its stdout, stripped."""
    return box.run(command, timeout=timeout).stdout.strip()
