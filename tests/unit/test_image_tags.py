"""deploy/container/build.sh names the image after the commit it holds: run with `echo` as the
container tool, it prints the build command it would run."""

import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.localstack import PROJECT

BUILD = PROJECT / "deploy" / "container" / "build.sh"


def build_command(context: Path) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "CONTAINER_TOOL": "echo", "CONTEXT": str(context)}
    done = subprocess.run([str(BUILD)], env=env, capture_output=True, text=True, check=True)
    return done.stdout.split()


def tags(command: list[str]) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == "--tag"]


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, str]:
    """A repository of one commit, and that commit's short id."""
    if shutil.which("git") is None:
        pytest.fail("git is needed: apt-get install git")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "registry.py").write_text("ENDPOINTS = {}\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    short = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    )
    return tmp_path, short.stdout.strip()


def test_a_clean_checkout_is_tagged_with_its_commit(checkout):
    context, short = checkout
    command = build_command(context)
    assert command[0] == "build"
    assert command[-1] == str(context)
    assert tags(command) == ["modelserver:latest", f"modelserver:{short}"]


def test_a_changed_checkout_is_tagged_dirty(checkout):
    context, short = checkout
    (context / "registry.py").write_text('ENDPOINTS = {"mine": print}\n')
    assert tags(build_command(context)) == ["modelserver:latest", f"modelserver:{short}-dirty"]


def test_an_untracked_file_makes_it_dirty(checkout):
    context, short = checkout
    (context / "models").mkdir()
    (context / "models" / "iris.joblib").write_bytes(b"trained, not committed")
    assert tags(build_command(context)) == ["modelserver:latest", f"modelserver:{short}-dirty"]


def test_no_repository_no_commit_tag(tmp_path):
    assert tags(build_command(tmp_path)) == ["modelserver:latest"]
