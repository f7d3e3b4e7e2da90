"""Cross-origin calls from the browser pages of allowed origins."""

import os
import re

from flask import Flask, Response, request

# Origins whose pages may call the API from a browser (CORS): a comma-separated list in
# $MODELSERVER_CORS_ORIGINS, "*" for any. Default: none; the page at / is on the same origin
# and needs no CORS.
CORS_ORIGINS = os.environ.get("MODELSERVER_CORS_ORIGINS", "")
# What a browser sends as Origin: a scheme, a host and maybe a port, in lower case, with no
# default port; never a path (a trailing slash), a user, or a wildcard, so an entry with one
# would never match.
ORIGIN = re.compile(r"([a-z][a-z0-9+.-]*)://([^/\s?#@*]+)", re.IGNORECASE)
DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def allow_origins(app: Flask, origins_text: str) -> None:
    """CORS headers on the app's answers to the pages of the comma-separated origins."""
    entries = [item.strip() for item in origins_text.split(",")]
    origins = frozenset(entry if entry == "*" else origin_of(entry) for entry in entries if entry)
    if origins:  # none by default: then no request pays for CORS
        app.after_request(lambda response: allow_cross_origin(response, origins))


def origin_of(entry: str) -> str:
    """entry as a browser sends it in Origin (https://APP.example.com:443: https://app.example.com);
    ValueError naming it if no browser sends it, or if any page can."""
    if entry.lower() == "null":
        raise ValueError(
            "MODELSERVER_CORS_ORIGINS: 'null' is the origin of sandboxed pages and local files, "
            "which any page can make: it cannot be allowed; serve the page from an origin"
        )
    found = ORIGIN.fullmatch(entry)
    if found is None:
        raise ValueError(
            f"MODELSERVER_CORS_ORIGINS: {entry!r} is not an origin: a browser sends "
            "scheme://host[:port], such as https://app.example.com, with no path, trailing "
            "slash, user or wildcard (list each origin, or * for any), so it would never match"
        )
    scheme, host = found[1].lower(), found[2].lower()
    default = DEFAULT_PORTS.get(scheme)
    if default is not None:
        host = host.removesuffix(default)
    return f"{scheme}://{host}"


def allow_cross_origin(response: Response, allowed: frozenset[str]) -> Response:
    """CORS headers for a browser on an allowed origin ("*": any); none for the others."""
    origin = request.headers.get("Origin")
    if origin and ("*" in allowed or origin in allowed):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        response.headers["Access-Control-Max-Age"] = "600"
        # A page on another origin may read the request's id, to quote it. (nginx's own errors,
        # its 429 among them, carry no CORS headers: such a page sees a network error.)
        response.headers["Access-Control-Expose-Headers"] = "X-Request-Id"
    response.headers.add("Vary", "Origin")  # the answer depends on Origin: caches keep them apart
    return response
