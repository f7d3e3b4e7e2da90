"""The FastAPI peer's app: GET /pisqrt?a=25 in FastAPI's fastest documented idiomatic form.

An `async def` endpoint (run on the event loop, no thread-pool hop) with a Pydantic return type:
since FastAPI 0.130 the answer is then serialized straight to JSON bytes by Pydantic, in Rust,
which FastAPI's docs (Custom Response, Response Model) name as faster than returning a
JSONResponse, and which made ORJSONResponse deprecated. FastAPI validates the query parameter.
"""

from fastapi import FastAPI
from pydantic import BaseModel

import algo

app = FastAPI()


class Result(BaseModel):
    result: float


@app.get("/pisqrt")
async def pisqrt(a: float) -> Result:
    return Result(result=algo.pi_sqrt(a))
