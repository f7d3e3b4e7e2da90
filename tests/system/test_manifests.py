"""The deployment recipes that cannot run here, checked the strictest way that can: the Kubernetes
manifests against the API's schemas (kubernetes-validate) and checkov's policies; app.yaml run
the way App Engine runs it: a fresh venv from requirements.txt alone, $PORT set, its entrypoint
command as written, the contract answered."""

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from deploy.localstack import PROJECT, free_port
from helpers import wait_for

MANIFESTS = sorted((PROJECT / "deploy" / "kubernetes").glob("*.yaml"))
# checkov and kubernetes-validate pin versions the test tools contradict: their own venv
# (tests/requirements-manifests.txt, made by `make test`).
TOOLS = PROJECT / ".venv" / "manifest-tools" / "bin"
KUBERNETES_VERSION = "1.33.0"  # the oldest the manifests target; autoscaling/v2, policy/v1


def tool(name: str) -> str:
    path = TOOLS / name
    assert path.exists(), f"{path} is missing: make test installs it"
    return str(path)


def test_there_are_manifests_of_every_kind():
    kinds = {yaml.safe_load(path.read_text())["kind"] for path in MANIFESTS}
    assert kinds == {
        "Namespace",
        "NetworkPolicy",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_manifest_matches_the_kubernetes_schema(manifest):
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource" in result.stdout, result.stdout


def test_checkov_passes_every_manifest_or_names_why_not():
    # --skip-download: no policy data from checkov's vendor; with root, in a network namespace
    # of its own, so that nothing leaves the machine whatever it tries.
    offline = ["unshare", "--net"] if os.geteuid() == 0 else []
    result = subprocess.run(
        [*offline, tool("checkov"), "--compact", "--skip-download", "--output", "json"]
        + ["--framework", "kubernetes", "--directory", str(PROJECT / "deploy" / "kubernetes")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    assert report["summary"]["failed"] == 0
    assert report["summary"]["passed"] > 50, report["summary"]
    # Every skip carries its reason.
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"]["suppress_comment"]) > 20, check


# Deep: a fresh venv and the service's requirements installed into it, as App Engine builds it,
# take most of a minute; CI runs it with make test-deep.
@pytest.mark.deep
def test_app_engine_entrypoint_answers_the_contract(tmp_path):
    config = yaml.safe_load((PROJECT / "app.yaml").read_text())
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(PROJECT / "requirements.txt")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    port = free_port()
    env = {
        **os.environ,
        **config["env_variables"],
        "PORT": str(port),
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
    }
    log = tmp_path / "entrypoint.log"
    with open(log, "wb") as out:
        # As App Engine does: the command through a shell, in the app's directory.
        proc = subprocess.Popen(
            ["/bin/sh", "-c", config["entrypoint"]],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def answer():
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/pisqrt?a=25") as response:
                    return response.status, json.loads(response.read())
            except OSError:
                return None

        status, body = wait_for(answer, 60, 0.2, message=lambda: log.read_text()[-3000:])
        assert status == 200
        assert body == {"result": 8.86226925452758}
        # No nginx there to keep /metrics from the world: it is off.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics")
        refused.value.close()
        assert refused.value.code == 404
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_compose_file_runs_the_image_behind_the_balancer_site():
    """Not run (no compose tool here): its parts are the ones the container tests run."""
    compose = yaml.safe_load((PROJECT / "deploy" / "compose.yaml").read_text())
    replicas = compose["services"]["modelserver"]
    assert replicas["image"] == "modelserver:latest"
    assert replicas["deploy"]["replicas"] == 3
    assert replicas["read_only"] is True
    assert replicas["tmpfs"] == ["/run/modelserver:mode=1777"]
    subnet = compose["networks"]["modelserver"]["ipam"]["config"][0]["subnet"]
    assert replicas["environment"]["MODELSERVER_ALLOW"] == subnet
    mounts = compose["services"]["balancer"]["volumes"]
    assert any(m.endswith(":/etc/nginx/conf.d/default.conf:ro") for m in mounts), mounts
    # The balancer site it mounts is the project's, as install.sh renders it for this name.
    site = subprocess.run(
        [str(PROJECT / "deploy" / "install.sh"), "--print-balancer", "modelserver:8080"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "    server modelserver:8080 max_fails=1 fail_timeout=5s;\n" in site
    assert Path(PROJECT / "deploy" / "nginx" / "modelserver-balancer").exists()
