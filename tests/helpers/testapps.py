"""WSGI apps that only tests run under the project's uwsgi.ini (uwsgi ... --module testapps:NAME).

They live here, not in production code: `options` shows uWSGI's effective options as the running
server sees them; `flask_app` is the production app with test-only routes: a slow one, to see
what nginx's timeout and uWSGI's harakiri do to a stuck request, and one naming the worker.
"""

import json
import os
import re
import signal
import time

import typed_models
import usermodels
import uwsgi  # exists only inside a uWSGI process
from flask import request

from modelserver.endpoints import serve
from server import create_app


def respond(start_response, payload: dict) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(payload).encode()]


def text(value):
    """uwsgi.opt values are bytes, True for flags, or lists for repeated options."""
    if isinstance(value, list):
        return [text(item) for item in value]
    return value.decode() if isinstance(value, bytes) else value


def options(environ, start_response):
    """Every effective uWSGI option of this server, as JSON, and under "environ" the
    MODELSERVER_ variables the worker runs with (uwsgi.opt keeps only the last env line)."""
    found = {name: text(value) for name, value in uwsgi.opt.items()}
    found["environ"] = {k: v for k, v in os.environ.items() if k.startswith("MODELSERVER_")}
    return respond(start_response, found)


def slow_route() -> dict:
    """Sleep ?seconds=N in steps of 10 ms, like a model's Python between calls into C; with
    ?block=1 in one call with the harakiri signal blocked, like code stuck in C; with ?gil=1,
    for ever in C holding the GIL (a regular expression that backtracks without end)."""
    seconds = float(request.args.get("seconds", "0"))
    if request.args.get("gil"):
        re.fullmatch(r"(a|aa)+", "a" * 100 + "b")
    elif request.args.get("block"):
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGSYS])
        time.sleep(seconds)
    else:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(0.01, max(0.0, end - time.monotonic())))
    return {"slept": seconds, "pid": os.getpid()}


def pid_route() -> dict:
    return {"pid": os.getpid()}


HELD: list[bytes] = []


def grow_route() -> dict:
    """Hold ?mb=N more megabytes in this worker, as a leaking model would; every page touched,
    so it counts in the worker's resident memory."""
    HELD.append(b"\x01" * (int(request.args["mb"]) * 1024 * 1024))
    return {"pid": os.getpid()}


def load_ballast() -> bytes:
    """A model of $TEST_MODEL_MB megabytes, every page touched, as a large one loaded in each
    worker (load="worker") is."""
    return b"\x01" * (int(os.environ["TEST_MODEL_MB"]) * 1024 * 1024)


def ballast_mb(model: bytes) -> int:
    """The worker's model's size in MB."""
    return len(model) // 2**20


def with_test_routes(app):
    """app plus routes that only tests have: a slow one, one naming the worker, and one that
    makes the worker hold memory."""
    app.add_url_rule("/slow", "slow", slow_route)
    app.add_url_rule("/pid", "pid", pid_route)
    app.add_url_rule("/grow", "grow", grow_route)
    return app


# Each app by its name, built only when uWSGI serves it (--module testapps:NAME): an app loads its
# models and sets the model metrics at creation, and a second app built in the same process
# would empty the metrics directory the first one wrote.
APPS = {
    # The production app, serving registry.py, with the test routes.
    "flask_app": lambda: with_test_routes(create_app()),
    # A user's healthy functions (usermodels.SERVED) with the test routes: what the framework's
    # stack tests serve, so that they hold with the demos removed.
    "served_app": lambda: with_test_routes(create_app({"ENDPOINTS": usermodels.SERVED})),
    # A user's functions instead of the project's demos: what the framework's tests serve.
    "user_app": lambda: create_app({"ENDPOINTS": usermodels.ENDPOINTS}),
    # A model of $TEST_MODEL_MB loaded in each worker, with the test routes: the memory guard's.
    "worker_model_app": lambda: with_test_routes(
        create_app({"ENDPOINTS": {"ballast": serve(ballast_mb, model=load_ballast, load="worker")}})
    ),
    # Functions of every type the framework takes and gives: what the type tests serve.
    "typed_app": lambda: create_app({"ENDPOINTS": typed_models.ENDPOINTS}),
}
# uWSGI looks the app up in this module's namespace, so the one asked for is put there.
_asked = text(uwsgi.opt.get("module", []))
for _module in _asked if isinstance(_asked, list) else [_asked]:
    _, _, _name = _module.partition("testapps:")
    if _name in APPS:
        globals()[_name] = APPS[_name]()
