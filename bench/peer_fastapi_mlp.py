"""The FastAPI peer serving the bench's MLP (bench/mlp.py) without batching: one call a request.

As bench/peer_fastapi.py: `async def` (CPU-bound, it runs on the event loop; a thread pool would
only add a hop), Pydantic types in and out; the model is built at import, once per worker.
"""

import mlp
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
MODEL = mlp.load_mlp()


class Item(BaseModel):
    x: list[float]


class Result(BaseModel):
    result: list[float]


@app.post("/mlp")
async def predict(item: Item) -> Result:
    [answer] = mlp.mlp(MODEL, [item.x])
    return Result(result=answer)


@app.get("/readyz")
async def ready() -> dict:
    return {"status": "ready"}
