"""API keys: read from a file at load time, required on every call of a served function."""

import hmac
import os
from pathlib import Path

from flask import Flask, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

# API keys: a file of one key per line, named by $MODELSERVER_API_KEYS_FILE. When it holds any,
# every call of a served function needs "Authorization: Bearer <key>"; the page, /docs, the
# OpenAPI document and the probes (/healthz, /readyz) stay open. Unset, or an empty file: no key
# is needed. The file is read when the app loads (in the uWSGI master), so a graceful reload
# (systemctl reload) takes a changed file into use without dropping a request.
API_KEYS_FILE = os.environ.get("MODELSERVER_API_KEYS_FILE", "")


def require_keys(app: Flask, path: str, functions: frozenset[str]) -> None:
    """Make every call of the named functions need one of the keys in the file at path."""
    keys = read_api_keys(path)
    if keys:  # none by default: then no request pays for the check
        app.before_request(lambda: require_api_key(keys, functions))


def read_api_keys(path: str) -> tuple[bytes, ...]:
    """The keys in the file at path, one a line (blank lines and # comments skipped); none
    without a path. A path that cannot be read stops the start: serving openly by mistake is
    worse than not serving."""
    if not path:
        return ()
    lines = Path(path).read_text().splitlines()
    return tuple(
        line.strip().encode() for line in lines if line.strip() and not line.startswith("#")
    )


def require_api_key(keys: tuple[bytes, ...], functions: frozenset[str]) -> None:
    """A 401 for a call of a served function without one of the keys. Every key is compared, in
    constant time, so the time taken says nothing about how much of a key was right."""
    if request.endpoint not in functions or request.method == "OPTIONS":  # CORS preflight
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise key_required("this API needs a key: send the header Authorization: Bearer <key>")
    given_bytes = given.strip().encode()
    matches = [hmac.compare_digest(given_bytes, key) for key in keys]
    if not any(matches):
        raise key_required("the API key is not valid")  # the key itself is never echoed or logged


def key_required(message: str) -> Unauthorized:
    return Unauthorized(
        message, www_authenticate=WWWAuthenticate("Bearer", {"realm": "modelserver"})
    )
