"""A model update on the production install, under a real systemd: a model that takes 2 s to
load, updated by `systemctl reload` while a client asks 20 times a second, refuses nothing."""

import json
import subprocess
import time

import pytest

from helpers import wait_for
from helpers.installed import EXEMPT, INSTALL, REASON, SRC, installed_box, sh

pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no systemd box here: {REASON}")

# The user's model, as a top-level module of the app: 2 s to load, its version from its file.
SLOW_MODEL = '''\
"""A model that takes 2 s to load; its file's content is its version."""

import time
from pathlib import Path

FILE = Path(__file__).resolve().parent / "models" / "slow-version.txt"


class Versioned:
    def __init__(self):
        time.sleep(2)
        self.version = FILE.read_text().strip()


def load_slow() -> Versioned:
    return Versioned()


def version(model: Versioned, a: float) -> dict:
    """The version of the model that answered, and a."""
    return {"version": model.version, "a": a}
'''
MODEL_FILE = "/opt/modelserver/app/models/slow-version.txt"
URL = "http://127.0.0.1:5555/version?a=1"


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    with installed_box(tmp_path_factory.mktemp("box")) as box:
        (box.src / "slowmodel.py").write_text(SLOW_MODEL)
        (box.src / "models" / "slow-version.txt").write_text("1\n")
        registry = box.src / "registry.py"
        registry.write_text(  # whatever else it serves, demos or not
            registry.read_text()
            + "import slowmodel  # noqa: E402\n"
            + 'ENDPOINTS["version"] = serve(slowmodel.version, model=slowmodel.load_slow)\n'
        )
        installed = box.run(INSTALL, check=False, timeout=600)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        # The client comes from 127.0.0.1: counted by the per-client limits, as any client.
        sh(box, f": > {EXEMPT} && systemctl reload nginx")
        yield box


def paced(box, seconds: float) -> subprocess.Popen:
    """tests/helpers/paced.py in the box: GET URL 20 times a second for `seconds`."""
    argv = ["nsenter", "-t", str(box.pid1), "-a", "python3", f"{SRC}/tests/helpers/paced.py"]
    return subprocess.Popen(
        [*argv, URL, str(seconds), "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def version(box) -> tuple[int, str]:
    result = box.run(["curl", "-sS", "-w", "\n%{http_code}", URL], check=False)
    body, _, status = result.stdout.rpartition("\n")
    return int(status or 0), json.loads(body)["result"]["version"] if body else ""


def test_systemctl_reload_updates_the_model_and_refuses_nothing(box, figure):
    assert version(box) == (200, "1")
    pid = sh(box, "systemctl show -p MainPID --value modelserver")
    client = paced(box, seconds=14)
    time.sleep(2)
    sh(box, f"echo 2 > {MODEL_FILE}")
    start = time.monotonic()
    sh(box, "systemctl reload modelserver", timeout=120)  # returns once the new model serves
    seconds = time.monotonic() - start
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    result = json.loads(out)
    figure("systemctl reload, 2-s model, 20 req/s (outcomes, s)", (result, f"{seconds:.1f}"))
    assert result["outcomes"] == {"200": result["outcomes"].get("200", -1)}, result
    assert result["outcomes"]["200"] >= 20 * 14 * 0.8
    assert json.loads(result["last"])["result"]["version"] == "2"
    assert version(box) == (200, "2")
    ready = json.loads(sh(box, "curl -sS http://127.0.0.1:5555/readyz"))
    assert ready["versions"] == {"slow": "2"}
    assert sh(box, "systemctl show -p MainPID --value modelserver") == pid  # reloaded in place
    assert sh(box, "systemctl is-active modelserver") == "active"


def test_a_failed_update_leaves_the_running_model_serving(box):
    sh(box, f"rm {MODEL_FILE}")
    try:
        failed = box.run(["systemctl", "reload", "modelserver"], check=False, timeout=120)
        assert failed.returncode != 0
        assert version(box) == (200, "2")
        assert sh(box, "systemctl is-active modelserver") == "active"
        log = sh(box, "journalctl -u modelserver -o cat | tail -n 60")
        assert "handover failed" in log, log
    finally:
        sh(box, f"echo 2 > {MODEL_FILE}")
    wait_for(lambda: version(box) == (200, "2"), 10)
