"""A user's own model, the README's way, in a copy of the checkout: its blocks run as written
through the real stack (the demos removed, the framework's tests: test_demo_removal.py)."""

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from deploy.localstack import PROJECT, free_port
from helpers import copy_checkout
from helpers.commands import UP, Run
from modelserver.loading import loaders_of
from registry import ENDPOINTS

README = (PROJECT / "README.md").read_text()
PYTHON = str(PROJECT / ".venv" / "bin" / "python")


def readme_block(name: str) -> str:
    """The code block after <!-- example: NAME --> in the README, unindented."""
    match = re.search(rf"<!-- example: {re.escape(name)} -->\s*```\w*\n(.*?)```", README, re.S)
    assert match, f"no example {name!r} in the README"
    lines = match.group(1).splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    if name == "registry":  # a line inside the dict: keep its own indentation
        indent = 3
    return "\n".join(line[indent:] for line in lines) + "\n"


def edit(path: Path, old: str, new: str) -> None:
    """Replace old, which must be there once: fail loudly if the file's shape changed."""
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


REGISTRY_START = "ENDPOINTS: dict[str, Callable | Endpoint] = {\n"


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
    (app / "train_iris.py").write_text(readme_block("train_iris.py"))
    (app / "iris.py").write_text(readme_block("iris.py"))
    edit(app / "registry.py", REGISTRY_START, REGISTRY_START + readme_block("registry"))
    edit(app / "registry.py", "import algo\n", "import algo\nimport iris\n")
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
        with pytest.raises(urllib.error.HTTPError) as refused:
            post(f"{url}/iris", [{"features": [1, 2]}])
        assert refused.value.code == 400
        assert "4 measures" in json.loads(refused.value.read())["message"]
        run.interrupt(timeout=30)
    finally:
        run.kill()
