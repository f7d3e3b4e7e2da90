"""/metrics without the stack: the app counts its requests in its own process."""

import inspect

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from helpers import usermodels
from server import create_app


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def samples_of(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def test_without_the_stack_metrics_count_in_the_process():
    client = create_app({"TESTING": True, "ENDPOINTS": usermodels.SERVED}).test_client()
    assert client.get("/norm?values=4").status_code == 200
    assert client.get("/norm?values=x").status_code == 400
    assert client.get("/nowhere").status_code == 404
    assert client.open("/norm", method="BREW").status_code == 405
    samples = samples_of(client)
    total = "modelserver_requests_total"
    assert value(samples, total, endpoint="norm", method="GET", status="200") == 1
    assert value(samples, total, endpoint="norm", method="GET", status="400") == 1
    # Answers no route matched, under no endpoint; a method token of no HTTP verb, as "other".
    assert value(samples, total, endpoint="none", method="GET", status="404") == 1
    assert value(samples, total, endpoint="none", method="other", status="405") == 1
    duration = "modelserver_request_duration_seconds_count"
    assert value(samples, duration, endpoint="norm") == 2
    # The function ran once: the 400 was the argument's, refused before the call.
    assert value(samples, "modelserver_model_duration_seconds_count", model="norm") == 1


def test_an_exception_no_handler_answers_is_a_counted_json_500():
    app = create_app({"ENDPOINTS": usermodels.SERVED})

    def boom():
        raise RuntimeError("a bug outside any model function")

    app.add_url_rule("/boom", "boom", boom)
    client = app.test_client()
    response = client.get("/boom")
    assert response.status_code == 500
    assert "message" in response.get_json()
    samples = samples_of(client)
    total = "modelserver_requests_total"
    assert value(samples, total, endpoint="boom", method="GET", status="500") == 1
    assert value(samples, "modelserver_request_duration_seconds_count", endpoint="boom") == 1


# Flask.wsgi_app as metrics.counted repeats it with the count inline (docstring left out). If a
# new Flask changes it, compare the two and bring counted() in line before changing this copy.
FLASK_WSGI_APP = """
        ctx = self.request_context(environ)
        error: BaseException | None = None
        try:
            try:
                ctx.push()
                response = self.full_dispatch_request()
            except Exception as e:
                error = e
                response = self.handle_exception(e)
            except:
                error = sys.exc_info()[1]
                raise
            return response(environ, start_response)
        finally:
            if "werkzeug.debug.preserve_context" in environ:
                environ["werkzeug.debug.preserve_context"](_cv_app.get())
                environ["werkzeug.debug.preserve_context"](_cv_request.get())

            if error is not None and self.should_ignore_error(error):
                error = None

            ctx.pop(error)
"""


def test_the_counted_entry_point_repeats_flasks_own():
    body = inspect.getsource(Flask.wsgi_app).split('"""')[2]  # after the docstring
    assert body.strip() == FLASK_WSGI_APP.strip()
