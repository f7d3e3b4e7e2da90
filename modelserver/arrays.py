"""numpy arrays as parameters: `x: np.ndarray` or `x: npt.NDArray[np.float32]` takes a JSON array
of numbers, nested for more dimensions, rectangular, and the function gets an ndarray.

The dtype is the hint's (NDArray[np.float32]: float32), else numpy's own choice (int64 or
float64). What would not be an array of numbers in numpy is a 400 naming the parameter: text,
objects, rows of different lengths, integers past 64 bits, values past the dtype's range.
"""

import typing
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from pydantic import PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

NUMERIC_KINDS = "biuf"  # numpy's bool, signed and unsigned integer, float
# The JSON type of an array's items and an example, by numpy's kind of its dtype.
ITEMS = {
    "b": ("boolean", [[True, False], [False, True]]),
    "i": ("integer", [[1, 2], [3, 4]]),
    "u": ("integer", [[1, 2], [3, 4]]),
    "f": ("number", [[0.5, 1.5], [2.5, 3.5]]),
}


def schema(dtype: np.dtype | None) -> dict:
    item, example = ITEMS[dtype.kind if dtype is not None else "f"]
    return {
        "type": "array",
        "items": {"anyOf": [{"type": item}, {"type": "array"}]},
        "description": f"an array of {item}s: a list, a list of lists of equal length, ...",
        "examples": [example],
    }


def array_type(hint: object) -> object | None:
    """The pydantic type of an ndarray hint, or None for any other hint; TypeError for an array
    of anything but numbers."""
    if hint is np.ndarray:
        dtype = None
    elif typing.get_origin(hint) is np.ndarray:
        dtype = dtype_of(hint)
    else:
        return None
    return Annotated[Any, PlainValidator(reader(dtype)), WithJsonSchema(schema(dtype))]


def dtype_of(hint: object) -> np.dtype | None:
    """NDArray[np.float32] -> float32; None where the hint leaves it open (NDArray[Any])."""
    args = typing.get_args(hint)
    scalars = typing.get_args(args[1]) if len(args) == 2 else ()
    if not scalars or scalars[0] is Any:
        return None
    dtype = np.dtype(scalars[0])
    if dtype.kind not in NUMERIC_KINDS:
        raise TypeError(f"an array parameter holds numbers; {hint!r} holds {dtype}")
    return dtype


def reader(dtype: np.dtype | None) -> Callable[[object], np.ndarray]:
    def read(value: object) -> np.ndarray:
        if not isinstance(value, list):
            raise complaint("an array of numbers (a JSON list)")
        try:
            array = np.asarray(value)
        except ValueError:  # rows of different lengths
            raise complaint(
                "a rectangular array: lists of equal length at each depth, 64 deep at most"
            ) from None
        if array.size == 0:  # numpy reads [] as float64: nothing in it to check
            return array if dtype is None else array.astype(dtype)
        if dtype is not None and dtype.kind == "b":
            if array.dtype.kind != "b":
                raise complaint("an array of true and false")
            return array
        numbers = array.dtype.kind in "iuf"
        if array.dtype.kind == "b" or (numbers and holds_bool(value, array.ndim)):
            raise complaint("an array of numbers, not true or false")  # numpy reads true as 1
        # Text, objects, integers past 64 bits; numpy reads those from 2**63 on as uint64.
        if not numbers or (dtype is None and array.dtype.kind == "u"):
            raise complaint("an array of numbers, with integers from -2**63 to 2**63-1")
        if dtype is None or array.dtype == dtype:
            return array
        if array.dtype.kind == "f" and dtype.kind != "f":  # numpy would cut off the fractions
            raise complaint(f"an array of integers, for {dtype}")
        narrowed = narrow(array, dtype)
        if narrowed is None:
            raise complaint(f"an array of numbers that fit in {dtype}")
        return narrowed

    return read


def narrow(array: np.ndarray, dtype: np.dtype) -> np.ndarray | None:
    """An integer or float array as dtype; None if a number is past dtype's range."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            return None
        return array.astype(dtype)
    with np.errstate(over="ignore"):  # too large for a float32: inf
        narrowed = array.astype(dtype)
    return narrowed if np.isfinite(narrowed).all() else None


def holds_bool(value: list, depth: int) -> bool:
    """Whether a rectangular nested list of depth levels holds a true or a false."""
    if depth == 1:
        return any(item is True or item is False for item in value)
    return any(holds_bool(item, depth - 1) for item in value)


def complaint(what: str) -> PydanticCustomError:
    return PydanticCustomError("ndarray", "Input should be " + what)
