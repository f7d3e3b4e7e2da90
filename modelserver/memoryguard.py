"""The memory guard: a worker whose resident memory passes its limit is replaced, gracefully."""

import os
import time
from collections.abc import Callable

from modelserver.answers import recycle_this_worker

# The limit, in MB, from uwsgi.ini ($MODELSERVER_MAX_RSS_MB); 0 or unset: no guard.
MAX_RSS_MB = int(os.environ.get("MODELSERVER_MAX_RSS_MB", "0") or 0)
# Memory grows over many requests, so a look once a second is soon enough, and costs nothing
# per request: uWSGI's reload-on-rss reads /proc after every one.
INTERVAL_SECONDS = 1.0
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident memory, from /proc/self/statm (its second field, in pages)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


def guarded(wsgi_app: Callable, max_rss_mb: int = MAX_RSS_MB) -> Callable:
    """wsgi_app, asking uWSGI to replace this worker once its memory passes max_rss_mb: the
    request being served is answered first (SIGHUP: finish, exit, respawn from the master)."""
    if max_rss_mb <= 0:
        return wsgi_app
    limit = max_rss_mb * 1024 * 1024
    next_look = [0.0]

    def app(environ: dict, start_response: Callable):
        now = time.monotonic()
        if now >= next_look[0]:
            next_look[0] = now + INTERVAL_SECONDS
            if rss_bytes() > limit:
                recycle_this_worker()
        return wsgi_app(environ, start_response)

    return app
