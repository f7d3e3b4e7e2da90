"""The two ways batching could fit the pre-fork design, measured without HTTP (docs/batching.md).

threads: WORKERS processes forked after the model is built, each with C/WORKERS threads, batch
    their own threads' items (modelserver.batching.Batcher, what ships);
process: one batcher process forked after the model is built, the only one to call it; WORKERS
    client processes with C/WORKERS threads each hand it one item at a time over a unix socket
    and wait for the answer (what a batcher process behind sync workers would do, at best: the
    workers need threads too, or they hand over at most WORKERS items at once).

Each client sends one item (bench/mlp.py: 16 numbers in, 4 out) and the next when it is
answered, for SECONDS; printed: items/s, p50 and p99 ms, batches formed.
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/batching_options.py [SECONDS]
"""

import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import mlp  # noqa: E402
from modelserver.batching import Batcher  # noqa: E402

WORKERS = 2
CONCURRENCY = (8, 64)
ITEM = struct.Struct(f"<{mlp.FEATURES}f")
ANSWER = struct.Struct(f"<{mlp.OUTPUTS}f")


def clients(threads: int, seconds: float, ask) -> list[float]:
    """threads threads, each calling ask(item) in a loop for seconds; every latency in s."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    item = mlp.example(0)

    def client() -> None:
        mine = []
        for _ in range(1_000_000):
            if time.perf_counter() > stop:
                break
            start = time.perf_counter()
            ask(item)
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=client) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return latencies


def in_children(count: int, work) -> list:
    """work() in count forked children; their JSON results."""
    pipes, pids = [], []
    for _ in range(count):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.write(write, json.dumps(work()).encode())
            os._exit(0)
        os.close(write)
        pipes.append(read)
        pids.append(pid)
    results = []
    for read, pid in zip(pipes, pids, strict=True):
        with os.fdopen(read) as pipe:
            results.append(json.loads(pipe.read()))
        os.waitpid(pid, 0)
    return results


def with_threads(weights, c: int, seconds: float) -> list:
    def work():
        batcher = Batcher(mlp.MAX_BATCH_SIZE, mlp.MAX_BATCH_DELAY_MS / 1000)
        calls = [0]

        def run(rows):
            calls[0] += 1
            return mlp.mlp(weights, [row[0] for row in rows])

        def ask(item):
            deadline = time.perf_counter() + 30
            batcher.submit([[item]], run, deadline)

        return {"latencies": clients(c // WORKERS, seconds, ask), "calls": calls[0]}

    return in_children(WORKERS, work)


def batcher_process(weights, listener: socket.socket) -> None:
    """Accept clients, read their items, answer them in batches: one thread, like a mule."""
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    waiting: list[tuple[socket.socket, bytes]] = []
    crowded, calls = True, 0
    while True:
        timeout = 0 if waiting else None
        for key, _ in selector.select(timeout):
            if key.fileobj is listener:
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ)
                continue
            data = key.fileobj.recv(ITEM.size)
            if not data:
                selector.unregister(key.fileobj)
                key.fileobj.close()
                continue
            waiting.append((key.fileobj, data))
        if not waiting:
            continue
        if crowded and len(waiting) < mlp.MAX_BATCH_SIZE:  # the same policy as the threads'
            until = time.perf_counter() + mlp.MAX_BATCH_DELAY_MS / 1000
            while len(waiting) < mlp.MAX_BATCH_SIZE and time.perf_counter() < until:
                for key, _ in selector.select(until - time.perf_counter()):
                    if key.fileobj is not listener:
                        data = key.fileobj.recv(ITEM.size)
                        if data:
                            waiting.append((key.fileobj, data))
        batch, waiting = waiting[: mlp.MAX_BATCH_SIZE], waiting[mlp.MAX_BATCH_SIZE :]
        crowded = len(batch) > 1
        x = np.array([ITEM.unpack(data) for _, data in batch], dtype=np.float32)
        out = mlp.forward(weights, x)
        calls += 1
        for (conn, _), row in zip(batch, out, strict=True):
            conn.sendall(ANSWER.pack(*row))


def with_process(weights, c: int, seconds: float) -> list:
    path = os.path.join(tempfile.mkdtemp(), "batcher.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1024)
    batcher = os.fork()
    if batcher == 0:
        batcher_process(weights, listener)
        os._exit(0)
    listener.close()

    def work():
        local = threading.local()

        def ask(item):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.connect(path)
            conn.sendall(ITEM.pack(*item))
            conn.recv(ANSWER.size, socket.MSG_WAITALL)

        return {"latencies": clients(c // WORKERS, seconds, ask), "calls": None}

    try:
        return in_children(WORKERS, work)
    finally:
        os.kill(batcher, 9)
        os.waitpid(batcher, 0)
        os.unlink(path)


def report(name: str, c: int, seconds: float, results: list) -> dict:
    latencies = sorted(x for r in results for x in r["latencies"])
    calls = [r["calls"] for r in results if r["calls"] is not None]
    row = {
        "design": name,
        "c": c,
        "items_per_s": round(len(latencies) / seconds),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2),
        "items_per_call": round(len(latencies) / sum(calls), 1) if calls else None,
        "load_1min": os.getloadavg()[0],
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3
    weights = mlp.load_mlp()
    for c in CONCURRENCY:
        for name, design in (("threads", with_threads), ("process", with_process)):
            report(name, c, seconds, design(weights, c, seconds))


if __name__ == "__main__":
    main()
