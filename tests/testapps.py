"""WSGI apps that only tests run under the project's uwsgi.ini (uwsgi ... --module testapps:NAME).

They live here, not in production code: `options` shows uWSGI's effective options as the running
server sees them; `slow` sleeps on request, to make nginx and uWSGI time out.
"""

import json
import time
from urllib.parse import parse_qs

import uwsgi  # exists only inside a uWSGI process


def respond(start_response, payload: dict) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(payload).encode()]


def text(value):
    """uwsgi.opt values are bytes, True for flags, or lists for repeated options."""
    if isinstance(value, list):
        return [text(item) for item in value]
    return value.decode() if isinstance(value, bytes) else value


def options(environ, start_response):
    """Every effective uWSGI option of this server, as JSON."""
    return respond(start_response, {name: text(value) for name, value in uwsgi.opt.items()})


def slow(environ, start_response):
    """Sleep ?sleep=SECONDS before answering."""
    seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("sleep", ["0"])[0])
    time.sleep(seconds)
    return respond(start_response, {"slept": seconds})
