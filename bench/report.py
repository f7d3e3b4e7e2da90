"""From the measurements of all rounds to medians, ratios and targets; results.md/.json/.png."""

import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench import batching, budget, one_nginx, paired, side_by_side
from bench.load import SHARED_PCT, wrk_binary
from bench.stacks import BY_NAME, PATH, WORKERS
from deploy.localstack import PROJECT, find_nginx

# Ratios of ours to each other stack; a peer with several setups is taken at its fastest one.
WITHOUT_METRICS, PEER = "ours without metrics", "FastAPI + uvicorn behind nginx"
COMPARED = {
    WITHOUT_METRICS: ("ours-nometrics",),
    "bare ceiling": ("bare",),
    "proxy ceiling": ("proxy",),
    "gunicorn + Flask": ("gunicorn", "gunicorn-uwsgi"),
    PEER: ("fastapi",),
    "uvicorn alone": ("uvicorn",),
}
PACKAGES = (
    "Flask",
    "gunicorn",
    "fastapi",
    "pydantic",
    "uvicorn",
    "uvloop",
    "httptools",
    "litserve",
)


# Kept by hand: what each tuning change measured, and the profile; appended to results.md.
TUNING = Path(__file__).with_name("tuning.md")


def machine() -> dict:
    """What the figures depend on besides the code: CPU, cores, kernel, versions, date."""
    cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    return {
        "cpu": cpu.group(1) if cpu else platform.processor(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "versions": {
            "nginx": first_line([find_nginx() or "nginx", "-v"]).rpartition("/")[2],
            "uWSGI": first_line([str(Path(sys.executable).parent / "uwsgi"), "--version"]),
            "wrk": first_line([wrk_binary() or "wrk", "-v"]).split(" [")[0].removeprefix("wrk "),
            **{name: package_version(name) for name in PACKAGES},
        },
    }


def first_line(argv: list[str]) -> str:
    """The first line a version command prints (nginx and wrk print it on stderr)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    return (done.stdout + done.stderr).strip().splitlines()[0]


def commit() -> str:
    """The code measured: its commit, "-dirty" if the checkout had uncommitted changes."""
    argv = ["git", "-C", str(PROJECT), "describe", "--always", "--dirty"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def summarize(measurements: list[dict]) -> dict:
    """Medians over rounds per stack and concurrency and per batch size; ratios; targets."""
    gets = [m for m in measurements if m["kind"] == "get"]
    medians = {
        stack: {
            str(c): median_of([m for m in gets if m["stack"] == stack and m["concurrency"] == c])
            for c in dict.fromkeys(m["concurrency"] for m in gets)
        }
        for stack in dict.fromkeys(m["stack"] for m in gets)
    }
    batch_rows = [m for m in measurements if m["kind"] == "batch"]
    batches = {
        str(size): median_of([m for m in batch_rows if m["batch"] == size])
        for size in dict.fromkeys(m["batch"] for m in batch_rows)
    }
    ratios, setups = ratios_of(medians)
    single = figure(medians, "ours", 32)
    summary = {
        "medians": medians,
        "batches": batches,
        "ratios": ratios,
        "fastest_setups": setups,
        "ours_p99_c256_over_c32": ratio(
            figure(medians, "ours", 256, "p99_ms"), figure(medians, "ours", 32, "p99_ms")
        ),
        "batch_1000_values_over_get_c32": ratio(
            batches.get("1000", {}).get("values_per_s"), single
        ),
    }
    summary["metrics_pairs"] = paired.summarize(measurements)
    summary["fastapi_pairs"] = paired.summarize(measurements, paired.PEER)
    summary["metrics_one_nginx"] = one_nginx.summarize(measurements)
    summary["side_by_side"] = side_by_side.summarize(measurements)
    summary["targets"] = targets(summary)
    summary["model"] = summarize_model(measurements, summary)
    summary["batching"] = batching.summarize(measurements, median_of)
    return summary


def summarize_model(measurements: list[dict], summary: dict) -> dict:
    """The model path: the A/B stage by stage, /predict against its ceiling, workers' memory."""
    ab = [m for m in measurements if m["kind"] == "inprocess"]
    stages: dict = {}
    for m in ab:
        key = (m["image"], m["variant"], m["stage"])
        stages.setdefault(key, []).append(m["us"])
    per_stage: dict = {}
    for (image, variant, stage), values in stages.items():
        per_stage.setdefault(image, {}).setdefault(variant, {})[stage] = round(
            statistics.median(values), 1
        )
    totals = {
        image: {variant: round(sum(s.values()), 1) for variant, s in by_variant.items()}
        for image, by_variant in per_stage.items()
    }
    speedups = {
        image: ratio(by_variant.get("before"), by_variant.get("after"))
        for image, by_variant in totals.items()
    }
    ceilings = {
        image: round(statistics.median(m["rps"] for m in rows), 1)
        for image, rows in grouped([m for m in measurements if m["kind"] == "ceiling"]).items()
    }
    predicts = [m for m in measurements if m["kind"] == "predict"]
    predict = {
        image: {
            stack: median_of([m for m in rows if m["stack"] == stack])
            for stack in dict.fromkeys(m["stack"] for m in rows)
        }
        for image, rows in grouped(predicts).items()
    }
    ratios = {
        image: {
            "ours / ceiling": ratio(by_stack.get("ours", {}).get("rps"), ceilings.get(image)),
            "ours / FastAPI": ratio(
                by_stack.get("ours", {}).get("rps"), by_stack.get("fastapi", {}).get("rps")
            ),
            "ours / ours without metrics": ratio(
                by_stack.get("ours", {}).get("rps"),
                by_stack.get("ours-nometrics", {}).get("rps"),
            ),
        }
        for image, by_stack in predict.items()
    }
    memory = {}
    for stack in dict.fromkeys(m["stack"] for m in measurements if m["kind"] == "memory"):
        rows = [m for m in measurements if m["kind"] == "memory" and m["stack"] == stack]
        memory[stack] = {
            "pss_mb": round(statistics.median(m["pss_kb"] for m in rows) / 1024, 1),
            "private_mb": round(statistics.median(m["private_kb"] for m in rows) / 1024, 1),
            "workers_measured": len(rows),
        }
    model = {
        "stages_us": per_stage,
        "totals_us": totals,
        "speedups": speedups,
        "ceilings": ceilings,
        "predict": predict,
        "ratios": ratios,
        "memory": memory,
    }
    model["targets"] = model_targets(model, summary)
    return model


def grouped(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by their image, in the order the images first appear."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["image"], []).append(row)
    return groups


def model_targets(model: dict, summary: dict) -> list[dict]:
    """The image path's targets; met is None when the run did not measure what a target needs."""
    rows = []
    for image in model["ratios"]:
        speedup = model["speedups"].get(image)
        rows.append((f"{image}: in-process ≥ 5× faster than before", speedup, 5))
        ceiling = model["ratios"][image]["ours / ceiling"]
        rows.append(
            (f"{image}: POST /predict through ours ≥ 0.7× the in-process ceiling", ceiling, 0.7)
        )
    return [
        {"target": text, "measured": value, "met": None if value is None else value >= bound}
        for text, value, bound in rows
    ]


def median_of(rows: list[dict]) -> dict:
    """Median figures of these rounds, the range of requests/s, and the total of errors."""
    measured = [m for m in rows if "unavailable" not in m]
    if not measured:
        return {"unavailable": rows[-1]["unavailable"]}
    keys = ("rps", "p50_ms", "p99_ms", "values_per_s", "other_cpu_pct", "busy_pct")
    figures = {
        k: round(statistics.median(m[k] for m in measured), 3) for k in keys if k in measured[0]
    }
    return {
        **figures,
        "rps_min": min(m["rps"] for m in measured),
        "rps_max": max(m["rps"] for m in measured),
        "errors": sum(m["errors"] for m in measured),
        "rounds": len(measured),
    }


def figure(medians: dict, stack: str, c: int, key: str = "rps") -> float | None:
    return medians.get(stack, {}).get(str(c), {}).get(key)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratios_of(medians: dict) -> tuple[dict, dict]:
    """ours / each compared stack per concurrency, and which setup of a peer was the fastest."""
    ratios, setups = {}, {}
    for name, candidates in COMPARED.items():
        for c in medians.get("ours", {}):
            measured = [(figure(medians, s, c), s) for s in candidates if figure(medians, s, c)]
            if measured:
                rps, fastest = max(measured)
                ratios.setdefault(name, {})[c] = ratio(figure(medians, "ours", c), rps)
                setups.setdefault(name, {})[c] = fastest
    return ratios, setups


def targets(summary: dict) -> list[dict]:
    """The HTTP path's targets and the metrics' cost; met is None when the run did not measure
    what a target needs."""
    ratios = summary["ratios"]
    errors = [figure(summary["medians"], "ours", c, "errors") for c in (32, 256)]
    checks = [
        ("ours ≥ 0.60× the bare-WSGI ceiling, c=32", ("bare ceiling", "32"), 0.60, True),
        ("ours ≥ 3× gunicorn + Flask, c=32", ("gunicorn + Flask", "32"), 3, True),
        ("ours ≥ 3× gunicorn + Flask, c=256", ("gunicorn + Flask", "256"), 3, True),
    ]
    rows = [
        (text, ratios.get(name, {}).get(c), bound, at_least)
        for text, (name, c), bound, at_least in checks
    ]
    rows += [
        (f"ours ≥ 1.1× FastAPI + uvicorn, c={c}", value, 1.1, True)
        for c, value in pairs_or_rounds(summary, "fastapi_pairs", PEER).items()
    ]
    # The same ratio in CPU time, both stacks at once: where the run measured it.
    rows += [
        (
            f"ours ≥ 1.1× FastAPI + uvicorn in requests per CPU-second, side by side, c={c}",
            value,
            1.1,
            True,
        )
        for c, value in side_by_side.ratios(summary.get("side_by_side", {})).items()
    ]
    # Counting every request costs at most a few percent of throughput.
    rows += [
        (f"metrics cost ≤ 5%: ours ≥ 0.95× ours without metrics, c={c}", value, 0.95, True)
        for c, value in pairs_or_rounds(summary, "metrics_pairs", WITHOUT_METRICS).items()
    ]
    # The same cost in CPU time, both behind one nginx: where the run measured it.
    rows += [
        (
            f"metrics cost ≤ 5% of the CPU a request: ours ≥ 0.95× ours without metrics in "
            f"requests per CPU-second, behind one nginx, c={c}",
            summary["metrics_one_nginx"][c]["ratio"],
            0.95,
            True,
        )
        for c in ("32", "256")
        if c in summary["metrics_one_nginx"]
    ]
    rows += [
        ("ours: p99 at c=256 ≤ 3× p99 at c=32", summary["ours_p99_c256_over_c32"], 3, False),
        ("ours: 0 errors at c=32 and c=256", None if None in errors else sum(errors), 0, False),
        (
            "batch of 1,000: values/s ≥ 100× GET requests/s (c=32)",
            summary["batch_1000_values_over_get_c32"],
            100,
            True,
        ),
    ]
    return [
        {
            "target": text,
            "measured": value,
            "met": None if value is None else (value >= bound if at_least else value <= bound),
        }
        for text, value, bound, at_least in rows
    ]


def pairs_or_rounds(summary: dict, key: str, name: str) -> dict:
    """ours / the stack name at c=32 and c=256: the pairs' median where the run measured pairs
    (summary[key], bench/paired.py), else the rounds' ratio of medians."""
    rounds, pairs = summary["ratios"].get(name, {}), summary.get(key, {})
    return {c: pairs[c]["median"] if c in pairs else rounds.get(c) for c in ("32", "256")}


def write_json(path: Path, results: dict) -> None:
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


def markdown(results: dict) -> str:
    """results.md: the run and machine, the tables, the targets, how each stack runs."""
    summary = results["summary"]
    lines = [
        "# Benchmark: modelserver against its ceilings and its peers",
        "",
        *preamble(results),
        "",
        "| stack | c | requests/s | (min–max over rounds) | p50 ms | p99 ms | errors | other CPU |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
        *(
            stack_row(stack, c, f)
            for stack, by_c in summary["medians"].items()
            for c, f in by_c.items()
        ),
        "",
        *ratio_table(summary),
        "",
        *batch_table(summary, results["settings"]),
        "",
        *target_table(summary),
        *paired.markdown(summary["metrics_pairs"], summary["ratios"].get(WITHOUT_METRICS, {})),
        *paired.markdown(
            summary.get("fastapi_pairs", {}), summary["ratios"].get(PEER, {}), paired.PEER
        ),
        *one_nginx.markdown(summary.get("metrics_one_nginx", {})),
        *side_by_side.markdown(summary.get("side_by_side", {}), summary["medians"]),
        *(budget.markdown(results["run"]["budget"]) if "budget" in results["run"] else []),
        "",
        *model_section(summary.get("model"), results["settings"]),
        *batching.markdown(summary.get("batching")),
        "",
        "## How each stack runs",
        "",
        *(f"- **{BY_NAME[name].label}**: {BY_NAME[name].how}." for name in summary["medians"]),
        "",
        *(TUNING.read_text().splitlines() if TUNING.exists() else []),
    ]
    return "\n".join(lines) + "\n"


def preamble(results: dict) -> list[str]:
    m, s, run = results["machine"], results["settings"], results["run"]
    shared = [x["other_cpu_pct"] for x in results["measurements"] if "other_cpu_pct" in x]
    versions = ", ".join(f"{name} {version}" for name, version in m["versions"].items())
    command = "bench/run.py --quick" if s["quick"] else "bench/run.py"
    return [
        f"`{command}` on {m['date']} (commit {m['commit']}), {run['elapsed_s']:.0f} s. "
        f"Machine: {m['cpu']}, "
        f"{m['cores']} cores, Linux {m['kernel']}, Python {m['python']}; {versions}. Load "
        f"average (1 min) {run['load_1min_start']:.2f} at the start, "
        f"{run['load_1min_end']:.2f} at the end (the run's own load included).",
        "",
        f"`GET {PATH}` from wrk ({s['threads']} threads, {s['duration_s']} s per measurement "
        f"after {s['warmup_s']} s of warm-up, loopback), which runs on the same {m['cores']} "
        f"cores as the servers; {WORKERS} workers in every server; {s['rounds']} rounds, each "
        "stack in turn in each round, the order reversed every other round (A B C, C B A, …), "
        "started fresh for its turn and stopped after it. Figures are medians over the rounds; "
        "errors (socket errors and HTTP statuses ≥ 400) are totals over the rounds. Other CPU: "
        "the share of the cores that processes outside the measurement (neither the stack nor "
        "wrk) used during it; well above 0 % means the machine was shared and the figures are "
        "lower than it can do.",
        *shared_warning(shared),
    ]


def shared_warning(shares: list[float]) -> list[str]:
    """A warning when other processes took a real share of the CPU: the ratios then drift."""
    busy = [share for share in shares if share > SHARED_PCT]
    if not busy:
        return []
    return [
        "",
        f"**The machine was shared: in {len(busy)} of {len(shares)} measurements other processes "
        f"used more than {SHARED_PCT} % of the CPU (up to {max(busy):.0f} %). Such load is not "
        "spread evenly over the stacks, so the ratios below carry its noise; run again on an "
        "idle machine for figures to rely on.**",
    ]


def stack_row(stack: str, c: str, f: dict) -> str:
    label = BY_NAME[stack].label
    if "unavailable" in f:
        return f"| {label} | {c} | {f['unavailable']} | | | | | |"
    return (
        f"| {label} | {c} | {f['rps']:,.0f} | {f['rps_min']:,.0f}–{f['rps_max']:,.0f} | "
        f"{f['p50_ms']:.2f} | {f['p99_ms']:.2f} | {f['errors']} | {f['other_cpu_pct']:.0f}% |"
    )


def ratio_table(summary: dict) -> list[str]:
    concurrencies = list(summary["medians"].get("ours", {}))
    lines = [
        "| ours / | " + " | ".join(f"c={c}" for c in concurrencies) + " |",
        "|---|" + "--:|" * len(concurrencies),
    ]
    for name, by_c in summary["ratios"].items():
        setups = set(summary["fastest_setups"][name].values())
        shown = f"{name} ({', '.join(sorted(setups))})" if len(COMPARED[name]) > 1 else name
        lines.append(f"| {shown} | " + " | ".join(times(by_c.get(c)) for c in concurrencies) + " |")
    return [
        *lines,
        "",
        f"ours: p99 at c=256 / p99 at c=32: {times(summary['ours_p99_c256_over_c32'])}.",
    ]


def batch_table(summary: dict, settings: dict) -> list[str]:
    single = figure(summary["medians"], "ours", 32)
    lines = [
        'Batching through ours: `POST /pisqrt` with `{"a": [25, 25, …]}`, '
        f"c={settings['batch_concurrency']}; the last column divides by ours' GET requests/s "
        "at c=32.",
        "",
        "| values per request | requests/s | values/s | p99 ms | errors | × GET |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for size, f in summary["batches"].items():
        if "unavailable" in f:
            lines.append(f"| {int(size):,} | {f['unavailable']} | | | | |")
            continue
        lines.append(
            f"| {int(size):,} | {f['rps']:,.0f} | {f['values_per_s']:,.0f} | "
            f"{f['p99_ms']:.2f} | {f['errors']} | {times(ratio(f['values_per_s'], single))} |"
        )
    return lines


def target_table(summary: dict) -> list[str]:
    lines = [
        "Targets of the HTTP path and of the metrics' cost:",
        "",
        "| target | measured | met |",
        "|---|--:|---|",
    ]
    for t in summary["targets"]:
        met = {True: "met", False: "**not met**", None: "not measured"}[t["met"]]
        value = "—" if t["measured"] is None else f"{t['measured']:g}"
        lines.append(f"| {t['target']} | {value} | {met} |")
    return lines


def model_section(model: dict | None, settings: dict) -> list[str]:
    """The model path: A/B stage by stage, /predict against the ceiling and FastAPI, memory."""
    if not model or not model["stages_us"] and not model["predict"]:
        return []
    lines = [
        "## The model path",
        "",
        f"In-process, one process, no HTTP: digits.py of this checkout (after) against "
        f"digits.py at {settings.get('baseline')} (before), loaded from git into the same "
        f"process; each stage called for {settings.get('ab_seconds_per_stage')} s per variant "
        "per round, the variants in turn; medians over the rounds, µs per call. The batch row: "
        "predict_batch on 10,000 8x8 inputs in one call.",
        "",
        "| input | stage | before µs | after µs | × faster |",
        "|---|---|--:|--:|--:|",
    ]
    for image, by_variant in model["stages_us"].items():
        before, after = by_variant.get("before", {}), by_variant.get("after", {})
        for stage in after:
            lines.append(
                f"| {image} | {stage} | {number(before.get(stage))} | {number(after[stage])} | "
                f"{times(ratio(before.get(stage), after[stage]))} |"
            )
        if len(after) > 1:
            total = model["totals_us"][image]
            lines.append(
                f"| {image} | **total** | {number(total.get('before'))} | "
                f"{number(total.get('after'))} | **{times(model['speedups'].get(image))}** |"
            )
    lines += [
        "",
        f"`POST /predict` with the raw file at c={settings['batch_concurrency']} (wrk, as "
        "above), against the ceiling: algo.predict_digits, what the route runs, called in a "
        f"loop by {WORKERS} processes with no HTTP (calls/s).",
        "",
        "| image | ceiling calls/s | ours req/s | FastAPI req/s | ours / ceiling | ours / FastAPI |"
        " ours p99 ms | errors | ours without metrics req/s | ours / ours without metrics |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for image, by_stack in model["predict"].items():
        ours, peer = by_stack.get("ours", {}), by_stack.get("fastapi", {})
        off = by_stack.get("ours-nometrics", {})
        lines.append(
            f"| {image} | {number(model['ceilings'].get(image))} | "
            f"{ours.get('unavailable') or number(ours.get('rps'))} | "
            f"{peer.get('unavailable') or number(peer.get('rps'))} | "
            f"{times(model['ratios'][image]['ours / ceiling'])} | "
            f"{times(model['ratios'][image]['ours / FastAPI'])} | "
            f"{number(ours.get('p99_ms'))} | {ours.get('errors', '—')} | "
            f"{off.get('unavailable') or number(off.get('rps'))} | "
            f"{times(model['ratios'][image]['ours / ours without metrics'])} |"
        )
    if model["memory"]:
        lines += [
            "",
            "Memory of each worker after serving `/predict` (/proc/PID/smaps_rollup; medians over "
            "workers and rounds): PSS counts a page shared by n processes as 1/n; private is "
            "what the worker alone holds.",
            "",
            "| server | PSS per worker MB | private per worker MB |",
            "|---|--:|--:|",
            *(
                f"| {BY_NAME[stack].label} | {m['pss_mb']:.1f} | {m['private_mb']:.1f} |"
                for stack, m in model["memory"].items()
            ),
        ]
    lines += ["", "Targets of the image path:", "", "| target | measured | met |", "|---|--:|---|"]
    for t in model["targets"]:
        met = {True: "met", False: "**not met**", None: "not measured"}[t["met"]]
        value = "—" if t["measured"] is None else f"{t['measured']:g}"
        lines.append(f"| {t['target']} | {value} | {met} |")
    return [*lines, ""]


def number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def chart(path: Path, results: dict) -> bool:
    """results.png: requests/s and p99 per stack at each concurrency; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # no display: write the file only
    from matplotlib import pyplot

    medians, m = results["summary"]["medians"], results["machine"]
    if not medians:  # a run of the batching rows alone: no GET to chart
        return True
    fig, axes = pyplot.subplots(1, 2, figsize=(14, 5.5))
    # Log scales: nginx alone is 10-50 times the others, which would flatten them to nothing.
    panels = (
        ("rps", "requests/s, median (higher is better)"),
        ("p99_ms", "p99 ms (lower is better)"),
    )
    for axis, (key, title) in zip(axes, panels, strict=True):
        bars(axis, medians, key)
        axis.set_title(title)
        axis.set_yscale("log")
        axis.set_xticks(range(len(medians)), list(medians), fontsize=9)
        axis.grid(axis="y", alpha=0.3)
        axis.legend()
    fig.suptitle(
        f"GET /pisqrt?a=25, {WORKERS} workers, wrk on the same {m['cores']} cores; "
        f"{m['cpu']}, {m['date']} (stacks as in results.md)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot.close(fig)
    return True


def bars(axis, medians: dict, key: str) -> None:
    """One group of bars per stack, one bar per concurrency, each with its value written on it."""
    concurrencies = list(next(iter(medians.values())))
    width = 0.8 / len(concurrencies)
    for i, c in enumerate(concurrencies):
        offset = (i - (len(concurrencies) - 1) / 2) * width
        values = [by_c[c].get(key, 0) for by_c in medians.values()]
        drawn = axis.bar([x + offset for x in range(len(values))], values, width, label=f"c={c}")
        axis.bar_label(drawn, fmt="{:,.0f}" if key == "rps" else "{:.1f}", fontsize=7)
