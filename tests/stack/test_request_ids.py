"""One request's id, followed through the response, nginx's JSON access log and uWSGI's log."""

import json
import re
from pathlib import Path

import pytest

from deploy.localstack import Stack
from helpers import assert_json_error, wait_for

NGINX_ID = re.compile(r"[0-9a-f]{32}")  # nginx's $request_id


def logged(path: Path, needle: str, at_least: int = 1, timeout: float = 5) -> list[str]:
    """The lines of a log that contain needle, waiting (bounded) until there are at_least of
    them: the writers flush late, and uWSGI writes its request line after the app's lines."""

    def enough() -> list[str] | None:
        lines = [line for line in path.read_text().splitlines() if needle in line]
        return lines if len(lines) >= at_least else None

    return wait_for(enough, timeout, message=f"fewer than {at_least} lines with {needle} in {path}")


def access_entry(stack: Stack, request_id: str) -> dict:
    lines = logged(Path(stack.dir, "nginx-access.json"), request_id)
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def test_a_failing_request_is_followed_through_all_three_layers(stack):
    status, headers, body = stack.request("GET", "/norm?values=x")
    assert_json_error(status, headers, body, 400, "'values'")
    request_id = headers["x-request-id"]
    assert NGINX_ID.fullmatch(request_id), request_id
    entry = access_entry(stack, request_id)
    assert entry["status"] == 400
    assert entry["uri"] == "/norm?values=x"
    assert entry["method"] == "GET"
    assert isinstance(entry["request_time"], float)
    assert re.fullmatch(r"\d+\.\d{3}", entry["upstream_time"]), entry
    (line,) = logged(Path(stack.dir, "uwsgi.log"), f"request_id={request_id}")
    assert "GET /norm?values=x" in line and "400)" in line, line


def test_the_apps_own_log_lines_name_the_request(user_stack):
    # A function with a bug: the app logs it with its traceback, the line naming the request.
    status, headers, body = user_stack.request("GET", "/broken?a=1")
    assert_json_error(status, headers, body, 500, "broken failed")
    request_id = headers["x-request-id"]
    log = Path(user_stack.dir, "uwsgi.log")
    app_lines = logged(log, f"request_id={request_id} in calls")
    assert len(app_lines) == 1 and "ERROR" in app_lines[0], app_lines
    assert "broken failed" in app_lines[0]
    assert len(logged(log, f"request_id={request_id}", at_least=2)) == 2  # and uWSGI's line
    assert access_entry(user_stack, request_id)["status"] == 500


def test_a_sane_client_id_is_logged_beside_nginx_own(stack):
    # The id is nginx's, unique to the request; a client's sane one is logged with it.
    client_id = "checkout-7f3a.41_b"
    status, headers, body = stack.request(
        "GET", "/norm?values=4", headers={"X-Request-Id": client_id}
    )
    assert status == 200, body
    assert NGINX_ID.fullmatch(headers["x-request-id"]), headers
    assert access_entry(stack, headers["x-request-id"])["client_request_id"] == client_id


@pytest.mark.parametrize(
    "client_id",
    ["short", "x" * 65, "has space in it", 'quote"and{json}', "semi;colon;id;"],
)
def test_any_other_client_id_is_replaced_by_nginx(stack, client_id):
    status, headers, body = stack.request(
        "GET", "/norm?values=x", headers={"X-Request-Id": client_id}
    )
    assert status == 400, body
    assert NGINX_ID.fullmatch(headers["x-request-id"]), headers
    access_entry(stack, headers["x-request-id"])


def test_errors_nginx_answers_itself_carry_the_id(stack):
    status, headers, body = stack.request("GET", "/static/../../etc/passwd")
    assert status in (400, 404), body
    assert NGINX_ID.fullmatch(headers["x-request-id"]), headers
