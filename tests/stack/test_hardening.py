"""What an attacker tries against the site as shipped: header spellings that would escape a
limit, raw bytes, too many headers, odd methods and encodings, replays, dotfiles, keys in URLs.
Each attack comes from its own address, so the per-client limits of one never decide another."""

import io
import json
import os
import shutil
import socket
import statistics
import struct
import threading
import time
import zlib
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from deploy.localstack import PROJECT, SITE_ROOT, Stack, process_tree
from helpers import (
    SERVED_APP,
    assert_json_error,
    fifo_reload,
    multipart,
    one_after_another,
    wait_for,
)


@pytest.fixture(scope="module")
def site_root(tmp_path_factory) -> Path:
    """The page's files as installed, with the dotfiles an unpacked package leaves beside them."""
    root = tmp_path_factory.mktemp("app")
    shutil.copytree(PROJECT / "static", root / "static")
    (root / "static" / "swagger-ui").mkdir(exist_ok=True)
    (root / "static" / "swagger-ui" / ".package").write_text("name=swagger-ui\n")
    (root / "static" / ".env").write_text("SECRET=not-for-the-web\n")
    return root


@pytest.fixture(scope="module")
def shipped(site_root):
    """The stack with the site's limits as shipped (no client exempt), its page from site_root.
    It serves a user's functions (usermodels.SERVED): half, of one number, and size, of images."""
    with Stack(uwsgi_args=SERVED_APP, site_changes={SITE_ROOT: f"root {site_root};"}) as running:
        yield running


def connect(stack: Stack, address: str) -> socket.socket:
    """A connection to the stack from a client at address (any of 127.0.0.0/8)."""
    return socket.create_connection(
        ("127.0.0.1", stack.port), timeout=10, source_address=(address, 0)
    )


def exchange(stack: Stack, request: bytes, address: str = "127.0.0.1") -> tuple[int, dict, bytes]:
    """One raw request (bytes as sent, nothing checked or encoded) and its answer."""
    with connect(stack, address) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:  # nginx resets a refused body it did not read
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def log_entries(stack: Stack) -> list[dict]:
    """nginx's JSON access log, every line parsed: a line that is not UTF-8 JSON fails here."""
    return [
        json.loads(line) for line in Path(stack.dir, "nginx-access.json").read_bytes().splitlines()
    ]


def entry_of(stack: Stack, request_id: str) -> dict:
    """The access log's line of one request (nginx writes it just after the answer)."""
    return wait_for(
        lambda: next((e for e in log_entries(stack) if e["request_id"] == request_id), None),
        timeout=5,
        message=f"no access log line for {request_id}",
    )


def uwsgi_lines(stack: Stack, needle: str) -> list[str]:
    return [
        line
        for line in Path(stack.dir, "uwsgi.log").read_text(errors="replace").splitlines()
        if needle in line
    ]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def digit_png() -> bytes:
    """A small drawing of a 1: an upload the digit model answers 200."""
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).line([(32, 8), (32, 56)], fill=0, width=6)
    return png(image)


DIGIT = digit_png()


# --- an upload is an upload, however its media type is spelt ------------------------------------

# Spellings of the image and form types the app reads as such (Werkzeug lower-cases the type
# and strips whitespace and control bytes around it), each with a body the app answers 200.
FORM_BODY, FORM_TYPE = multipart(("image", DIGIT))
SPELLINGS = {
    "plain": ("image/png", DIGIT),
    "upper case": ("IMAGE/PNG", DIGIT),
    "mixed case": ("Image/Png", DIGIT),
    "tab before": ("\timage/png", DIGIT),
    "tab after": ("image/png\t", DIGIT),
    "a parameter": ("image/png; q=1", DIGIT),
    "space before a parameter": ("image/png ;q=1", DIGIT),
    "the form": (FORM_TYPE, FORM_BODY),
    "the form, tab before": ("\t" + FORM_TYPE, FORM_BODY),
    "the form, upper case": (
        FORM_TYPE.replace("multipart/form-data", "MULTIPART/FORM-DATA"),
        FORM_BODY,
    ),
}


def upload_request(content_type: str, body: bytes, length: int | None = None) -> bytes:
    head = (
        f"POST /size HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def upload(stack: Stack, body: bytes, content_type: str, address: str = "127.0.0.1") -> tuple:
    """POST /size from address, one upload after another (helpers.one_after_another)."""
    return one_after_another(lambda: exchange(stack, upload_request(content_type, body), address))


def test_a_directory_redirect_names_no_host_from_the_client(shipped):
    status, headers, _ = shipped.request(
        "GET", "/static/swagger-ui", headers={"Host": "evil.example"}
    )
    assert (status, headers["location"]) == (301, "/static/swagger-ui/")


def test_json_nested_about_as_deep_as_python_reads_is_a_400_at_every_depth(shipped):
    # Around a thousand levels Python's reader still takes a value that its writer, called on
    # the way to the message, cannot write back; past it the reader gives up itself.
    for depth in range(960, 1010, 2):
        body = '{"a": ' + "[" * depth + "]" * depth + "}"
        status, headers, answer = shipped.request(
            "POST", "/half", body.encode(), {"Content-Type": "application/json"}
        )
        assert_json_error(status, headers, answer, 400, "a")


@pytest.mark.parametrize("spelling", SPELLINGS, ids=list(SPELLINGS))
def test_every_spelling_the_app_decodes_counts_as_an_upload(shipped, spelling):
    content_type, body = SPELLINGS[spelling]
    # The app does read this spelling as an image (or a form of one)...
    status, _, answer = upload(shipped, body, content_type, "127.0.1.1")
    assert status == 200, (content_type, answer)
    # ...so while one upload of this client is in flight (its body still coming), it is a second.
    address = f"127.0.1.{2 + list(SPELLINGS).index(spelling)}"
    with connect(shipped, address) as holder:
        holder.sendall(upload_request("image/png", DIGIT[:10], length=len(DIGIT)))
        time.sleep(0.2)
        response = exchange(shipped, upload_request(content_type, body), address)
    assert_json_error(*response, 429, "1 image upload")


# Spellings Werkzeug would strip to an image type too, with bytes that are no text: refused by
# nginx before any limit is looked at, so they never reach the app.
CONTROL_SPELLINGS = [
    "\x0bimage/png",
    "\x0cimage/png",
    "\x1fimage/png",
    "\xa0image/png",
    "image/png\x85",
]


@pytest.mark.parametrize("content_type", CONTROL_SPELLINGS, ids=ascii)
def test_a_spelling_with_control_bytes_is_refused_before_the_app(shipped, content_type):
    status, headers, body = exchange(shipped, upload_request(content_type, DIGIT), "127.0.1.99")
    assert_json_error(status, headers, body, 400, "Content-Type", "not printable ASCII")
    assert not uwsgi_lines(shipped, headers["x-request-id"])


def test_a_json_post_is_not_counted_as_an_upload(shipped):
    # The one spelling left out of the upload count: its body is held to 1 MB and is cheap.
    address = "127.0.1.100"
    with connect(shipped, address) as holder:
        holder.sendall(upload_request("image/png", DIGIT[:10], length=len(DIGIT)))
        time.sleep(0.2)
        request = (
            b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Type: Application/JSON; charset=utf-8\r\n"
            b'Content-Length: 9\r\nConnection: close\r\n\r\n{"a": 25}'
        )
        status, _, body = exchange(shipped, request, address)
    assert status == 200, body


# --- raw bytes --------------------------------------------------------------------------------

RAW_LINES = {
    "query value": b"GET /half?a=\xff HTTP/1.1",
    "query name": b"GET /half?a=1&\xc3(=1 HTTP/1.1",
    "path": b"GET /pis\xffqrt?a=1 HTTP/1.1",
    "valid UTF-8 unencoded": b"GET /half?a=1&b=\xc3\xa9 HTTP/1.1",
}
RAW_HEADERS = {
    "Content-Type": b"POST /half HTTP/1.1\r\nContent-Type: application/json\xff",
    "Authorization": b"GET /half?a=1 HTTP/1.1\r\nAuthorization: Bearer \xff\xfe",
    "Origin": b"GET /half?a=1 HTTP/1.1\r\nOrigin: http://\xe9.example",
}


@pytest.mark.parametrize("where", [*RAW_LINES, *RAW_HEADERS])
def test_a_raw_byte_is_a_json_400_and_the_log_stays_json(shipped, where):
    start = RAW_LINES.get(where) or RAW_HEADERS[where]
    request = (
        start + b"\r\nHost: x\r\nContent-Length: 9\r\nConnection: close\r\n\r\n" + b'{"a": 25}'
    )
    status, headers, body = exchange(shipped, request, "127.0.2.1")
    message = assert_json_error(status, headers, body, 400, "not printable ASCII")
    assert ("percent-encode" in message) == (where in RAW_LINES)
    entry = entry_of(shipped, headers["x-request-id"])  # every line of the log parses, too
    assert entry["status"] == 400
    assert not uwsgi_lines(shipped, headers["x-request-id"])  # never reached the app


def test_a_raw_byte_in_another_header_reaches_the_app_as_text_not_a_500(shipped):
    request = (
        b"GET /half?a=25 HTTP/1.1\r\nHost: x\r\nX-Note: caf\xe9 \xff\r\nConnection: close\r\n\r\n"
    )
    status, _, body = exchange(shipped, request, "127.0.2.2")
    assert status == 200, body


# --- headers: what nginx accepts reaches the app ------------------------------------------------


def many_headers(count: int) -> bytes:
    """A GET with `count` header lines in all (Host and Connection among them)."""
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(count - 2))
    return b"GET /half?a=25 HTTP/1.1\r\nHost: x\r\n" + lines + b"Connection: close\r\n\r\n"


def test_the_most_header_lines_nginx_takes_reach_the_app_one_more_is_a_json_431(shipped):
    status, _, body = exchange(shipped, many_headers(1000), "127.0.3.1")
    assert status == 200, body
    assert json.loads(body) == {"result": 12.5}
    response = exchange(shipped, many_headers(1001), "127.0.3.1")
    assert_json_error(*response, 431, "at most 1000 lines")
    assert "max vec size" not in Path(shipped.dir, "uwsgi.log").read_text(errors="replace")


# --- methods, encodings, replays -----------------------------------------------------------


def test_head_answers_as_get_without_a_body(shipped):
    get = shipped.request("GET", "/half?a=25")
    status, headers, body = shipped.request("HEAD", "/half?a=25")
    assert (status, body) == (200, b""), body
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == get[1]["content-length"]
    status, headers, _ = shipped.request("HEAD", "/half")  # GET's 400, no body
    assert status == 400 and headers["content-type"] == "application/json"


@pytest.mark.parametrize("coding", ["gzip, chunked", "identity", "deflate", "chunked, chunked"])
def test_an_unsupported_transfer_encoding_is_a_json_501(shipped, coding):
    request = (
        f"POST /half HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: {coding}\r\nConnection: close\r\n\r\n0\r\n\r\n"
    ).encode()
    assert_json_error(*exchange(shipped, request, "127.0.4.1"), 501, "Transfer-Encoding")


NGINX_ERRORS = {
    "HTTP/2.0 in plain text": (b"GET /half?a=1 HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP version"),
    "a range past a file's end": (
        b"GET /static/docs.html HTTP/1.1\r\nHost: x\r\nRange: bytes=999999-\r\n"
        b"Connection: close\r\n\r\n",
        416,
        "range",
    ),
    "two Content-Lengths": (
        b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
        b"Connection: close\r\n\r\n12345",
        400,
        "malformed",
    ),
}


@pytest.mark.parametrize("name", NGINX_ERRORS)
def test_the_other_errors_nginx_answers_itself_are_json(shipped, name):
    request, status, words = NGINX_ERRORS[name]
    assert_json_error(*exchange(shipped, request, "127.0.4.2"), status, words)


def test_a_post_the_app_refused_before_reading_is_handled_once(shipped):
    # A JSON body over the app's 1 MB, under nginx's 10 MB: the app answers 413 from its
    # Content-Length, before the body; nginx was still sending it.
    body = b'{"a": [' + b"1," * 4_500_000 + b"1]}"
    status, headers, answer = shipped.request(
        "POST", "/half", body, {"Content-Type": "application/json"}, timeout=30
    )
    assert_json_error(status, headers, answer, 413, "at most 1 MB")
    request_id = headers["x-request-id"]
    assert "," not in entry_of(shipped, request_id)["upstream_time"]  # one upstream, no retry
    assert len(uwsgi_lines(shipped, request_id)) == 1


# --- the page's files ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/static/swagger-ui/.package", "/static/.env", "/static/./.env"])
def test_dotfiles_are_not_served(shipped, path):
    assert shipped.request("GET", "/static/docs.html")[0] == 200  # the directory is served
    assert_json_error(*shipped.request("GET", path), 404, "no such path")


# --- logs -------------------------------------------------------------------------------------


def test_nginx_errors_of_a_post_are_logged_as_the_post(shipped):
    request = (
        b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 20000000\r\nConnection: close\r\n\r\n"
    )
    status, headers, body = exchange(shipped, request, "127.0.5.1")
    assert_json_error(status, headers, body, 413, "at most 10 MB")
    entry = entry_of(shipped, headers["x-request-id"])
    assert (entry["method"], entry["uri"], entry["status"]) == ("POST", "/half", 413)


def test_429s_do_not_write_the_error_log(shipped):
    slow = b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    slow += b"Content-Length: 100\r\n\r\n{"
    address = "127.0.5.2"
    with ExitStack() as held:
        for _ in range(32):
            held.enter_context(connect(shipped, address)).sendall(slow)
        time.sleep(0.2)
        refused = [
            exchange(
                shipped,
                b"GET /half?a=25 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                address,
            )
            for _ in range(20)
        ]
    assert [status for status, _, _ in refused] == [429] * 20
    error_log = Path(shipped.dir, "nginx-error.log").read_text()
    assert "limiting" not in error_log, error_log[-500:]


def test_the_request_id_is_never_the_clients(shipped):
    # Two requests with the same sane id get ids of their own; the client's is logged beside.
    client_id = "checkout-7f3a.41_b"
    ids = []
    for _ in range(2):
        status, headers, body = shipped.request(
            "GET", "/half?a=4", headers={"X-Request-Id": client_id}
        )
        assert status == 200, body
        ids.append(headers["x-request-id"])
        assert entry_of(shipped, ids[-1])["client_request_id"] == client_id
    assert client_id not in ids and ids[0] != ids[1]


# --- API keys in URLs -----------------------------------------------------------------------

KEY_IN_URL = "k3y-in-the-url-0f-a-careless-client"


@pytest.mark.parametrize(
    "query",
    [
        f"api_key={KEY_IN_URL}",
        f"a=25&API_KEY={KEY_IN_URL}",
        f"a=25&apikey={KEY_IN_URL}&b=1",
        f"access_token={KEY_IN_URL}",
        f"a=25&api%5Fkey={KEY_IN_URL}",
        f"a=25&%61pi_key={KEY_IN_URL}",
        f"ac%63ess%5Ftoken={KEY_IN_URL}",
        f"a=25&%41PI-%4bEY={KEY_IN_URL}",
    ],
)
def test_a_key_in_the_url_is_refused_and_never_logged(shipped, query):
    status, headers, body = shipped.request("GET", f"/half?{query}")
    assert_json_error(status, headers, body, 400, "Authorization: Bearer")
    assert KEY_IN_URL not in json.loads(body)["message"]
    entry = entry_of(shipped, headers["x-request-id"])
    assert entry["uri"].startswith("/half?") and "[redacted]" in entry["uri"], entry
    logs = [
        Path(shipped.dir, name).read_text(errors="replace")
        for name in ("nginx-access.json", "nginx-access.log", "nginx-error.log", "uwsgi.log")
    ]
    assert not any(KEY_IN_URL in log for log in logs)


# --- decoding: no accepted file costs seconds ---------------------------------------------------


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def raw_png(side: int, depth: int, colour_type: int, channels: int, interlace: int = 0) -> bytes:
    """A side x side PNG written by hand (Pillow writes neither 16-bit RGBA nor interlacing):
    mid-grey, every row with the Paeth filter, the costliest to undo."""
    header = struct.pack(">IIBBBBB", side, side, depth, colour_type, 0, 0, interlace)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    rows = bytearray()
    for x0, y0, dx, dy in passes:
        width, height = -(-(side - x0) // dx), -(-(side - y0) // dy)
        rows += (b"\x04" + b"\x80" * (width * channels * depth // 8)) * height
    data = zlib.compress(bytes(rows), 9)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


ADAM7 = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
]


def progressive_jpeg(side: int = 4096, mode: str = "L") -> bytes:
    """A progressive JPEG of a drawn 1, side x side: about 100 KB at 4096."""
    image = Image.new(mode, (side, side), "white")
    ImageDraw.Draw(image).line(
        [(side // 2, side // 10), (side // 2, side * 9 // 10)], "black", side // 14
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", progressive=True)
    return buffer.getvalue()


# An empty refinement scan of the DC coefficients of component 1: 10 bytes, and a pass over
# every block of the image.
EMPTY_SCAN = bytes.fromhex("ffda 0008 0101 0000 0010")


def with_scans(jpeg: bytes, count: int) -> bytes:
    return jpeg[:-2] + EMPTY_SCAN * count + b"\xff\xd9"


PROGRESSIVE = progressive_jpeg()
# The crafted files, each refused from its structure before a pixel is decoded.
CRAFTED = {
    "JPEG of 2,000 empty scans": (with_scans(PROGRESSIVE, 2000), "more than 32 scans"),
    "JPEG of 1,000,000 comments": (
        PROGRESSIVE[:2] + bytes.fromhex("fffe 0002") * 1_000_000 + PROGRESSIVE[2:],
        "more than 1000 marker segments",
    ),
    "PNG of 800,000 empty chunks": (
        DIGIT[:33] + chunk(b"abCd", b"") * 800_000 + DIGIT[33:],
        "more than 4096 chunks",
    ),
}


@pytest.mark.parametrize("name", CRAFTED)
def test_a_crafted_file_is_refused_before_it_is_decoded(shipped, name, figure):
    data, words = CRAFTED[name]
    start = time.monotonic()
    answer = upload(shipped, data, "image/jpeg" if "JPEG" in name else "image/png")
    seconds = time.monotonic() - start
    figure(f"{name} ({len(data)} bytes): refused after, s", f"{seconds:.2f}")
    assert_json_error(*answer, 400, words)
    assert seconds < 2  # through nginx, 10 MB at most; the walk itself takes milliseconds


def test_a_photo_as_progressive_as_an_encoder_makes_it_is_decoded(shipped):
    # Colour, 10 scans of its own, and 22 more: 32, the most a file may have.
    photo = with_scans(progressive_jpeg(mode="RGB"), 22)
    status, _, body = upload(shipped, photo, "image/jpeg")
    assert status == 200, body
    assert json.loads(body)["result"] == {"width": 4096.0, "height": 4096.0, "mode": "RGB"}
    answer = upload(shipped, with_scans(photo, 1), "image/jpeg")
    assert_json_error(*answer, 400, "more than 32 scans")


# 4096 x 4096, 16-bit RGBA (8 bytes a pixel), interlaced: one costs up to 8 RGB PNGs' decoding.
RGBA16_ADAM7 = raw_png(4096, 16, 6, 4, interlace=1)


def test_a_costly_png_counts_for_more_of_a_requests_pixels(shipped):
    # One is let in on its own, decoded...
    status, _, body = upload(shipped, RGBA16_ADAM7, "image/png")
    assert status == 200, body
    assert json.loads(body)["result"] == {"width": 4096.0, "height": 4096.0, "mode": "RGBA"}
    # ...two are over a request's pixels before either is decoded.
    body, content_type = multipart(("image", RGBA16_ADAM7), ("image", RGBA16_ADAM7))
    answer = upload(shipped, body, content_type)
    assert_json_error(*answer, 413, "image 1:", "at most 67108864 pixels", "interlaced")


def test_a_form_of_too_many_parts_is_a_413_that_says_so(shipped):
    fields = [("image", DIGIT)] + [("note", b"1")] * 1000
    body, content_type = multipart(*fields)
    answer = upload(shipped, body, content_type)
    assert_json_error(*answer, 413, "at most 1000 parts")


@contextmanager
def environment(**values: str):
    """os.environ with values, for a stack started inside (uWSGI gets its environment)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def uwsgi_workers(stack: Stack) -> set[int]:
    return set(process_tree(stack.uwsgi.pid)) - {stack.uwsgi.pid}


def test_a_decode_past_the_time_budget_ends_in_a_json_503_and_the_worker_lives():
    # A budget of 50 ms instead of 5 s, and the costliest PNG: its decoding is stopped.
    with environment(MODELSERVER_DECODE_SECONDS="0.05"), Stack(uwsgi_args=SERVED_APP) as stack:
        workers = uwsgi_workers(stack)
        start = time.monotonic()
        answer = stack.request(
            "POST", "/size", RGBA16_ADAM7, {"Content-Type": "image/png"}, timeout=30
        )
        seconds = time.monotonic() - start
        assert_json_error(*answer, 503, "decoding the images of this request", "0.05 s, the limit")
        assert seconds < 1.5, seconds  # stopped, not decoded to the end
        assert stack.request("GET", "/half?a=25")[0] == 200
        assert uwsgi_workers(stack) == workers  # no worker killed or recycled
        log = Path(stack.dir, "uwsgi.log").read_text(errors="replace")
        assert "HARAKIRI" not in log and "signal 9" not in log


# --- API keys fail closed ---------------------------------------------------------------------

KEY = "k3y-0f-the-first-team"


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def key_file(tmp_path) -> Path:
    return tmp_path / "api-keys"


def test_an_indented_comment_is_a_comment_not_a_key(key_file):
    key_file.write_text(f"  # the first team's key\n\t# {KEY}-old\n{KEY}\n")
    with (
        environment(MODELSERVER_API_KEYS_FILE=str(key_file)),
        Stack(uwsgi_args=SERVED_APP) as stack,
    ):
        for line in ("# the first team's key", f"# {KEY}-old"):
            assert_json_error(
                *stack.request("GET", "/half?a=25", headers=bearer(line)), 401, "not valid"
            )
        assert stack.request("GET", "/half?a=25", headers=bearer(KEY))[0] == 200


def test_a_key_file_of_comments_and_no_key_stops_the_start(key_file):
    key_file.write_text(f"# {KEY}\n   # all keys commented out\n\n")
    with environment(MODELSERVER_API_KEYS_FILE=str(key_file)):
        with pytest.raises(RuntimeError, match="uwsgi exited") as failed:
            with Stack():
                pass
    assert "holds comments but no key" in str(failed.value)


def test_a_reload_without_the_key_file_keeps_serving_with_the_old_keys(key_file):
    key_file.write_text(KEY + "\n")
    with (
        environment(MODELSERVER_API_KEYS_FILE=str(key_file)),
        Stack(uwsgi_args=SERVED_APP) as stack,
    ):
        key_file.unlink()
        fifo_reload(stack)
        log = Path(stack.dir, "uwsgi.log")
        wait_for(
            lambda: "could not read" in log.read_text(errors="replace"),
            timeout=30,
            message=lambda: stack.logs(),
        )
        wait_for(lambda: stack.request("GET", "/readyz")[0] == 200, timeout=30, message=stack.logs)
        assert stack.uwsgi.poll() is None  # the service is up
        assert stack.request("GET", "/half?a=25", headers=bearer(KEY))[0] == 200
        assert_json_error(*stack.request("GET", "/half?a=25"), 401, "needs a key")
        assert "still serving with the 1 key(s) read before" in log.read_text(errors="replace")


# --- the acceptance: one address's costliest uploads, in every spelling, leave others served ----


def costliest_uploads() -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each costly upload found, in each spelling the app decodes: the
    accepted ones cost the most a request may (every row Paeth-filtered, the costliest filter;
    4-channel and 16-bit samples; interlacing), the refused ones were the costliest before."""
    forms = {
        "4 RGB PNGs": [raw_png(4096, 8, 2, 3)] * 4,
        "3 RGBA PNGs": [raw_png(4096, 8, 6, 4)] * 3,
        "4 progressive JPEGs of 32 scans": [with_scans(progressive_jpeg(mode="RGB"), 22)] * 4,
    }
    singles = {
        "image/png": [RGBA16_ADAM7, CRAFTED["PNG of 800,000 empty chunks"][0]],
        "image/jpeg": [with_scans(PROGRESSIVE, 2000), CRAFTED["JPEG of 1,000,000 comments"][0]],
    }
    uploads = []
    for files in forms.values():
        body, content_type = multipart(*[("image", data) for data in files])
        for spelling in (content_type, "\t" + content_type, content_type.upper()):
            uploads.append((spelling, body))
    for media_type, bodies in singles.items():
        for spelling in (media_type, "\t" + media_type, media_type.upper(), media_type + "; q=1"):
            uploads += [(spelling, body) for body in bodies]
    return uploads


def attack(stack: Stack, uploads: list, stop: threading.Event, statuses: Counter) -> None:
    """Send the uploads from ATTACKER, one after another, round and round, until stop. After a
    429 it waits 20 ms: the attacker's own sending runs on the service's 2 cores here, and the
    rate of refusals is the flood test's matter, not this one's."""
    while not stop.is_set():
        for content_type, body in uploads:
            if stop.is_set():
                return
            try:
                status, _, _ = exchange(stack, upload_request(content_type, body), ATTACKER)
            except OSError as error:
                status = type(error).__name__
            statuses[status] += 1
            if status == 429:
                time.sleep(0.02)


ATTACKER = "127.0.7.1"


def test_the_costliest_uploads_in_every_spelling_leave_an_ordinary_client_fast(shipped, figure):
    uploads = costliest_uploads()
    stop, statuses = threading.Event(), Counter()
    # Four senders at once from one address: the limit lets one upload in at a time.
    senders = [
        threading.Thread(target=attack, args=(shipped, uploads[i::4], stop, statuses))
        for i in range(4)
    ]
    for sender in senders:
        sender.start()
    try:
        time.sleep(1)
        latencies = []
        for _ in range(60):
            start = time.monotonic()
            status, _, body = shipped.request("GET", "/half?a=25", timeout=10)
            latencies.append(time.monotonic() - start)
            assert status == 200, body
            time.sleep(0.05)
    finally:
        stop.set()
        for sender in senders:
            sender.join(60)
    median = statistics.median(latencies)
    figure(
        "GET /half from 127.0.0.1 while 127.0.7.1 sends the costliest uploads in every spelling",
        f"median {median * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms",
    )
    figure("the attacker's statuses", dict(statuses))
    assert statuses[429] > 0  # the limit held...
    assert sum(statuses.values()) > statuses[429]  # ...while the attacker's uploads were served
    assert median < 0.010
