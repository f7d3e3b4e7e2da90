"""A steady client: GET a URL at a fixed rate, each request on its own thread (so a slow answer
never slows the pace, as with real independent clients), and count the outcomes.

Standard library only: the systemd tests run it inside their box with Debian's python3.

    python3 paced.py URL SECONDS RATE    # prints {"outcomes": {...}, "last": "..."} as JSON
"""

import json
import sys
import threading
import time
import urllib.error
import urllib.request


class Paced:
    """GET url `rate` times a second until stop(); outcomes counts "STATUS" (or the error's
    name) of each answer, `answers` keeps (time it ended, status, body) in order of ending."""

    def __init__(self, url: str, rate: float, limit: int = 10_000):
        self.url, self.rate, self.limit = url, rate, limit
        self.answers: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.pacer = threading.Thread(target=self.run)

    def __enter__(self) -> "Paced":
        self.pacer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def run(self) -> None:
        due = time.monotonic()
        while not self.stopping.is_set() and len(self.threads) < self.limit:
            thread = threading.Thread(target=self.one)
            thread.start()
            self.threads.append(thread)
            due += 1 / self.rate
            time.sleep(max(0.0, due - time.monotonic()))

    def one(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=60) as response:
                status, body = str(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            status, body = str(error.code), error.read().decode(errors="replace")
        except OSError as error:
            status, body = type(error).__name__, str(error)
        with self.lock:
            self.answers.append((time.monotonic(), status, body))

    def stop(self) -> None:
        self.stopping.set()
        if self.pacer.is_alive() or self.pacer.ident is not None:
            self.pacer.join()
        for thread in self.threads:
            thread.join(70)

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, status, _ in self.answers:
            counts[status] = counts.get(status, 0) + 1
        return counts


def main(argv: list[str]) -> None:
    url, seconds, rate = argv[0], float(argv[1]), float(argv[2])
    with Paced(url, rate) as client:
        time.sleep(seconds)
    print(json.dumps({"outcomes": client.outcomes(), "last": client.answers[-1][2]}))


if __name__ == "__main__":
    main(sys.argv[1:])
