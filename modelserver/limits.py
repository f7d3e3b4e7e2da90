"""The numbers that bound a request: body sizes, batch sizes, images and their pixels."""

from werkzeug.exceptions import (
    RequestEntityTooLarge,
)

# JSON bodies: at most 1 MB (nginx lets 10 MB through, for images), and a batch at most 10,000
# items (or list values).
MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH = 10_000
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
