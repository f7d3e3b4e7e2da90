"""The memory guard's measure: a worker's own memory, not the pages it shares with the master."""

import json
import os

from modelserver import memoryguard

MB = 2**20


def touched(size: int) -> bytearray:
    """size bytes of memory, every page written, so that all of it is resident."""
    block = bytearray(size)
    block[::4096] = b"\x01" * len(range(0, size, 4096))
    return block


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_own_memory_leaves_out_what_the_fork_shares_and_counts_what_the_worker_adds():
    shared = touched(200 * MB)  # a model loaded in the master before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        try:
            before = memoryguard.own_bytes()
            grown = touched(80 * MB)
            figures = {"rss": rss_bytes(), "own": before, "grown": memoryguard.own_bytes()}
            os.write(write, json.dumps(figures).encode())
            del grown
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        figures = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert len(shared) == 200 * MB
    assert figures["rss"] > 200 * MB, figures  # RSS counts the shared model
    assert figures["own"] < 100 * MB, figures  # the worker's own memory does not
    assert figures["grown"] - figures["own"] > 75 * MB, figures  # what it adds, it owns


def test_the_limit_counts_from_what_the_worker_holds_once_its_models_loaded(monkeypatch):
    monkeypatch.setattr(memoryguard, "BASELINE_BYTES", 0)
    monkeypatch.setattr(memoryguard, "MAX_RSS_MB", 0)
    memoryguard.models_loaded()  # no guard: nothing to count from
    assert memoryguard.BASELINE_BYTES == 0
    monkeypatch.setattr(memoryguard, "MAX_RSS_MB", 512)
    model = touched(64 * MB)  # a model loaded in this worker
    memoryguard.models_loaded()
    assert len(model) == 64 * MB
    assert 64 * MB <= memoryguard.BASELINE_BYTES <= memoryguard.own_bytes()
