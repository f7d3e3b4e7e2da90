"""The batching rows: the MLP (bench/mlp.py), one item a request, at c=1, 8 and 64, through ours
with batching off and on, LitServe with its own batching, and FastAPI + uvicorn without.

run.py calls turn() for each of BATCHING_STACKS in every round, after the other stacks; report.py
puts summarize()'s medians and ratios into results.md with markdown().
"""

import json
from collections.abc import Callable
from pathlib import Path

from bench.load import write_script
from bench.stacks import BATCHING_BY_NAME, MLP_PATH, MLP_REQUEST, StackSpec
from deploy.localstack import Stack

CONCURRENCY = [1, 8, 64]
OUTPUTS = 4  # numbers in each answer (bench/mlp.py)


def check_answer(stack: Stack, spec: StackSpec) -> None:
    """Refuse to time a stack whose POST /mlp does not answer the MLP's numbers."""
    status, _, body = stack.request(
        "POST", MLP_PATH, MLP_REQUEST, {"Content-Type": "application/json"}
    )
    result = json.loads(body).get("result") if status == 200 else None
    if not (isinstance(result, list) and len(result) == OUTPUTS):
        raise RuntimeError(f"{spec.name} answers POST {MLP_PATH} with {status} {body[:200]!r}")


def turn(spec: StackSpec, concurrencies: list[int], scripts: Path, measure: Callable) -> list[dict]:
    """One stack's turn in a round: start, check, load at each concurrency, stop.

    measure(stack, c, script, path) -> figures: run.py's, with its warm-up and durations."""
    script = scripts / "mlp.lua"
    if not script.exists():
        write_script(script, MLP_REQUEST)
    rows = []
    with spec.start() as stack:
        check_answer(stack, spec)
        for c in concurrencies:
            figures = measure(stack, c, script, MLP_PATH)
            rows.append({"kind": "mlp", "stack": spec.name, "concurrency": c, **figures})
    return rows


def summarize(measurements: list[dict], median_of: Callable) -> dict | None:
    """Medians per stack and concurrency; batching on / off, and ours / LitServe, per c."""
    rows = [m for m in measurements if m["kind"] == "mlp"]
    if not rows:
        return None
    medians = {
        stack: {
            str(c): median_of([m for m in rows if m["stack"] == stack and m["concurrency"] == c])
            for c in dict.fromkeys(m["concurrency"] for m in rows)
        }
        for stack in dict.fromkeys(m["stack"] for m in rows)
    }

    def rps(stack: str, c: str) -> float | None:
        return medians.get(stack, {}).get(c, {}).get("rps")

    def p50(stack: str, c: str) -> float | None:
        return medians.get(stack, {}).get(c, {}).get("p50_ms")

    concurrencies = list(dict.fromkeys(str(m["concurrency"]) for m in rows))
    return {
        "medians": medians,
        "on_over_off": {
            c: quotient(rps("ours-mlp-batched", c), rps("ours-mlp", c)) for c in concurrencies
        },
        "preferred_over_any": {
            c: quotient(rps("ours-mlp-batched", c), rps("ours-mlp-batched-any", c))
            for c in concurrencies
        },
        "ours_over_litserve": {
            c: quotient(rps("ours-mlp-batched", c), rps("litserve-mlp", c)) for c in concurrencies
        },
        "p50_on_minus_off_ms": {
            c: difference(p50("ours-mlp-batched", c), p50("ours-mlp", c)) for c in concurrencies
        },
    }


def quotient(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def difference(a: float | None, b: float | None) -> float | None:
    return round(a - b, 3) if a is not None and b is not None else None


def markdown(summary: dict | None) -> list[str]:
    if summary is None:
        return []
    lines = [
        "## Batching: the MLP, one item a request",
        "",
        f"`POST {MLP_PATH}` with 16 numbers, 4 back, from wrk (1 thread at c=1); the model is "
        "bench/mlp.py (4 layers of 2048x2048 float32, one BLAS thread a process); batching: at "
        "most 32 items a call, at most 5 ms of wait, in ours and LitServe alike.",
        "",
        "| stack | c | requests/s | (min–max) | p50 ms | p99 ms | errors | other CPU |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for stack, by_c in summary["medians"].items():
        label = BATCHING_BY_NAME[stack].label
        for c, f in by_c.items():
            if "unavailable" in f:
                lines.append(f"| {label} | {c} | {f['unavailable']} | | | | | |")
                continue
            lines.append(
                f"| {label} | {c} | {f['rps']:,.0f} | {f['rps_min']:,.0f}–{f['rps_max']:,.0f} | "
                f"{f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['errors']} | "
                f"{f['other_cpu_pct']:.0f}% |"
            )
    concurrencies = list(summary["on_over_off"])
    lines += [
        "",
        "| | " + " | ".join(f"c={c}" for c in concurrencies) + " |",
        "|---|" + "--:|" * len(concurrencies),
        "| ours, batching on / off (requests/s) | "
        + " | ".join(times(summary["on_over_off"][c]) for c in concurrencies)
        + " |",
        "| ours, preferred sizes / any size (requests/s) | "
        + " | ".join(times(summary["preferred_over_any"][c]) for c in concurrencies)
        + " |",
        "| ours with batching / LitServe with batching | "
        + " | ".join(times(summary["ours_over_litserve"][c]) for c in concurrencies)
        + " |",
        "| p50 with batching on − off (ms) | "
        + " | ".join(signed(summary["p50_on_minus_off_ms"][c]) for c in concurrencies)
        + " |",
        "",
        "## How each batching stack runs",
        "",
        *(
            f"- **{BATCHING_BY_NAME[name].label}**: {BATCHING_BY_NAME[name].how}."
            for name in summary["medians"]
        ),
    ]
    return lines


def times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"
