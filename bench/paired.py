"""Ratios measured in pairs: ours and another stack (ours without metrics: counting's cost;
FastAPI + uvicorn behind nginx: the peer) running side by side, loaded in turn in short windows,
the median of the pairs' ratios.

The rounds load each stack seconds apart, and this machine's speed drifts by up to a third in
phases of a few seconds (docs/performance.md): more than the few percent counting costs. Here
the two windows of a pair are adjacent, in alternate order (A B, B A, ...) so that neither
side is always the later one, and the idle stack only sleeps: a pair's ratio keeps less of the
drift than two turns of a round, and the median over the pairs less again. It narrows the drift;
it does not remove it (docs/performance.md has runs of it).

The pairs are spread over several starts of the two stacks, a few pairs each, as pyperf spreads
a benchmark over processes: a start fixes some of a stack's speed for its whole life (where its
memory lies, its hash seed), and between starts the same code on both sides differs by about
as much as the margin measured (docs/performance.md, "Pairs over starts of the stacks").
"""

import statistics
from collections.abc import Callable

from bench.load import SHARED_PCT
from bench.stacks import BY_NAME

WITH, WITHOUT, PEER = "ours", "ours-nometrics", "fastapi"
# What each comparison is called in results.md: its table's lead, its ratio, the targets' name.
LABELS = {
    WITHOUT: (
        "Counting's cost, in pairs: ours and ours without metrics",
        "ours / without",
        "metrics",
    ),
    PEER: (
        "Ours against FastAPI + uvicorn, in pairs: both behind nginx",
        "ours / FastAPI",
        "FastAPI",
    ),
}
WINDOW_S = 1
PER_START = 2  # pairs in a start of the two stacks, at each concurrency


def wanted(stacks: list[str], versus: str = WITHOUT) -> bool:
    return WITH in stacks and versus in stacks


def measure(
    pairs: int,
    concurrencies: list[int],
    check: Callable,
    load: Callable,
    show: Callable,
    versus: str = WITHOUT,
) -> list[dict]:
    """pairs pairs of windows of ours and versus at each concurrency, PER_START in each start of
    the two stacks; check(stack, spec) refuses a wrong answer, load(stack, c, seconds, pids) is
    one wrk run's figures (pids: the stack's processes), show(row) prints one. A row per window."""
    rows = []
    for numbers in starts(pairs):
        rows += measure_start(numbers, concurrencies, check, load, show, versus)
    return rows


def starts(pairs: int) -> list[range]:
    """The pairs' numbers (from 1), PER_START to a start of the stacks."""
    return [range(n, min(n + PER_START, pairs + 1)) for n in range(1, pairs + 1, PER_START)]


def measure_start(
    numbers: range,
    concurrencies: list[int],
    check: Callable,
    load: Callable,
    show: Callable,
    versus: str,
) -> list[dict]:
    """The pairs numbered numbers at each concurrency, in one start of the two stacks."""
    rows = []
    names = (WITH, versus)
    specs = {name: BY_NAME[name] for name in names}
    with specs[WITH].start() as ours, specs[versus].start() as other:
        stacks = {WITH: ours, versus: other}
        for name, stack in stacks.items():
            check(stack, specs[name])
        for c in concurrencies:
            for stack in stacks.values():  # warm-up, as before every measurement of the rounds
                load(stack, c, WINDOW_S, stack.pids())
            for pair in numbers:
                for name in names if pair % 2 else names[::-1]:
                    figures = load(stacks[name], c, WINDOW_S, stacks[name].pids())
                    rows.append(
                        {
                            "kind": "paired",
                            "versus": versus,
                            "pair": pair,
                            "stack": name,
                            "concurrency": c,
                            **figures,
                        }
                    )
                    show(rows[-1])
    return rows


def summarize(measurements: list[dict], versus: str = WITHOUT) -> dict:
    """Per concurrency: the median of ours / versus over the pairs kept, its quartiles, and how
    many pairs were left out for shared CPU."""
    by_pair: dict[tuple, dict] = {}
    for m in measurements:
        if m["kind"] == "paired" and m.get("versus", WITHOUT) == versus:
            by_pair.setdefault((m["concurrency"], m["pair"]), {})[m["stack"]] = m
    summary = {}
    for c in dict.fromkeys(c for c, _ in by_pair):
        pairs = [p for (pc, _), p in by_pair.items() if pc == c and len(p) == 2]
        kept = [p for p in pairs if max(m["other_cpu_pct"] for m in p.values()) <= SHARED_PCT]
        ratios = [p[WITH]["rps"] / p[versus]["rps"] for p in kept if p[versus]["rps"]]
        if not ratios:
            continue
        low, middle, high = quartiles(ratios)
        summary[str(c)] = {
            "median": round(middle, 3),
            "quartiles": [round(low, 3), round(high, 3)],
            "pairs": len(ratios),
            "left_out": len(pairs) - len(kept),
            "errors": sum(m["errors"] for p in pairs for m in p.values()),
        }
    return summary


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, middle, high = statistics.quantiles(values, n=4)
    return low, statistics.median(values), high


def markdown(summary: dict, rounds_ratios: dict, versus: str = WITHOUT) -> list[str]:
    if not summary:
        return []
    lead, ratio, targets = LABELS[versus]
    lines = [
        "",
        f"{lead} side by side, loaded in turn in adjacent windows of {WINDOW_S} s (A B, B A, ...) "
        f"after the rounds, {PER_START} pairs in each start of the two stacks; the {targets} "
        "targets read the median of the pairs' ratios, less exposed to the host's drift than "
        "two stacks' turns in a round (bench/paired.py). The rounds' ratio of medians beside it.",
        "",
        f"| c | {ratio}, pairs (median) | quartiles | pairs | left out (shared CPU) "
        "| errors | the rounds' ratio |",
        "|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c, s in summary.items():
        low, high = s["quartiles"]
        rounds = rounds_ratios.get(c)
        lines.append(
            f"| {c} | {s['median']:.3f}× | {low:.3f}–{high:.3f} | {s['pairs']} | "
            f"{s['left_out']} | {s['errors']} | {'—' if rounds is None else f'{rounds:.3f}×'} |"
        )
    return lines
