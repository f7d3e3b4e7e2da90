"""An app whose endpoints batch concurrent requests, registered as a user would, for
tests/stack/test_batching.py (uwsgi ... --module batching_app:app --threads N).

The model is the bench's MLP (bench/mlp.py), narrower so that a call takes about a millisecond.
"""

import os
import threading
import time

from bench import mlp as mlp_model
from modelserver.endpoints import serve
from server import create_app

# A client's value that the functions below treat as a bug of the model, or as a bad value.
POISON = 99.0
BAD = -99.0
MAX_BATCH_SIZE = 16
PREFERRED = [4, 8]
CALLS = [0]  # this worker's calls of fragile, numbered
COUNTING = threading.Lock()


def load_mlp() -> list:
    """The bench's MLP, 512 wide instead of 2048."""
    return mlp_model.build(width=512)


def fragile(x: list[float]) -> list[list[float]]:
    """Each item back as [its value, the worker's pid, the call's number]; a bug on POISON,
    a client's error on BAD: what the batch of a call shares. A call takes 20 ms, as a model
    would: requests arriving meanwhile queue for the next batch, whatever the last one was."""
    with COUNTING:
        CALLS[0] += 1
        call = CALLS[0]
    time.sleep(0.02)
    if POISON in x:
        raise RuntimeError("the model broke on this batch")
    if BAD in x:
        raise ValueError(f"{BAD} is out of this model's range")
    return [[value, os.getpid(), call] for value in x]


def slow(seconds: list[float]) -> list[float]:
    """Sleeps the batch's longest value: a call that runs past the deadline."""
    time.sleep(max(seconds))
    return seconds


ENDPOINTS = {
    # The same model and function, batched and not: the second is the reference.
    "mlp": serve(
        mlp_model.mlp,
        model=load_mlp,
        vectorized=True,
        max_batch_size=MAX_BATCH_SIZE,
        max_batch_delay_ms=20,
    ),
    "mlp_single": serve(mlp_model.mlp, model=load_mlp, vectorized=True),
    "slow": serve(slow, vectorized=True, max_batch_size=MAX_BATCH_SIZE, max_batch_delay_ms=50),
    "fragile": serve(
        fragile, vectorized=True, max_batch_size=MAX_BATCH_SIZE, max_batch_delay_ms=50
    ),
    # The same, its calls cut back to 4 or 8 items wherever the queue makes one.
    "preferring": serve(
        fragile,
        vectorized=True,
        max_batch_size=MAX_BATCH_SIZE,
        max_batch_delay_ms=50,
        preferred_batch_size=PREFERRED,
    ),
}

app = create_app({"ENDPOINTS": ENDPOINTS})
