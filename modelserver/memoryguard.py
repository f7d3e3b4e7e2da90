"""The memory guard: a worker whose own memory passes its limit is replaced, gracefully.

The limit counts what a worker holds beyond its own models (load="worker"): a model larger than
the limit would otherwise have every worker replaced as soon as it loads, again and again."""

import logging
import os

from modelserver.deadline import recycle_this_worker

# The limit, in MB, from uwsgi.ini ($MODELSERVER_MAX_RSS_MB); 0 or unset: no guard.
MAX_RSS_MB = int(os.environ.get("MODELSERVER_MAX_RSS_MB", "0") or 0)
# Memory grows over many requests, so a look once a second is soon enough. It is made on the
# master's clock, between requests, so a request costs nothing: uWSGI's reload-on-rss reads
# /proc after every one, and a check in the app would run on every request to see the time.
INTERVAL_SECONDS = 1  # whole seconds: uWSGI's timers take no fractions
LOG = logging.getLogger(__name__)
# This worker's own memory once its own models loaded (load_in_worker), those models and what
# the worker held then: where the limit counts from. 0 in a worker whose models are all the
# master's. Memory a model takes later, at its first call, counts against the limit.
BASELINE_BYTES = 0


def own_bytes() -> int:
    """This process's own memory: its private pages, from /proc/self/smaps_rollup. What it shares
    with the master (a model loaded before the fork) is not its own: RSS would count that in
    every worker, and a model of a few hundred MB would put every worker past the limit."""
    kilobytes = 0
    with open("/proc/self/smaps_rollup", "rb") as rollup:
        for line in rollup:
            if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                kilobytes += int(line.split()[1])
    return kilobytes * 1024


def guard(max_rss_mb: int = MAX_RSS_MB) -> None:
    """Under uWSGI, in the master before the workers fork: every worker looks at its own memory
    once a second and, once it is past max_rss_mb, asks uWSGI to replace it (SIGHUP: the
    request being served is answered first, then the master forks its successor). The master's
    timer raises a uWSGI signal that each worker handles between its requests."""
    if max_rss_mb <= 0:
        return
    try:
        import uwsgidecorators  # importable only under uWSGI
    except ImportError:  # the development server or a test client: no workers to replace
        return
    limit = max_rss_mb * 1024 * 1024

    def look(signum: int) -> None:
        own = own_bytes()
        if own - BASELINE_BYTES > limit:
            LOG.warning(
                "worker %d holds %d MB of its own (%d MB once its models had loaded), past "
                "MODELSERVER_MAX_RSS_MB=%d beyond that: replaced after its request",
                os.getpid(),
                own // 2**20,
                BASELINE_BYTES // 2**20,
                max_rss_mb,
            )
            recycle_this_worker()

    uwsgidecorators.timer(INTERVAL_SECONDS, target="workers")(look)


def models_loaded() -> None:
    """In a worker, once its own models (load="worker") have loaded: the limit counts from here."""
    global BASELINE_BYTES
    if MAX_RSS_MB > 0:
        BASELINE_BYTES = own_bytes()
