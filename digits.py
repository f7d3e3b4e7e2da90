"""Handwritten digit classifier: decode an image, reduce it to an 8x8 input, run a small MLP.

    model = load_model()  # once per process
    label, probabilities = predict(model, preprocess(decode_image(data)))

Pure functions of their arguments, no HTTP and no global state: a Model is a tuple of read-only
numpy arrays, so one loaded model can serve any number of threads. Serving needs numpy and Pillow
only; models/train_digits.py (scikit-learn) writes the weights file, models/digits.npz.

preprocess mirrors how scikit-learn's 8x8 digits (UCI optdigits) were made from 32x32 bitmaps:
the digit is found and cut out, scaled until its longer side fills a square box, drawn as a binary
bitmap with strokes as thick as the data set's, and each of the 8x8 cells holds how much of it is
ink, from 0 (background) to 16 (all ink). The ink may be dark on light or light on dark: each
guess is measured against the local background, and the one that leaves less ink wins.
Transparent pixels are background.
"""

import io
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFilter, ImageOps, JpegImagePlugin, PngImagePlugin

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "digits.npz"

# Uploads larger than this many pixels are refused before their pixels are decoded: 4096 x 4096
# holds a 12-megapixel phone photo, and a decoded RGBA image of this size takes 64 MB.
MAX_PIXELS = 4096 * 4096
# The image is cut to the digit at this resolution (longer side, in pixels): enough for a digit
# a tenth as wide as a photo to keep the detail of a 32x32 bitmap, cheap for a 12 MP photo.
WORK_SIZE = 512
# Strokes are normalised on a binary bitmap: the digit's longer side is DIGIT_SIZE pixels (8 per
# cell of the 8x8), on a canvas wide enough for the thickest stroke to grow outwards.
DIGIT_SIZE = 64
BITMAP_SIZE = 128
# Share of the box that is ink in the training digits: 0.30 on average, the same for every class
# (sum of the 8x8 values / 16 / 64). Strokes are thickened or thinned to this band, because a
# pen or a mouse draws far thinner lines than the data set's.
INK_SHARE = (0.24, 0.36)
# The local background level is measured on a grid this coarse (longer side, in cells).
BACKGROUND_GRID = 24
# A run of rows (or columns) with ink, apart from the rest, is part of the digit (a 5's detached
# bar holds about 20 % of the ink) if it has this share of the ink, else a speck of dust or noise.
MIN_PART = 0.05
# Below this contrast between ink and background (on a 0..1 scale) there is no digit to read.
MIN_CONTRAST = 0.15

# How Pillow fails on a damaged file. Warning too: Pillow only warns of a damaged EXIF block, but
# where warnings are errors (pytest here, python -W error) that is a damaged file like any other.
_DAMAGE = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, Warning)
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": PngImagePlugin.PngImageFile,
    b"\xff\xd8\xff": JpegImagePlugin.JpegImageFile,
}


class Model(NamedTuple):
    """A one-hidden-layer perceptron: softmax(relu(x @ W1 + b1) @ W2 + b2), x = the 8x8 / 16."""

    hidden_weights: np.ndarray  # (64, hidden)
    hidden_bias: np.ndarray  # (hidden,)
    output_weights: np.ndarray  # (hidden, 10)
    output_bias: np.ndarray  # (10,)


Prediction = tuple[int, list[float]]


def load_model(path: str | Path = DEFAULT_MODEL) -> Model:
    """Read the weights file written by models/train_digits.py; the arrays are read-only."""
    with np.load(path, allow_pickle=False) as arrays:
        model = Model(*(np.array(arrays[name], dtype=np.float64) for name in Model._fields))
    for array in model:
        array.flags.writeable = False
    hidden = model.hidden_bias.shape[0]
    shapes = [(64, hidden), (hidden,), (hidden, 10), (10,)]
    if [array.shape for array in model] != shapes:
        raise ValueError(f"{path}: array shapes {[a.shape for a in model]}, expected {shapes}")
    return model


def load_digits() -> Model:
    """The shipped model, models/digits.npz: the loader server.py's registry names."""
    return load_model()


def predict(model: Model, pixels: np.ndarray) -> Prediction:
    """The label and the 10 class probabilities for one 8x8 input (64 values, 0..16)."""
    x = np.asarray(pixels, dtype=np.float64)
    if x.size != 64:
        raise ValueError(f"an input has 64 values (8x8), got shape {x.shape}")
    if not np.isfinite(x).all():  # NaN would come out as NaN probabilities, which JSON cannot carry
        raise ValueError("an input's values must be finite numbers")
    hidden = np.maximum(x.reshape(1, 64) / 16 @ model.hidden_weights + model.hidden_bias, 0)
    logits = (hidden @ model.output_weights + model.output_bias)[0]
    exponentials = np.exp(logits - logits.max())  # shifted: exp never overflows
    probabilities = exponentials / exponentials.sum()
    return int(probabilities.argmax()), probabilities.tolist()


def predict_batch(model: Model, batch: np.ndarray) -> list[Prediction]:
    """predict for each row of an (n, 64) array, row for row the same answer."""
    rows = np.asarray(batch, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 64:
        raise ValueError(f"a batch is an (n, 64) array, got shape {rows.shape}")
    # One row at a time: numpy hands one row and many rows to different BLAS kernels (gemv and
    # gemm), whose sums round differently, so a vectorised batch could differ from predict in
    # the last bits. A row costs about 10 us, nothing next to decoding its image.
    return [predict(model, row) for row in rows]


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode a PNG or JPEG file; ValueError says what is wrong with it if it cannot be used.

    The size is checked against max_pixels from the header, before any pixel is decoded. A JPEG
    larger than WORK_SIZE is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's own scaling, never below
    WORK_SIZE per side): all that preprocess needs, for a fraction of the time and memory. The
    image comes back upright, turned as its EXIF orientation says.
    """
    if not data:
        raise ValueError("the image is empty (0 bytes)")
    opener = next((cls for prefix, cls in _SIGNATURES.items() if data.startswith(prefix)), None)
    if opener is None:
        raise ValueError("not a PNG or JPEG image (the file does not start like one)")
    # The format's own class reads the header only (and refuses a zero width or height).
    # Image.open would also run Pillow's decompression-bomb check, which warns (a process-wide
    # warnings filter decides what that becomes) or raises its own error; the limit below is far
    # lower and always a ValueError.
    with _failures_as_value_error(f"the {opener.format} header is invalid"):
        image = opener(io.BytesIO(data))
    width, height = image.size
    if width * height > max_pixels:
        raise ValueError(
            f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    image.draft(None, (WORK_SIZE, WORK_SIZE))  # a no-op for PNG
    with _failures_as_value_error(f"the {opener.format} data is truncated or corrupt"):
        image.load()
        # A phone stores a portrait photo sideways and says so in EXIF; browsers show it upright.
        ImageOps.exif_transpose(image, in_place=True)
    return image


@contextmanager
def _failures_as_value_error(problem: str) -> Iterator[None]:
    """Turn the ways Pillow fails on a damaged file into a ValueError naming the problem."""
    try:
        yield
    except _DAMAGE as error:
        raise ValueError(f"{problem}: {error}") from error


def preprocess(image: Image.Image) -> np.ndarray:
    """The 8x8 input (64 values, 0..16, ink high) for an image of one digit, dark or light."""
    mask = _ink_mask(_ink(image))
    bitmap = _bitmap(mask[_extent(mask)])
    if not bitmap.any():
        raise ValueError("no digit found: the ink is scattered specks, not strokes")
    bitmap = _normalise_strokes(bitmap)
    cells = _square(bitmap[_extent(bitmap)]).resize((8, 8), Image.Resampling.BOX)
    return np.asarray(cells, dtype=np.float64).ravel() * 16


def _ink(image: Image.Image) -> np.ndarray:
    """Ink strength 0..1 per pixel at WORK_SIZE, whatever the mode, polarity or lighting."""
    grey = _grey(image)
    # Dark ink or light? Measured against the background around it, the right guess leaves thin
    # strokes; the wrong one makes the paper around the strokes "ink" too, and has more of it.
    # (This beat "is the border light?" and "which side strays further?" on small digits in
    # large photos and on uneven light.)
    return min(_minus_local_background(1 - grey), _minus_local_background(grey), key=np.sum)


def _grey(image: Image.Image) -> np.ndarray:
    """Luminance 0..1 at WORK_SIZE; transparent pixels become background (contrasting the ink)."""
    if image.mode.startswith("I;16"):  # 16-bit PNG: convert("L") would clip, not scale
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    # Premultiplied alpha ("La"), so that shrinking mixes colours by how opaque they are. (Pillow
    # converts "RGBA" straight to "La" with every pixel opaque; through "LA" keeps the alpha.)
    has_alpha = image.has_transparency_data
    image = image.convert("RGBA").convert("LA").convert("La") if has_alpha else image.convert("L")
    image = image.reduce(max(1, math.ceil(max(image.size) / WORK_SIZE)))
    pixels = np.asarray(image, dtype=np.float64) / 255
    if not has_alpha:
        return pixels
    colour, opacity = pixels[..., 0], pixels[..., 1]
    if opacity.sum() == 0:
        raise ValueError("no digit found: the image is fully transparent")
    # The drawing's own mean colour says which background it was drawn for: dark ink -> white.
    background = 1.0 if colour.sum() / opacity.sum() < 0.5 else 0.0
    return colour + background * (1 - opacity)


def _minus_local_background(ink: np.ndarray) -> np.ndarray:
    """Ink minus the background level around it, so a shadow or uneven light is not ink."""
    # The background level is the lowest value within a third of the image, measured on a coarse
    # grid and smoothed back up: a window wider than any stroke never sits wholly on ink.
    coarse = Image.fromarray(ink.astype(np.float32))
    coarse = coarse.reduce(max(1, math.ceil(max(coarse.size) / BACKGROUND_GRID)))
    window = 2 * (max(coarse.size) // 6) + 1
    level = coarse.filter(ImageFilter.MinFilter(window)).resize(
        (ink.shape[1], ink.shape[0]), Image.Resampling.BILINEAR
    )
    return np.clip(ink - np.asarray(level), 0, 1)


def _ink_mask(ink: np.ndarray) -> np.ndarray:
    """Which pixels are ink: Otsu's threshold, refused if ink and background hardly differ."""
    levels = np.minimum((ink * 256).astype(np.intp), 255)  # 256 grey levels, as a histogram's bins
    counts = np.bincount(levels.ravel(), minlength=256)
    centres = (np.arange(256) + 0.5) / 256
    # For each threshold between two levels: the share of pixels below it and their mean, the mean
    # of those above, and Otsu's between-class variance, the largest where the split is cleanest.
    share = np.cumsum(counts)[:-1] / ink.size
    mass = np.cumsum(counts * centres)[:-1] / ink.size
    cuts = np.flatnonzero((share > 0) & (share < 1))
    if cuts.size == 0:
        raise ValueError("no digit found: the image is a single flat colour")
    below = mass[cuts] / share[cuts]
    above = (counts @ centres / ink.size - mass[cuts]) / (1 - share[cuts])
    best = np.argmax(share[cuts] * (1 - share[cuts]) * (above - below) ** 2)
    if above[best] - below[best] < MIN_CONTRAST:
        raise ValueError("no digit found: the image is blank or has too little contrast")
    return levels > cuts[best]


def _extent(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and the columns that hold the digit."""
    return _span(mask.sum(axis=1)), _span(mask.sum(axis=0))


def _span(counts: np.ndarray) -> slice:
    """From the first to the last run of non-empty lines holding at least MIN_PART of the ink."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], counts > 0, [0]])))
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    starts, stops = edges[::2], edges[1::2]
    parts = np.flatnonzero(cumulative[stops] - cumulative[starts] >= MIN_PART * cumulative[-1])
    return slice(int(starts[parts[0]]), int(stops[parts[-1]]))


def _square(digit: np.ndarray) -> Image.Image:
    """The mask as a float image (1 = ink) centred in a square, its longer side filling it."""
    height, width = digit.shape
    side = max(height, width)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = digit
    return Image.fromarray(square)


def _bitmap(digit: np.ndarray) -> np.ndarray:
    """The digit's mask, its longer side DIGIT_SIZE, centred on a BITMAP_SIZE binary canvas."""
    shrunk = np.asarray(_square(digit).resize((DIGIT_SIZE, DIGIT_SIZE), Image.Resampling.BOX))
    # A quarter-covered pixel counts as ink, so that a stroke thinner than a pixel stays whole.
    return np.pad(shrunk >= 0.25, (BITMAP_SIZE - DIGIT_SIZE) // 2)


def _normalise_strokes(bitmap: np.ndarray) -> np.ndarray:
    """Thicken (or thin) the strokes a pixel at a time until their ink share is in INK_SHARE."""
    low, high = INK_SHARE
    while _ink_share(bitmap) < low:
        bitmap = _morph(bitmap, np.logical_or)
    while _ink_share(bitmap) > high and (thinner := _morph(bitmap, np.logical_and)).any():
        bitmap = thinner
    return bitmap


def _ink_share(bitmap: np.ndarray) -> float:
    """How much of the square around the ink (its longer side) the ink covers."""
    rows, columns = np.flatnonzero(bitmap.any(axis=1)), np.flatnonzero(bitmap.any(axis=0))
    side = max(rows[-1] - rows[0], columns[-1] - columns[0]) + 1
    return bitmap.sum() / side**2


def _morph(bitmap: np.ndarray, combine: np.ufunc) -> np.ndarray:
    """Dilation (np.logical_or) or erosion (np.logical_and) by a 3x3 square, row then column."""
    padded = np.pad(bitmap, 1)  # outside the canvas is background
    rows = combine(combine(padded[:-2], padded[1:-1]), padded[2:])
    return combine(combine(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])
