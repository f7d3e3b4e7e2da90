"""Digit images for POST /predict, and one table of cases (good and bad bodies, the status and
answer each must get) that the in-process and the stack tests both run."""

import io
import json
import struct
import zlib

import pytest
from PIL import Image, ImageDraw

from helpers import assert_json_error, multipart


def drawing(strokes: list[list[tuple[int, int]]], size=(280, 280), ink=0, paper=255) -> Image.Image:
    """A digit drawn the way a person does on a canvas: thick round strokes."""
    image = Image.new("L", size, paper)
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        pen.line(stroke, fill=ink, width=18, joint="curve")
    return image


ONE = [[(140, 40), (140, 240)]]
SEVEN = [[(80, 50), (210, 50), (120, 240)]]


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels: a decompression bomb's shape."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(bytes(1000))  # a few rows; a real bomb's zeros compress 1000:1
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def palette_png_without_palette() -> bytes:
    """An 8x8 PNG of palette colours that leaves out its palette (PLTE)."""
    header = struct.pack(">IIBBBBB", 8, 8, 8, 3, 0, 0, 0)
    pixels = zlib.compress(bytes(9 * 8))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def animated(*frames: Image.Image) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


ONE_PNG = encode(drawing(ONE), "PNG")
SEVEN_JPEG = encode(drawing(SEVEN).convert("RGB"), "JPEG")
SEVEN_LIGHT_ON_DARK = encode(drawing(SEVEN, ink=255, paper=0), "PNG")
BLANK = encode(Image.new("RGB", (100, 100), "white"), "PNG")
GIF = encode(drawing(ONE), "GIF")

# (name, body, content type, status, expected): expected is the label (or list of labels) of a
# 200, or the words the error message must contain.
ONE_FORM, ONE_FORM_TYPE = multipart(("image", ONE_PNG))

CASES = [
    ("raw PNG", ONE_PNG, "image/png", 200, 1),
    ("raw JPEG", SEVEN_JPEG, "image/jpeg", 200, 7),
    ("light on dark", SEVEN_LIGHT_ON_DARK, "image/png", 200, 7),
    ("JPEG labelled PNG", SEVEN_JPEG, "image/png", 200, 7),
    ("multipart one", ONE_FORM, ONE_FORM_TYPE, 200, 1),
    ("multipart batch", *multipart(("image", ONE_PNG), ("image", SEVEN_JPEG)), 200, [1, 7]),
    ("empty", b"", "image/png", 400, ("empty",)),
    ("not an image", b"hello, this is text", "image/png", 400, ("not a PNG or JPEG",)),
    ("GIF", GIF, "image/png", 400, ("not a PNG or JPEG",)),
    ("truncated PNG", ONE_PNG[: len(ONE_PNG) // 2], "image/png", 400, ("truncated or corrupt",)),
    ("truncated JPEG", SEVEN_JPEG[: len(SEVEN_JPEG) * 2 // 3], "image/jpeg", 400, ("truncated",)),
    ("JPEG header only", SEVEN_JPEG[:300], "image/jpeg", 400, ("JPEG header is invalid",)),
    ("palette without PLTE", palette_png_without_palette(), "image/png", 400, ("no palette",)),
    # decode_weight() reads the header where the format puts it: first.
    (
        "a chunk before IHDR",
        ONE_PNG[:8] + chunk(b"tEXt", b"a\x00b") + ONE_PNG[8:],
        "image/png",
        400,
        ("PNG header is invalid", "does not begin with its IHDR chunk"),
    ),
    (
        "animated PNG",
        animated(Image.new("L", (64, 64), 255), drawing(SEVEN, size=(64, 64))),
        "image/png",
        400,
        ("animated (2 frames)", "one still image"),
    ),
    ("bomb", png_claiming(100_000, 100_000), "image/png", 400, ("100000x100000", "limit")),
    ("zero width", png_claiming(0, 10), "image/png", 400, ()),
    ("blank page", BLANK, "image/png", 400, ("no digit",)),
    ("wrong type", ONE_PNG, "text/plain", 415, ("image/png", "multipart")),
    ("no content type", ONE_PNG, "", 415, ("image/png",)),
    ("multipart without image", *multipart(("file", ONE_PNG)), 400, ("no field 'image'",)),
    # A form Werkzeug cannot read is said to be one, not taken for a form with no fields.
    ("multipart with no boundary", b"xx", "multipart/form-data", 400, ("names no boundary",)),
    ("multipart cut short", ONE_FORM[:-40], ONE_FORM_TYPE, 400, ("cut short or malformed",)),
    # What follows the closing boundary would go unread: another image, say.
    (
        "a part after the closing boundary",
        ONE_FORM + multipart(("image", SEVEN_JPEG))[0],
        ONE_FORM_TYPE,
        400,
        ("goes on after its closing boundary", "put every part before it"),
    ),
    ("white space after the closing boundary", ONE_FORM + b"\r\n\r\n", ONE_FORM_TYPE, 200, 1),
    (
        "a field name Werkzeug cannot read beside another unknown field",
        b'--XyZ\r\nContent-Disposition: form-data; name="a\\"\r\n\r\n1\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="b"\r\n\r\n2\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="i.png"\r\n\r\n'
        + ONE_PNG
        + b"\r\n--XyZ--\r\n",
        "multipart/form-data; boundary=XyZ",
        400,
        ("unknown field(s)", "'b'"),
    ),
    (
        "batch with a bad image",
        *multipart(("image", ONE_PNG), ("image", b"xx")),
        400,
        ("image 1:", "not a PNG or JPEG"),
    ),
    ("65 images", *multipart(*[("image", ONE_PNG)] * 65), 413, ("at most 64 images",)),
    ("11 MB", b"\x89PNG\r\n\x1a\n" + bytes(11 * 1024 * 1024), "image/png", 413, ("10 MB",)),
]


def check(status: int, headers: dict, body: bytes, expected_status: int, expected) -> None:
    if expected_status != 200:
        assert_json_error(status, headers, body, expected_status, *expected)
        return
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    answer = json.loads(body)["result"]
    answers = answer if isinstance(expected, list) else [answer]
    assert [item["label"] for item in answers] == (
        expected if isinstance(expected, list) else [expected]
    )
    for item in answers:
        assert len(item["probabilities"]) == 10
        assert sum(item["probabilities"]) == pytest.approx(1)
        assert max(item["probabilities"]) == item["probabilities"][item["label"]]


PARAMS = [pytest.param(*case[1:], id=case[0]) for case in CASES]
