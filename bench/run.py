"""`make bench`: ours against the bare-WSGI and nginx ceilings and the peers, in one run.

Each round starts every stack in turn (A B C, then C B A …), loads it with wrk at each concurrency
after a warm-up, measures batches through ours, and stops it; nothing outlives its turn. The end
writes results.md, results.json (every round) and results.png, and prints the table.

    .venv/bin/python bench/run.py            # full: about 25 min
    .venv/bin/python bench/run.py --quick    # about 5 min
"""

import argparse
import functools
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path; the imports below need the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import batching, budget, one_nginx, paired, report, side_by_side
from bench import model as modelpath
from bench.load import THREADS, run_wrk, write_script, wrk_binary
from bench.stacks import (
    BATCHING_BY_NAME,
    BENCH,
    BODY,
    BY_NAME,
    PATH,
    RESULT,
    STACKS,
    WORKERS,
    StackSpec,
    in_turn,
)
from deploy.localstack import Stack, process_tree, stop_on_signals

# Bounded: about 25 min for the full run and about 5 for --quick (bench/README.md has the sums).
FULL = {
    "rounds": 5,
    "duration": 3,
    "warmup": 1,
    "stacks": [s.name for s in STACKS],
    "batches": [1, 100, 1000, 10_000],
    "pairs": 24,
    "one_nginx": 8,
    "side_by_side": 8,
}
QUICK = {
    "rounds": 3,
    "duration": 1,
    "warmup": 1,
    "stacks": [s.name for s in STACKS if s.in_quick],
    "batches": [10_000],
    "pairs": 4,
    "one_nginx": 2,
    "side_by_side": 2,
}
SHM = "/dev/shm"  # a tmpfs on Linux
SHM_NEEDED = 2 * 1024**3
MAX_BATCH = 10_000  # the service's documented maximum
# The stacks that serve POST /predict with the model: ours (with and without metrics: what
# counting costs where a model runs) and the FastAPI peer behind nginx.
PREDICTING = ("ours", "ours-nometrics", "fastapi")
# The in-process A/B times each stage for this share of --duration, per variant, per round.
AB_SHARE = 1 / 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter measurements")
    parser.add_argument("--rounds", type=int, help=f"default {FULL['rounds']}, quick 3")
    parser.add_argument(
        "--duration", type=int, help=f"seconds per measurement ({FULL['duration']})"
    )
    parser.add_argument("--warmup", type=int, help="seconds of warm-up before each (1), 0: none")
    parser.add_argument("--stacks", type=names, help=f"comma-separated, of: {', '.join(BY_NAME)}")
    parser.add_argument("--concurrency", type=counts, default=[32, 256], help="e.g. 32,256")
    parser.add_argument("--batches", type=counts, help="sizes (1,100,1000,10000), or ''")
    parser.add_argument(
        "--pairs",
        type=int,
        help=f"pairs of windows of ours and ours without metrics in turn, then of ours and "
        f"FastAPI, per concurrency, after the rounds ({FULL['pairs']}, quick {QUICK['pairs']}; "
        "0: none)",
    )
    parser.add_argument(
        "--one-nginx",
        type=int,
        help=f"windows of {one_nginx.WINDOW_S} s of ours and ours without metrics behind one "
        f"nginx, per concurrency, after the pairs ({FULL['one_nginx']}, quick "
        f"{QUICK['one_nginx']}; 0: none)",
    )
    parser.add_argument(
        "--side-by-side",
        type=int,
        help=f"windows of {side_by_side.WINDOW_S} s of ours and FastAPI + uvicorn at once, each "
        f"behind its own nginx, per concurrency, last ({FULL['side_by_side']}, quick "
        f"{QUICK['side_by_side']}; 0: none)",
    )
    parser.add_argument(
        "--side-by-side-check",
        action="store_true",
        help="also each of the two against itself, the same way: what the measure's own spread is",
    )
    parser.add_argument(
        "--no-model", action="store_true", help="leave out the model path (POST /predict, A/B)"
    )
    parser.add_argument(
        "--batching-stacks",
        type=batching_names,
        default=list(BATCHING_BY_NAME),
        help=f"the MLP's batching rows, of: {', '.join(BATCHING_BY_NAME)}; '' for none",
    )
    parser.add_argument(
        "--batching-concurrency",
        type=counts,
        default=batching.CONCURRENCY,
        help="concurrencies of the batching rows (1,8,64)",
    )
    parser.add_argument("--out", type=Path, default=BENCH, help="where results.* go")
    args = parser.parse_args(argv)
    if min(args.concurrency) < THREADS:
        parser.error(f"wrk needs at least one connection per thread: concurrency >= {THREADS}")
    if args.batches and max(args.batches) > MAX_BATCH:
        parser.error(f"the service takes batches of at most {MAX_BATCH:,} values")
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def names(text: str) -> list[str]:
    chosen = [name for name in text.split(",") if name]
    unknown = [name for name in chosen if name not in BY_NAME]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; known: {', '.join(BY_NAME)}")
    return chosen


def batching_names(text: str) -> list[str]:
    chosen = [name for name in text.split(",") if name]
    unknown = [name for name in chosen if name not in BATCHING_BY_NAME]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; known: {', '.join(BATCHING_BY_NAME)}")
    return chosen


def counts(text: str) -> list[int]:
    values = [int(item) for item in text.split(",") if item]
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("each must be a whole number >= 1")
    return values


def missing_requirements(specs: list[StackSpec]) -> str | None:
    """What the run lacks to start, said in one line with the command that installs it."""
    if wrk_binary() is None:
        return "wrk is not installed: sudo apt-get install wrk"
    absent = sorted({p for s in specs for p in s.needs if importlib.util.find_spec(p) is None})
    if absent:
        return f"{', '.join(absent)} not installed: .venv/bin/pip install -r bench/requirements.txt"
    return None


def check_answer(stack: Stack, spec: StackSpec) -> None:
    """Refuse to time a stack that answers something else than the same JSON."""
    status, headers, body = stack.request("GET", PATH)
    same = body == BODY if spec.exact_body else json.loads(body) == {"result": RESULT}
    if status != 200 or not same or headers.get("content-type") != "application/json":
        raise RuntimeError(f"{spec.name} answers {status} {headers} {body!r}")


def predict_status(stack: Stack, data: bytes, content_type: str) -> str | None:
    """None if POST /predict reads the image as the digit drawn; else why it is unavailable."""
    status, _, body = stack.request("POST", "/predict", data, {"Content-Type": content_type})
    if status != 200:
        return f"not available (HTTP {status})"
    if json.loads(body)["result"].get("label") != modelpath.LABEL:
        return f"wrong answer: {body[:80]!r}"
    return None


def measure_predict(stack: Stack, spec: StackSpec, args, scripts: Path) -> list[dict]:
    """POST /predict with each image at the first concurrency, and the workers' memory."""
    rows = []
    c = args.concurrency[0]
    for number, (name, (data, content_type)) in enumerate(modelpath.images().items()):
        row = {"kind": "predict", "stack": spec.name, "concurrency": c, "image": name}
        if reason := predict_status(stack, data, content_type):
            rows.append({**row, "unavailable": reason})
            continue
        script = write_script(scripts / f"predict-{number}.lua", data, content_type)
        rows.append({**row, **measure(stack, c, args, script, "/predict")})
    # The server's workers, after they served: every process under its master but the master.
    workers = process_tree(stack.uwsgi.pid)[1:] if stack.uwsgi else []
    for pid in workers:
        if memory := modelpath.pss_kb(pid):
            rows.append({"kind": "memory", "stack": spec.name, "pid": pid, **memory})
    return rows


def batching_turn(spec: StackSpec, args, scripts: Path) -> list[dict]:
    """One batching stack's turn: the MLP at each of its concurrencies (bench/batching.py)."""
    return batching.turn(
        spec,
        args.batching_concurrency,
        scripts,
        lambda stack, c, script, path: measure(stack, c, args, script, path),
    )


def measure(stack: Stack, c: int, args, script: Path, path: str = PATH) -> dict:
    if args.warmup:
        run_wrk(stack.url + path, c, args.warmup, script, [])
    return run_wrk(stack.url + path, c, args.duration, script, stack.pids())


def batch_body(size: int) -> bytes:
    # The value of the GET, so that a value costs the same model work in both.
    return json.dumps({"a": [25] * size}).encode()


def batch_status(stack: Stack, size: int) -> str | None:
    """None if POST /pisqrt answers a batch of `size` right; else why the row is unavailable."""
    status, _, body = stack.request(
        "POST", "/pisqrt", batch_body(size), {"Content-Type": "application/json"}
    )
    if status != 200:
        return f"not available (HTTP {status})"
    if json.loads(body) != {"result": [RESULT] * size}:
        return f"wrong answer: {body[:80]!r}"
    return None


def measure_batches(stack: Stack, args, scripts: Path, c: int) -> list[dict]:
    rows = []
    for size in args.batches:
        row = {"kind": "batch", "stack": "ours", "concurrency": c, "batch": size}
        if reason := batch_status(stack, size):
            rows.append({**row, "unavailable": reason})
            continue
        script = write_script(scripts / f"post-{size}.lua", batch_body(size))
        figures = measure(stack, c, args, script, "/pisqrt")
        rows.append({**row, **figures, "values_per_s": round(figures["rps"] * size, 1)})
    return rows


def turn(spec: StackSpec, args, scripts: Path) -> list[dict]:
    """One stack's turn in a round: start it, check it, load it at each concurrency, stop it."""
    rows = []
    with spec.start() as stack:
        check_answer(stack, spec)
        for c in args.concurrency:
            figures = measure(stack, c, args, scripts / "get.lua")
            rows.append({"kind": "get", "stack": spec.name, "concurrency": c, **figures})
        if spec.name == "ours" and args.batches:
            rows += measure_batches(stack, args, scripts, args.concurrency[0])
        if spec.name in PREDICTING and not args.no_model:
            rows += measure_predict(stack, spec, args, scripts)
    return rows


def in_process(args, variants: dict) -> list[dict]:
    """The model path without HTTP: the A/B stage by stage, then the 2-process ceiling."""
    model, files = modelpath.digits.load_model(), modelpath.images()
    rows = [
        {"kind": "inprocess", **row}
        for row in modelpath.ab_round(variants, model, files, args.duration * AB_SHARE)
    ]
    for name, (data, _) in files.items():
        rows.append(
            {"kind": "ceiling", "image": name, **modelpath.ceiling(data, args.duration, WORKERS)}
        )
    return rows


def progress(round_no: int, rounds: int, row: dict) -> str:
    if row["kind"] == "inprocess":
        return (
            f"round {round_no}/{rounds} in-process {row['image']} {row['variant']} "
            f"{row['stage']}: {row['us']:,.1f} us"
        )
    if row["kind"] == "ceiling":
        return (
            f"round {round_no}/{rounds} ceiling {row['image']}: {row['rps']:,.0f} calls/s; "
            f"other processes {row['other_cpu_pct']:.0f}% CPU"
        )
    if row["kind"] == "memory":
        return f"round {round_no}/{rounds} {row['stack']} worker PSS {row['pss_kb'] / 1024:.1f} MB"
    what = {
        "get": row["stack"],
        "mlp": f"{row['stack']} POST /mlp",
        "batch": f"ours batch of {row.get('batch')}",
        "predict": f"{row['stack']} POST /predict {row.get('image')}",
    }[row["kind"]]
    if "unavailable" in row:
        return f"round {round_no}/{rounds} {what}: {row['unavailable']}"
    return (
        f"round {round_no}/{rounds} {what} c={row['concurrency']}: {row['rps']:,.0f} req/s, "
        f"p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, errors {row['errors']}; "
        f"other processes {row['other_cpu_pct']:.0f}% CPU"
    )


def run_rounds(specs: list[StackSpec], args) -> list[dict]:
    measurements = []
    variants = {}
    if not args.no_model:
        baseline = modelpath.baseline_module()
        variants = {"before": baseline, "after": modelpath.digits} if baseline else {}
        variants = variants or {"after": modelpath.digits}
        modelpath.check_labels(variants, modelpath.digits.load_model(), modelpath.images())
    with tempfile.TemporaryDirectory(prefix="modelserver-bench-") as scripts:
        write_script(Path(scripts) / "get.lua")
        for round_no in range(1, args.rounds + 1):
            model_rows = in_process(args, variants) if variants else []
            for row in model_rows:
                measurements.append({"round": round_no, **row})
                print(progress(round_no, args.rounds, row), flush=True)
            for spec in in_turn(specs, round_no):
                for row in turn(spec, args, Path(scripts)):
                    measurements.append({"round": round_no, **row})
                    print(progress(round_no, args.rounds, row), flush=True)
            for name in args.batching_stacks:
                for row in batching_turn(BATCHING_BY_NAME[name], args, Path(scripts)):
                    measurements.append({"round": round_no, **row})
                    print(progress(round_no, args.rounds, row), flush=True)
    return measurements


def measure_pairs(args, versus: str) -> list[dict]:
    """Ours against versus (without metrics: counting's cost; FastAPI) in adjacent windows
    (bench/paired.py), at each concurrency."""

    def show(row: dict) -> None:
        print(
            f"pair {row['pair']}/{args.pairs} {row['stack']} c={row['concurrency']}: "
            f"{row['rps']:,.0f} req/s; other processes {row['other_cpu_pct']:.0f}% CPU",
            flush=True,
        )

    measure = functools.partial(paired.measure, versus=versus)
    return measure_with_get(measure, args.pairs, args.concurrency, show)


def measure_one_nginx(args) -> list[dict]:
    """Counting's cost in CPU time, both stacks behind one nginx (bench/one_nginx.py)."""

    def show(row: dict) -> None:
        print(
            f"one nginx, window {row['window']}/{args.one_nginx} c={row['concurrency']}: "
            f"{row['rps']:,.0f} req/s, uWSGI with metrics {row['with_us'] or 0:.1f} µs a "
            f"request, without {row['without_us'] or 0:.1f}; other processes "
            f"{row['other_cpu_pct']:.0f}% CPU",
            flush=True,
        )

    return measure_with_get(one_nginx.measure, args.one_nginx, args.concurrency, show)


def measure_side_by_side(args) -> list[dict]:
    """Ours against FastAPI in CPU time, both at once (bench/side_by_side.py); with
    --side-by-side-check, each against itself first."""
    pairs = [(side_by_side.OURS, side_by_side.PEER)]
    if args.side_by_side_check:
        pairs = [(side_by_side.OURS,) * 2, (side_by_side.PEER,) * 2, *pairs]

    def show(row: dict) -> None:
        sides = ", ".join(
            f"{name} {s['rps']:,.0f} req/s, {side_by_side.total_us(s) or 0:.1f} µs a request"
            for name, s in zip(row["stacks"], row["sides"], strict=True)
        )
        print(
            f"side by side, window {row['window']}/{args.side_by_side} "
            f"c={row['concurrency']}: {sides}; other processes {row['other_cpu_pct']:.0f}% CPU",
            flush=True,
        )

    rows = []
    with tempfile.TemporaryDirectory(prefix="modelserver-bench-") as scripts:
        script = write_script(Path(scripts) / "get.lua")
        for names in pairs:
            specs = (BY_NAME[names[0]], BY_NAME[names[1]])
            rows += side_by_side.measure(
                args.side_by_side, args.concurrency, check_answer, script, show, specs
            )
    return rows


def measure_with_get(
    measure: Callable, count: int, concurrencies: list[int], show: Callable
) -> list[dict]:
    """measure (paired's, for counting or FastAPI, or one_nginx's) with wrk's GET script:
    count windows or pairs."""
    with tempfile.TemporaryDirectory(prefix="modelserver-bench-") as scripts:
        script = write_script(Path(scripts) / "get.lua")
        return measure(
            count,
            concurrencies,
            check_answer,
            lambda stack, c, seconds, pids: run_wrk(stack.url + PATH, c, seconds, script, pids),
            show,
        )


def write_results(args, specs: list[StackSpec], measurements: list[dict], run: dict) -> str:
    """results.json, results.md and results.png in args.out; returns the Markdown."""
    results = {
        "run": run,
        "settings": {
            "quick": args.quick,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "threads": THREADS,
            "concurrency": args.concurrency,
            "batch_concurrency": args.concurrency[0],
            "request": f"GET {PATH}",
            "model_path": not args.no_model,
            "batching_concurrency": args.batching_concurrency,
            "baseline": modelpath.BASELINE,
            "ab_seconds_per_stage": round(args.duration * AB_SHARE, 3),
            "metrics_pairs": args.pairs if paired.wanted(args.stacks) else 0,
            "fastapi_pairs": args.pairs if paired.wanted(args.stacks, paired.PEER) else 0,
            "pair_window_s": paired.WINDOW_S,
            "pairs_per_start": paired.PER_START,
            "one_nginx_windows": args.one_nginx if paired.wanted(args.stacks) else 0,
            "one_nginx_window_s": one_nginx.WINDOW_S,
            "side_by_side_windows": args.side_by_side if side_by_side.wanted(args.stacks) else 0,
            "side_by_side_window_s": side_by_side.WINDOW_S,
        },
        "machine": report.machine(),
        "stacks": {s.name: {"label": s.label, "how": s.how} for s in specs},
        "summary": report.summarize(measurements),
        "measurements": measurements,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(args.out / "results.json", results)
    text = report.markdown(results)
    (args.out / "results.md").write_text(text)
    if not report.chart(args.out / "results.png", results):
        print("no chart: matplotlib is not installed (bench/requirements.txt)", file=sys.stderr)
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    specs = [BY_NAME[name] for name in args.stacks]
    batching_specs = [BATCHING_BY_NAME[name] for name in args.batching_stacks]
    if problem := missing_requirements(specs + batching_specs):
        print(problem, file=sys.stderr)
        return 2
    # The same worker count everywhere: uwsgi.ini's default, whatever this shell exports.
    os.environ.pop("MODELSERVER_WORKERS", None)
    # Every stack's run dir (socket, logs, metrics files) in memory, as the service's /run is:
    # the cost of metrics is then what production pays, not that of a disk's page cache. Only
    # with room to spare: nginx alone logs about 400 MB a turn at 140,000 requests/s.
    if os.path.isdir(SHM) and shutil.disk_usage(SHM).free > SHM_NEEDED:
        tempfile.tempdir = SHM
    stop_on_signals()
    started, load = time.monotonic(), os.getloadavg()[0]
    try:
        measurements = run_rounds(specs, args)
        for versus in (paired.WITHOUT, paired.PEER):
            if args.pairs and paired.wanted(args.stacks, versus):
                measurements += measure_pairs(args, versus)
        if args.one_nginx and paired.wanted(args.stacks):
            measurements += measure_one_nginx(args)
        if args.side_by_side and side_by_side.wanted(args.stacks):
            measurements += measure_side_by_side(args)
    except KeyboardInterrupt:
        print("interrupted: every process started was stopped; no results written", flush=True)
        return 130
    # The load average tells a reader whether something else shared the cores with the run.
    run = {
        "elapsed_s": round(time.monotonic() - started, 1),
        "load_1min_start": load,
        "load_1min_end": os.getloadavg()[0],
    }
    if "ours" in args.stacks:  # where a request's time goes, after the rounds
        with tempfile.TemporaryDirectory(prefix="modelserver-budget-") as scripts:
            # The in-process loop's variants in turn as many times as there were rounds, up to 3.
            run["budget"] = budget.measure(
                write_script(Path(scripts) / "get.lua"), args.duration, min(3, args.rounds)
            )
    print(write_results(args, specs, measurements, run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
