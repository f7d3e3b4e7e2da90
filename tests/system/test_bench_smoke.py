"""The benchmark harness (bench/run.py) in a tiny run: it measures, stops all, writes its files.

Nothing here asserts a timing or a ratio: those depend on the machine, and `make bench` reports
them. The peers run only where bench/requirements.txt is installed; the rest always runs.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.stacks import BATCHING_BY_NAME, BY_NAME
from deploy.localstack import PROJECT
from helpers.commands import ignore_interrupts

RUN = str(PROJECT / "bench" / "run.py")
# Stacks of each kind: uWSGI (ours with and without metrics, bare), nginx alone, and one HTTP
# peer of each framework.
CHOSEN = ("ours", "ours-nometrics", "bare", "proxy", "gunicorn", "fastapi")
INSTALLED = [
    name
    for name in CHOSEN
    if all(importlib.util.find_spec(package) for package in BY_NAME[name].needs)
]
BATCH = 10
# The batching rows (the MLP): ours off and on, and LitServe where it is installed.
BATCHING = [
    name
    for name in ("ours-mlp", "ours-mlp-batched", "ours-mlp-batched-any", "litserve-mlp")
    if all(importlib.util.find_spec(package) for package in BATCHING_BY_NAME[name].needs)
]


def session_processes(session: int) -> list[str]:
    """The live processes of a session: a harness started in its own leaves none behind."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended while we looked
            continue
        state, _ppid, _pgrp, sid = text.rsplit(")", 1)[1].split()[:4]
        if int(sid) == session and state != "Z":
            found.append(text.split(")")[0])
    return found


def run_harness(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        [sys.executable, RUN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        # As a shell starts a background job (`make bench &`): the processes the harness starts
        # would inherit SIGINT ignored, though its stops rely on it.
        preexec_fn=ignore_interrupts,
    )
    stdout, stderr = proc.communicate(timeout=180)  # about 100 s on a shared machine
    assert session_processes(proc.pid) == [], "the harness left processes behind"
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.deep  # 85 s of stacks started in turn: make test-deep, which CI runs
def test_tiny_run_measures_every_stack_and_writes_json_markdown_chart(tmp_path):
    done = run_harness(
        *("--rounds", "1", "--duration", "1", "--warmup", "0", "--concurrency", "8"),
        *("--batches", str(BATCH), "--stacks", ",".join(INSTALLED), "--out", str(tmp_path)),
        *("--batching-stacks", ",".join(BATCHING), "--batching-concurrency", "1,4"),
        *("--pairs", "1", "--one-nginx", "1", "--side-by-side", "1"),
    )
    assert done.returncode == 0, done.stderr

    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == ["run", "settings", "machine", "stacks", "summary", "measurements"]
    gets = [m for m in results["measurements"] if m["kind"] == "get"]
    assert [(m["stack"], m["concurrency"]) for m in gets] == [(name, 8) for name in INSTALLED]
    for m in gets:
        assert m["requests"] > 0 and m["errors"] == 0, m
        assert 0 < m["busy_pct"] <= 100, m
    assert set(results["summary"]["medians"]) == set(INSTALLED)

    [batch] = [m for m in results["measurements"] if m["kind"] == "batch"]
    if "unavailable" in batch:  # POST /pisqrt not in the service yet: said, not crashed
        assert batch["unavailable"].startswith("not available (HTTP "), batch
    else:
        assert batch["requests"] > 0 and batch["errors"] == 0, batch
        assert batch["values_per_s"] == round(batch["rps"] * BATCH, 1)

    model = results["summary"]["model"]
    assert set(model["ceilings"]) == {"28x28 PNG", "640x480 JPEG"}
    assert all(rps > 0 for rps in model["ceilings"].values())
    # The A/B: both variants timed at every stage of both images (git shows the baseline).
    for image in ("28x28 PNG", "640x480 JPEG"):
        assert set(model["stages_us"][image]) == {"before", "after"}
        assert set(model["stages_us"][image]["after"]) == {"decode", "preprocess", "predict"}
    predicts = [m for m in results["measurements"] if m["kind"] == "predict"]
    expected = [name for name in ("ours", "ours-nometrics", "fastapi") if name in INSTALLED]
    assert sorted({m["stack"] for m in predicts}) == sorted(expected)
    for m in predicts:
        assert m["requests"] > 0 and m["errors"] == 0, m
    memory = [m for m in results["measurements"] if m["kind"] == "memory"]
    assert {m["stack"] for m in memory} == set(expected), memory
    assert all(m["pss_kb"] > 0 for m in memory)

    mlp = [m for m in results["measurements"] if m["kind"] == "mlp"]
    assert [(m["stack"], m["concurrency"]) for m in mlp] == [
        (name, c) for name in BATCHING for c in (1, 4)
    ]
    for m in mlp:
        assert m["requests"] > 0 and m["errors"] == 0, m
    batching = results["summary"]["batching"]
    assert batching["on_over_off"]["4"] > 0, batching

    # Counting's cost in a pair of adjacent windows, after the rounds; then ours against FastAPI.
    pairs = [m for m in results["measurements"] if m["kind"] == "paired"]
    peer = [("ours", 1, 8, "fastapi"), ("fastapi", 1, 8, "fastapi")]
    assert [(m["stack"], m["pair"], m["concurrency"], m["versus"]) for m in pairs] == [
        ("ours", 1, 8, "ours-nometrics"),
        ("ours-nometrics", 1, 8, "ours-nometrics"),
        *(peer if "fastapi" in INSTALLED else []),
    ]
    for m in pairs:
        assert m["requests"] > 0 and m["errors"] == 0, m
    assert results["summary"]["metrics_pairs"]["8"]["pairs"] == 1
    if "fastapi" not in INSTALLED:
        assert results["summary"]["fastapi_pairs"] == {}

    # And in CPU time, both behind one nginx: each uWSGI answered its share of the window.
    [window] = [m for m in results["measurements"] if m["kind"] == "one-nginx"]
    assert window["requests"] > 0 and window["errors"] == 0, window
    assert all(answered > 0 for answered in window["answered"]), window
    assert window["with_us"] > 0 and window["without_us"] > 0, window
    assert window["machine_us"] > window["with_us"] / 2, window
    assert results["summary"]["metrics_one_nginx"]["8"]["windows"] == 1

    # Ours against FastAPI in CPU time, both at once: each stack's nginx, server and wrk.
    sides = [m for m in results["measurements"] if m["kind"] == "side-by-side"]
    if "fastapi" in INSTALLED:
        [window] = sides
        assert window["stacks"] == ["ours", "fastapi"]
        for side in window["sides"]:
            assert side["requests"] > 0 and side["errors"] == 0, window
            assert all(us > 0 for us in side["us"].values()), window
        assert results["summary"]["side_by_side"]["ours / fastapi"]["8"]["windows"] == 1
    else:
        assert sides == []

    budget = results["run"]["budget"]
    for side in ("nginx", "uwsgi"):
        assert budget[side]["user_us"] > 0 and budget[f"{side}_syscalls"] > 0, budget
    assert budget["in_process_us"]["app"] > budget["in_process_us"]["function"] > 0, budget

    markdown = (tmp_path / "results.md").read_text()
    assert "## Where a request's time goes (GET /pisqrt?a=25, c=32)" in markdown
    for name in INSTALLED:
        assert f"| {BY_NAME[name].label} | 8 |" in markdown
    assert (
        "Targets of the HTTP path and of the metrics' cost:" in markdown
        and "Targets of the image path:" in markdown
    )
    assert "Counting's cost, in pairs:" in markdown
    assert "Counting's cost in CPU time:" in markdown
    if "fastapi" in INSTALLED:
        assert "Ours against FastAPI + uvicorn in CPU time:" in markdown
        assert "Ours against FastAPI + uvicorn, in pairs:" in markdown
        assert results["summary"]["fastapi_pairs"]["8"]["pairs"] == 1
    assert "## Batching: the MLP, one item a request" in markdown
    for name in BATCHING:
        assert f"| {BATCHING_BY_NAME[name].label} | 4 |" in markdown
    assert markdown in done.stdout  # the table is printed at the end of the run

    chart = tmp_path / "results.png"
    if importlib.util.find_spec("matplotlib"):
        assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    else:
        assert not chart.exists() and "no chart" in done.stderr


def test_without_wrk_says_how_to_install_it(tmp_path):
    # Only the venv's own bin on PATH: no wrk there.
    done = subprocess.run(
        [sys.executable, RUN, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env={"PATH": str(Path(sys.executable).parent)},
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr == "wrk is not installed: sudo apt-get install wrk\n"
    assert list(tmp_path.iterdir()) == []
