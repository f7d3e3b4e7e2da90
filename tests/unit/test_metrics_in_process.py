"""/metrics without the stack: the app counts its requests in its own process."""

from prometheus_client.parser import text_string_to_metric_families

from helpers import usermodels
from server import create_app


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_without_the_stack_metrics_count_in_the_process():
    client = create_app({"TESTING": True, "ENDPOINTS": usermodels.SERVED}).test_client()
    assert client.get("/norm?values=4").status_code == 200
    assert client.get("/norm?values=x").status_code == 400
    assert client.get("/nowhere").status_code == 404
    assert client.open("/norm", method="BREW").status_code == 405
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }
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
