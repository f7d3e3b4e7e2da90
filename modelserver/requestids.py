"""Request ids in the app's log lines: each line names the request it is about."""

import logging

import flask.logging
from flask import has_request_context, request

# nginx passes the request's id: its own $request_id, or the load balancer's X-Request-Id.
REQUEST_ID = "MODELSERVER_REQUEST_ID"


class RequestIdFilter(logging.Filter):
    """Gives each log record the id of the request it is about ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = request.environ.get(REQUEST_ID, "-")
        elif not hasattr(record, "request_id"):  # given (extra=) for a stream sent after it
            record.request_id = "-"
        return True


LOG_FORMAT = "[%(asctime)s] %(levelname)s request_id=%(request_id)s in %(module)s: %(message)s"


def log_request_ids() -> None:
    """Flask's log handler (stderr, which uWSGI logs) names the request of each line."""
    handler = flask.logging.default_handler
    if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
        handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
