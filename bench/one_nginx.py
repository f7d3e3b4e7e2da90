"""Counting's cost in CPU time: ours and ours without metrics behind one nginx, which hands the
requests to their two uWSGIs in turn (round robin).

Both then answer the same requests at the same moments, so whatever the host's speed does during
a window, it does to both, and no turn of one follows the other's. What counting costs is the
difference of the two uWSGIs' CPU time per request (masters and workers, from /proc; requests
from each one's stats server); what it costs out of is the machine's CPU time per request
(/proc/stat), nginx and wrk included, as when ours runs alone. Their quotient is the share of
the machine's work that counting adds; on a machine that the stack saturates, the throughput it
costs. The same code on both sides differed by 0.01 and 0.29 µs a request (medians of 8 windows
at c=32 and c=256; docs/performance.md).
"""

import json
import os
from collections.abc import Callable

from bench.load import SHARED_PCT, TICKS, cpu_ticks, process_ticks
from bench.paired import WITH, quartiles
from bench.stacks import BY_NAME, LOAD_GENERATOR, PATH, StackWithoutMetrics
from deploy.localstack import Stack, process_tree, replace
from modelserver.serverstats import read_unix

WINDOW_S = 5


class SharingNginx(Stack):
    """Ours, whose nginx passes every other request to another uWSGI's socket: the site's retry
    entry (the same socket, once more) becomes that socket."""

    def __init__(self, other_socket: str):
        super().__init__(ready_path=PATH, exempt=LOAD_GENERATOR)
        self.other_socket = other_socket

    def write_nginx_config(self) -> None:
        super().write_nginx_config()
        site = os.path.join(self.dir, "modelserver-site.conf")
        with open(site) as file:
            text = file.read()
        text = replace(
            text,
            f"server unix:{self.socket_path} max_fails=0 backup;",
            f"server unix:{self.other_socket} max_fails=0;",
        )
        with open(site, "w") as file:
            file.write(text)


def uwsgi_state(stack: Stack) -> tuple[int, int]:
    """CPU clock ticks of a stack's uWSGI master and workers, and the requests they answered."""
    ticks = sum(process_ticks(pid) for pid in process_tree(stack.uwsgi.pid))
    stats = json.loads(read_unix(stack.socket_path + ".stats"))
    return ticks, sum(worker["requests"] for worker in stats["workers"])


def measure(
    windows: int, concurrencies: list[int], check: Callable, load: Callable, show: Callable
) -> list[dict]:
    """windows windows of WINDOW_S at each concurrency; check(stack, spec) refuses a wrong
    answer, load(stack, c, seconds, pids) is one wrk run's figures through stack's nginx,
    show(row) prints one. A row per window."""
    rows = []
    with StackWithoutMetrics(ready_path=PATH, exempt=LOAD_GENERATOR) as without:
        with SharingNginx(without.socket_path) as with_metrics:
            for stack in (with_metrics, with_metrics, without):  # in turn: both uWSGIs answer
                check(stack, BY_NAME[WITH])
            pids = with_metrics.pids() + without.pids()
            for c in concurrencies:
                load(with_metrics, c, 1, pids)  # warm-up
                for window in range(1, windows + 1):
                    before = cpu_ticks(pids), uwsgi_state(with_metrics), uwsgi_state(without)
                    figures = load(with_metrics, c, WINDOW_S, pids)
                    after = cpu_ticks(pids), uwsgi_state(with_metrics), uwsgi_state(without)
                    row = {"kind": "one-nginx", "window": window, "concurrency": c}
                    rows.append({**row, **figures, **per_request(before, after)})
                    show(rows[-1])
    return rows


def per_request(before: tuple, after: tuple) -> dict:
    """µs of CPU a request: each uWSGI's, over its own requests, and the machine's, over all."""
    (machine_before, _, _), with_before, without_before = before
    (machine_after, _, _), with_after, without_after = after
    us = 1e6 / TICKS

    def uwsgi_us(start: tuple[int, int], end: tuple[int, int]) -> float | None:
        requests = end[1] - start[1]
        return (end[0] - start[0]) * us / requests if requests else None

    answered = (with_after[1] - with_before[1]) + (without_after[1] - without_before[1])
    return {
        "with_us": uwsgi_us(with_before, with_after),
        "without_us": uwsgi_us(without_before, without_after),
        "machine_us": (machine_after - machine_before) * us / answered if answered else None,
        "answered": [with_after[1] - with_before[1], without_after[1] - without_before[1]],
    }


def summarize(measurements: list[dict]) -> dict:
    """Per concurrency: the median over the windows kept of what counting adds to a request's
    CPU (µs), of the machine's CPU a request without it, and of ours / ours without metrics in
    requests per CPU-second; windows with shared CPU are left out and counted."""
    summary = {}
    rows = [m for m in measurements if m["kind"] == "one-nginx"]
    for c in dict.fromkeys(m["concurrency"] for m in rows):
        windows = [m for m in rows if m["concurrency"] == c]
        kept = [
            m
            for m in windows
            if m["other_cpu_pct"] <= SHARED_PCT
            and None not in (m["with_us"], m["without_us"], m["machine_us"])
        ]
        if not kept:
            continue
        added = [m["with_us"] - m["without_us"] for m in kept]
        # The machine's CPU a request of ours without metrics: half the requests were counted.
        base = [m["machine_us"] - d / 2 for m, d in zip(kept, added, strict=True)]
        ratios = [b / (b + d) for b, d in zip(base, added, strict=True)]
        low, middle, high = quartiles(added)
        summary[str(c)] = {
            "added_us": round(middle, 2),
            "added_quartiles": [round(low, 2), round(high, 2)],
            "machine_us": round(quartiles(base)[1], 1),
            "ratio": round(quartiles(ratios)[1], 3),
            "windows": len(kept),
            "left_out": len(windows) - len(kept),
            "errors": sum(m["errors"] for m in windows),
        }
    return summary


def markdown(summary: dict) -> list[str]:
    if not summary:
        return []
    lines = [
        "",
        "Counting's cost in CPU time: ours and ours without metrics behind one nginx, which "
        f"passes them the requests in turn, in windows of {WINDOW_S} s; both answer at the same "
        "moments, so the host's drift reaches both alike (bench/one_nginx.py). Added: the "
        "difference of the two uWSGIs' CPU a request; the machine's: all CPU a request "
        "without counting (nginx and wrk included); the ratio: requests per CPU-second of "
        "ours / ours without metrics.",
        "",
        "| c | added µs a request (median) | quartiles | the machine's µs a request "
        "| ours / without, per CPU-second | windows | left out (shared CPU) | errors |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c, s in summary.items():
        low, high = s["added_quartiles"]
        lines.append(
            f"| {c} | {s['added_us']:.2f} | {low:.2f}–{high:.2f} | {s['machine_us']:.1f} | "
            f"{s['ratio']:.3f}× | {s['windows']} | {s['left_out']} | {s['errors']} |"
        )
    return lines
