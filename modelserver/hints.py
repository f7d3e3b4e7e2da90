"""Type hints to parameters: how each type is read from a query string or JSON, checked, shown.

Simple types (float, int, bool, str, a Literal or Enum of strings or integers, a date, datetime,
time or UUID, lists of them) come in a query string as well as in a JSON body. Any other type
pydantic validates (dicts, nested lists, tuples, Decimals, models, dataclasses, TypedDicts) and
numpy arrays (modelserver/arrays.py) come in a JSON body. Uploads: a PIL image, bytes (the raw body)
and File (a part of a multipart form).
"""

import enum
import inspect
import json
import math
import re
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from modelserver.files import File
from modelserver.fillable import python_only
from modelserver.jsonread import (
    CLOCK_EXAMPLES,
    NOT_SCHEMAS,
    NUMBER,
    from_json,
    holds,
    read_in_depth,
)

# A plain integer as people type it (jsonread.NUMBER for any number): int() alone would also
# take "1_000", " 25 " and non-ASCII digits, none of which a client means as a number.
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
    example: object  # a value that fits, for messages and the document; None: none to give
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
}
# Uploads: they come as the body or as parts of a multipart form, never in JSON.
BINARY = {"type": "string", "format": "binary"}
UPLOADS: dict[object, Kind] = {
    Image.Image: Kind("a PNG or JPEG image", None, None, BINARY),
    bytes: Kind("the request body", None, None, BINARY),
    File: Kind("a file", None, None, BINARY),
}
# Types JSON writes as a string: a query string carries the same text (?day=2026-01-02).
TEXT_EXAMPLES = {**CLOCK_EXAMPLES, uuid.UUID: "00000000-0000-0000-0000-000000000003"}
SUPPORTED = (
    "float, int, bool, str, list[float], list[int], list[str], a Literal or Enum, "
    "any type pydantic validates from JSON (dict[str, float], datetime, a BaseModel, ...), "
    "np.ndarray, "
    "PIL.Image.Image, bytes, modelserver.files.File"
)


def choice_kind(hint: object) -> Kind | None:
    """The Kind of a Literal or Enum whose values are strings or integers: one of a few words
    (or numbers) that a query string can carry as they are; None for any other type."""
    if typing.get_origin(hint) is Literal:
        choices = {str(value): value for value in typing.get_args(hint)}
        values = list(choices.values())
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        choices = {str(member.value): member for member in hint}
        values = [member.value for member in hint]
    else:
        return None
    if not values or not all(type(value) in (str, int) for value in values):
        return None
    name = "one of " + ", ".join(repr(value) for value in values)

    def parse(text: str) -> object:
        try:
            return choices[text]
        except KeyError:
            raise ValueError(f"must be {name}") from None

    return Kind(name, parse, values[0], {})


def text_kind(hint: object) -> Kind | None:
    """The Kind of a date, datetime, time or UUID (constrained or not): a query string's value
    is the text its JSON string holds, read as that string is, with the same checks and
    pydantic's ValidationError (a ValueError) for text that is not one; None for other types."""
    base = without_annotations(hint)
    if not listed(base, TEXT_EXAMPLES):
        return None
    adapter = TypeAdapter(from_json(hint))

    def parse(text: str) -> object:
        return adapter.validate_json(json.dumps(text), strict=True)

    example = TEXT_EXAMPLES[base]
    try:
        parse(example)
    except ValidationError:  # constrained past it (Field(gt=...)): no example, not a wrong one
        example = None
    return Kind(f"a {base.__name__}", parse, example, {})


def listed(hint: object, table: dict) -> bool:
    """Whether hint is one of table's classes. A hint that is not a class is never one, and is not
    hashed: Annotated[int, {"unit": "cm"}] carries metadata that cannot be."""
    return isinstance(hint, type) and hint in table


def without_annotations(hint: object) -> object:
    """Annotated[float, Field(ge=0)] -> float: the type that decides how the value is read."""
    while typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    return hint


def query_kind(hint: object) -> Kind | None:
    """The Kind of a type a query string can carry, or None for one that needs JSON."""
    base = without_annotations(hint)
    return KINDS[base] if listed(base, KINDS) else choice_kind(base)


def type_name(hint: object) -> str:
    """datetime.date -> "date", dict[str, float] -> "dict[str, float]": the type as written."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return re.sub(r"\b(?:typing|datetime|decimal|uuid|__main__)\.", "", repr(hint))


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
    is_list: bool = False  # a list of a query string's type: ?v=1&v=2
    optional: bool = False  # None is a value (a hint of X | None)
    default: object = REQUIRED
    adapter: TypeAdapter | None = field(default=None, compare=False)  # checks JSON values
    # How a JSON value is checked: False, as Python (fast; the plain types); True, from its JSON
    # text, for the types strict Python checks would refuse in their JSON form (an Enum's value,
    # a date as text, a tuple as a list).
    via_json: bool = False
    # A query string's value is checked by the adapter too: constraints (Field(ge=0)).
    constrained: bool = False
    whole_body: bool = False  # a lone BaseModel parameter: the JSON body is the model
    # Of such a model, when its config leaves other fields unsaid: the names it takes.
    body_fields: tuple[str, ...] | None = field(default=None, compare=False)
    upload: type | None = None  # Image.Image, bytes or File: from the body or a form's part
    many: bool = False  # list[File]: every part of its name, as one list
    nested_ints: bool = False  # ints JSON_INT does not hold (in a model, a list of lists)
    # A batch's values checked in one call, as adapter checks each (single plain values).
    column_adapter: TypeAdapter | None = field(default=None, compare=False)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def is_image(self) -> bool:
        return self.upload is Image.Image

    @property
    def in_query(self) -> bool:
        """The value can come in a query string (or a form's text field)."""
        return self.kind.parse_text is not None

    def example(self) -> object:
        if self.default is not REQUIRED and self.default is not None:
            return to_plain(self.default)
        example = to_plain(self.kind.example)
        return [example, example] if self.is_list and example is not None else example


def to_plain(value: object) -> object:
    """An example or default as JSON has it: an Enum member as its value, a date as text; None
    for one JSON has no form of."""
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError:
        return None


def make_param(where: str, parameter: inspect.Parameter, hint: object, row_of_list: bool) -> Param:
    """The Param for a function parameter and its type hint; TypeError if it is not supported."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        others = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(others) > 1 and all(query_kind(arg) for arg in others):
            # int | str: which would "25" in a query string be?
            raise TypeError(f"{where}: type hint {hint!r} is not supported; use one type")
        if len(others) == 1:
            optional, hint = len(others) < len(typing.get_args(hint)), others[0]
    if row_of_list:  # a vectorised function's list[X] is an X per item
        if typing.get_origin(hint) is not list:
            raise TypeError(f"{where}: a vectorised function takes lists; got {hint!r}")
        (hint,) = typing.get_args(hint)
    default = REQUIRED if parameter.default is parameter.empty else parameter.default
    name = parameter.name
    upload = upload_param(where, name, hint, optional, default)
    if upload is not None:
        return upload
    args = typing.get_args(hint)
    is_list = typing.get_origin(hint) is list and bool(query_kind(args[0]) or text_kind(args[0]))
    item = args[0] if is_list else hint
    kind = query_kind(item)
    if kind is not None and listed(without_annotations(item), KINDS):
        # The plain types: checked as Python values, strictly, at a fraction of the JSON cost.
        json_item = JSON_INT if item is int else item
        json_hint = list[json_item] if is_list else json_item
        value_hint = json_hint | None if optional else json_hint
        adapter = TypeAdapter(value_hint, config=STRICT)
        column = None if is_list else TypeAdapter(list[value_hint], config=STRICT)
        constrained = item is not without_annotations(item)
        if constrained:
            kind = replace(kind, example=fitting_example(TypeAdapter(item), kind.example))
        return Param(
            name,
            kind,
            is_list,
            optional,
            default,
            adapter,
            constrained=constrained,
            column_adapter=column,
        )
    adapter = json_adapter(where, hint | None if optional else hint)
    if kind is None:
        kind = text_kind(item) or Kind(type_name(hint), None, None, {})
    if (path := python_only(adapter.core_schema)) is not None:
        raise TypeError(
            f"{where}: type hint {hint!r} is not supported: {name}{path} would be a function, a "
            f"class or an instance, which no JSON value can be; use one of {SUPPORTED}"
        )
    nested_ints = holds_int(adapter.core_schema)
    return Param(name, kind, is_list, optional, default, adapter, True, nested_ints=nested_ints)


def is_model(hint: object) -> bool:
    return isinstance(hint, type) and issubclass(hint, BaseModel)


def fitting_example(adapter: TypeAdapter, example: object) -> object:
    """The type's example if it meets the constraints, else a bound that does (Field(ge=0,
    le=1): 0), else None: no example to give."""
    schema = adapter.json_schema()
    for candidate in (example, schema.get("minimum"), schema.get("maximum")):
        try:
            return adapter.validate_python(candidate, strict=True)
        except ValidationError:
            continue
    return None


def json_adapter(where: str, hint: object) -> TypeAdapter:
    """The TypeAdapter that checks a value of `hint` from JSON; TypeError, with pydantic's reason,
    for a type it cannot validate: the function cannot be served, so the app does not start."""
    try:
        return read_in_depth(TypeAdapter(from_json(hint)), where)
    except Exception as error:  # PydanticSchemaGenerationError, PydanticUserError, TypeError
        reason = str(error).split("\n")[0]
        raise TypeError(
            f"{where}: type hint {hint!r} is not supported: pydantic cannot validate it "
            f"({reason}); use one of {SUPPORTED}"
        ) from error


def holds_int(schema: object) -> bool:
    """Whether a pydantic core schema has an int in it, however deep (a model's field)."""
    return holds(schema, lambda part: part.get("type") == "int", NOT_SCHEMAS)


def upload_param(where: str, name: str, hint: object, optional: bool, default: object):
    """The Param of an upload (an image, bytes, a File or list[File]), or None for any other."""
    many = typing.get_origin(hint) is list and typing.get_args(hint) == (File,)
    item = File if many else hint
    if not listed(item, UPLOADS):
        if typing.get_origin(hint) is list and listed(typing.get_args(hint)[0], UPLOADS):
            raise TypeError(
                f"{where}: take one {type_name(typing.get_args(hint)[0])}, or list[File] for "
                "several files; serve(..., vectorized=True) for a batch of images"
            )
        return None
    return Param(name, UPLOADS[item], False, optional, default, upload=item, many=many)
