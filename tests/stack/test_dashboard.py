"""The alert rules pass promtool, and the dashboard's queries and the rules run in a real
Prometheus (Debian's package) that scrapes the real stack."""

import json
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from deploy.localstack import PROJECT, free_port
from helpers import wait_for

RULES = PROJECT / "deploy" / "prometheus" / "modelserver-alerts.yml"
DASHBOARD = PROJECT / "deploy" / "grafana" / "modelserver-dashboard.json"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
# Grafana's variables, as the dashboard's queries would see them over a short test run.
VARIABLES = {"$instance": ".*", "$__rate_interval": "30s", "$__interval": "30s"}

CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: modelserver
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def test_promtool_accepts_the_alert_rules():
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, with Grafana's variables filled in."""
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            queries.append((panel["title"], expr))
    return queries


def api(port: int, path: str, **params) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def prometheus_says(condition):
    """condition, False while Prometheus is not listening yet; waited for every 0.25 s."""

    def check() -> bool:
        try:
            return condition()
        except OSError:
            return False

    return check


@pytest.fixture(scope="module")
def prometheus(user_stack):
    """Prometheus scraping the stack of tests/helpers/usermodels.py every second, with the alert
    rules; that stack has a function that fails (5xx) and a model that did not load."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="modelserver-prometheus-") as work:
        config = Path(work, "prometheus.yml")
        config.write_text(CONFIG.format(rules=RULES, port=user_stack.port))
        argv = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={work}/data",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        log = open(Path(work, "prometheus.log"), "wb")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(
                prometheus_says(lambda: api(port, "query", query="up")["status"] == "success"),
                30,
                interval=0.25,
                message="Prometheus did not start",
            )
            yield port
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def traffic(stack) -> None:
    for a in range(30):
        assert stack.request("GET", f"/norm?values={a}")[0] == 200
    assert stack.request("GET", "/norm?values=x")[0] == 400
    assert stack.request("GET", "/broken?a=1")[0] == 500
    batch = json.dumps({"x": [1, 2, 3], "y": [3, 2, 1]}).encode()
    headers = {"Content-Type": "application/json"}
    assert stack.request("POST", "/classify", batch, headers)[0] == 200


def test_dashboard_queries_answer_from_a_real_prometheus(prometheus, user_stack):
    def scraped_traffic_twice() -> bool:
        traffic(user_stack)
        query = 'count_over_time(modelserver_requests_total{job="modelserver"}[1m])'
        result = api(prometheus, "query", query=query)["data"]["result"]
        return bool(result) and min(float(r["value"][1]) for r in result) >= 5

    wait_for(
        prometheus_says(scraped_traffic_twice),
        60,
        interval=0.25,
        message="five scrapes with traffic",
    )
    up = api(prometheus, "query", query='up{job="modelserver"}')["data"]["result"]
    assert [float(r["value"][1]) for r in up] == [1.0], up
    empty = []
    for title, expr in dashboard_queries():
        answer = api(prometheus, "query", query=expr)
        assert answer["status"] == "success", (title, expr, answer)
        if not answer["data"]["result"]:
            empty.append((title, expr))
    # Respawns are 0 in a run without a crash, so increase() has a series of 0: nothing may be
    # empty.
    assert empty == []


def test_alert_rules_evaluate_in_prometheus(prometheus):
    def evaluated() -> bool:
        groups = api(prometheus, "rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return len(rules) == 6 and all(
            rule.get("lastEvaluation", "").startswith("2") for rule in rules
        )

    wait_for(prometheus_says(evaluated), 30, interval=0.25, message="rules evaluated")
    rules = {
        rule["name"]: rule
        for group in api(prometheus, "rules")["data"]["groups"]
        for rule in group["rules"]
    }
    assert {name: rule["health"] for name, rule in rules.items()} == dict.fromkeys(rules, "ok")
    # The test stack has a model that failed to load: that alert is on its way (for: 1m).
    not_loaded = rules["ModelserverModelNotLoaded"]
    assert not_loaded["state"] in ("pending", "firing"), not_loaded
    assert [a["labels"]["model"] for a in not_loaded["alerts"]] == ["broken"]
    assert rules["ModelserverDown"]["state"] == "inactive"
