"""wrk, the load generator: one bounded run at a given concurrency, its figures as a dict."""

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

THREADS = 2  # one per core; wrk shares the machine's 2 cores with the servers it loads
MARK = "BENCH-RESULT "

# wrk calls done() once at the end; it prints the figures as one JSON line that we look for.
# A script with neither request() nor response() keeps wrk's fast path (one prebuilt request).
REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    "MARK", summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end
""".replace("MARK", MARK)

# The body is read from a file next to the script: binary (an image) as well as JSON.
POST_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "CONTENT_TYPE"
local file = assert(io.open("BODY_FILE", "rb"))
wrk.body = file:read("*a")
file:close()
"""

ERRORS = ("connect", "read", "write", "timeout", "status")
# Above this share of the CPU used by others during a measurement, it counts as shared: results.md
# warns, and a pair of bench/paired.py is left out.
SHARED_PCT = 10
TICKS = os.sysconf("SC_CLK_TCK")


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def write_script(
    path: Path, post_body: bytes | None = None, content_type: str = "application/json"
) -> Path:
    """The Lua script of a run: the reporter, and for a POST its method, header and body."""
    post = ""
    if post_body is not None:
        body_file = path.with_suffix(".body")
        body_file.write_bytes(post_body)
        post = POST_LUA.replace("CONTENT_TYPE", content_type).replace("BODY_FILE", str(body_file))
    path.write_text(post + REPORT_LUA)
    return path


def wrk_argv(url: str, concurrency: int, seconds: int, script: Path) -> list[str]:
    return [
        wrk_binary() or "wrk",
        # wrk wants at least one connection per thread: c=1 runs one.
        "--threads", str(min(THREADS, concurrency)),
        "--connections", str(concurrency),
        "--duration", f"{seconds}s",
        # A response slower than this counts as an error, not as a latency.
        "--timeout", "5s",
        "--latency",
        "--script", str(script),
        url,
    ]  # fmt: skip


def run_wrk(url: str, concurrency: int, seconds: int, script: Path, pids: list[int]) -> dict:
    """One wrk run: requests/s, p50/p99 in ms, errors (socket errors + HTTP status >= 400).

    pids: the stack's processes, to tell their CPU time and wrk's from everybody else's.
    """
    before = cpu_ticks(pids)
    # run() kills wrk (by its PID) if this times out or is interrupted, and always waits for it.
    done = subprocess.run(
        wrk_argv(url, concurrency, seconds, script),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    after = cpu_ticks(pids)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return {
        **figures(done.stdout),
        "other_cpu_pct": other_cpu_pct(before, after),
        "busy_pct": busy_pct(before, after),
    }


def run_wrks(urls: list[str], concurrency: int, seconds: int, script: Path) -> list[dict]:
    """One wrk per URL, all at once: each one's figures and its own CPU time ("wrk_cpu_s").

    Each wrk is reaped with wait4, which gives its resource usage alone; one that outlives its
    duration by 30 s is killed, and every one is reaped whatever happens.
    """
    with tempfile.TemporaryDirectory(prefix="modelserver-wrk-") as out:
        procs = []
        try:
            for number, url in enumerate(urls):
                with open(Path(out, f"{number}.out"), "w") as stdout:
                    argv = wrk_argv(url, concurrency, seconds, script)
                    procs.append(subprocess.Popen(argv, stdout=stdout, stderr=subprocess.STDOUT))
            usage = [reap(proc, time.monotonic() + seconds + 30) for proc in procs]
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    reap(proc, time.monotonic() + 5)
        results = []
        for number, (proc, cpu_s) in enumerate(zip(procs, usage, strict=True)):
            output = Path(out, f"{number}.out").read_text()
            if proc.returncode != 0:
                raise RuntimeError(f"wrk failed ({proc.returncode}): {output}")
            results.append({**figures(output), "wrk_cpu_s": cpu_s})
        return results


def reap(proc: subprocess.Popen, deadline: float) -> float:
    """Wait for proc, killing it at deadline; its user + system CPU time in seconds."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if not pid and time.monotonic() >= deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.05)


def cpu_ticks(pids: list[int]) -> tuple[int, int, int]:
    """Clock ticks so far: the machine's busy and total, and the stack's and wrk's own."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total, idle = sum(fields), fields[3] + fields[4]  # idle + iowait
    ours = sum(process_ticks(pid) for pid in pids)
    # wrk has been waited for once it ended: its time is in our children's times.
    children = os.times()
    ours += round((children.children_user + children.children_system) * TICKS)
    return total - idle, total, ours


def process_ticks(pid: int) -> int:
    """User + system clock ticks of a live process (fields 14 and 15 of /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it ended: its time is lost, which can only hide load, never invent it
        return 0
    return int(fields[11]) + int(fields[12])


def other_cpu_pct(before: tuple[int, int, int], after: tuple[int, int, int]) -> float:
    """The share of all cores that processes outside the measurement used during it, in %.

    Not 0 means something else ran on the machine and took CPU from the stack or wrk.
    """
    busy, total, ours = (b - a for a, b in zip(before, after, strict=True))
    return round(100 * max(busy - ours, 0) / total, 1) if total else 0.0


def busy_pct(before: tuple[int, int, int], after: tuple[int, int, int]) -> float:
    """The share of all cores busy during a measurement, in %: whether the stack saturated them."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(100 * busy / total, 1) if total else 0.0


def figures(output: str) -> dict:
    """The figures of wrk's output, from the line our done() printed."""
    line = next((x for x in output.splitlines() if x.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"no result line in wrk's output:\n{output}")
    raw = json.loads(line[len(MARK) :])
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 3),
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": sum(raw[kind] for kind in ERRORS),
        "error_kinds": {kind: raw[kind] for kind in ERRORS},
    }
