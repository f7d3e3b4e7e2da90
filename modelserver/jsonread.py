"""What JSON alone would read wrongly in a type, read right: a date from a number, a dict's
integer keys that would be one, an ndarray."""

import datetime
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BeforeValidator, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from modelserver.arrays import array_type

# A plain decimal number as people type it (25, -1.5, .5, 2e10). float() alone would also take
# "nan", "inf", "1_000", " 25 " and non-ASCII digits, none of which a client means as a number.
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
# The text of an integer as JSON writes one: no sign +, leading zeros or spaces.
PLAIN_INT = re.compile(r"0|-?[1-9]\d*", re.ASCII)


# pydantic reads a number, or the text of one, as Unix time for a date, a datetime or a time of
# day: {"day": "20260102"} would be 1970-08-23. The schema says ISO 8601 text; only that is taken.
CLOCK_EXAMPLES = {
    datetime.date: "2026-01-02",
    datetime.datetime: "2026-01-02T09:30:00Z",
    datetime.time: "09:30:00",
}


def from_json(hint: object) -> object:
    """hint, with each part that JSON alone would read wrongly (alone, or in lists, dicts, tuples,
    unions) replaced by one that reads it right: a date, datetime or time refuses a number or
    the text of one; a dict's int key is the plain text of one; a Literal's number or true/false
    is one of its own type; an ndarray is read from nested lists (modelserver/arrays.py)."""
    if isinstance(hint, type) and hint in CLOCK_EXAMPLES:
        return Annotated[hint, BeforeValidator(refuse_numbers(hint))]
    array = array_type(hint)
    if array is not None:
        return array
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return Annotated[(from_json(args[0]), *hint.__metadata__)]
    if origin is Literal and exact_choices(args):
        return Annotated[hint, BeforeValidator(exact_choice(args))]
    if not args or origin is Literal:
        return hint
    if origin is dict and args[0] is int:
        return dict[PLAIN_INT_KEY, from_json(args[1])]
    inner = tuple(from_json(arg) for arg in args)
    if inner == args:
        return hint
    if origin in (typing.Union, types.UnionType):
        return typing.Union[inner]  # noqa: UP007 (the members are only known here)
    return origin[inner]


def refuse_numbers(hint: type) -> Callable[[object], object]:
    """A check before hint's own: a number is refused, text is read here, as pydantic reads it
    from JSON (past this check the value is a Python str, which strict mode refuses)."""
    text = TypeAdapter(hint)

    def check(value: object) -> object:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number or (isinstance(value, str) and NUMBER.fullmatch(value)):
            raise PydanticCustomError(
                "clock_from_number",
                "Input should be a {kind} in ISO 8601 text, such as {example}, not a number",
                {"kind": hint.__name__, "example": CLOCK_EXAMPLES[hint]},
            )
        if not isinstance(value, str):
            return value
        try:
            return text.validate_python(value)
        except ValidationError as error:
            problem = error.errors()[0]
            message = problem["msg"].replace("{", "{{").replace("}", "}}")
            raise PydanticCustomError(problem["type"], message) from None

    return check


def plain_int_key(key: object) -> object:
    """A dict's int key, from its text: pydantic alone reads "1", "01" and " 1" as the same key,
    and keeps one of their values."""
    if not isinstance(key, str):
        return key
    try:
        value = int(key)
    except ValueError:
        return key  # not an integer at all: pydantic's own complaint
    if not PLAIN_INT.fullmatch(key):
        raise PydanticCustomError(
            "int_key",
            "Input should be an integer written plainly, such as 12 (no sign +, leading zeros "
            "or spaces), so that no two keys are the same integer",
        )
    return value


PLAIN_INT_KEY = Annotated[int, BeforeValidator(plain_int_key)]


def exact_choices(choices: tuple) -> bool:
    """Whether a Literal's choices are plain values some of which are numbers or true/false,
    which Python (and pydantic) take for each other: 1 for True, 1.0 for 1."""
    plain = all(type(choice) in (bool, int, float, str) for choice in choices)
    return plain and any(type(choice) is not str for choice in choices)


def exact_choice(choices: tuple) -> Callable[[object], object]:
    """A check before the Literal's own: a number or true/false is a choice of its own type."""
    named = ", ".join(map(repr, choices[:-1])) + " or " if len(choices) > 1 else ""
    expected = named + repr(choices[-1])

    def check(value: object) -> object:
        if type(value) in (bool, int, float) and not any(
            type(value) is type(choice) and value == choice for choice in choices
        ):
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": expected}
            )
        return value

    return check
