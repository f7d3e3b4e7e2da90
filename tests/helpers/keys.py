"""API keys for the tests: two keys, the header that carries one, the real stack with a key file."""

import contextlib
import os
from pathlib import Path

from deploy.localstack import Stack

KEY = "k3y-0f-the-first-team"
OTHER_KEY = "second-team-key"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@contextlib.contextmanager
def keyed_stack(keys: Path, uwsgi_args: tuple[str, ...] = ()):
    """The real stack with the key file keys (KEY in it), given to uWSGI as the service gets it:
    in its environment; uwsgi_args as Stack takes them (the app to serve). Yields the stack; its
    clients (127.0.0.1) are exempt from the limits."""
    keys.write_text(KEY + "\n")
    before = os.environ.get("MODELSERVER_API_KEYS_FILE")
    os.environ["MODELSERVER_API_KEYS_FILE"] = str(keys)
    try:
        stack = Stack(uwsgi_args=uwsgi_args, exempt=("127.0.0.1",))  # load from one address
        stack.start()
    finally:
        if before is None:
            del os.environ["MODELSERVER_API_KEYS_FILE"]
        else:
            os.environ["MODELSERVER_API_KEYS_FILE"] = before
    try:
        yield stack
    finally:
        stack.stop()
