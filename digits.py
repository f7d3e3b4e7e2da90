"""Handwritten digit classifier: reduce a decoded image to an 8x8 input, run a small MLP.

    model = load_model()  # once per process
    label, probabilities = predict(model, preprocess(image))

where image is a Pillow image, as modelserver.images.decode_image(data, DRAFT) decodes an upload.

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

import functools
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageChops, ImageFilter

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "digits.npz"

# The image is cut to the digit at this resolution (longer side, in pixels): enough for a digit
# a tenth as wide as a photo to keep the detail of a 32x32 bitmap, cheap for a 12 MP photo.
WORK_SIZE = 512
# What preprocess needs of an upload, as the registry's serve(..., draft=) takes it: grey, and
# no larger than what _grey reduces it to (WORK_SIZE). A JPEG is then decoded by libjpeg at 1/2,
# 1/4 or 1/8 scale and as its Y channel only (no colour conversion): a fraction of the work.
DRAFT = ("L", WORK_SIZE)
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

LEVELS = np.arange(256)  # the values of an 8-bit grey pixel


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
    """The shipped model, models/digits.npz: the loader registry.py names."""
    return load_model()


def predict(model: Model, pixels: np.ndarray) -> Prediction:
    """The label and the 10 class probabilities for one 8x8 input (64 values, 0..16)."""
    x = np.asarray(pixels, dtype=np.float64)
    if x.size != 64:
        raise ValueError(f"an input has 64 values (8x8), got shape {x.shape}")
    return predict_batch(model, x.reshape(1, 64))[0]


def predict_batch(model: Model, batch: np.ndarray) -> list[Prediction]:
    """predict for each row of an (n, 64) array, all rows in one matrix product per layer.

    The answers agree with predict's row by row to about 1e-15, not bit for bit: BLAS sums a
    block of rows in another order than a single row.
    """
    rows = np.asarray(batch, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 64:
        raise ValueError(f"a batch is an (n, 64) array, got shape {rows.shape}")
    # NaN would come out as NaN probabilities, which JSON cannot carry.
    if not np.isfinite(rows).all():
        raise ValueError("an input's values must be finite numbers")
    hidden = np.maximum(rows / 16 @ model.hidden_weights + model.hidden_bias, 0)
    logits = hidden @ model.output_weights + model.output_bias
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))  # shifted: never overflows
    probabilities = exponentials / exponentials.sum(axis=1, keepdims=True)
    return list(zip(probabilities.argmax(axis=1).tolist(), probabilities.tolist(), strict=True))


def preprocess(image: Image.Image) -> np.ndarray:
    """The 8x8 input (64 values, 0..16, ink high) for an image of one digit, dark or light."""
    mask = _ink_mask(_ink(_grey(image)))
    bitmap = _bitmap(mask[_extent(mask)])
    if not bitmap.any():
        raise ValueError("no digit found: the ink is scattered specks, not strokes")
    bitmap = _normalise_strokes(bitmap)
    return _box(bitmap[_extent(bitmap)].astype(np.float64), 8).ravel() * 16


# The image work below stays in 8-bit grey ("L") and in Pillow's C code, one call per step over
# the whole image: a 28x28 drawing costs a few dozen such calls, not thousands of numpy passes
# over float64 copies. 8 bits lose nothing: the histogram that finds the ink has 256 levels.


def _grey(image: Image.Image) -> Image.Image:
    """Luminance ("L") at WORK_SIZE; transparent pixels become background (contrasting the ink)."""
    if image.mode.startswith("I;16"):  # 16-bit PNG: convert("L") would clip, not scale
        image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
    # Premultiplied alpha ("La"), so that shrinking mixes colours by how opaque they are. (Pillow
    # converts "RGBA" straight to "La" with every pixel opaque; through "LA" keeps the alpha.)
    has_alpha = image.has_transparency_data
    image = image.convert("RGBA").convert("LA").convert("La") if has_alpha else image.convert("L")
    image = image.reduce(max(1, math.ceil(max(image.size) / WORK_SIZE)))
    if not has_alpha:
        return image
    pixels = np.asarray(image, dtype=np.int32)
    colour, opacity = pixels[..., 0], pixels[..., 1]
    if opacity.sum() == 0:
        raise ValueError("no digit found: the image is fully transparent")
    # The drawing's own mean colour says which background it was drawn for: dark ink -> white.
    # Premultiplied, colour <= opacity, so the sum stays within 0..255.
    background = 255 - opacity if 2 * colour.sum() < opacity.sum() else 0
    return Image.fromarray((colour + background).astype(np.uint8))


def _ink(grey: Image.Image) -> Image.Image:
    """Ink strength 0..255 per pixel ("L"), measured against the local background, dark or light."""
    # The background level around dark ink is the lightest value within a third of the image
    # (around light ink, the darkest), measured on a coarse grid and smoothed back up: a window
    # wider than any stroke never sits wholly on ink, and a shadow or uneven light is not ink.
    coarse = grey.reduce(max(1, math.ceil(max(grey.size) / BACKGROUND_GRID)))
    window = 2 * (max(coarse.size) // 6) + 1
    dark_level, light_level = (
        coarse.filter(rank(window)).resize(grey.size, Image.Resampling.BILINEAR)
        for rank in (ImageFilter.MaxFilter, ImageFilter.MinFilter)
    )
    # Dark ink or light? Measured against the background around it, the right guess leaves thin
    # strokes; the wrong one makes the paper around the strokes "ink" too, and has more of it.
    # (This beat "is the border light?" and "which side strays further?" on small digits in
    # large photos and on uneven light.) subtract clips at 0: paper lighter than its level.
    guesses = (ImageChops.subtract(dark_level, grey), ImageChops.subtract(grey, light_level))
    return min(guesses, key=lambda ink: np.asarray(ink).sum(dtype=np.uint64))


def _ink_mask(image: Image.Image) -> np.ndarray:
    """Which pixels are ink: Otsu's threshold, refused if ink and background hardly differ."""
    ink = np.asarray(image)
    counts = np.array(image.histogram())  # 256 grey levels
    centres = (LEVELS + 0.5) / 256
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
    return ink > cuts[best]


def _extent(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and the columns that hold the digit."""
    return _span(mask, 1), _span(mask, 0)


def _span(mask: np.ndarray, axis: int) -> slice:
    """From the first to the last run of non-empty lines holding at least MIN_PART of the ink."""
    lines = np.flatnonzero(mask.any(axis=axis))
    if lines[-1] - lines[0] + 1 == lines.size:  # one run (the usual case): all of it
        return slice(int(lines[0]), int(lines[-1]) + 1)
    counts = np.count_nonzero(mask, axis=axis)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], counts > 0, [0]])))
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    starts, stops = edges[::2], edges[1::2]
    parts = np.flatnonzero(cumulative[stops] - cumulative[starts] >= MIN_PART * cumulative[-1])
    return slice(int(starts[parts[0]]), int(stops[parts[-1]]))


def _box(digit: np.ndarray, size: int) -> np.ndarray:
    """The mask (1 = ink) centred in a square, its longer side filling it, resized to size x size
    as Pillow's BOX filter does: one matrix product per axis, no image built."""
    height, width = digit.shape
    side = max(height, width)
    weights = _box_weights(side, size)
    top, left = (side - height) // 2, (side - width) // 2
    rows, columns = weights[:, top : top + height], weights[:, left : left + width]
    return rows @ (digit @ columns.T)


@functools.lru_cache(maxsize=1024)
def _box_weights(side: int, size: int) -> np.ndarray:
    """(size, side): the weights of Pillow's BOX resampling from side to size pixels.

    As Pillow's Resample.c computes them: output pixel i averages the input pixels whose centres
    fall in its span (when enlarging, the one nearest), all with the same weight.
    """
    scale = side / size
    support = 0.5 * max(scale, 1.0)
    centres = (np.arange(size) + 0.5) * scale
    first = np.maximum((centres - support + 0.5).astype(int), 0)[:, None]
    stop = np.minimum((centres + support + 0.5).astype(int), side)[:, None]
    pixels = np.arange(side)
    where = (pixels - centres[:, None] + 0.5) / max(scale, 1.0)  # the box filter's argument
    inside = (where > -0.5) & (where <= 0.5) & (pixels >= first) & (pixels < stop)
    weights = inside / inside.sum(axis=1, keepdims=True)
    weights.flags.writeable = False  # shared by every call
    return weights


def _bitmap(digit: np.ndarray) -> np.ndarray:
    """The digit's mask, its longer side DIGIT_SIZE, centred on a BITMAP_SIZE binary canvas."""
    shrunk = _box(digit.astype(np.float32), DIGIT_SIZE)
    canvas = np.zeros((BITMAP_SIZE, BITMAP_SIZE), dtype=bool)
    margin = (BITMAP_SIZE - DIGIT_SIZE) // 2
    # A quarter-covered pixel counts as ink, so that a stroke thinner than a pixel stays whole.
    # (The sums of the weights round in the last bits: a hair below a quarter is a quarter.)
    canvas[margin:-margin, margin:-margin] = shrunk >= 0.25 - 1e-6
    return canvas


def _normalise_strokes(bitmap: np.ndarray) -> np.ndarray:
    """Thicken (or thin) the strokes a pixel at a time until their ink share is in INK_SHARE."""
    low, high = INK_SHARE
    side = _side(bitmap)
    # A dilation grows the square around the ink by a pixel on every side, as long as the
    # canvas's margin leaves room (it does for this many steps).
    for _ in range((BITMAP_SIZE - DIGIT_SIZE) // 2):
        if np.count_nonzero(bitmap) / side**2 >= low:
            break
        bitmap, side = _morph(bitmap, np.logical_or), side + 2
    while _ink_share(bitmap) > high and (thinner := _morph(bitmap, np.logical_and)).any():
        bitmap = thinner
    return bitmap


def _side(bitmap: np.ndarray) -> int:
    """The longer side of the box around the ink."""
    rows, columns = np.flatnonzero(bitmap.any(axis=1)), np.flatnonzero(bitmap.any(axis=0))
    return int(max(rows[-1] - rows[0], columns[-1] - columns[0])) + 1


def _ink_share(bitmap: np.ndarray) -> float:
    """How much of the square around the ink (its longer side) the ink covers."""
    return np.count_nonzero(bitmap) / _side(bitmap) ** 2


def _morph(bitmap: np.ndarray, combine: np.ufunc) -> np.ndarray:
    """Dilation (np.logical_or) or erosion (np.logical_and) by a 3x3 square, row then column.

    Outside the canvas is background: an edge pixel keeps (or, eroded, loses) it as a neighbour.
    """
    edge = combine is np.logical_and  # eroded, an edge pixel has background beside it
    rows = bitmap.copy()
    combine(rows[1:], bitmap[:-1], out=rows[1:])
    combine(rows[:-1], bitmap[1:], out=rows[:-1])
    out = rows.copy()
    combine(out[:, 1:], rows[:, :-1], out=out[:, 1:])
    combine(out[:, :-1], rows[:, 1:], out=out[:, :-1])
    if edge:
        out[[0, -1], :] = False
        out[:, [0, -1]] = False
    return out
