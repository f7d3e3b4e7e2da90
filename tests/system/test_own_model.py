"""A user's own model, the README's way, in a copy of the checkout: a module of its own and a
line in registry.py, from the README's blocks as written, through the real stack (the demos
removed, the framework's tests: test_demo_removal.py)."""

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from deploy.localstack import PROJECT, free_port
from helpers import copy_checkout
from helpers.commands import UP, Run
from helpers.docpages import doc_block
from modelserver.loading import loaders_of
from registry import ENDPOINTS

PYTHON = str(PROJECT / ".venv" / "bin" / "python")
README = PROJECT / "README.md"
RUFF = str(PROJECT / ".venv" / "bin" / "ruff")
REGISTRY_START = "ENDPOINTS: dict[str, Callable | Endpoint] = {\n"
EMPTY_REGISTRY = "ENDPOINTS: dict[str, Callable | Endpoint] = {}\n"  # the demos removed


def add_to_registry(registry: Path, block: str) -> None:
    """Step 3 as a user does it: the block's imports where registry.py imports from
    modelserver.endpoints (the block's line has what its entry needs), its entry at the end of
    ENDPOINTS. The block holds those imports and one entry: a model is one line."""
    lines = block.splitlines()
    imports = [line for line in lines if line.startswith(("import ", "from "))]
    entries = [line for line in lines if line.startswith('    "')]
    assert len(entries) == 1 and REGISTRY_START.rstrip("\n") in lines, block
    text = registry.read_text().replace(EMPTY_REGISTRY, REGISTRY_START + "}\n")
    framework = re.search(r"^from modelserver\.endpoints import .*\n", text, re.M)
    assert framework, "registry.py imports nothing from modelserver.endpoints"
    registry.write_text(text.replace(framework.group(0), "\n".join(imports) + "\n"))
    add_entry(registry, entries[0].strip())


# The registry line of the README's step 5, written inline.
STREAM_ENTRY = re.compile(r'^   `("iris-stream": serve\(.*\),)` in `ENDPOINTS`', re.M)


def add_entry(registry: Path, entry: str) -> None:
    """One more line at the end of ENDPOINTS."""
    text = registry.read_text()
    end = text.index("\n}\n", text.index(REGISTRY_START)) + 1
    registry.write_text(text[:end] + "    " + entry + "\n" + text[end:])


def stream(url: str, body: object) -> tuple[int, str, list]:
    """POST body; the status, the type and the JSON value of each line of the answer."""
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers["Content-Type"], list(map(json.loads, response))


def post(url: str, body: object) -> tuple[int, object]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def get(url: str) -> tuple[int, object]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())


def test_the_readme_example_serves_an_iris_classifier(tmp_path):
    app = copy_checkout(tmp_path / "app")
    (app / "train_iris.py").write_text(doc_block("train_iris.py"))
    # Step 5, the streamed answer: its import, its function, its line in ENDPOINTS.
    iris = "from collections.abc import Iterator\n" + doc_block("iris.py")
    (app / "iris.py").write_text(iris + "\n\n" + doc_block("iris_stream.py"))
    add_to_registry(app / "registry.py", doc_block("registry.py"))
    add_entry(app / "registry.py", STREAM_ENTRY.search(README.read_text()).group(1))
    # What the user wrote passes the project's checks as it stands.
    files = ["train_iris.py", "iris.py", "registry.py"]
    for check in (["check"], ["format", "--check"]):
        done = subprocess.run([RUFF, *check, *files], cwd=app, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    subprocess.run([PYTHON, "train_iris.py"], cwd=app, check=True, timeout=120)
    assert (app / "models" / "iris.joblib").stat().st_size > 0
    run = Run([PYTHON, "deploy/localstack.py", "--port", str(free_port())], cwd=app)
    try:
        url = run.wait_for(UP, timeout=60).group(1)
        batch = [{"features": [5.1, 3.5, 1.4, 0.2]}, {"features": [6.7, 3.0, 5.2, 2.3]}]
        assert post(f"{url}/iris", batch) == (200, {"result": ["setosa", "virginica"]})
        query = "features=5.1&features=3.5&features=1.4&features=0.2"
        assert get(f"{url}/iris?{query}") == (200, {"result": "setosa"})
        models = sorted([*loaders_of(ENDPOINTS), "iris"])  # beside those already served
        assert get(f"{url}/readyz") == (200, {"status": "ready", "models": models})
        status, document = get(f"{url}/openapi.json")
        assert status == 200
        item = document["paths"]["/iris"]["post"]["requestBody"]["content"]["application/json"]
        one = item["schema"]["anyOf"][0]
        assert one["properties"]["features"] == {"type": "array", "items": {"type": "number"}}
        status, content_type, lines = stream(
            f"{url}/iris-stream", {"features": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
        )
        assert (status, content_type) == (200, "application/x-ndjson")
        assert lines == [{"result": "setosa"}, {"result": "virginica"}]
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(f"{url}/iris", [{"features": [1, 2]}])
        assert refused.value.code == 400
        assert "4 measures" in json.loads(refused.value.read())["message"]
        run.interrupt(timeout=30)
    finally:
        run.kill()
