"""Image uploads decoded within their pixel budget: PNG and JPEG, upright, at the scale asked."""

import io
import math
import struct
from dataclasses import dataclass

from flask import g, has_request_context
from PIL import Image, ImageOps, JpegImagePlugin, PngImagePlugin
from werkzeug.exceptions import (
    BadRequest,
    RequestEntityTooLarge,
)

from modelserver.limits import MAX_PIXELS, MAX_REQUEST_PIXELS

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


# Origins whose pages may call the API from a browser (CORS): a comma-separated list in
# $MODELSERVER_CORS_ORIGINS, "*" for any. Default: none; the page at / is on the same origin
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
    # The format's own class reads the header only; Image.open would also run Pillow's
    # decompression-bomb check, which warns or raises its own error: MAX_PIXELS is far lower.
    try:
        image = opener(io.BytesIO(data))
    except IMAGE_DAMAGE as error:
        raise ValueError(f"the {opener.format} header is invalid: {error}") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {MAX_PIXELS}"
        )
    charge_pixels(width * height, where)
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
    return image


def charge_pixels(pixels: int, where: str = "") -> None:
    """Count an image's pixels against its request's MAX_REQUEST_PIXELS before it is decoded:
    a 413 once the request's images would hold more."""
    if not has_request_context():  # decode_upload() called from code, not for a request
        return
    total = g.get("decoded_pixels", 0) + pixels
    if total > MAX_REQUEST_PIXELS:
        raise RequestEntityTooLarge(
            f"{where}the images of one request hold at most {MAX_REQUEST_PIXELS} pixels "
            f"({MAX_REQUEST_PIXELS // MAX_PIXELS} of the largest); with this one they would hold "
            f"{total}"
        )
    g.decoded_pixels = total
