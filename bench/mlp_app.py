"""Ours serving the bench's MLP (bench/mlp.py), registered as a user would in registry.py.

Batching is on for POST /mlp when the workers have threads (`--threads 32` or
$MODELSERVER_THREADS); without, the same endpoint is called once per request, as before. Its calls
are cut back to the preferred sizes, unless MLP_ANY_SIZE=1 (the bench's row of what they buy).
    uwsgi --ini uwsgi.ini --pythonpath bench --module mlp_app:app [--threads 32]
"""

import os

import mlp

from modelserver.endpoints import serve
from server import create_app

# The bench's row of what the preferred sizes buy sets MLP_ANY_SIZE=1.
PREFERRED = () if os.environ.get("MLP_ANY_SIZE") == "1" else mlp.PREFERRED_BATCH_SIZE

ENDPOINTS = {
    "mlp": serve(
        mlp.mlp,
        model=mlp.load_mlp,
        vectorized=True,
        max_batch_size=mlp.MAX_BATCH_SIZE,
        max_batch_delay_ms=mlp.MAX_BATCH_DELAY_MS,
        preferred_batch_size=PREFERRED,
    ),
}

app = create_app({"ENDPOINTS": ENDPOINTS})
