"""The lean Flask app routes as Flask does: hosts bound the way Map.bind binds them, a host
it cannot encode a JSON 400, remembered hosts bounded, uploaded files still closed."""

import io

import pytest

from helpers import usermodels
from modelserver import lean
from server import create_app


@pytest.fixture()
def app():
    return create_app({"TESTING": True, "ENDPOINTS": usermodels.SERVED})


@pytest.mark.parametrize("host", ["localhost", "EXAMPLE.org:8080", "bücher.example", "[::1]:80"])
def test_the_server_name_is_map_binds(app, host):
    assert app.server_name(host) == app.url_map.bind(host).server_name


def test_a_host_that_cannot_be_encoded_is_a_json_400(app):
    response = app.test_client().get("/healthz", headers={"Host": "a" * 64 + ".example"})
    assert response.status_code == 400
    assert response.get_json()["message"].startswith(f"the Host header '{'a' * 64}.example'")
    assert "is not a host name" in response.get_json()["message"]


def test_remembered_hosts_are_bounded(app):
    client = app.test_client()
    for i in range(lean.MAX_HOSTS + 10):
        assert client.get("/healthz", headers={"Host": f"h{i}.example"}).status_code == 200
    assert 0 < len(app.server_names) <= lean.MAX_HOSTS


def test_uploaded_files_are_closed(app):
    upload = io.BytesIO(b"data")
    with app.test_request_context(
        "/healthz", method="POST", data={"f": (upload, "f.bin")}
    ) as context:
        files = context.request.files
        assert not files["f"].stream.closed
        context.request.close()
        assert files["f"].stream.closed


@pytest.mark.parametrize("path", ["/half", "/v1/half", "/healthz"])
def test_options_answers_the_allowed_methods_with_no_body(app, path):
    response = app.test_client().options(path)
    assert response.status_code == 204, response.data
    assert "Content-Type" not in response.headers
    assert response.data == b""
    assert {"GET", "OPTIONS"} <= set(response.headers["Allow"].split(", "))
