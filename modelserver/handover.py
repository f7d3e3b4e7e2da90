"""A reload that no client notices: new code and models go live while requests are answered.

    python modelserver/handover.py SOCKET UWSGI_COMMAND...

uWSGI's own graceful reload stops every worker, then loads the app and its models again before
it forks new ones: for that long (seconds, for a model that takes seconds to load) nobody
answers, requests wait in the socket's queue, and a steady client soon has more in flight than
nginx lets one client have (429). Here a second uWSGI, started with the same command, takes the
running one's listening socket from its zerg server (uwsgi.ini: zerg-server) and loads the new
code beside it; once its workers accept, the running one reloads gracefully while the second
answers from the same queue; once the reloaded workers accept, the second stops gracefully. No
connection is refused or dropped: there is one socket, and a worker is always taking from it.

If the new code or a model fails to load (the second uWSGI exits, before any of its workers
answers, or its /readyz is not 200), the running one is left as it is: a broken update never
takes the service down, nor answers a request. The second
counts its requests in the service's metrics files, under worker keys of its own: the totals
include what it answered.

Standard library only: systemd's ExecReload and deploy/localstack.py run this file directly.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

# How long each step may take before the handover gives up: the models' load time bounds it, so
# $MODELSERVER_LOAD_SECONDS (default 120) raises it for models that load for longer.
STEP_SECONDS = float(os.environ.get("MODELSERVER_LOAD_SECONDS", "120"))
POLL_SECONDS = 0.1
# The second instance's worker keys in the metrics' files start here: far above any worker id.
SECOND_WORKER_KEYS = 1000


def stats(socket_path: str) -> dict | None:
    """The JSON of a uWSGI stats socket (SOCKET.stats, uwsgi.ini), or None while it is down.
    The app reads it as serverstats.uwsgi_stats does; this file runs alone, on the standard
    library only."""
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(5)
            conn.connect(socket_path + ".stats")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        return json.loads(data)
    except (OSError, ValueError):  # reloading, starting, or gone
        return None


def accepting_workers(socket_path: str) -> set[int]:
    """The pids of the workers that take requests now (all of them, or none)."""
    found = stats(socket_path)
    if found is None:
        return set()
    workers = [w for w in found["workers"] if w["pid"] > 0]
    if not workers or not all(w["accepting"] for w in workers):
        return set()
    return {w["pid"] for w in workers}


def ready(socket_path: str, asks: int) -> bool:
    """GET /readyz over the uwsgi protocol `asks` times (so that each worker likely answers
    once): True if every answer is 200, every model loaded."""
    for _ in range(asks):
        try:
            with socket.socket(socket.AF_UNIX) as conn:
                conn.settimeout(30)
                conn.connect(socket_path)
                conn.sendall(uwsgi_request("/readyz"))
                status_line = conn.makefile("rb").readline()
        except OSError:
            return False
        if status_line.split()[1:2] != [b"200"]:
            return False
    return True


def uwsgi_request(path: str) -> bytes:
    """A GET of path as nginx's uwsgi_pass sends it: a header, then the request's variables."""
    variables = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": path,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
    }
    body = b"".join(
        len(part).to_bytes(2, "little") + part
        for key, value in variables.items()
        for part in (key.encode(), value.encode())
    )
    return b"\0" + len(body).to_bytes(2, "little") + b"\0" + body


def renewed(pids: set[int], old: set[int]) -> bool:
    """Workers accept, and none of them is one of the old ones."""
    return bool(pids) and not pids & old


def wait(what: str, predicate, process: subprocess.Popen | None = None):
    """predicate()'s first truthy value within STEP_SECONDS; RuntimeError naming `what` if not,
    or at once if `process` exits."""
    deadline = time.monotonic() + STEP_SECONDS
    while not (result := predicate()):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the new uWSGI exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what}: not within {STEP_SECONDS:g} s (MODELSERVER_LOAD_SECONDS, for models "
                "that load for longer)"
            )
        time.sleep(POLL_SECONDS)
    return result


def start_second(socket_path: str, command: list[str]) -> tuple[subprocess.Popen, str]:
    """The second uWSGI, on the running one's socket (from its zerg server) and its own (for
    its stats, beside the first's), counting in the service's metrics directory under worker
    keys of its own."""
    run_dir = os.path.dirname(socket_path)
    own = os.path.join(run_dir, "handover.sock")
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)  # systemd's: the service's main process is the first uWSGI
    env["MODELSERVER_SOCKET"] = own
    env["MODELSERVER_METRICS_WORKER_OFFSET"] = str(SECOND_WORKER_KEYS)
    env["MODELSERVER_HANDOVER"] = "1"  # a model that fails stops it before it answers
    # A process group of its own: if it fails, it is killed with its workers (stop()).
    second = subprocess.Popen(
        [*command, "--zerg", socket_path + ".zerg"],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return second, own


def stop(process: subprocess.Popen, served: bool) -> None:
    """served: its workers were found ready and answered beside the running ones: a graceful
    stop (SIGTERM: uwsgi.ini lets them finish their requests), waited for. Else the new code
    failed, or is still loading past the step's time: it must not begin to answer, so it is
    killed at once, its workers with it (a loading master may not heed SIGTERM until loaded)."""
    if process.poll() is not None:
        return
    if not served:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STEP_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def handover(socket_path: str, command: list[str], log=print) -> float:
    """Reload the uWSGI serving socket_path with a second one from `command` answering
    meanwhile; the seconds it took."""
    start = time.monotonic()
    old = wait("the running uWSGI's workers", lambda: accepting_workers(socket_path))
    second, own = start_second(socket_path, command)
    served = False
    try:
        workers = wait("the new code's workers", lambda: accepting_workers(own), second)
        if not ready(own, 2 * len(workers)):
            raise RuntimeError("the new code is not ready (GET /readyz): see the log above")
        served = True
        log(f"handover: the new uWSGI (pid {second.pid}) answers; reloading the running one")
        with open(socket_path + ".fifo", "w") as fifo:  # uwsgi.ini's master-fifo
            fifo.write("r")
        # Done once every worker is a new one (the reload forks them all anew) and accepts.
        wait("the reloaded workers", lambda: renewed(accepting_workers(socket_path), old))
    finally:
        stop(second, served)
    seconds = time.monotonic() - start
    log(f"handover: done in {seconds:.1f} s")
    return seconds


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        handover(argv[0], argv[1:], log=lambda text: print(text, flush=True))
    except (RuntimeError, OSError) as error:
        print(f"handover failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
