"""Cross-origin calls from the browser pages of allowed origins."""

import os
import re

from flask import Flask, Response, request

# Origins whose pages may call the API from a browser (CORS): a comma-separated list in
# $MODELSERVER_CORS_ORIGINS, "*" for any. Default: none; the page at / is on the same origin
# and needs no CORS.
CORS_ORIGINS = os.environ.get("MODELSERVER_CORS_ORIGINS", "")
# What a browser sends as Origin: a scheme, a host and maybe a port; never a path, so an
# entry with one (a trailing slash) would never match.
ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s?#]+", re.IGNORECASE)


def allow_origins(app: Flask, origins_text: str) -> None:
    """CORS headers on the app's answers to the pages of the comma-separated origins."""
    origins = frozenset(item.strip() for item in origins_text.split(",")) - {""}
    for origin in sorted(origins - {"*"}):
        if not ORIGIN.fullmatch(origin):
            raise ValueError(
                f"MODELSERVER_CORS_ORIGINS: {origin!r} is not an origin: a browser sends "
                "scheme://host[:port], such as https://app.example.com, with no path or "
                "trailing slash, so it would never match"
            )
    if origins:  # none by default: then no request pays for CORS
        app.after_request(lambda response: allow_cross_origin(response, origins))


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
