"""Optional API keys through the real stack: no key 401, the right key 200, the probes open,
no key in any log; a graceful reload takes a changed key file in while no request fails."""

import http.client
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from deploy.localstack import Stack
from helpers import SERVED_APP, assert_json_error, fifo_reload, wait_for
from helpers.keys import KEY, OTHER_KEY, bearer, keyed_stack

CALL = "/norm?values=3&values=4"  # a user's function (usermodels.SERVED)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """The keyed stack, serving a user's functions, and its key file."""
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    with keyed_stack(keys, SERVED_APP) as stack:
        yield stack, keys


def test_through_the_stack_no_key_401_right_key_200_probes_open(keyed):
    stack, _ = keyed
    assert_json_error(*stack.request("GET", CALL), 401, "needs a key")
    status, headers, body = stack.request("GET", CALL, headers=bearer("wrong-one"))
    assert_json_error(status, headers, body, 401, "not valid")
    assert headers["www-authenticate"].startswith("Bearer")
    status, _, body = stack.request("GET", CALL, headers=bearer(KEY))
    assert status == 200, body
    assert stack.request("GET", "/healthz")[0] == 200
    assert stack.request("GET", "/readyz")[0] == 200
    logs = (
        "".join(log.read_text(errors="replace") for log in Path(stack.dir).glob("*.log*"))
        + Path(stack.dir, "nginx-access.json").read_text()
    )
    assert CALL in logs  # the calls above are in the logs read
    assert "wrong-one" not in logs and KEY not in logs  # no key is ever logged


def calls_with_key(stack: Stack, key: str, seconds: float) -> Counter:
    """GET /norm with key, one after another for `seconds`: the statuses seen."""
    seen = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
        try:
            conn.request("GET", CALL, headers=bearer(key))
            seen[conn.getresponse().status] += 1
        except OSError as error:
            seen[type(error).__name__] += 1
        finally:
            conn.close()
    return seen


def test_a_new_key_takes_effect_with_a_reload_and_no_request_fails(keyed, figure):
    stack, keys = keyed
    assert stack.request("GET", CALL, headers=bearer(OTHER_KEY))[0] == 401
    results = []
    clients = [
        threading.Thread(target=lambda: results.append(calls_with_key(stack, KEY, 4)))
        for _ in range(4)
    ]
    for client in clients:
        client.start()
    time.sleep(1)
    keys.write_text(f"{KEY}\n{OTHER_KEY}\n")
    fifo_reload(stack)
    for client in clients:
        client.join(30)
    seen = sum(results, Counter())
    figure("calls with the old key across a reload that adds a key", dict(seen))
    assert set(seen) == {200}
    assert sum(seen.values()) > 100
    wait_for(
        lambda: stack.request("GET", CALL, headers=bearer(OTHER_KEY))[0] == 200,
        10,
        interval=0.1,
        message="the new key was not taken in by the reload",
    )
