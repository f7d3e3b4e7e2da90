"""A synthetic large model served by the production wsgi.py, for tests/stack/test_memory.py.

Run under uWSGI (`--pythonpath tests/helpers --module bigmodel_app:app`): the model is built at
import, in the master, before wsgi.py creates the app and freezes the garbage collector, as a real
model loaded by create_app would be. MEMTEST_UNFREEZE=1 undoes the freeze: the control case.
"""

import gc
import os

import numpy as np

# 256 MB of weights (written, so resident) and a Python object graph of about 100 MB, the kind
# of vocabulary or config a real model carries: 400,000 entries, each a list (a container the
# collector keeps tracking; a tuple or dict of plain values it stops tracking) of an int, a float
# and a str.
WEIGHTS = np.full(32 * 2**20, 0.5)
GRAPH = {f"token-{i}": [i, float(i), f"value {i}"] for i in range(400_000)}

from wsgi import app  # noqa: E402  (after the model, as create_app would load it)

if os.environ.get("MEMTEST_UNFREEZE"):
    gc.unfreeze()


def big_route() -> dict:
    """Read a little of the model, then run a full collection, as a long-lived worker will."""
    answer = {"pid": os.getpid(), "weights": float(WEIGHTS[:: 2**16].sum()), "entries": len(GRAPH)}
    gc.collect()
    return answer


app.add_url_rule("/big", "big", big_route)
