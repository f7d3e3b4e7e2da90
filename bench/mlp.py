"""A model where batching pays: a 4-layer MLP of 2048x2048 float32 weights (64 MB), made from a
fixed seed at load time, nothing downloaded.

Its cost is mostly per call, not per item: on the reference machine (numpy, one BLAS thread) one
row takes 2.4 ms, a batch of 32 13 ms, of 64 19 ms. A client sends a few features per item
(FEATURES), repeated across the first layer's width, and gets a few numbers back (OUTPUTS): the
request and the answer stay small, so what is measured is the model, not JSON.

Served by the bench's app (bench/mlp_app.py) with and without batching, by the LitServe peer
(bench/peer_litserve.py) and by the FastAPI peer; the tests serve a narrower one.
"""

import numpy as np

WIDTH = 2048
LAYERS = 4
FEATURES = 16  # per item, from the client
OUTPUTS = 4  # per item, to the client
SEED = 2048
# The batching knobs of every stack that batches it, TorchServe's and LitServe's alike: at most
# 32 items a call, and the first request of a batch waits at most 5 ms for others.
MAX_BATCH_SIZE = 32
MAX_BATCH_DELAY_MS = 5
# Ours only (LitServe has no such knob): calls cut back to a multiple of 4 items where the queue
# makes one. numpy's OpenBLAS takes the rows of a float32 product 4 at a time on this host's CPU,
# and the rows past a multiple of 4 cost nearly as much as 4 more (docs/batching.md has the times).
PREFERRED_BATCH_SIZE = range(4, MAX_BATCH_SIZE + 1, 4)


def build(width: int = WIDTH, layers: int = LAYERS, seed: int = SEED) -> list[np.ndarray]:
    """The weights, scaled so that activations neither vanish nor blow up through the layers."""
    rng = np.random.default_rng(seed)
    scale = np.float32(1 / np.sqrt(width))
    return [rng.standard_normal((width, width), dtype=np.float32) * scale for _ in range(layers)]


def load_mlp() -> list[np.ndarray]:
    """The bench's model, loaded once in the uWSGI master."""
    return build()


def forward(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Rows of FEATURES in, rows of OUTPUTS out: tanh layers, one matrix product each."""
    width = weights[0].shape[0]
    h = np.tile(np.asarray(x, dtype=np.float32), (1, width // x.shape[1]))
    for w in weights:
        h = np.tanh(h @ w)
    return h[:, :OUTPUTS]


def mlp(model: list[np.ndarray], x: list[list[float]]) -> list[list[float]]:
    """The MLP on a batch: each item FEATURES numbers, each result OUTPUTS numbers."""
    if any(len(item) != FEATURES for item in x):
        raise ValueError(f"each x holds {FEATURES} numbers")
    return forward(model, np.array(x, dtype=np.float32)).tolist()


def example(i: int) -> list[float]:
    """Item i of a client's inputs: different for every i, the same on every run."""
    return [round(((i * 7 + j * 3) % 23) / 23 - 0.5, 4) for j in range(FEATURES)]
