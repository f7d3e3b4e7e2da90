"""The per-request budget of GET /pisqrt: CPU µs in nginx and uWSGI, Python's share, syscalls.

Through the stack: wrk at one concurrency while the CPU time (user and kernel) of nginx's and
uWSGI's processes is read from /proc, then again with strace counting the syscalls of both. In
process: the app called in a loop, and the same loop on variants (metrics off, a bare Flask app
answering the same bytes, the function alone), each in a fresh interpreter.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.load import TICKS, run_wrk
from deploy.localstack import PROJECT, Stack, process_tree

# One variant of the in-process loop a run: µs per request, best of several rounds.
LOOP = r"""
import json, os, sys, time
sys.path.insert(0, {project!r})
from werkzeug.test import EnvironBuilder
variant = {variant!r}
if variant == "function":
    import algo
    call = lambda: algo.pi_sqrt(25.0)
else:
    if variant == "flask":
        from flask import Flask, Response
        app = Flask("bare")
        body = b'{{"result": 8.86226925452758}}\n'
        app.add_url_rule("/pisqrt", "p", lambda: Response(body, mimetype="application/json"))
    else:
        from server import create_app
        app = create_app()
    environ = EnvironBuilder(path="/pisqrt", query_string="a=25").get_environ()
    start_response = lambda status, headers, exc_info=None: None
    def call():
        answer = app(dict(environ), start_response)
        b"".join(answer)
        answer.close()
best = float("inf")
for _ in range(15):
    started = time.perf_counter()
    for _ in range(2000):
        call()
    best = min(best, (time.perf_counter() - started) / 2000 * 1e6)
print(json.dumps(best))
"""
VARIANTS = {
    "app": {},
    "app without metrics": {"MODELSERVER_METRICS": "0"},
    "flask": {},
    "function": {},
}


def in_process_us(repeats: int = 3) -> dict[str, float]:
    """µs per request of each variant of the loop, each in its own interpreter; the variants
    taken in turn `repeats` times, the best of each kept, so a passing disturbance does not
    land on one variant only."""
    figures: dict[str, float] = {}
    for _ in range(repeats):
        for name, env in VARIANTS.items():
            code = LOOP.format(project=str(PROJECT), variant=name.split()[0])
            done = subprocess.run(
                [sys.executable, "-c", code],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            best = round(json.loads(done.stdout), 2)
            figures[name] = min(figures.get(name, best), best)
    return figures


def cpu_split(pids: list[int]) -> tuple[int, int]:
    """User and kernel clock ticks of these processes so far."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user, system = user + int(fields[11]), system + int(fields[12])
    return user, system


def per_request_us(before: tuple[int, int], after: tuple[int, int], requests: int) -> dict:
    user, system = ((b - a) * 1e6 / TICKS / requests for a, b in zip(before, after, strict=True))
    return {"user_us": round(user, 1), "kernel_us": round(system, 1)}


def syscalls_per_request(stack: Stack, pids: list[int], script: Path, c: int) -> float:
    """strace -c on the stack's processes during a short wrk run: calls per request."""
    argv = ["strace", "-c", "-f", "-q", *(f"-p{pid}" for pid in pids)]
    tracer = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # attached
        requests = run_wrk(stack.url + "/pisqrt?a=25", c, 2, script, pids)["requests"]
    finally:
        tracer.send_signal(signal.SIGINT)
        _, report = tracer.communicate(timeout=30)
    total = next(line for line in report.splitlines() if line.rstrip().endswith("total"))
    # % time, seconds, usecs/call, calls, [errors,] "total"
    return round(int(total.split()[3]) / requests, 1)


def measure(script: Path, seconds: int, repeats: int = 3, c: int = 32) -> dict:
    """The budget: CPU per request of nginx and uWSGI, syscalls per request, the loop's split
    (its variants in turn `repeats` times)."""
    with Stack(exempt=("127.0.0.1",)) as stack:
        nginx, workers = process_tree(stack.nginx.pid), process_tree(stack.uwsgi.pid)
        url = stack.url + "/pisqrt?a=25"
        run_wrk(url, c, 1, script, nginx + workers)  # warm-up
        before = cpu_split(nginx), cpu_split(workers)
        figures = run_wrk(url, c, seconds, script, nginx + workers)
        after = cpu_split(nginx), cpu_split(workers)
        budget = {
            "concurrency": c,
            "rps": figures["rps"],
            "other_cpu_pct": figures["other_cpu_pct"],
            "nginx": per_request_us(before[0], after[0], figures["requests"]),
            "uwsgi": per_request_us(before[1], after[1], figures["requests"]),
            "nginx_syscalls": syscalls_per_request(stack, nginx, script, c),
            "uwsgi_syscalls": syscalls_per_request(stack, workers, script, c),
        }
    budget["in_process_us"] = in_process_us(repeats)
    budget["in_process_repeats"] = repeats
    return budget


TIMES = {1: "once", 2: "twice", 3: "three times"}


def markdown(budget: dict) -> list[str]:
    """The budget as results.md shows it."""
    loop = budget["in_process_us"]
    python = loop["app"]
    own = loop["app without metrics"] - loop["flask"] - loop["function"]
    rows = [
        ("nginx, user (its code, libc, the uwsgi protocol)", budget["nginx"]["user_us"]),
        ("nginx, kernel (sockets, the access log)", budget["nginx"]["kernel_us"]),
        ("uWSGI workers, user", budget["uwsgi"]["user_us"]),
        ("  of which Python, the app in-process (below)", python),
        ("  so uWSGI's own C code and the protocol, about", budget["uwsgi"]["user_us"] - python),
        ("uWSGI workers, kernel (unix socket, wakeups)", budget["uwsgi"]["kernel_us"]),
    ]
    lines = [
        "",
        f"## Where a request's time goes (GET /pisqrt?a=25, c={budget['concurrency']})",
        "",
        f"One run of ours at {budget['rps']:,.0f} requests/s (other CPU "
        f"{budget['other_cpu_pct']}%): CPU time of each side per request, from /proc; syscalls "
        "per request from `strace -c` during a second, shorter run (strace slows the stack; "
        "the counts per request stand).",
        "",
        "| where | µs per request |",
        "|---|--:|",
        *(f"| {name} | {value:.1f} |" for name, value in rows),
        "",
        f"Syscalls per request: nginx {budget['nginx_syscalls']}, uWSGI workers "
        f"{budget['uwsgi_syscalls']}.",
        "",
        "In process (`app(environ, start_response)` in a loop, best of 15 × 2,000, each variant in "
        "its own interpreter, the variants in turn "
        f"{TIMES.get(budget.get('in_process_repeats', 3), 'several times')}); metrics here count "
        "in memory, not in the workers' files:",
        "",
        "| part | µs per request |",
        "|---|--:|",
        f"| the whole app | {python:.1f} |",
        "| for reference, a minimal stock Flask app answering the same bytes | "
        f"{loop['flask']:.1f} |",
        f"| metrics (the app less the app without them) | "
        f"{python - loop['app without metrics']:.1f} |",
        "| the app without metrics less that stock app and the function: the project's code, net "
        f"of the Flask work it skips (negative: it saves more than it adds) | {own:.1f} |",
        f"| the function, `algo.pi_sqrt(25.0)` | {loop['function']:.2f} |",
    ]
    return lines
