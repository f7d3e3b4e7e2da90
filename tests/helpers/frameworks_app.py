"""Models of real frameworks, served under uWSGI by tests/stack/test_frameworks.py and the
systemd tests (`--pythonpath tests/helpers --module frameworks_app:NAME`).

- an ONNX model run by onnxruntime (PyPI wheel), built here with onnx's helper: nothing is
  downloaded; onnxruntime starts threads, so it loads in each worker (load="worker");
- a scikit-learn HistGradientBoosting classifier that predicts with OpenMP on 2 threads (the
  service pins OMP_NUM_THREADS=1; this model raises it, as a user might), also per worker;
- loaders that leave threads in the master (a thread pool, OpenMP): the master must refuse them;
- a model that takes 2 s to load, in the master, whose version comes from a file: the update test.

FRAMEWORKS_VERSION_FILE names that file; FRAMEWORKS_ONNX_IN_MASTER=1 creates an onnxruntime
session in the master after the app is made (past the framework's check, as a module-level
session in a user's wsgi.py would be): the exit paths must not hang on its threads.
"""

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from flask import request

from modelserver.endpoints import serve
from server import create_app

SIDE = 64  # the ONNX model multiplies a vector of SIDE by a SIDE x SIDE matrix
WEIGHTS = np.arange(SIDE * SIDE, dtype=np.float32).reshape(SIDE, SIDE) / (SIDE * SIDE)


def onnx_model_bytes(weights: np.ndarray = WEIGHTS) -> bytes:
    """y = x @ weights, as an ONNX model (opset 13)."""
    from onnx import TensorProto, helper, numpy_helper

    side = weights.shape[0]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, side])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 9  # what this onnxruntime reads
    return model.SerializeToString()


class Session:
    """An onnxruntime session and its version, as a user's loader returns it."""

    version = "onnx-1"

    def __init__(self):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(
            onnx_model_bytes(), providers=["CPUExecutionProvider"]
        )


def load_matmul() -> Session:
    return Session()


def matmul(model: Session, x: list[float]) -> list[float]:
    """x times the model's matrix, by onnxruntime."""
    if len(x) != SIDE:
        raise ValueError(f"x has {len(x)} values; the model takes {SIDE}")
    (y,) = model.session.run(None, {"x": np.asarray([x], dtype=np.float32)})
    return [float(v) for v in y[0]]


def openmp_threads(count: int) -> object:
    """OpenMP's thread count raised to `count` in this process (uwsgi.ini pins 1); the returned
    limiter keeps it so."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=count, user_api="openmp")


def train_forest() -> object:
    """A HistGradientBoosting classifier of x > y, fitted with OpenMP on 2 threads."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, size=(400, 2))
    labels = (points[:, 0] > points[:, 1]).astype(int)
    forest = HistGradientBoostingClassifier(max_iter=20, random_state=0)
    forest.limit = openmp_threads(2)
    return forest.fit(points, labels)


def load_forest() -> object:
    return train_forest()


def above(model, x: list[float], y: list[float]) -> list[int]:
    """Whether each x is above its y, by the classifier (predicting on 2 OpenMP threads)."""
    return [int(v) for v in model.predict(np.column_stack([x, y]))]


def load_pool() -> object:
    """A loader that starts a thread pool and keeps it, as some libraries do."""
    pool = ThreadPoolExecutor(max_workers=2)
    list(pool.map(abs, [-1, -2, -3, -4]))  # both threads started, and left waiting
    return pool


def pooled(model: ThreadPoolExecutor, a: float) -> float:
    """|a|, on the pool."""
    return model.submit(abs, a).result()


class Versioned:
    """A model read from a file that takes 2 s to load: its content is its version."""

    def __init__(self, path: str):
        time.sleep(2)
        with open(path) as file:
            self.version = file.read().strip()


def load_slow() -> Versioned:
    return Versioned(os.environ["FRAMEWORKS_VERSION_FILE"])


def version(model: Versioned, a: float) -> dict:
    """The version of the model that answered, and a."""
    return {"version": model.version, "a": a}


def load_first() -> str:
    return "first"


def load_second() -> str:
    return "second"


def which(model: str, a: float) -> str:
    return model


def named_by_file():
    """The model's loader, so its name, chosen by FRAMEWORKS_VERSION_FILE ("1": load_first): a
    model an update removes."""
    with open(os.environ["FRAMEWORKS_VERSION_FILE"]) as file:
        first = file.read().strip() == "1"
    return app_of({"which": serve(which, model=load_first if first else load_second)})


WEIGHT_MB = 64


def load_weights() -> np.ndarray:
    """64 MB of weights, written (so resident), as numpy or scikit-learn models hold them."""
    return np.full(WEIGHT_MB * 2**20 // 8, 0.5)


def weight_sum(model: np.ndarray, a: float) -> float:
    """a times the sum of every 4096th weight."""
    return a * float(model[::4096].sum())


def weights(load: str):
    return app_of({"weights": serve(weight_sum, model=load_weights, load=load)})


def slow_route() -> dict:
    """Sleep ?seconds=N (for harakiri)."""
    seconds = float(request.args.get("seconds", "0"))
    time.sleep(seconds)
    return {"slept": seconds, "pid": os.getpid()}


def pid_route() -> dict:
    return {"pid": os.getpid()}


def with_test_routes(app):
    app.add_url_rule("/slow", "slow", slow_route)
    app.add_url_rule("/pid", "pid", pid_route)
    return app


def app_of(endpoints: dict):
    return with_test_routes(create_app({"ENDPOINTS": endpoints}))


def per_worker():
    """onnxruntime and OpenMP models, each loaded in every worker."""
    return app_of(
        {
            "matmul": serve(matmul, model=load_matmul, load="worker"),
            "above": serve(above, model=load_forest, vectorized=True, load="worker"),
        }
    )


def in_master():
    """The same models loaded in the master (today's default): the master must refuse."""
    return app_of(
        {
            "matmul": serve(matmul, model=load_matmul),
            "above": serve(above, model=load_forest, vectorized=True),
        }
    )


def pool_in_master():
    return app_of({"pooled": serve(pooled, model=load_pool)})


def forest_in_master():
    return app_of({"above": serve(above, model=load_forest, vectorized=True)})


def slow_model(load: str = "master"):
    return app_of({"version": serve(version, model=load_slow, load=load)})


def onnx_left_in_master():
    """No model of the framework's; an onnxruntime session made in the master after the app,
    past its check: its threads are in the master when the workers fork."""
    app = app_of({})
    app.extensions["session"] = Session()
    app.add_url_rule(
        "/onnx", "onnx", lambda: {"y0": matmul(app.extensions["session"], [1.0] * SIDE)[0]}
    )
    return app


APPS = {
    "per_worker": per_worker,
    "in_master": in_master,
    "pool_in_master": pool_in_master,
    "forest_in_master": forest_in_master,
    "slow_master": slow_model,
    "slow_worker": lambda: slow_model("worker"),
    "onnx_left_in_master": onnx_left_in_master,
    "weights_master": lambda: weights("master"),
    "weights_worker": lambda: weights("worker"),
    "named_by_file": named_by_file,
    "nothing": lambda: app_of({}),
}
if "uwsgi" in sys.modules:  # under uWSGI, which imports `app`; tests import the rest
    # The app to serve: FRAMEWORKS_APP names one of APPS.
    app = APPS[os.environ.get("FRAMEWORKS_APP", "per_worker")]()
