"""Ours against FastAPI + uvicorn in CPU time: both stacks run at once, each behind its own copy
of the project's site, each loaded by its own wrk in the same windows.

Both then answer at the same moments, so whatever the host's speed does during a window, it
does to both. What each costs is its CPU time per request over the window: its nginx, its
server (master and workers, /proc) and its wrk (wait4), over the requests its wrk counted. The
quotient of the two is ours / FastAPI in requests per CPU-second: the throughput ratio of the
two on a machine they saturate, as the rounds' turns measure it, without the drift between
turns. The same stack on both sides differed by a few percent (docs/performance.md has the
checks).
"""

from collections.abc import Callable
from pathlib import Path

from bench.load import SHARED_PCT, TICKS, cpu_ticks, other_cpu_pct, process_ticks, run_wrks
from bench.paired import quartiles
from bench.stacks import BY_NAME, PATH, StackSpec
from deploy.localstack import Stack, process_tree

OURS, PEER = "ours", "fastapi"
WINDOW_S = 5
PARTS = ("nginx", "server", "wrk")


def wanted(stacks: list[str]) -> bool:
    return OURS in stacks and PEER in stacks


def measure(
    windows: int,
    concurrencies: list[int],
    check: Callable,
    script: Path,
    show: Callable,
    specs: tuple[StackSpec, StackSpec] = (BY_NAME[OURS], BY_NAME[PEER]),
) -> list[dict]:
    """windows windows of WINDOW_S at each concurrency, each stack loaded at that concurrency;
    check(stack, spec) refuses a wrong answer; show(row) prints one. A row per window."""
    rows = []
    with specs[0].start() as left, specs[1].start() as right:
        for stack, spec in ((left, specs[0]), (right, specs[1])):
            check(stack, spec)
        stacks = (left, right)
        urls = [stack.url + PATH for stack in stacks]
        pids = left.pids() + right.pids()
        for c in concurrencies:
            run_wrks(urls, c, 1, script)  # warm-up
            for window in range(1, windows + 1):
                before = cpu_ticks(pids), [stack_ticks(s) for s in stacks]
                runs = run_wrks(urls, c, WINDOW_S, script)
                after = cpu_ticks(pids), [stack_ticks(s) for s in stacks]
                row = {"kind": "side-by-side", "window": window, "concurrency": c}
                row["stacks"] = [spec.name for spec in specs]
                row["other_cpu_pct"] = other_cpu_pct(before[0], after[0])
                row["sides"] = [
                    side(start, end, run)
                    for start, end, run in zip(before[1], after[1], runs, strict=True)
                ]
                rows.append(row)
                show(row)
    return rows


def stack_ticks(stack: Stack) -> dict[str, int]:
    """CPU clock ticks so far of a stack's nginx (master and workers) and of its server."""
    return {
        "nginx": sum(process_ticks(pid) for pid in process_tree(stack.nginx.pid)),
        "server": sum(process_ticks(pid) for pid in process_tree(stack.uwsgi.pid)),
    }


def side(before: dict, after: dict, run: dict) -> dict:
    """One stack's window: its wrk's figures and µs of CPU a request in each part."""
    requests = run["requests"]
    us = {part: (after[part] - before[part]) * 1e6 / TICKS for part in ("nginx", "server")}
    us["wrk"] = run.pop("wrk_cpu_s") * 1e6
    return {
        **run,
        "us": {part: us[part] / requests if requests else None for part in PARTS},
    }


def total_us(side_row: dict) -> float | None:
    parts = side_row["us"].values()
    return None if None in parts else sum(parts)


def summarize(measurements: list[dict]) -> dict:
    """Per pair of stacks and concurrency, over the windows kept: the median of each stack's µs a
    request by part, of its requests/s, and of left / right in requests per CPU-second; windows
    with shared CPU or a side without requests are left out and counted."""
    summary: dict[str, dict] = {}
    rows = [m for m in measurements if m["kind"] == "side-by-side"]
    for names in dict.fromkeys(tuple(m["stacks"]) for m in rows):
        for c in dict.fromkeys(m["concurrency"] for m in rows if tuple(m["stacks"]) == names):
            windows = [m for m in rows if tuple(m["stacks"]) == names and m["concurrency"] == c]
            kept = [
                m
                for m in windows
                if m["other_cpu_pct"] <= SHARED_PCT and None not in map(total_us, m["sides"])
            ]
            if not kept:
                continue
            ratios = [total_us(m["sides"][1]) / total_us(m["sides"][0]) for m in kept]
            low, middle, high = quartiles(ratios)
            summary.setdefault(" / ".join(names), {})[str(c)] = {
                "ratio": round(middle, 3),
                "quartiles": [round(low, 3), round(high, 3)],
                "sides": [side_summary([m["sides"][i] for m in kept]) for i in (0, 1)],
                "windows": len(kept),
                "left_out": len(windows) - len(kept),
                "errors": sum(s["errors"] for m in windows for s in m["sides"]),
            }
    return summary


def side_summary(sides: list[dict]) -> dict:
    return {
        "rps": round(quartiles([s["rps"] for s in sides])[1], 1),
        "us": {part: round(quartiles([s["us"][part] for s in sides])[1], 1) for part in PARTS},
        "total_us": round(quartiles([total_us(s) for s in sides])[1], 1),
    }


def ratios(summary: dict) -> dict:
    """ours / FastAPI in requests per CPU-second, per concurrency, where the run measured it."""
    return {c: s["ratio"] for c, s in summary.get(f"{OURS} / {PEER}", {}).items()}


def markdown(summary: dict, medians: dict) -> list[str]:
    """The table; medians: the rounds' figures, whose busy share says whether each stack alone
    saturated the cores, as the ratio's reading as a throughput ratio assumes."""
    if not summary:
        return []
    lines = [
        "",
        "Ours against FastAPI + uvicorn in CPU time: both stacks run at once, each behind its "
        f"own copy of the site and loaded by its own wrk at c, in windows of {WINDOW_S} s; both "
        "answer at the same moments, so the host's drift reaches both alike "
        "(bench/side_by_side.py). µs of CPU a request: nginx, the server (master and workers) "
        "and wrk; the ratio: requests per CPU-second of the first / the second, which is their "
        "throughput ratio on a machine they saturate.",
        "",
        "| stacks | c | first / second, per CPU-second (median) | quartiles "
        "| first µs a request (nginx, server, wrk) | second µs a request (nginx, server, wrk) "
        "| req/s, first / second | windows | left out (shared CPU) | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    busy = [
        f"{name} at c={c} {f['busy_pct']:.0f} %"
        for name in (OURS, PEER)
        for c, f in medians.get(name, {}).items()
        if "busy_pct" in f
    ]
    if busy:
        lines[2:2] = [
            "",
            f"Alone, in the rounds, the cores were busy (medians): {', '.join(busy)}.",
        ]
    for names, by_c in summary.items():
        for c, s in by_c.items():
            low, high = s["quartiles"]
            first, second = s["sides"]
            lines.append(
                f"| {names} | {c} | {s['ratio']:.3f}× | {low:.3f}–{high:.3f} | "
                f"{parts_text(first)} | {parts_text(second)} | "
                f"{first['rps']:,.0f} / {second['rps']:,.0f} | {s['windows']} | "
                f"{s['left_out']} | {s['errors']} |"
            )
    return lines


def parts_text(side_summary_row: dict) -> str:
    us = side_summary_row["us"]
    # The total is the median of the windows' totals, not the sum of the parts' medians.
    return (
        f"{side_summary_row['total_us']:.0f} ({us['nginx']:.0f}, {us['server']:.0f}, "
        f"{us['wrk']:.0f})"
    )
