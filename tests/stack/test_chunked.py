"""Bodies sent with Transfer-Encoding: chunked (streaming clients, requests with a generator,
Java, Go) reach the app whole: the same answers as with a Content-Length, the same limits."""

import http.client
import io
import json

import pytest
from PIL import Image

from helpers import assert_json_error, multipart, one_after_another


def send(stack, path: str, body: bytes, content_type: str, chunked: bool) -> tuple:
    """POST body through nginx, chunked in pieces of 1000 bytes, or with a Content-Length; one
    upload after another (helpers.one_after_another)."""
    return one_after_another(lambda: send_once(stack, path, body, content_type, chunked))


def send_once(stack, path: str, body: bytes, content_type: str, chunked: bool) -> tuple:
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    try:
        pieces = (body[i : i + 1000] for i in range(0, len(body), 1000)) if chunked else body
        conn.request(
            "POST",
            path,
            body=pieces,
            headers={"Content-Type": content_type},
            encode_chunked=chunked,
        )
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        conn.close()


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


# Noise, so that each file is many chunks of 1000 bytes.
PNG = encode(Image.effect_noise((280, 280), 64), "PNG")
JPEG = encode(Image.effect_noise((200, 120), 64).convert("RGB"), "JPEG")
PNG_SIZE = {"width": 280.0, "height": 280.0, "mode": "L"}
JPEG_SIZE = {"width": 200.0, "height": 120.0, "mode": "RGB"}
BATCH = json.dumps([{"values": [a]} for a in range(1, 500)]).encode()

# (name, path, body, content type, status, result): a user's functions (usermodels.SERVED).
CASES = [
    ("JSON", "/norm", b'{"values": [3, 4]}', "application/json", 200, 5.0),
    ("JSON batch over chunks", "/v1/norm", BATCH, "application/json", 200, None),
    ("PNG", "/size", PNG, "image/png", 200, PNG_SIZE),
    ("JPEG", "/size", JPEG, "image/jpeg", 200, JPEG_SIZE),
    ("multipart", "/size", *multipart(("image", PNG), ("image", JPEG)), 200, [PNG_SIZE, JPEG_SIZE]),
]


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "result"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_chunked_body_gets_the_answer_of_a_sized_one(
    stack, path, body, content_type, status, result
):
    chunked = send(stack, path, body, content_type, chunked=True)
    sized = send(stack, path, body, content_type, chunked=False)
    assert chunked[0] == status, chunked[2]
    assert chunked[2] == sized[2]
    assert sized[0] == status
    answer = json.loads(chunked[2])["result"]
    if result is None:
        assert answer == [float(a) for a in range(1, 500)]
    else:
        assert answer == result


@pytest.mark.parametrize(
    ("path", "content_type", "size", "limit"),
    [
        ("/norm", "application/json", 1024 * 1024 + 1, "1 MB"),
        ("/size", "image/png", 10 * 1024 * 1024 + 1, "10 MB"),
    ],
)
def test_a_chunked_body_over_the_limit_is_a_json_413(stack, path, content_type, size, limit):
    assert_json_error(*send(stack, path, b" " * size, content_type, chunked=True), 413, limit)


def test_an_empty_chunked_body_is_named_as_such(stack):
    status, headers, body = send(stack, "/size", b"", "image/png", chunked=True)
    assert_json_error(status, headers, body, 400, "empty")
