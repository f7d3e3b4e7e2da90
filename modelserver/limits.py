"""The numbers that bound a request: body sizes, batch sizes, images and their pixels."""

import os

from werkzeug.exceptions import RequestEntityTooLarge

# JSON bodies: at most 1 MB (nginx lets 10 MB through, for images), and a batch at most 10,000
# items (or list values).
MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 10_000
# Lists or objects inside each other: pydantic's JSON parser reads a value at most this deep.
JSON_DEPTH = 201
BODY_TOO_LARGE = RequestEntityTooLarge.description  # Werkzeug's words for MAX_CONTENT_LENGTH

# Endpoints that take images: bodies up to 10 MB (a phone photo; nginx has the same cap there),
# at most 64 images in one request, each at most 4096 x 4096 pixels (read from its header before
# any pixel is decoded: a decoded RGBA image of this size takes 64 MB).
MAX_IMAGE_BODY_BYTES = 10 * 1024 * 1024
MAX_IMAGES = 64
MAX_PIXELS = 4096 * 4096
# All the images of one request together: as many pixels as 4 of the largest. Decoding and
# preparing one 4096 x 4096 RGB PNG costs a worker about 0.2 s on the reference machine (2 cores),
# so no accepted upload holds a worker much longer than a second (measured: docs/limits.md).
MAX_REQUEST_PIXELS = 4 * MAX_PIXELS

# What an image file may ask of the decoder beyond its pixels, counted before it is decoded (see
# modelserver/images.py). A progressive JPEG passes over every pixel once per scan: libjpeg
# writes 6 (grey) or 10 (colour), so 32 is three times the most an encoder writes; an empty scan
# is 10 bytes and costs 5 ms at 4096 x 4096, so 2,000 of them cost 11 s. Segments: an ICC
# profile takes at most 255. PNG chunks: Pillow reads each in Python (800,000 empty ones, 10 MB,
# cost 6 s); libpng writes pixel data in 8 KB chunks, 1,280 for a 10 MB file.
MAX_JPEG_SCANS = 32
MAX_JPEG_SEGMENTS = 1000
MAX_PNG_CHUNKS = 4096
# The decoding of one request's images ends after this long with a JSON 503 naming it, even for
# a cost not foreseen above: several times the costliest accepted upload (1 to 3 s, more on a
# machine under load: 5 s was reached there), a third of harakiri (30 s).
# $MODELSERVER_DECODE_SECONDS changes it (the tests shorten it).
DECODE_SECONDS = float(os.environ.get("MODELSERVER_DECODE_SECONDS", "10"))


def at_most(limit: int, count: int, what: str, where: str) -> None:
    """A 413 for more than limit of something in one request, said one way everywhere: where
    names the place (a batch, a parameter), what the things counted."""
    if count > limit:
        raise RequestEntityTooLarge(f"{where} holds at most {limit} {what}; got {count}")
