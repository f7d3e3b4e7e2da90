"""The FastAPI peer's app: GET /pisqrt?a=25 and POST /predict in FastAPI's fastest idiomatic form.

`async def` endpoints (run on the event loop, no thread-pool hop) with Pydantic return types:
since FastAPI 0.130 the answer is then serialized straight to JSON bytes by Pydantic, in Rust,
which FastAPI's docs (Custom Response, Response Model) name as faster than returning a
JSONResponse, and which made ORJSONResponse deprecated. FastAPI validates the query parameter.
POST /predict runs the same function as ours, algo.predict_digits, on the raw image body; the
model is loaded at import, once per worker. Being CPU-bound, it runs on the event loop too: a
thread pool (`def`) would only add a hop and contend for the GIL with 2 workers on 2 cores.
"""

from fastapi import FastAPI, Request
from pydantic import BaseModel

import algo
import digits
from modelserver.images import decode_image

app = FastAPI()
MODEL = digits.load_model()


class Result(BaseModel):
    result: float


class Prediction(BaseModel):
    label: int
    probabilities: list[float]


@app.get("/pisqrt")
async def pisqrt(a: float) -> Result:
    return Result(result=algo.pi_sqrt(a))


class PredictionResult(BaseModel):
    result: Prediction


@app.post("/predict")
async def predict(request: Request) -> PredictionResult:
    image = decode_image(await request.body(), digits.DRAFT)  # as ours decodes it
    [answer] = algo.predict_digits(MODEL, [image])
    return PredictionResult(result=Prediction(**answer))
