"""Whether JSON can fill a type: a pydantic core schema that needs a value only Python makes;
whether a JSON string can."""

import functools

from pydantic import TypeAdapter

# Core schemas that take a Python object no JSON value can be: a function, a class, an instance.
PYTHON_ONLY = frozenset({"callable", "is-subclass", "is-instance"})


def python_only(schema: dict) -> str | None:
    """Where a pydantic core schema needs a value only Python makes, on every way of filling it:
    "" for the whole, ".g" for a field, "[0]" for a list's items, "[key]" for a dict's, ...; None
    when JSON can fill it. A null alone does not fill it; a model's field with a default, left
    out, does."""
    while schema.get("type") in ("nullable", "default"):
        schema = schema["schema"]
    return python_only_in(schema, {}, frozenset())


def python_only_in(schema: dict, definitions: dict, seen: frozenset) -> str | None:
    """python_only below the top, with the definitions of recursive models so far and those
    being looked into (a model that holds itself needs no more of itself to be filled)."""
    kind = schema.get("type")

    def inner(child: dict, path: str = "") -> str | None:
        found = python_only_in(child, definitions, seen)
        return None if found is None else path + found

    if kind in PYTHON_ONLY:
        return ""
    if kind == "default":  # a field that may be left out
        return None
    if kind == "definitions":
        definitions = {**definitions, **{d["ref"]: d for d in schema["definitions"]}}
        return python_only_in(schema["schema"], definitions, seen)
    if kind == "definition-ref":
        ref = schema["schema_ref"]
        if ref in seen or ref not in definitions:
            return None
        return python_only_in(definitions[ref], definitions, seen | {ref})
    if kind in ("union", "tagged-union"):
        choices = schema["choices"]
        choices = choices.values() if isinstance(choices, dict) else choices
        found = [inner(c[0] if isinstance(c, tuple) else c) for c in choices]
        return found[0] if all(f is not None for f in found) else None
    if kind in ("list", "set", "frozenset", "generator") and "items_schema" in schema:
        return inner(schema["items_schema"], "[0]")
    if kind == "dict":
        return first_found(
            inner(schema[key], "[key]") for key in ("keys_schema", "values_schema") if key in schema
        )
    if kind == "tuple":
        return first_found(
            inner(item, f"[{i}]") for i, item in enumerate(schema.get("items_schema", []))
        )
    if kind in ("model-fields", "typed-dict"):
        return first_found(
            inner(field["schema"], f".{name}")
            for name, field in schema["fields"].items()
            if field.get("required", True)
        )
    if kind == "dataclass-args":
        fields = schema["fields"]
        return first_found(inner(field["schema"], f".{field['name']}") for field in fields)
    if kind == "json-or-python":
        return inner(schema["json_schema"])
    if kind == "lax-or-strict":
        return inner(schema["strict_schema"])
    if kind == "chain":
        return inner(schema["steps"][0])
    if "schema" in schema and kind != "function-plain":  # a model, a validator around a type
        return inner(schema["schema"])
    return None


def first_found(paths) -> str | None:
    return next((path for path in paths if path is not None), None)


@functools.cache
def takes_text(adapter: TypeAdapter) -> bool:
    """Whether a value of the adapter's type may be a JSON string (its JSON Schema's type)."""
    schema = adapter.json_schema()
    return text_schema(schema, schema.get("$defs", {}))


def text_schema(schema: dict, defs: dict) -> bool:
    if "$ref" in schema:
        return text_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    members = schema.get("anyOf", []) + schema.get("oneOf", [])
    return schema.get("type") == "string" or any(text_schema(m, defs) for m in members)
