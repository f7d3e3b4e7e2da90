"""Where a uWSGI worker's time goes under load: py-spy samples every worker of the real stack.

    .venv/bin/python bench/profile.py                       # GET /pisqrt?a=25 at c=32, 10 s
    .venv/bin/python bench/profile.py --image png           # POST /predict, the 28x28 PNG

Starts ours (deploy.localstack.Stack), loads it with wrk while `py-spy record` samples each
worker, stops everything, and prints the share of the workers' Python samples spent in each
part of the request (inclusive) and the functions that spend it themselves (exclusive). A
uWSGI worker's time outside Python (reading the request, writing the answer, waiting for the
next one) has no Python stack and is not sampled: the shares are of the time Python runs.
"""

import argparse
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import model as modelpath
from bench.load import run_wrk, write_script
from bench.stacks import LOAD_GENERATOR, PATH
from deploy.localstack import Stack, process_tree

PY_SPY = Path(sys.executable).parent / "py-spy"
# Parts of a request, each found by a substring of the sampled frames ("function (file:line)").
PARTS = {
    # Flask.wsgi_app with the count inline (modelserver/metrics.py), or Flask's own without it.
    "the request's entry (all of its handling, counted)": "app (modelserver/metrics.py",
    "Flask wsgi_app (all of Flask's request handling, uncounted)": "wsgi_app (flask/app.py",
    "request context: create, push, pop": "flask/ctx.py",
    "URL adapter and routing match": "werkzeug/routing/",
    "view dispatch (our view and what it calls)": "dispatch_request (flask/app.py",
    "response: make_response, Response(), headers": "werkzeug/wrappers/response.py",
    "response: WSGI headers and iteration (sansio)": "werkzeug/sansio/response.py",
    "query string parsing (request.args)": "args (werkzeug/",
    "request body read (get_data)": "get_data (werkzeug/",
    "the framework (modelserver/)": "(modelserver/",
    "json.dumps": "dumps (json/",
    "algo.py": "(algo.py:",
    "digits.py": "(digits.py:",
    "garbage collection": "gc",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", choices=["png", "jpeg"], help="POST /predict with it")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    return parser.parse_args(argv)


def request(args, scripts: Path) -> tuple[str, Path]:
    """The path and the wrk script of the request to profile."""
    if args.image is None:
        return PATH, write_script(scripts / "get.lua")
    name = {"png": "28x28 PNG", "jpeg": "640x480 JPEG"}[args.image]
    data, content_type = modelpath.images()[name]
    return "/predict", write_script(scripts / "predict.lua", data, content_type)


def record(stack: Stack, args, scripts: Path) -> tuple[collections.Counter, dict]:
    """wrk on the stack while py-spy samples each worker; the collapsed stacks and wrk's figures."""
    path, script = request(args, scripts)
    workers = process_tree(stack.uwsgi.pid)[1:]
    spies = [
        subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(pid), "--rate", str(args.rate)]
            + ["--duration", str(args.seconds), "--format", "raw"]
            + ["--output", str(scripts / f"{pid}.txt"), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in workers
    ]
    try:
        figures = run_wrk(stack.url + path, args.concurrency, args.seconds, script, [])
    finally:
        for spy in spies:
            try:
                spy.wait(args.seconds + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
    stacks: collections.Counter = collections.Counter()
    for pid in workers:
        output = scripts / f"{pid}.txt"
        for line in output.read_text().splitlines() if output.exists() else []:
            frames, _, count = line.rpartition(" ")
            stacks[frames] += int(count)
    return stacks, figures


def shares(stacks: collections.Counter) -> tuple[dict, list]:
    """Inclusive share of each part, and the top functions by exclusive share, in % of the
    samples with a Python stack."""
    total = sum(n for frames, n in stacks.items() if frames) or 1
    inclusive = {
        name: 100 * sum(n for frames, n in stacks.items() if needle in frames) / total
        for name, needle in PARTS.items()
    }
    own: collections.Counter = collections.Counter()
    for frames, n in stacks.items():
        if frames:
            own[frames.rsplit(";", 1)[-1]] += n
    top = [(100 * n / total, frame) for frame, n in own.most_common(15)]
    return inclusive, top


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not PY_SPY.exists():
        print("py-spy is not installed: .venv/bin/pip install -r bench/requirements.txt")
        return 2
    with tempfile.TemporaryDirectory(prefix="modelserver-profile-") as scripts:
        with Stack(ready_path=PATH, exempt=LOAD_GENERATOR) as stack:
            stacks, figures = record(stack, args, Path(scripts))
    inclusive, top = shares(stacks)
    outside = stacks[""] / (sum(stacks.values()) or 1)
    print(f"{figures['rps']:,.0f} req/s under py-spy; {sum(stacks.values())} samples, ")
    print(f"{100 * outside:.0f} % of them with no Python stack (uWSGI's C code or waiting)")
    print("\ninclusive share of the samples with a Python stack:")
    for name, share in inclusive.items():
        print(f"  {share:5.1f} %  {name}")
    print("\nexclusive (the function itself):")
    for share, frame in top:
        print(f"  {share:5.1f} %  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
