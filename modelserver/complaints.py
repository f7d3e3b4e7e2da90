"""How a value a client sent is said to be wrong: pydantic's complaints in the contract's words,
with the field's path (items[2].when), and the integers past 64 bits that pydantic lets by."""

import dataclasses
import datetime
import json
import re
from collections.abc import Callable

from pydantic import BaseModel

from modelserver.answers import shorten
from modelserver.hints import INT64, INT64_RANGE

# pydantic's error types -> how the contract words them.
COMPLAINTS = {
    "float_type": "must be a number",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "finite_number": "overflows a 64-bit float",
    "missing": "is missing",
    "extra_forbidden": "is not a field of it",
    "unexpected_keyword_argument": "is not a field of it",  # a dataclass's
}
# JSON_INT's bounds are those of a 64-bit integer; a Field(ge=...) of a function's own says its
# bound in pydantic's words.
INT64_BOUNDS = {"greater_than_equal": INT64[0], "less_than_equal": INT64[1]}


def complaint(name: str, error: dict) -> str:
    """'a[1] must be a number, got "x"', 'items[2].when is missing' from one pydantic error of
    parameter `name` ("" for a model that is the whole body)."""
    where = field_path(name, error["loc"])
    value = error.get("input")
    if error["type"] == "float_type" and type(value) is int:  # more digits than a float holds
        return f"{where} overflows a 64-bit float"
    if error["type"] == "finite_number" and isinstance(value, str):  # a Decimal's "NaN"
        return f"{where} must be a finite number, got {shown(value)}"
    problem = pydantic_problem(error)
    if error["type"] in (
        "finite_number",
        "missing",
        "extra_forbidden",
        "unexpected_keyword_argument",
    ):
        return f"{where} {problem}"
    return f"{where} {problem}, got {shown(value)}"


def complaint_of(name: str, errors: list[dict], value: object) -> str:
    """The complaint of value, which pydantic refused with errors: the first one's, but where a
    union's types all refused it (pydantic says so once per type, the type's name in the path
    as if it were a field: 'key.int', 'key.str'), one complaint that names the types, or says
    what the one type that took the value's shape refused in it (value[1] of a list[float])."""
    first = errors[0]
    at = union_at(first["loc"], errors, value)
    if at is None:
        return complaint(name, first)
    union = first["loc"][:at]
    members: dict[str, list[dict]] = {}  # a type's name -> its errors, the name out of the path
    for error in errors:
        loc = error["loc"]
        if loc[:at] == union and len(loc) > at:
            members.setdefault(loc[at], []).append({**error, "loc": union + loc[at + 1 :]})
    deeper = {tag: found for tag, found in members.items() if len(found[0]["loc"]) > at}
    if len(deeper) == 1:
        return complaint_of(name, *deeper.values(), value)
    if deeper:
        said = "; ".join(
            f"as {tag}, {complaint('', {**found[0], 'loc': found[0]['loc'][at:]})}"
            for tag, found in deeper.items()
        )
        return f"{field_path(name, union)} matches none of its types: {said}"
    problems = list(dict.fromkeys(pydantic_problem(found[0]) for found in members.values()))
    if not all(problem.startswith("must be ") for problem in problems):
        return complaint(name, next(iter(members.values()))[0])
    either = " or ".join(problem.removeprefix("must be ") for problem in problems)
    return f"{field_path(name, union)} must be {either}, got {shown(first.get('input'))}"


def union_at(loc: tuple, errors: list[dict], value: object) -> int | None:
    """Where in loc a union's type is named, if it is: a name that is no key of the value
    there, beside which another error names another type."""
    current = value
    for i, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            names = {
                e["loc"][i]
                for e in errors
                if e["loc"][:i] == loc[:i] and len(e["loc"]) > i and not missing_at(e, i)
            }
            named = all(isinstance(other, str) for other in names) and not missing_at(errors[0], i)
            return i if named and len(names) > 1 else None
    return None


def missing_at(error: dict, i: int) -> bool:
    """Whether error is of a field missing at position i: its name is no key there either."""
    return error["type"] == "missing" and len(error["loc"]) == i + 1


def shown(value: object) -> str:
    """value as the JSON it came as, shortened for a message."""
    try:
        return shorten(json.dumps(value, default=as_sent))
    except RecursionError:  # deeper than the writer goes, though the reader took it
        return "lists or objects nested too deeply to show"


def as_sent(value: object) -> str:
    """A value JSON has no form of, as a client sends it: a date or time read from its text
    before its constraints were checked, as that text; anything else as Python writes it."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return repr(value)


def field_path(name: str, loc: tuple) -> str:
    """("items", 2, "when") of parameter "order" -> "order.items[2].when"; a dict's key that is
    wrong (pydantic: ("a", "[key]")) -> "key 'a' of x"."""
    if len(loc) >= 2 and loc[-1] == "[key]":
        return f"key {shorten(str(loc[-2]), 100)!r} of {field_path(name, loc[:-2])}"
    path = name
    for part in loc:
        part = part if isinstance(part, int) else shorten(str(part), 100)  # a client's key too
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path or "the body"


# pydantic's own words, in the contract's: "Input should be a valid date" -> "must be ...".
SHOULD = re.compile(r"^\w+ should ")


# A bound of a date or time constraint as pydantic words it when the value was read from text
# first (jsonread.from_json): datetime.date(2026, 1, 1), for a client who sent 2026-01-01.
PY_CLOCK = re.compile(r"datetime\.(date|datetime|time)\((\d+(?:, \d+)*)\)")


def iso_text(found: re.Match) -> str:
    clock = getattr(datetime, found[1])
    return clock(*map(int, found[2].split(", "))).isoformat()


def pydantic_problem(error: dict) -> str:
    if error["type"] in COMPLAINTS:
        return COMPLAINTS[error["type"]]
    if INT64_BOUNDS.get(error["type"], 0.5) in error.get("ctx", {}).values():
        return INT64_RANGE
    message = PY_CLOCK.sub(iso_text, error["msg"])
    if SHOULD.match(message):
        return SHOULD.sub("must ", message, count=1)
    return "is not valid: " + message.removeprefix("Value error, ")


def oversized_int(name: str, value: object) -> str | None:
    """'m[0][1] must be a 64-bit integer ...' for the first int of a validated value past 64 bits
    (in a list of lists, a dict, a model's field), or None. JSON_INT holds a parameter's own ints
    and lists of them; pydantic reuses a model's own validator, so deeper ones are looked for."""
    found = first_leaf(value, past_64_bits)
    if found is None:
        return None
    loc, number = found
    return f"{field_path(name, loc)} {INT64_RANGE}, got {shorten(str(number))}"


def past_64_bits(value: object) -> bool:
    return type(value) is int and not INT64[0] <= value <= INT64[1]


def first_leaf(
    value: object, wanted: Callable[[object], bool], loc: tuple = ()
) -> tuple[tuple, object] | None:
    """The first value in value (itself, or at any depth of its lists, dicts and their keys,
    models and dataclasses) that is wanted, and where it is, as pydantic locates an error
    (("items", 2, "when")); None if there is none."""
    if wanted(value):
        return loc, value
    if isinstance(value, dict):
        items = [*((key, key) for key in value), *value.items()]  # dict[int, ...]'s keys too
    elif isinstance(value, list | tuple | set | frozenset):
        items = enumerate(value)
    elif isinstance(value, BaseModel):
        items = ((field, getattr(value, field)) for field in type(value).model_fields)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = ((field.name, getattr(value, field.name)) for field in dataclasses.fields(value))
    else:
        return None
    for key, item in items:
        found = first_leaf(item, wanted, (*loc, key))
        if found is not None:
            return found
    return None
