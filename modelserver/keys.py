"""API keys: read from a file at load time, required on every call of a served function."""

import hashlib
import hmac
import logging
import os
from pathlib import Path

from flask import Flask, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

# API keys: a file of one key per line, named by $MODELSERVER_API_KEYS_FILE. When it holds any,
# every call of a served function needs "Authorization: Bearer <key>"; the page, /docs, the
# OpenAPI document and the probes (/healthz, /readyz) stay open. Unset, or an empty file (as
# deploy/install.sh creates it): no key is needed. The file is read when the app loads (in the
# uWSGI master), so a graceful reload (systemctl reload) takes a changed file into use without
# dropping a request.
API_KEYS_FILE = os.environ.get("MODELSERVER_API_KEYS_FILE", "")

# The keys in use, as SHA-256 digests, in the master's environment: uWSGI re-executes the
# master for a graceful reload and the environment goes along, so a reload that cannot read the
# file keeps these instead of leaving the service without an app. Digests, not the keys: the
# environment of a process is easier to read than the file.
DIGESTS_ENV = "MODELSERVER_API_KEY_DIGESTS"


class KeyFileError(Exception):
    """A key file that is configured but gives no key to check: the service must not start."""


def require_keys(app: Flask, path: str, functions: frozenset[str]) -> None:
    """Make every call of the named functions need one of the keys in the file at path."""
    digests = load_digests(path, app.logger)
    if digests:  # none by default: then no request pays for the check
        app.before_request(lambda: require_api_key(digests, functions))


def load_digests(path: str, logger: logging.Logger) -> tuple[bytes, ...]:
    """The digests of the keys in the file at path; on a graceful reload that cannot read it,
    those read at the last load (and an error logged), so the service goes on as it was."""
    try:
        digests = tuple(hashlib.sha256(key).digest() for key in read_api_keys(path))
    except (OSError, UnicodeDecodeError, KeyFileError) as error:
        kept = os.environ.get(DIGESTS_ENV)
        if os.environ.get("UWSGI_RELOADS", "0") == "0" or kept is None:
            if kept is None and nothing_mounted(Path(path)):
                # At a first start, an optional Secret that does not exist: meant, or a
                # Secret misnamed, so it is said at every start.
                logger.warning(
                    "API keys: %s does not exist and its directory is empty (an optional "
                    "Secret that was not created?); every call is answered without a key",
                    path,
                )
                return ()
            raise  # at a start: serving openly by mistake is worse than not serving
        digests = tuple(bytes.fromhex(digest) for digest in kept.split(",") if digest)
        logger.error(
            "API keys: could not read %s (%s); still serving with the %d key(s) read before",
            path,
            error,
            len(digests),
        )
        return digests
    if path and not digests:  # the installed default; or keys removed by an update: say so
        logger.warning("API keys: %s holds no key; every call is answered without one", path)
    os.environ[DIGESTS_ENV] = ",".join(digest.hex() for digest in digests)
    return digests


def read_api_keys(path: str) -> tuple[bytes, ...]:
    """The keys in the file at path, one a line (blank lines and # comments skipped, however
    indented); none without a path, or from a file with nothing in it but blank lines (the
    installed default). A path that cannot be read, or a file of comments and no key (keys
    meant, all commented out), stops the start: serving openly by mistake is worse than not
    serving."""
    if not path:
        return ()
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise KeyFileError(
            f"the API key file {path} ($MODELSERVER_API_KEYS_FILE) cannot be read: "
            f"{error.strerror or error}; create it (empty to serve without keys) or unset the "
            "variable"
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    keys = tuple(line.encode() for line in lines if line and not line.startswith("#"))
    if not keys and any(lines):
        raise KeyFileError(
            f"the API key file {path} holds comments but no key: add a key (one a line), or "
            "empty the file to serve without keys"
        )
    return keys


def require_api_key(digests: tuple[bytes, ...], functions: frozenset[str]) -> None:
    """A 401 for a call of a served function without one of the keys. The given key's digest
    is compared with every key's, in constant time, so the time taken says nothing about which
    key, or how much of one, was right."""
    if request.endpoint not in functions or request.method == "OPTIONS":  # CORS preflight
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise key_required("this API needs a key: send the header Authorization: Bearer <key>")
    given_digest = hashlib.sha256(given.strip().encode()).digest()
    matches = [hmac.compare_digest(given_digest, digest) for digest in digests]
    if not any(matches):
        raise key_required("the API key is not valid")  # the key itself is never echoed or logged


def key_required(message: str) -> Unauthorized:
    return Unauthorized(
        message, www_authenticate=WWWAuthenticate("Bearer", {"realm": "modelserver"})
    )


def nothing_mounted(path: Path) -> bool:
    """Whether path is missing from a directory that holds nothing: what Kubernetes mounts for
    an optional Secret that does not exist (its own "..data" entries aside), which at a first
    start means no key is needed. A file missing beside others is a wrong path, and stops the
    start; one that goes missing later is a reload's error (the keys read before stay)."""
    if path.exists() or not path.parent.is_dir():
        return False
    return all(entry.name.startswith("..") for entry in path.parent.iterdir())
