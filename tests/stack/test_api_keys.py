"""Optional API keys: a key file with keys makes every call of a served function need one;
the probes, the page and the documents stay open; a graceful reload takes a changed file in."""

import http.client
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import assert_json_error
from deploy.localstack import Stack
from server import create_app

KEY = "k3y-0f-the-first-team"
OTHER_KEY = "second-team-key"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed_client(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"# the first team\n{KEY}\n\n")
    return create_app({"TESTING": True, "API_KEYS_FILE": str(keys)}).test_client()


# (name, headers, status, words in the message)
REFUSED = [
    ("no header", {}, "needs a key", "Authorization: Bearer"),
    ("wrong key", bearer("guess"), "not valid"),
    ("a prefix of the key", bearer(KEY[:-1]), "not valid"),
    ("another scheme", {"Authorization": f"Basic {KEY}"}, "needs a key"),
    ("empty bearer", {"Authorization": "Bearer "}, "needs a key"),
]


@pytest.mark.parametrize(
    ("headers", "words"), [(c[1], c[2:]) for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_a_call_without_the_key_is_a_json_401(keyed_client, headers, words):
    response = keyed_client.get("/pisqrt?a=25", headers=headers)
    assert_json_error(
        response.status_code,
        {k.lower(): v for k, v in response.headers.items()},
        response.data,
        401,
        *words,
    )
    assert response.headers["WWW-Authenticate"] == "Bearer realm=modelserver"


def test_the_key_opens_every_function_and_the_rest_is_open_without(keyed_client):
    assert keyed_client.get("/pisqrt?a=25", headers=bearer(KEY)).status_code == 200
    response = keyed_client.post("/v1/pisqrt", json={"a": 25}, headers=bearer(KEY))
    assert response.status_code == 200, response.data
    assert response.json == {"result": 8.86226925452758}
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/"):
        with keyed_client.get(path) as response:  # the page is a file: closed after
            assert response.status_code == 200, path


def test_without_a_key_file_no_key_is_needed(tmp_path):
    (tmp_path / "empty").write_text("\n")
    for keys in ("", str(tmp_path / "empty")):
        client = create_app({"TESTING": True, "API_KEYS_FILE": keys}).test_client()
        assert client.get("/pisqrt?a=25").status_code == 200


def test_an_unreadable_key_file_stops_the_start(tmp_path):
    with pytest.raises(FileNotFoundError):
        create_app({"TESTING": True, "API_KEYS_FILE": str(tmp_path / "missing")})


def test_the_document_declares_the_bearer_key(keyed_client):
    response = keyed_client.get("/openapi.json")
    assert response.status_code == 200, response.data
    document = response.json
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert document["security"] == [{"apiKey": []}, {}]


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory):
    """The real stack with a key file, given to uWSGI as the service gets it: in its environment."""
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(KEY + "\n")
    before = os.environ.get("MODELSERVER_API_KEYS_FILE")
    os.environ["MODELSERVER_API_KEYS_FILE"] = str(keys)
    try:
        stack = Stack(exempt=("127.0.0.1",))  # the load below comes from one address
        stack.start()
    finally:
        if before is None:
            del os.environ["MODELSERVER_API_KEYS_FILE"]
        else:
            os.environ["MODELSERVER_API_KEYS_FILE"] = before
    try:
        yield stack, keys
    finally:
        stack.stop()


def test_through_the_stack_no_key_401_right_key_200_probes_open(keyed_stack):
    stack, _ = keyed_stack
    assert_json_error(*stack.request("GET", "/pisqrt?a=25"), 401, "needs a key")
    status, headers, body = stack.request("GET", "/pisqrt?a=25", headers=bearer("wrong-one"))
    assert_json_error(status, headers, body, 401, "not valid")
    assert headers["www-authenticate"].startswith("Bearer")
    status, _, body = stack.request("GET", "/pisqrt?a=25", headers=bearer(KEY))
    assert status == 200, body
    assert stack.request("GET", "/healthz")[0] == 200
    assert stack.request("GET", "/readyz")[0] == 200
    logs = (
        "".join(log.read_text(errors="replace") for log in Path(stack.dir).glob("*.log*"))
        + Path(stack.dir, "nginx-access.json").read_text()
    )
    assert "/pisqrt?a=25" in logs  # the calls above are in the logs read
    assert "wrong-one" not in logs and KEY not in logs  # no key is ever logged


@pytest.fixture
def keyed_page(browser, keyed_stack):
    """A browser page on the keyed stack, and its URL."""
    context = browser.new_context()
    try:
        yield context.new_page(), keyed_stack[0].url
    finally:
        context.close()


def test_the_page_sends_the_key_typed_in_its_field(keyed_page):
    page, url = keyed_page
    page.goto(f"{url}/")
    page.fill("#a", "25")
    page.click("#compute")
    expect(page.locator("#pisqrt-error")).to_contain_text("needs a key")
    page.fill("#api-key", KEY)
    page.click("#compute")
    expect(page.locator("#result")).to_have_text("8.86226925452758")
    expect(page.locator("#pisqrt-error")).to_have_text("")


def test_the_docs_offer_to_authorize(keyed_page):
    page, url = keyed_page
    page.goto(f"{url}/docs")
    expect(page.locator("button.authorize")).to_be_visible()


def calls_with_key(stack: Stack, key: str, seconds: float) -> Counter:
    """GET /pisqrt with key, one after another for `seconds`: the statuses seen."""
    seen = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
        try:
            conn.request("GET", "/pisqrt?a=25", headers=bearer(key))
            seen[conn.getresponse().status] += 1
        except OSError as error:
            seen[type(error).__name__] += 1
        finally:
            conn.close()
    return seen


def test_a_new_key_takes_effect_with_a_reload_and_no_request_fails(keyed_stack, figure):
    stack, keys = keyed_stack
    assert stack.request("GET", "/pisqrt?a=25", headers=bearer(OTHER_KEY))[0] == 401
    results = []
    clients = [
        threading.Thread(target=lambda: results.append(calls_with_key(stack, KEY, 4)))
        for _ in range(4)
    ]
    for client in clients:
        client.start()
    time.sleep(1)
    keys.write_text(f"{KEY}\n{OTHER_KEY}\n")
    Path(stack.socket_path + ".fifo").write_text("r")  # what systemctl reload does
    for client in clients:
        client.join(30)
    seen = sum(results, Counter())
    figure("calls with the old key across a reload that adds a key", dict(seen))
    assert set(seen) == {200}
    assert sum(seen.values()) > 100
    deadline = time.monotonic() + 10
    while stack.request("GET", "/pisqrt?a=25", headers=bearer(OTHER_KEY))[0] != 200:
        assert time.monotonic() < deadline, "the new key was not taken in by the reload"
        time.sleep(0.1)
