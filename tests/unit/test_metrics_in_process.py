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
