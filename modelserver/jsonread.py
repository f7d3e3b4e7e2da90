"""What JSON alone would read wrongly in a type, read right: a date from a number, a dict's
integer keys that would be one, an ndarray; at any depth, in a model's fields too."""

import contextlib
import datetime
import logging
import re
import types
import typing
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BeforeValidator, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError, SchemaValidator
from pydantic_core import core_schema as cs

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
    if origin is dict and args[0] not in (str, typing.Any):
        key = from_json(args[0])
        check = BeforeValidator(distinct_keys(TypeAdapter(key).validate_strings))
        return Annotated[dict[key, from_json(args[1])], check]
    inner = tuple(from_json(arg) for arg in args)
    if inner == args:
        return hint
    if origin in (typing.Union, types.UnionType):
        return typing.Union[inner]  # noqa: UP007 (the members are only known here)
    return origin[inner]


def refuse_numbers(hint: type) -> Callable[[object], object]:
    """A check before hint's own: a number is refused, text is read here, as pydantic reads it
    from JSON, with its reasons (past this check the value is a Python str, which strict mode
    refuses)."""
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
            return text.validate_strings(value, strict=True)
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


def distinct_keys(read_key: Callable[..., object]) -> Callable[[object], object]:
    """A check before a dict's own, for keys of another type than text (a float, a UUID, a
    date): each key is read here, as pydantic reads it from JSON, and two that are one value
    are refused: pydantic alone reads "1" and "1.0" as one float, and keeps one of their values.
    read_key: a validator's validate_strings."""

    def check(value: object) -> object:
        if not isinstance(value, dict):
            return value
        read, first_of = {}, {}
        for text, item in value.items():
            try:
                key = read_key(text, strict=True) if isinstance(text, str) else text
            except ValidationError:  # the dict's own check names it
                return value
            if key in first_of:
                raise PydanticCustomError(
                    "key_collision",
                    "Input should have distinct keys: {first} and {second} are the same value",
                    {"first": repr(first_of[key]), "second": repr(text)},
                )
            first_of[key], read[key] = text, item
        return read

    return check


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


# --- the same inside models, dataclasses and TypedDicts -------------------------------------

# Core schemas of the classes whose fields a JSON object fills; their fields are beyond
# from_json(), which rewrites type hints, not a class's own.
CLASSES = frozenset({"model", "dataclass", "typed-dict"})
# The same classes by the name of their core schema ("date", ...), as a class's fields have them.
CLOCK_SCHEMAS = {clock.__name__: clock for clock in CLOCK_EXAMPLES}
# Parts of a core schema that hold values or Python objects, not schemas.
NOT_SCHEMAS = frozenset({"cls", "config", "default", "expected", "metadata", "serialization"})


def read_in_depth(adapter: TypeAdapter, where: str) -> TypeAdapter:
    """adapter, its checks reading every field of a model, dataclass or TypedDict in its type as
    from_json() reads a parameter, and refusing a field the class does not have unless its
    config says extra="ignore" or "allow". pydantic alone reads {"day": "20260102"} in a model
    as 1970-08-23, and a misspelt field's value is dropped for the field's default, unsaid.
    where: the parameter, for the log."""
    if not isinstance(adapter.core_schema, dict):  # a model of defer_build=True: built now
        adapter.rebuild(force=True)
    classes = []
    holds(adapter.core_schema, lambda part: found_class(part, classes), NOT_SCHEMAS)
    if classes:
        # The adapter's validator, replaced: its schema and JSON Schema stay the class's own.
        try:
            schema = in_depth(adapter.core_schema, inside=False)
            with built_anew(classes):
                adapter.validator = SchemaValidator(schema)
        except Exception as error:  # a shape not foreseen here: served as pydantic reads it
            logging.getLogger(__name__).warning(
                "%s is read as pydantic alone reads it, not in depth: %s", where, error
            )
    return adapter


def found_class(schema: dict, classes: list) -> bool:
    """False, having noted in classes the class of a class's schema."""
    if schema.get("type") in CLASSES:
        classes.append(schema.get("cls"))
    return False


@contextlib.contextmanager
def built_anew(classes: list):
    """pydantic-core builds a model's (or pydantic dataclass's) part of a schema from the
    validator the class already has, whatever the schema says, when the class is marked complete
    in its own __dict__: unmarked while the new validator is built, its instances still the
    class's own."""
    marked = [c for c in set(classes) if c is not None and vars(c).get("__pydantic_complete__")]
    for cls in marked:
        cls.__pydantic_complete__ = False
    try:
        yield
    finally:
        for cls in marked:
            cls.__pydantic_complete__ = True


def in_depth(schema: object, inside: bool) -> object:
    """A copy of a core schema (or of a part: a list, a dict of fields) with every part within a
    class read as from_json() reads a parameter; the classes' own schemas are left as they are."""
    if isinstance(schema, list | tuple):
        return type(schema)(in_depth(part, inside) for part in schema)
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    # The definitions a schema names more than once (a model, a type alias) count as inside:
    # from_json() does not reach them.
    inside = inside or kind in CLASSES or kind == "definitions"
    copy = {k: v if k in NOT_SCHEMAS else in_depth(v, inside) for k, v in schema.items()}
    if kind in CLASSES:
        return refusing_extra(copy)
    if not inside:
        return copy
    if kind in CLOCK_SCHEMAS:
        return cs.no_info_before_validator_function(refuse_numbers(CLOCK_SCHEMAS[kind]), copy)
    keys = copy.get("keys_schema", {}).get("type") if kind == "dict" else None
    if keys == "int":
        read_int = cs.no_info_before_validator_function(plain_int_key, copy["keys_schema"])
        return {**copy, "keys_schema": read_int}
    if keys not in (None, "str", "any", "definition-ref"):  # a named key type: left as it is
        read_key = SchemaValidator(copy["keys_schema"]).validate_strings
        return cs.no_info_before_validator_function(distinct_keys(read_key), copy)
    if kind == "literal" and exact_choices(tuple(copy["expected"])):
        return cs.no_info_before_validator_function(exact_choice(tuple(copy["expected"])), copy)
    return copy


def refusing_extra(schema: dict) -> dict:
    """A class's schema that refuses unknown fields, unless its config says what to do with them."""
    if schema.get("config", {}).get("extra_fields_behavior") or schema.get("root_model"):
        return schema
    if schema["type"] == "typed-dict":  # "ignore" unless closed, or with extra items typed
        return schema if "extras_schema" in schema else {**schema, "extra_behavior": "forbid"}
    return {**schema, "schema": forbidding(schema["schema"])}


def forbidding(fields: dict) -> dict:
    """A model's model-fields, a dataclass's dataclass-args, refusing unknown fields; found
    within the class's own validators (a model_validator(mode="before") wraps them)."""
    if fields.get("type") in ("model-fields", "dataclass-args"):
        return {"extra_behavior": "forbid", **fields}
    if fields.get("type") in ("function-before", "function-after", "function-wrap"):
        return {**fields, "schema": forbidding(fields["schema"])}
    return fields


def holds(schema: object, found: Callable[[dict], bool], skipped: frozenset = frozenset()) -> bool:
    """Whether found(part) for a part of a schema (a pydantic core schema, a JSON Schema), however
    deep; the keys in skipped hold no schemas."""
    if isinstance(schema, list):
        return any(holds(item, found, skipped) for item in schema)
    if not isinstance(schema, dict):
        return False
    return found(schema) or any(
        holds(v, found, skipped) for k, v in schema.items() if k not in skipped
    )
