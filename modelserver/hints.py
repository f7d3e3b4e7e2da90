"""Type hints to parameters: how each supported type is read from text, checked and shown."""

import inspect
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from PIL import Image
from pydantic import ConfigDict, Field, TypeAdapter

# A plain decimal number as people type it (25, -1.5, .5, 2e10). float() alone would also take
# "nan", "inf", "1_000", " 25 " and non-ASCII digits, none of which a client means as a number.
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
NOT_FINITE = {"nan", "inf", "infinity"}
BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
# Integers are the 64-bit ones numpy and every model library take; a larger one is refused
# rather than overflowing inside the model.
INT64 = (-(2**63), 2**63 - 1)
INT64_RANGE = "must be a 64-bit integer (-2**63 to 2**63-1)"
JSON_INT = Annotated[int, Field(ge=INT64[0], le=INT64[1])]


# JSON values are checked as JSON has them: no "25" for a number, no 1 for true.
STRICT = ConfigDict(strict=True, allow_inf_nan=False)
# --- what a parameter's type hint means ----------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One supported type: how its value is read from a query string, checked, shown."""

    name: str  # in messages: "must be {name}"
    parse_text: Callable[[str], object] | None  # None: cannot come in a query string
    example: object  # a value that fits, for messages and the document
    schema: dict


def parse_float(text: str) -> float:
    if not NUMBER.fullmatch(text):
        finite = text.lower().lstrip("+-") in NOT_FINITE
        raise ValueError("must be a finite number" if finite else "must be a number")
    value = float(text)
    if math.isinf(value):  # digits such as 1e999 that no float can hold
        raise ValueError("overflows a 64-bit float")
    return value


def parse_int(text: str) -> int:
    if not INTEGER.fullmatch(text):
        raise ValueError("must be an integer")
    return check_int64(int(text))


def check_int64(value: int) -> int:
    if not INT64[0] <= value <= INT64[1]:
        raise ValueError(INT64_RANGE)
    return value


def parse_bool(text: str) -> bool:
    try:
        return BOOLEANS[text.lower()]
    except KeyError:
        raise ValueError("must be true or false") from None


KINDS: dict[object, Kind] = {
    float: Kind("a number", parse_float, 25, {"type": "number"}),
    int: Kind("an integer", parse_int, 3, {"type": "integer", "format": "int64"}),
    bool: Kind("true or false", parse_bool, True, {"type": "boolean"}),
    str: Kind("a string", str, "hello", {"type": "string"}),
    Image.Image: Kind("a PNG or JPEG image", None, None, {"type": "string", "format": "binary"}),
}
SUPPORTED = "float, int, bool, str, list[float], list[int], list[str], PIL.Image.Image"


class Required:
    """The default of a parameter that has none."""

    def __repr__(self) -> str:
        return "required"


REQUIRED = Required()


@dataclass(frozen=True)
class Param:
    """One parameter of a served function, as the API sees it."""

    name: str
    kind: Kind  # of the value, or of each item of a list
    is_list: bool = False
    optional: bool = False  # None is a value (a hint of X | None)
    default: object = REQUIRED
    adapter: TypeAdapter | None = field(default=None, compare=False)  # checks JSON values

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def is_image(self) -> bool:
        return self.kind is KINDS[Image.Image]

    def example(self) -> object:
        if self.default is not REQUIRED and self.default is not None:
            return self.default
        return [self.kind.example, self.kind.example] if self.is_list else self.kind.example

    def schema(self) -> dict:
        schema = self.adapter.json_schema() if self.adapter else dict(self.kind.schema)
        if self.default is not REQUIRED and self.default is not None:
            schema["default"] = self.default
        return schema


def make_param(where: str, parameter: inspect.Parameter, hint: object, row_of_list: bool) -> Param:
    """The Param for a function parameter and its type hint; TypeError if it is not supported."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        others = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(others) != 1:  # int | str: which would "25" be?
            raise TypeError(f"{where}: type hint {hint!r} is not supported; use one type")
        optional, hint = True, others[0]
    if row_of_list:  # a vectorised function's list[X] is an X per item
        if typing.get_origin(hint) is not list:
            raise TypeError(f"{where}: a vectorised function takes lists; got {hint!r}")
        (hint,) = typing.get_args(hint)
    is_list = typing.get_origin(hint) is list
    item = typing.get_args(hint)[0] if is_list else hint
    if item not in KINDS:
        raise TypeError(f"{where}: type hint {hint!r} is not supported; use one of {SUPPORTED}")
    if is_list and item is Image.Image:
        raise TypeError(f"{where}: take one image; serve(..., vectorized=True) for many at once")
    adapter = None
    if item is not Image.Image:
        json_item = JSON_INT if item is int else item
        json_hint = list[json_item] if is_list else json_item
        adapter = TypeAdapter(json_hint | None if optional else json_hint, config=STRICT)
    default = REQUIRED if parameter.default is parameter.empty else parameter.default
    return Param(parameter.name, KINDS[item], is_list, optional, default, adapter)
