"""One client cannot take the service from the others: an attacker on 127.0.0.2 against the
limits as shipped, while an ordinary client on 127.0.0.1 keeps getting fast answers."""

import io
import json
import socket
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest
from PIL import Image, ImageDraw

from deploy.localstack import Stack
from helpers import SERVED_APP, assert_json_error, multipart, upload

ATTACKER = "127.0.0.2"
# Tests of one limit each have their own address: a rate spent by the tests before them would
# turn their requests into 429s of another limit.
FLOODER = "127.0.0.3"
HOLDER = "127.0.0.4"
TRICKLER = "127.0.0.5"
# The per-client limits of deploy/nginx/modelserver.
IN_FLIGHT = 32
RATE_BURST = 400


@pytest.fixture(scope="module")
def limited():
    """The stack with the site's per-client limits as shipped: no client is exempt. It serves a
    user's functions (usermodels.SERVED): half, a function of one number, and size, of images."""
    with Stack(uwsgi_args=SERVED_APP) as running:
        yield running


def attacker_socket(stack: Stack, address: str = ATTACKER) -> socket.socket:
    """A connection to the stack from an attacker's address."""
    sock = socket.socket()
    sock.settimeout(10)
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", stack.port))
    return sock


def status_of(sock: socket.socket, timeout: float) -> int | None:
    """The status of the answer waiting on sock, or None if there is none within timeout."""
    sock.settimeout(timeout)
    try:
        head = sock.recv(4096)
    except (TimeoutError, ConnectionError):
        return None
    return int(head.split()[1]) if head.startswith(b"HTTP/") else None


def ordinary_latencies(stack: Stack, count: int, pause: float = 0.05) -> list[float]:
    """count GET /half from 127.0.0.1, one at a time: the seconds each took (all 200)."""
    latencies = []
    for _ in range(count):
        start = time.monotonic()
        status, _, body = stack.request("GET", "/half?a=25", timeout=10)
        latencies.append(time.monotonic() - start)
        assert status == 200, body
        time.sleep(pause)
    return latencies


def summary(latencies: list[float]) -> str:
    return (
        f"n={len(latencies)}, median {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )


def test_1100_slow_bodies_from_one_client_leave_the_others_served(limited, figure):
    slow = b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    slow += b"Content-Length: 100\r\n\r\n{"  # and the other 99 bytes never come
    with ExitStack() as held:
        socks = []
        for _ in range(1100):
            sock = held.enter_context(attacker_socket(limited))
            sock.sendall(slow)
            socks.append(sock)
        latencies = ordinary_latencies(limited, 20)
        # Each over the limit was answered at once; the first 32 are still waiting for the body.
        statuses = [status_of(sock, 0.01 if i < 100 else 0.001) for i, sock in enumerate(socks)]
    figure("GET /half from 127.0.0.1 while 127.0.0.2 holds 1,100 slow bodies", summary(latencies))
    assert max(latencies) < 1
    assert statuses.count(429) >= 1100 - IN_FLIGHT - 50, statuses.count(429)
    assert statuses.count(None) >= IN_FLIGHT - 2  # the ones let in wait for their bodies


def test_the_429_of_requests_in_flight_is_json_and_names_the_limit(limited):
    slow = b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    slow += b"Content-Length: 100\r\n\r\n{"
    with ExitStack() as held:
        for _ in range(IN_FLIGHT):
            held.enter_context(attacker_socket(limited, HOLDER)).sendall(slow)
        time.sleep(0.2)
        sock = held.enter_context(attacker_socket(limited, HOLDER))
        sock.sendall(b"GET /half?a=25 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    status = int(lines[0].split()[1])
    assert_json_error(status, headers, body, 429, "32 requests", "in flight", "from this client")
    assert headers["retry-after"] == "1"


def flood(stack: Stack, count: int) -> list[tuple[int, dict, bytes]]:
    """count GET /half from FLOODER, each sent when the last is answered, on one connection
    for as long as nginx keeps it open."""
    answers = []
    while len(answers) < count:
        with attacker_socket(stack, FLOODER) as sock, sock.makefile("rb") as stream:
            while len(answers) < count:
                try:
                    sock.sendall(b"GET /half?a=25 HTTP/1.1\r\nHost: x\r\n\r\n")
                    line = stream.readline()
                except ConnectionResetError:  # nginx closed it as we sent (keepalive_requests)
                    break
                if not line:  # nginx closed it
                    break
                headers = {}
                while (header := stream.readline()) != b"\r\n":
                    name, _, value = header.decode().partition(":")
                    headers[name.lower()] = value.strip()
                body = stream.read(int(headers["content-length"]))
                answers.append((int(line.split()[1]), headers, body))
    return answers


def test_a_flood_of_requests_gets_429_past_the_burst_and_others_are_served(limited, figure):
    answers = []
    flooder = threading.Thread(target=lambda: answers.extend(flood(limited, 3 * RATE_BURST)))
    flooder.start()
    latencies = ordinary_latencies(limited, 20, pause=0.01)
    flooder.join(30)
    statuses = [status for status, _, _ in answers]
    figure("GET /half from 127.0.0.1 during 127.0.0.3's flood", summary(latencies))
    figure("the flood's statuses", dict(Counter(statuses)))
    assert max(latencies) < 1
    assert len(answers) == 3 * RATE_BURST
    assert statuses[:RATE_BURST] == [200] * RATE_BURST  # the burst is served at once
    assert statuses.count(429) > RATE_BURST / 2
    last_429 = next(answer for answer in reversed(answers) if answer[0] == 429)
    assert_json_error(*last_429, 429, "200 requests per second")
    assert last_429[1]["retry-after"] == "1"


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def digit_one(mode: str) -> Image.Image:
    """A 4096 x 4096 drawing of a 1."""
    image = Image.new("L", (4096, 4096), 255)
    ImageDraw.Draw(image).line([(2048, 400), (2048, 3600)], fill=0, width=300)
    return image.convert(mode)


# 4096 x 4096 PNGs that compress to tens of KB: cheap to send, costly to decode.
BIG_PNG = png(Image.new("L", (4096, 4096), 255))
DIGIT_RGB_PNG = png(digit_one("RGB"))


def test_four_64_image_uploads_at_once_leave_the_others_served(limited, figure):
    body, content_type = multipart(*[("image", BIG_PNG)] * 64)
    request = (
        f"POST /size HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with ExitStack() as held:
        socks = [held.enter_context(attacker_socket(limited)) for _ in range(4)]
        senders = [threading.Thread(target=sock.sendall, args=(request,)) for sock in socks]
        for sender in senders:
            sender.start()
        time.sleep(0.1)
        latencies = ordinary_latencies(limited, 20)
        for sender in senders:
            sender.join(10)
        statuses = [status_of(sock, 10) for sock in socks]
    figure("GET /half from 127.0.0.1 during 4 uploads of 64 4096x4096 PNGs", summary(latencies))
    figure("their statuses", sorted(statuses))
    assert max(latencies) < 1
    assert statuses.count(429) == 3  # one upload in flight per client
    assert sorted(statuses)[0] == 413  # and that one is over the pixels of a request


def test_one_image_more_is_refused_before_it_is_decoded(limited, figure):
    body, content_type = multipart(*[("image", DIGIT_RGB_PNG)] * 4, ("image", BIG_PNG))
    start = time.monotonic()
    answer = upload(limited, "/size", body, content_type)
    figure("5 images of 4096x4096: refused after, s", f"{time.monotonic() - start:.2f}")
    assert_json_error(*answer, 413, "image 4:", "at most 67108864 pixels")


def test_the_costliest_accepted_json_takes_well_under_a_second(limited, figure):
    # A batch at its limit (10,000 items, each a long number): the most work a JSON body of
    # /half may ask for, in both of its batch forms.
    numbers = [1.2345678901234567e300 / (i + 1) for i in range(10_000)]
    bodies = {
        "list of objects": json.dumps([{"a": n} for n in numbers]).encode(),
        "object of a list": json.dumps({"a": numbers}).encode(),
    }
    for name, body in bodies.items():
        timings = []
        for _ in range(3):
            start = time.monotonic()
            status, _, answer = limited.request(
                "POST", "/half", body, {"Content-Type": "application/json"}, timeout=30
            )
            timings.append(time.monotonic() - start)
            assert status == 200, answer
            assert len(json.loads(answer)["result"]) == 10_000
        figure(f"10,000-item /half batch, {name} ({len(body)} bytes), s", timings)
        assert min(timings) < 1


def closed_after(sock: socket.socket, limit: float) -> float | None:
    """Seconds until nginx closes or resets sock (an answer read on the way is skipped)."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return None
    return time.monotonic() - start


def test_a_trickle_of_headers_or_body_is_cut_off_after_10_s(limited, figure):
    # A request line and one header, then nothing; headers, then 1 of 100 body bytes.
    with attacker_socket(limited, TRICKLER) as headers, attacker_socket(limited, TRICKLER) as body:
        headers.sendall(b"POST /half HTTP/1.1\r\nHost: x\r\n")
        body.sendall(
            b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        # Both waited for at once, from the same start: each cut-off is timed on its own.
        with ThreadPoolExecutor(2) as pool:
            waits = list(pool.map(lambda sock: closed_after(sock, 20), (headers, body)))
    assert None not in waits, waits
    figure("slow headers, slow body: cut off after (s)", [f"{wait:.1f}" for wait in waits])
    assert 9 < waits[0] < 13  # client_header_timeout 10s
    assert 9 < waits[1] < 13  # client_body_timeout 10s
