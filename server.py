"""The app: the registry's endpoints as Flask routes, with probes, metrics, keys and the docs.

Each part of the work lives in its own module of the modelserver package; this file puts them
together. Every 4xx/5xx leaves through modelserver.answers.http_error as {"message": "..."}.
"""

import argparse
import json
import logging
from collections.abc import Callable

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from modelserver import (
    answers,
    batching,
    cors,
    deadline,
    keys,
    loading,
    memoryguard,
    metrics,
    openapi,
    requestids,
    streaming,
)
from modelserver.arguments import json_body, json_rows, query_value, refuse_body
from modelserver.calls import call_timed, model_of
from modelserver.endpoints import Endpoint, Signature, signature_of
from modelserver.lean import App
from modelserver.limits import MAX_BODY_BYTES
from modelserver.uploads import upload_rows

# Every route answers unversioned and under /v1, so clients can pin the contract they wrote for.
PREFIXES = ("", "/v1")

# The service's own GET routes, which read no body (the page and /docs are nginx's files).
SERVICE_VIEWS = frozenset({"openapi", "healthz", "readyz", "metrics"})


def create_app(config: dict | None = None) -> Flask:
    """Build the app; config overrides Flask settings (tests pass {"TESTING": True}).

    config["ENDPOINTS"] replaces registry.ENDPOINTS, the functions to serve.
    """
    app = App(__name__)
    app.logger.setLevel(logging.INFO)  # which models loaded, where, in how long
    # The same body cap as nginx's client_max_body_size, for whatever reaches Flask another way.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config.from_mapping(config or {})
    if "ENDPOINTS" not in app.config:  # the registry's models load only when they are served
        import registry

        app.config["ENDPOINTS"] = registry.ENDPOINTS
    entries: dict[str, Callable | Endpoint] = app.config["ENDPOINTS"]
    signatures = [signature_of(name, entry) for name, entry in entries.items()]
    batching.warn_without_threads(app.logger, signatures)
    loaders = loading.loaders_of(entries)
    models = loading.load_models(app, loaders)
    app.extensions["models"] = models
    # Counts and times every request, serves /metrics; log lines name their request's id.
    metrics.instrument(app, sorted(loaders), models)
    requestids.log_request_ids()
    for sig in signatures:
        view = endpoint_view(sig)
        methods = ["GET", "POST"] if sig.takes_query else ["POST"]
        for prefix in PREFIXES:
            app.add_url_rule(f"{prefix}/{sig.name}", sig.name, view, methods=methods)
    # The browser page and the API's docs; behind nginx, nginx serves them from disk.
    app.add_url_rule("/", "page", lambda: app.send_static_file("index.html"))
    app.add_url_rule("/docs", "docs", lambda: app.send_static_file("docs.html"))
    cors.allow_origins(app, app.config.get("CORS_ORIGINS", cors.CORS_ORIGINS))
    document = (json.dumps(openapi.openapi(signatures), indent=1) + "\n").encode()
    app.add_url_rule(
        "/openapi.json", "openapi", lambda: Response(document, mimetype=answers.JSON_TYPE)
    )
    app.add_url_rule("/healthz", "healthz", lambda: answers.json_response({"status": "ok"}))
    app.add_url_rule("/readyz", "readyz", lambda: loading.readiness(sorted(loaders), models))
    # After the rules above are added, the service's own views among them (/metrics: unless
    # turned off) refuse a body.
    for name in SERVICE_VIEWS.intersection(app.view_functions):
        app.view_functions[name] = bodiless(app.view_functions[name])
    app.register_error_handler(HTTPException, answers.http_error)
    keys.require_keys(
        app,
        app.config.get("API_KEYS_FILE", keys.API_KEYS_FILE),
        frozenset(sig.name for sig in signatures),
    )
    deadline.stop_requests_at_the_deadline(app)
    memoryguard.guard()
    return app


def bodiless(view: Callable[[], Response]) -> Callable[[], Response]:
    """A view of the service's own (a probe, the document), which reads no body: one sent
    with the request would go unread, so it is refused."""

    def checked() -> Response:
        refuse_body(request.environ, "send none")
        return view()

    return checked


def endpoint_view(sig: Signature) -> Callable[[], Response]:
    """The view of one endpoint: arguments from the request, the call, the result as JSON."""

    def view() -> Response:
        prefix = () if sig.model is None else (model_of(sig),)
        if request.method == "GET":
            refuse_body(request.environ)
            rows, batch = [[query_value(param) for param in sig.params]], False
        elif sig.takes_uploads:
            rows, batch = upload_rows(sig)
        else:
            rows, batch = json_rows(sig, json_body())
        if sig.streams:  # a generator: its items as they come (modelserver.streaming)
            return streaming.stream_response(sig, prefix, rows, batch)
        return answers.result_response(sig, call_timed(sig, prefix, rows, batch))

    return view


def main(argv: list[str] | None = None) -> None:
    """Run on Flask's development server: for a laptop, never for production (see README)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=5000, help="port (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="reloader and debugger; never public")
    args = parser.parse_args(argv)
    create_app().run(host=args.host, port=args.port, debug=args.debug)


if __name__ == "__main__":
    main()
