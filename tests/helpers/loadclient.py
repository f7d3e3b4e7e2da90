"""A steady stream of GETs for a bounded time, from several threads; prints what came back as JSON.

Standard library only: it runs inside the systemd test box under Debian's python3.
    python3 loadclient.py URL SECONDS THREADS
"""

import http.client
import json
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

MAX_REQUESTS_PER_THREAD = 100_000  # a bound in count as well as in time


def run(url: str, seconds: float, threads: int) -> dict:
    parts = urlsplit(url)
    path = f"{parts.path}?{parts.query}"
    outcomes: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        for _ in range(MAX_REQUESTS_PER_THREAD):
            if time.monotonic() >= deadline:
                return
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                outcome = f"{response.status} {body.decode(errors='replace').strip()}"
            except OSError as error:
                outcome = f"error {type(error).__name__}"
            finally:
                conn.close()
            with lock:
                outcomes[outcome] += 1

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return dict(outcomes)


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))))
