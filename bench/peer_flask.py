"""The gunicorn peer's app: GET /pisqrt?a=25 the way a Flask user would write it, same model.

Plain Flask as its tutorial shows it: the query argument converted by request.args.get(type=),
the dict returned as JSON by Flask itself. It checks less than server.py does, which can only
favour the peer.
"""

from flask import Flask, request

import algo

app = Flask(__name__)


@app.get("/pisqrt")
def pisqrt():
    a = request.args.get("a", type=float)
    if a is None:
        return {"message": "query parameter 'a' must be a number"}, 400
    return {"result": algo.pi_sqrt(a)}
