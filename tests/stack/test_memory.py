"""One model copy for all workers: wsgi.py's gc.freeze() keeps the pages they share shared.

A synthetic large model (tests/helpers/bigmodel_app.py: 256 MB of numpy weights and a 400,000-entry
Python dict) is built in the uWSGI master, which forks 4 workers; each request runs a full
garbage collection, as a long-lived worker eventually does. Memory is read from
/proc/PID/smaps_rollup: PSS divides each shared page among the processes that map it, so the PSS
of the master and its workers added up is what the service really costs.
"""

import concurrent.futures
from pathlib import Path

import pytest

from deploy.localstack import Stack
from helpers import record_figure, uwsgi_app, wait_for

WORKERS = 4
# The master and 4 workers together may cost this much more than the master alone, which holds
# one copy of everything (the interpreter, the libraries, the model).
BOUND = 1.3
# Without the freeze, every worker's collections write to the object graph's pages: the five
# processes cost at least this many copies (measured here: 1.8x; 88 MB private per worker).
UNFROZEN_AT_LEAST = 1.6


def smaps_kb(pid: int) -> dict[str, int]:
    """The memory totals of a process, in kB: Rss, Pss, Private_Dirty..."""
    rows = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    return {name.rstrip(":"): int(kb) for name, kb, _unit in (row.split() for row in rows)}


def serve_until_every_worker_answered(stack: Stack, times: int = 3) -> set[int]:
    """GET /big from 8 threads until each worker answered `times` times; bounded in time."""
    seen: dict[int, int] = {}

    def get(_) -> int:
        status, _headers, body = stack.request("GET", "/big", timeout=20)
        assert status == 200, body
        return int(body.split(b'"pid":')[1].split(b",")[0])

    def every_worker_answered() -> bool:
        for pid in pool.map(get, range(16)):
            seen[pid] = seen.get(pid, 0) + 1
        return len(seen) >= WORKERS and min(seen.values()) >= times

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        wait_for(
            every_worker_answered,
            30,
            interval=0,
            message=lambda: f"not every worker answered: {seen}",
        )
    return set(seen)


def memory_of(unfreeze: bool, monkeypatch) -> dict:
    if unfreeze:
        monkeypatch.setenv("MEMTEST_UNFREEZE", "1")
    else:
        monkeypatch.delenv("MEMTEST_UNFREEZE", raising=False)
    argv = (*uwsgi_app("bigmodel_app:app"), "--processes", str(WORKERS))
    with Stack(uwsgi_args=argv, ready_path="/big") as stack:
        workers = serve_until_every_worker_answered(stack)
        master = stack.uwsgi.pid
        assert master not in workers and len(workers) == WORKERS
        pss = {pid: smaps_kb(pid)["Pss"] for pid in (master, *workers)}
        return {
            "master_rss_kb": smaps_kb(master)["Rss"],
            "total_pss_kb": sum(pss.values()),
            "worker_pss_kb": [pss[pid] for pid in sorted(workers)],
            "worker_private_kb": [smaps_kb(pid)["Private_Dirty"] for pid in sorted(workers)],
        }


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux >= 4.14")
def test_four_workers_cost_little_more_than_one_copy(monkeypatch):
    frozen = memory_of(unfreeze=False, monkeypatch=monkeypatch)
    unfrozen = memory_of(unfreeze=True, monkeypatch=monkeypatch)
    copies = frozen["total_pss_kb"] / frozen["master_rss_kb"]
    control = unfrozen["total_pss_kb"] / unfrozen["master_rss_kb"]
    mb = 1024
    record_figure(
        "memory: master + 4 workers, PSS, in copies of the master (~390 MB model)",
        f"{copies:.2f} with gc.freeze, {control:.2f} without",
    )
    record_figure(
        "memory: a worker's private memory with gc.freeze (without)",
        f"{max(frozen['worker_private_kb']) / mb:.0f} MB "
        f"({max(unfrozen['worker_private_kb']) / mb:.0f} MB)",
    )
    assert frozen["master_rss_kb"] > 350 * mb, frozen  # the model really is resident
    assert copies <= BOUND, frozen
    # The control: the same test without the freeze fails the bound, so it measures the freeze.
    assert control >= UNFROZEN_AT_LEAST, unfrozen
