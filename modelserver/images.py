"""Image uploads decoded within their budgets of pixels, structure and time: PNG and JPEG,
upright, at the scale asked."""

import io
import math
import re
import struct
import time
from dataclasses import dataclass

from flask import g, has_request_context
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    RequestEntityTooLarge,
)

from modelserver.limits import (
    DECODE_SECONDS,
    MAX_JPEG_SCANS,
    MAX_JPEG_SEGMENTS,
    MAX_PIXELS,
    MAX_PNG_CHUNKS,
    MAX_REQUEST_PIXELS,
)

IMAGE_FORMATS = {
    b"\x89PNG\r\n\x1a\n": PngImagePlugin.PngImageFile,
    b"\xff\xd8\xff": JpegImagePlugin.JpegImageFile,
}
IMAGE_TYPES = ("image/png", "image/jpeg")
# How Pillow fails on a damaged file. Warning too: Pillow only warns of a damaged EXIF block, but
# where warnings are errors (pytest here, python -W error) that is a damaged file like any other.
IMAGE_DAMAGE = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    struct.error,
    Warning,
)


@dataclass(frozen=True)
class ImageUpload:
    data: bytes


def decode_field(value: object, draft: tuple[str, int] | None, where: str = "") -> object:
    return decode_upload(value.data, draft, where) if isinstance(value, ImageUpload) else value


def decode_upload(
    data: bytes, draft: tuple[str, int] | None = None, where: str = ""
) -> Image.Image:
    """decode_image(data, draft), its complaint a 400 (prefixed with `where` in a batch)."""
    try:
        return decode_image(data, draft, where)
    except ValueError as error:
        raise BadRequest(f"{where}{error}") from None


def decode_image(data: bytes, draft: tuple[str, int] | None = None, where: str = "") -> Image.Image:
    """The image in a PNG or JPEG file, upright as its EXIF says, or ValueError saying what is
    wrong with the file. The size is checked from the header before any pixel is decoded, and
    counted against the request's pixel budget (a 413 prefixed with `where` when it is spent).
    draft: (mode, side), a JPEG decoded at reduced scale (Endpoint.draft)."""
    if not data:
        raise ValueError("the image is empty (0 bytes)")
    opener = next((cls for prefix, cls in IMAGE_FORMATS.items() if data.startswith(prefix)), None)
    if opener is None:
        raise ValueError("not a PNG or JPEG image (the file does not start like one)")
    # What a file asks of the decoder beyond its pixels, counted before Pillow reads it: Pillow
    # reads a PNG's chunks and a JPEG's segments before the first scan one by one, in Python.
    STRUCTURE_CHECKS[opener.format](data)
    # The format's own class reads the header only; Image.open would also run Pillow's
    # decompression-bomb check, which warns or raises its own error: MAX_PIXELS is far lower.
    try:
        image = opener(TimedFile(data, decode_deadline()))
    except IMAGE_DAMAGE as error:
        raise ValueError(f"the {opener.format} header is invalid: {error}") from None
    frames = getattr(image, "n_frames", 1)
    if frames > 1:  # an APNG: its other frames would go unseen
        raise ValueError(f"the image is animated ({frames} frames): send one still image")
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {MAX_PIXELS}"
        )
    # Weighted by its cost, but one image of the largest size is always let in on its own.
    charge_pixels(
        min(width * height * decode_weight(data, opener.format), MAX_REQUEST_PIXELS), where
    )
    if draft is not None:
        mode, side = draft
        factor = math.ceil(max(width, height) / side)
        image.draft(mode, (math.ceil(width / factor), math.ceil(height / factor)))
    try:
        image.load()
        # A phone stores a portrait photo sideways and says so in EXIF; browsers show it upright.
        ImageOps.exif_transpose(image, in_place=True)
    except IMAGE_DAMAGE as error:
        raise ValueError(f"the {opener.format} data is truncated or corrupt: {error}") from None
    if image.mode in ("P", "PA") and image.palette is None:  # Pillow fails on it later
        raise ValueError("the PNG file has palette colours but no palette (PLTE chunk)")
    return image


def charge_pixels(pixels: float, where: str = "") -> None:
    """Count an image's pixels (weighted by decode_weight) against its request's
    MAX_REQUEST_PIXELS before it is decoded: a 413 once the request's images would hold more."""
    if not has_request_context():  # decode_upload() called from code, not for a request
        return
    total = g.get("decoded_pixels", 0) + pixels
    if total > MAX_REQUEST_PIXELS:
        raise RequestEntityTooLarge(
            f"{where}the images of one request hold at most {MAX_REQUEST_PIXELS} pixels "
            f"({MAX_REQUEST_PIXELS // MAX_PIXELS} of the largest; a PNG of more than 3 bytes a "
            f"pixel counts for more, an interlaced one twice); with this one they would hold "
            f"{int(total)}"
        )
    g.decoded_pixels = total


# A PNG's samples per pixel, by its colour type: grey, RGB, palette, grey + alpha, RGBA.
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def decode_weight(data: bytes, file_format: str) -> float:
    """How much more than an 8-bit RGB pixel one pixel of this file costs to decode. A PNG's
    cost grows with its bytes per pixel (16-bit RGBA: 8) and doubles when interlaced (Adam7's
    seven passes, measured 1.2 to 2 times): charged by these, 4 images of 4096 x 4096 of any kind
    cost about what 4 RGB ones do. A JPEG decodes faster than an RGB PNG, its scans bounded."""
    if file_format != "PNG":
        return 1
    depth, colour_type, interlace = data[24], data[25], data[28]  # from IHDR, already parsed
    bytes_per_pixel = PNG_CHANNELS.get(colour_type, 4) * depth / 8
    return max(1, bytes_per_pixel / 3) * (2 if interlace else 1)


# --- what a file asks of the decoder beyond its pixels ----------------------------------------

# A marker after entropy-coded data: 0xFF followed by a code (in the data, 0xFF is followed by a
# stuffed 0x00; restart markers 0xD0-0xD7 belong to the data, 0xFF again is a fill byte).
JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
JPEG_EOI, JPEG_SOS, JPEG_TEM, JPEG_SOI = 0xD9, 0xDA, 0x01, 0xD8


def check_jpeg_structure(data: bytes) -> None:
    """ValueError if the JPEG holds more scans or segments than MAX_JPEG_SCANS and
    MAX_JPEG_SEGMENTS, counted from its markers as the decoder will meet them: each scan of a
    progressive file passes over every pixel again, so a small file of empty scans (10 bytes
    each) costs seconds. Marker segments are skipped by their length, the scans' data up to the
    next marker, and bytes between markers passed over the way libjpeg resynchronises."""
    segments = scans = 0
    position = 2  # after the start-of-image marker
    while match := JPEG_MARKER.search(data, position):
        position, marker = match.start(), data[match.start() + 1]
        if marker == JPEG_EOI:
            return
        if marker in (JPEG_TEM, JPEG_SOI):  # markers without a length
            position += 2
            continue
        segments += 1
        scans += marker == JPEG_SOS
        if scans > MAX_JPEG_SCANS:
            raise ValueError(
                f"the JPEG file has more than {MAX_JPEG_SCANS} scans, the limit (a progressive "
                "photo has about 10); save it again, progressive or not"
            )
        if segments > MAX_JPEG_SEGMENTS:
            raise ValueError(
                f"the JPEG file has more than {MAX_JPEG_SEGMENTS} marker segments, the limit"
            )
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")


def check_png_structure(data: bytes) -> None:
    """ValueError if the PNG holds more than MAX_PNG_CHUNKS chunks: Pillow reads each one in
    Python, and 10 MB of empty chunks cost seconds. The walk stops at the limit. And unless its
    first chunk is the header (IHDR), as the format requires: decode_weight() reads it there."""
    if data[12:16] != b"IHDR":
        raise ValueError("the PNG header is invalid: the file does not begin with its IHDR chunk")
    position, chunks = 8, 0  # after the signature
    while position + 8 <= len(data):
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise ValueError(
                f"the PNG file has more than {MAX_PNG_CHUNKS} chunks, the limit (an encoder "
                "writes a few, and its pixel data in pieces of 8 KB or more)"
            )
        if data[position + 4 : position + 8] == b"IEND":
            return
        position += 12 + int.from_bytes(data[position : position + 4], "big")


STRUCTURE_CHECKS = {"JPEG": check_jpeg_structure, "PNG": check_png_structure}


# --- the decoding time of a request -----------------------------------------------------------


class DecodingTooSlow(HTTPException):
    """The images of one request took longer than DECODE_SECONDS to decode."""

    code = 503
    description = (
        f"decoding the images of this request took more than {DECODE_SECONDS:g} s, the limit; "
        "the service is busy, or the files are costly to decode: send fewer or smaller images"
    )


def decode_deadline() -> float | None:
    """When the decoding of this request's images must end (set by its first image); none for
    a decode called from code, outside a request."""
    if not has_request_context():
        return None
    if "decode_deadline" not in g:
        g.decode_deadline = time.monotonic() + DECODE_SECONDS
    return g.decode_deadline


class TimedFile(io.BytesIO):
    """An image file that ends its decoding past a deadline. Pillow decodes in C, a block of the
    file at a time, asking for the next block in Python: each read is where a decode can be
    stopped cleanly, with a JSON answer, where a signal would wait for the C call to return
    (and harakiri's would end in a killed worker). The structure checks above keep each block's
    work short."""

    def __init__(self, data: bytes, deadline: float | None):
        super().__init__(data)
        self.deadline = deadline

    def read(self, size: int | None = -1) -> bytes:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DecodingTooSlow()
        return super().read(size)
