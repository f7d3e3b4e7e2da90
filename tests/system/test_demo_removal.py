"""The demos removed from a copy of the checkout as docs/digit-model.md says, block by block, and
the framework's lint and tests green there: nothing outside the demos' own files needs them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import copy_checkout
from helpers.docpages import doc_block

VENV_BIN = Path(sys.executable).parent  # the copy has no venv: this one's tools run there


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """A line of the guide's check block, with this venv's tools for .venv/bin/."""
    command = command.replace(".venv/bin/", f"{VENV_BIN}/")
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.mark.deep  # re-runs 500 tests in the copy: make test-deep
def test_the_guide_removes_the_demos_and_the_framework_stays_green(tmp_path, figure):
    app = copy_checkout(tmp_path / "app")
    deleted = subprocess.run(["bash", "-ec", doc_block("delete", "removal")], cwd=app, timeout=30)
    assert deleted.returncode == 0
    (app / "registry.py").write_text(doc_block("registry.py", "removal"))
    (app / "algo.py").write_text(doc_block("algo.py", "removal"))
    # ruff does not know which modules exist: a leftover import of a demo is looked for here,
    # in the app and the layers run below. Not in bench/, which measures the demos (the guide
    # says make bench needs them), nor in the system layer, whose container tests still drive
    # the demos through the image.
    leftovers = subprocess.run(
        [
            "grep",
            "-rlE",
            r"^\s*(import|from) (digits|helpers\.predict_cases|helpers\.contract)\b",
            "--include=*.py",
            "--exclude-dir=system",
            "--exclude-dir=bench",
            ".",
        ],
        cwd=app,
        capture_output=True,
        text=True,
    )
    assert leftovers.stdout == "", leftovers.stdout
    commands = doc_block("check", "removal").replace("\\\n", "").splitlines()  # continued lines
    assert len(commands) == 3, commands
    for command in commands[:2]:  # ruff check ., ruff format --check .
        result = run(command, app)
        assert result.returncode == 0, command + "\n" + result.stdout + result.stderr
    result = run(commands[2] + " -p no:cacheprovider", app)
    summary = result.stdout.strip().splitlines()[-1]
    figure("the framework's tests with the demos removed", summary)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) > 100, summary  # tests ran, not "no tests ran"
    assert not re.search(r"failed|error|skipped|xfail", summary), summary
