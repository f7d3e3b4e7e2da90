"""The LitServe peer: the bench's MLP (bench/mlp.py) with LitServe's own batching.

The same knobs as ours (bench/mlp.py): max_batch_size 32, batch_timeout 5 ms; 2 inference workers
(workers_per_device, the CPU's "device"), as ours has 2 uWSGI workers; one API server (uvicorn)
in front of them, LitServe's default for that many. The same request and answer:
POST /mlp {"x": [16 numbers]} -> {"result": [4 numbers]}.
    python peer_litserve.py PORT
"""

import sys

import litserve as ls
import mlp
import numpy as np

WORKERS = 2


class MLPAPI(ls.LitAPI):
    def setup(self, device):
        self.model = mlp.load_mlp()

    def decode_request(self, request):
        return request["x"]

    def batch(self, inputs):
        return np.array(inputs, dtype=np.float32)

    def predict(self, x):
        return mlp.forward(self.model, x)

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return {"result": output.tolist()}


if __name__ == "__main__":
    api = MLPAPI(
        max_batch_size=mlp.MAX_BATCH_SIZE,
        batch_timeout=mlp.MAX_BATCH_DELAY_MS / 1000,
        api_path="/mlp",
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=WORKERS, timeout=30)
    server.run(
        host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False, log_level="warning"
    )
