"""Models of real frameworks through the real stack (tests/helpers/frameworks_app.py): onnxruntime
and scikit-learn with OpenMP threads, loaded in each worker; loaders that leave threads in the
master, refused; exits that never hang; a model update that no client notices."""

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from deploy.localstack import Stack, alive
from helpers import scrape, uwsgi_app, wait_for
from helpers.frameworks_app import SIDE, WEIGHT_MB, WEIGHTS, train_forest
from helpers.paced import Paced
from modelserver.handover import accepting_workers

pytest.importorskip("onnxruntime")


def framework_stack(name: str, *uwsgi_args: str, **env: str) -> Stack:
    """The stack serving frameworks_app's app `name`, not started; env: more variables for
    uWSGI."""
    args = [f"FRAMEWORKS_APP={name}", *(f"{key}={value}" for key, value in env.items())]
    return Stack(
        uwsgi_args=(
            *uwsgi_app("frameworks_app:app"),
            *(arg for pair in args for arg in ("--env", pair)),
            *uwsgi_args,
        )
    )


@contextlib.contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    """The stack started, until every worker accepts (each loads onnxruntime and scikit-learn:
    seconds, more on a busy machine); stopped at the end."""
    try:
        stack.start(timeout=120)
        wait_for(lambda: accepting_workers(stack.socket_path), 120, message=stack.logs)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def version_file(tmp_path) -> Path:
    """The file a versioned model is read from (frameworks_app.Versioned), at version 1."""
    path = tmp_path / "version"
    path.write_text("1\n")
    return path


def versioned(app: str, version_file: Path) -> Stack:
    """The stack of frameworks_app's `app`, its model read from version_file."""
    return framework_stack(app, FRAMEWORKS_VERSION_FILE=str(version_file))


def versions_answered(client: Paced) -> list[str]:
    """The model version of each answer the paced client got, in order."""
    return [json.loads(body)["result"]["version"] for _, _, body in client.answers]


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def renewed_workers(stack: Stack, old: set[int], timeout: float) -> float:
    """Seconds until every worker is a new one that accepts requests."""
    start = time.monotonic()
    wait_for(
        lambda: (pids := accepting_workers(stack.socket_path)) and not pids & old,
        timeout,
        message=lambda: f"the workers were not replaced:\n{stack.logs()}",
    )
    return time.monotonic() - start


def timed_stop(stack: Stack) -> float:
    start = time.monotonic()
    stack.stop()
    return time.monotonic() - start


def harakiri(stack: Stack) -> tuple[int, float]:
    """A request stuck past harakiri (2 s, below): its status, and the seconds from its answer
    until its worker is replaced by one that accepts."""
    old = accepting_workers(stack.socket_path)
    status = stack.request("GET", "/slow?seconds=20", timeout=30)[0]
    start = time.monotonic()
    wait_for(
        lambda: len(pids := accepting_workers(stack.socket_path)) == len(old) and pids != old,
        15,
        message=lambda: f"the harakiri'd worker was not replaced:\n{stack.logs()}",
    )
    return status, time.monotonic() - start


HARAKIRI = ("--harakiri", "2", "--harakiri-graceful-timeout", "1")


@pytest.fixture(scope="module")
def per_worker():
    with running(framework_stack("per_worker", *HARAKIRI)) as stack:
        yield stack


def test_onnxruntime_and_openmp_models_answer_right_at_c8(per_worker, figure):
    rng = np.random.default_rng(1)
    vectors = rng.uniform(-1, 1, size=(100, SIDE)).astype(np.float32)
    points = rng.uniform(-1, 1, size=(100, 2))

    def matmul(vector) -> tuple[int, list]:
        query = "&".join(f"x={value}" for value in vector.tolist())
        status, _, body = per_worker.request("GET", f"/matmul?{query}")
        return status, json.loads(body)["result"]

    def above(point) -> tuple[int, list]:
        body = json.dumps({"x": [point[0]], "y": [point[1]]}).encode()
        headers = {"Content-Type": "application/json"}
        status, _, answer = per_worker.request("POST", "/above", body, headers)
        return status, json.loads(answer)["result"]

    with ThreadPoolExecutor(8) as pool:
        products = list(pool.map(matmul, vectors))
        sides = list(pool.map(above, points))
    assert [status for status, _ in products + sides] == [200] * 200
    for vector, (_, result) in zip(vectors, products, strict=True):
        np.testing.assert_allclose(result, vector @ WEIGHTS, rtol=1e-5, atol=1e-5)
    # The same classifier, trained here the same way, answers the same.
    assert [result for _, result in sides] == [[int(v)] for v in train_forest().predict(points)]
    # The libraries' threads are in the workers, each its own; the master has none.
    master, *workers = sorted(accepting_workers(per_worker.socket_path) | {per_worker.uwsgi.pid})
    assert threads_of(per_worker.uwsgi.pid) == 1
    assert all(threads_of(pid) > 2 for pid in workers)  # onnxruntime's and OpenMP's pools
    private = [private_mb(pid) for pid in workers]
    figure("private MB per worker, onnxruntime + scikit-learn there", [round(mb) for mb in private])
    assert len(private) == 2 and min(private) > 20  # each holds its own libraries and models
    status, _, body = per_worker.request("GET", "/readyz")
    assert (status, json.loads(body)) == (
        200,
        {"status": "ready", "models": ["forest", "matmul"], "versions": {"matmul": "onnx-1"}},
    )


def test_a_harakiri_recycles_the_worker_in_seconds(per_worker, figure):
    status, seconds = harakiri(per_worker)
    figure("harakiri recycle, models loaded per worker (s)", f"{seconds:.2f}")
    assert status == 504
    assert seconds < 10


def test_a_reload_under_a_stream_fails_nothing(per_worker, figure):
    query = "&".join(["x=1"] * SIDE)
    old = accepting_workers(per_worker.socket_path)
    with Paced(f"{per_worker.url}/matmul?{query}", rate=20) as client:
        time.sleep(1)
        start = time.monotonic()
        per_worker.reload()
        seconds = time.monotonic() - start
        time.sleep(1)
    figure("reload under 20 req/s, models per worker (outcomes, s)", (client.outcomes(), seconds))
    assert client.outcomes() == {"200": len(client.answers)}
    assert len(client.answers) > 40
    assert not accepting_workers(per_worker.socket_path) & old
    # Two uWSGIs each load both models per worker (about 4 s each on a quiet machine): bounded
    # by the load, not by a worker that never exits.
    assert seconds < 60


def test_a_stop_takes_a_second(per_worker, figure):
    seconds = timed_stop(per_worker)
    figure("stop, models per worker (s)", f"{seconds:.2f}")
    assert seconds < 5


def test_exits_never_hang_on_onnxruntime_threads_left_in_the_master(figure):
    """The threads are in the master, past the framework's check (a session made at import):
    without the workers' own exit path, every exit waits forever in onnxruntime's handlers."""
    with running(framework_stack("onnx_left_in_master", *HARAKIRI)) as stack:
        assert threads_of(stack.uwsgi.pid) > 1
        assert stack.request("GET", "/onnx")[0] == 200
        status, harakiri_seconds = harakiri(stack)
        assert status == 504
        old = accepting_workers(stack.socket_path)
        with open(stack.socket_path + ".fifo", "w") as fifo:
            fifo.write("r")  # uWSGI's own graceful reload
        reload_seconds = renewed_workers(stack, old, timeout=20)
        # max-requests' recycle: the same graceful exit as the reload's, one worker at a time
        recycled = next(iter(accepting_workers(stack.socket_path)))
        os.kill(recycled, signal.SIGHUP)
        wait_for(lambda: not alive(recycled), 10, message="the recycled worker did not exit")
        assert stack.request("GET", "/onnx")[0] == 200
        stop_seconds = timed_stop(stack)
    figure(
        "onnxruntime threads in the master: harakiri, reload, stop (s)",
        f"{harakiri_seconds:.2f}, {reload_seconds:.2f}, {stop_seconds:.2f}",
    )
    assert harakiri_seconds < 10 and reload_seconds < 15 and stop_seconds < 5


@pytest.mark.parametrize(
    ("app", "model", "threads"),
    [("pool_in_master", "pool", "2 thread(s)"), ("forest_in_master", "forest", "1 thread(s)")],
)
def test_a_loader_that_leaves_threads_in_the_master_stops_it(app, model, threads):
    stack = framework_stack(app)
    with pytest.raises(RuntimeError) as failure:
        stack.start(timeout=120)
    stack.stop()
    log = str(failure.value)
    assert "uwsgi exited" in log
    assert f"model {model!r} left {threads}" in log, log
    assert 'load="worker"' in log, log


def test_a_model_update_under_a_steady_client_refuses_nothing(version_file, figure):
    """A model that takes 2 s to load, in the master, updated under 20 requests a second."""
    with running(versioned("slow_master", version_file)) as stack:
        with Paced(f"{stack.url}/version?a=1", rate=20) as client:
            time.sleep(1)
            version_file.write_text("2\n")
            start = time.monotonic()
            stack.reload()
            seconds = time.monotonic() - start
            time.sleep(1)
        status, _, body = stack.request("GET", "/readyz")
    figure(
        "model update (2 s load) under 20 req/s: outcomes, reload (s)",
        (client.outcomes(), f"{seconds:.1f}"),
    )
    assert client.outcomes() == {"200": len(client.answers)}, client.answers[:3]
    assert len(client.answers) >= 20 * (seconds + 2) * 0.8
    versions = versions_answered(client)
    assert versions[0] == "1" and versions[-5:] == ["2"] * 5
    assert (status, json.loads(body)["versions"]) == (200, {"slow": "2"})


def test_a_model_an_update_removes_leaves_the_metrics(version_file):
    with running(versioned("named_by_file", version_file)) as stack:
        assert loaded_models(stack) == {"first": 1.0}
        version_file.write_text("2\n")
        stack.reload()
        status, _, body = stack.request("GET", "/which?a=1")
        assert (status, json.loads(body)) == (200, {"result": "second"})
        assert loaded_models(stack) == {"second": 1.0}


def loaded_models(stack: Stack) -> dict[str, float]:
    """modelserver_model_loaded in /metrics: model -> value."""
    samples = scrape(stack).items()
    return {
        dict(labels)["model"]: v
        for (name, labels), v in samples
        if name == "modelserver_model_loaded"
    }


@pytest.mark.parametrize("app", ["slow_master", "slow_worker"])
def test_a_reload_whose_new_code_fails_leaves_the_old_serving(version_file, app):
    """The new code's model fails to load: no client meets it, however briefly (its workers,
    on the same socket, would answer 503)."""
    with running(versioned(app, version_file)) as stack:
        with Paced(f"{stack.url}/version?a=1", rate=50) as client:
            time.sleep(0.5)
            version_file.unlink()  # the new model is missing: its loader fails
            with pytest.raises(RuntimeError):
                stack.reload()
            time.sleep(0.5)
        assert client.outcomes() == {"200": len(client.answers)}, client.outcomes()
        assert set(versions_answered(client)) == {"1"}
        status, _, body = stack.request("GET", "/version?a=1")
        assert (status, json.loads(body)["result"]["version"]) == (200, "1")
        assert loaded_models(stack) == {"slow": 1.0}  # the running one's states


def test_a_reload_past_its_load_time_fails_and_its_new_code_never_answers(
    version_file, monkeypatch
):
    """A model that loads for longer than the handover waits: the new uWSGI, still loading, is
    stopped with its workers before any of them answers (a loading master does not heed
    SIGTERM: it would have served the new code for as long again once loaded)."""
    with running(versioned("slow_master", version_file)) as stack:
        with Paced(f"{stack.url}/version?a=1", rate=50) as client:
            time.sleep(0.5)
            version_file.write_text("2\n")
            monkeypatch.setenv("MODELSERVER_LOAD_SECONDS", "1.5")  # its model takes 2 s
            started = time.monotonic()
            with pytest.raises(RuntimeError):
                stack.reload()
            assert time.monotonic() - started < 5
            time.sleep(3)  # past when the new code would have loaded
        assert client.outcomes() == {"200": len(client.answers)}, client.outcomes()
        assert set(versions_answered(client)) == {"1"}
        assert (
            "not within 1.5 s (MODELSERVER_LOAD_SECONDS" in Path(stack.dir, "uwsgi.log").read_text()
        )


def private_mb(pid: int) -> float:
    """Memory only this process holds (USS: its private pages), in MB."""
    lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    fields = dict(line.split(":", 1) for line in lines)
    kb = sum(int(fields[name].split()[0]) for name in ("Private_Clean", "Private_Dirty"))
    return kb / 1024


def workers_private_mb(name: str) -> float:
    """The mean private memory of the two workers of app `name`, after a request to each."""
    with running(framework_stack(name)) as stack:
        for _ in range(4):
            stack.request("GET", "/weights?a=1" if name.startswith("weights") else "/healthz")
        pids = accepting_workers(stack.socket_path)
        return sum(private_mb(pid) for pid in pids) / len(pids)


def test_memory_per_placement(figure):
    """A model loaded in the master is shared; loaded per worker, each worker holds a copy."""
    nothing = workers_private_mb("nothing")
    master = workers_private_mb("weights_master")
    worker = workers_private_mb("weights_worker")
    figure(
        "private MB per worker: no model, 64 MB numpy model in the master, per worker",
        f"{nothing:.0f}, {master:.0f}, {worker:.0f}",
    )
    assert master < nothing + 16  # the weights stay shared with the master
    assert worker > nothing + WEIGHT_MB * 0.9  # a copy each
