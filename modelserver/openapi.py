"""The OpenAPI document, generated from the endpoints' signatures."""

import typing

import numpy as np
from pydantic import TypeAdapter

from modelserver import arrays
from modelserver.answers import JSON_TYPE
from modelserver.endpoints import Signature
from modelserver.fillable import takes_text
from modelserver.hints import BINARY, REQUIRED, Param
from modelserver.limits import MAX_BATCH, MAX_IMAGES
from modelserver.streaming import EVENT_STREAM, NDJSON

# Models, dataclasses, TypedDicts and Enums are named schemas of the document's components,
# referred to from every place that uses them.
REF = "#/components/schemas/{model}"
# The schemas of the document being made (openapi() fills it): name -> schema.
COMPONENTS: dict[str, dict] = {}

# --- the OpenAPI document ------------------------------------------------------------------


def error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def result_content(schema: dict, example: object = None) -> dict:
    body = {"type": "object", "required": ["result"], "properties": {"result": schema}}
    content = {"schema": body}
    if example is not None:
        content["example"] = {"result": example}
    return {"description": "the result", "content": {JSON_TYPE: content}}


def stream_content(item: dict) -> dict:
    """A generator's answer: a line {"result": item} per item, or the same as events."""
    line = {"type": "object", "required": ["result"], "properties": {"result": item}}
    return {
        "description": "the items as they are made, a JSON line each; a last line "
        '{"message": ...} if the function fails midway. With Accept: text/event-stream, '
        "the same lines as Server-Sent Events (an error as event: error)",
        "content": {NDJSON: {"schema": line}, EVENT_STREAM: {"schema": {"type": "string"}}},
    }


def schema_of(adapter: TypeAdapter | None, fallback: dict, mode: str = "validation") -> dict:
    """The adapter's JSON Schema in OpenAPI 3.0's dialect, its named parts moved to the
    document's components; fallback where there is no adapter or pydantic has no schema."""
    if adapter is None:
        return dict(fallback)
    try:
        schema = adapter.json_schema(ref_template=REF, mode=mode)
    except Exception:  # a type pydantic validates but cannot describe (arbitrary types)
        return dict(fallback)
    for name, part in schema.pop("$defs", {}).items():
        COMPONENTS[name] = openapi_schema(part)
    if "title" in schema:  # a model, dataclass, TypedDict or Enum itself: a named one too
        COMPONENTS[schema["title"]] = openapi_schema(schema)
        return {"$ref": REF.format(model=schema["title"])}
    return openapi_schema(schema)


def param_schema(param: Param) -> dict:
    schema = schema_of(param.adapter, param.kind.schema)
    if param.default is not REQUIRED and param.default is not None:
        schema["default"] = param.example()
    return schema


def result_schema(sig: Signature) -> dict:
    """One result's (or streamed item's) schema, from the return hint; {} (any JSON) without."""
    if sig.returns_hint is None:
        return {}
    try:
        adapter = TypeAdapter(sig.returns_hint)
    except Exception:  # an ndarray, a model's own class: any JSON, but for an array of numbers
        numbers = not sig.vectorized and numeric_array(sig.returns_hint)
        return openapi_schema(arrays.schema(numbers)) if numbers else {}
    return schema_of(adapter, {}, "serialization")


def numeric_array(hint: object) -> np.dtype | None:
    """The dtype of an ndarray hint that names a numeric one (NDArray[np.float32]), else None:
    a bare ndarray may hold labels as well as numbers."""
    try:
        return arrays.dtype_of(hint) if typing.get_origin(hint) is np.ndarray else None
    except TypeError:  # strings, objects
        return None


def common_errors(body: bool) -> dict:
    responses = {
        "400": error_response(
            "a parameter is missing, repeated, of the wrong type, or outside "
            "the function's domain; the message names it"
        ),
        "401": error_response("the server needs an API key and none, or a wrong one, was sent"),
        "413": error_response(
            "the body, a list, a batch or the pixels of a request's images are over their limit"
        ),
        "429": error_response(
            "too many requests from this client, or in all (nginx's limits); "
            "Retry-After says when to try again"
        ),
        "431": error_response("a request header line is over 8 KB"),
        "default": error_response(
            "any other error (404, 405, 500, 502, 503, 504), always with a message"
        ),
    }
    if body:
        responses["415"] = error_response("the body is not of a Content-Type this endpoint takes")
    else:
        responses["414"] = error_response("the request line is over 8 KB")
    return responses


def openapi(signatures: list[Signature]) -> dict:
    """The OpenAPI 3 document of the API, generated from the registry's type hints."""
    paths = {
        "/": {"get": page_operation("the demo page", "text/html")},
        "/docs": {
            "get": page_operation("this document, to read and try in a browser", "text/html")
        },
        "/healthz": {"get": status_operation("the service is up")},
        "/readyz": {
            "get": status_operation("every model is loaded (503 names those that are not)")
        },
    }
    COMPONENTS.clear()
    for sig in signatures:
        operations = {"post": post_operation(sig)}
        if sig.takes_query:
            operations = {"get": get_operation(sig), **operations}
        paths[f"/{sig.name}"] = operations
        paths[f"/v1/{sig.name}"] = {"$ref": "#/paths/~1" + sig.name}
    for sig in signatures:  # a model that is a whole body refuses other fields (arguments.py)
        if sig.params and sig.params[0].body_fields is not None:
            model = sig.params[0].kind.name
            COMPONENTS.get(model, {}).setdefault("additionalProperties", False)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "modelserver",
            "version": "1.0.0",
            "description": "Python functions served over HTTP. Every error is JSON "
            '{"message": ...} naming the problem.',
        },
        "paths": paths,
        "components": {
            "schemas": {
                **COMPONENTS,
                "Result": {"type": "object", "required": ["result"]},
                "Error": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {"message": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
            "securitySchemes": API_KEY_SCHEME,
        },
        # A key, or none: the server needs one only when its key file holds any.
        "security": [{"apiKey": []}, {}],
    }


# The API key as the document declares it: Swagger UI at /docs then has an Authorize button.
API_KEY_SCHEME = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "a key from the server's key file ($MODELSERVER_API_KEYS_FILE); "
        "needed only when that file holds any",
    }
}


def page_operation(summary: str, media: str) -> dict:
    return {
        "summary": summary,
        "responses": {
            "200": {"description": summary, "content": {media: {"schema": {"type": "string"}}}}
        },
    }


def status_operation(summary: str) -> dict:
    schema = {"type": "object", "required": ["status"]}
    return {
        "summary": summary,
        "responses": {
            "200": {"description": summary, "content": {JSON_TYPE: {"schema": schema}}},
            "503": error_response("not ready"),
        },
    }


def describe(sig: Signature) -> dict:
    text = {"summary": sig.summary}
    if sig.description:
        text["description"] = sig.description
    return text


def get_operation(sig: Signature) -> dict:
    """The query-string form: the parameters a query can carry (a type that needs JSON is
    POST only)."""
    parameters = [query_parameter(param) for param in sig.params if param.in_query]
    one = result_schema(sig)
    answer = stream_content(one) if sig.streams else result_content(one)
    responses = {"200": answer, **common_errors(False), **not_loaded(sig)}
    return {**describe(sig), "parameters": parameters, "responses": responses}


def not_loaded(sig: Signature) -> dict:
    """The 503 of an endpoint whose model did not load."""
    if sig.model is None:
        return {}
    return {"503": error_response(f"the model {sig.model!r} is not loaded")}


def query_parameter(param: Param, beside_body: str = "") -> dict:
    """A parameter in the query string of a GET; beside_body: of a POST, where it is optional,
    and how it comes when not in the query (no example, which /docs would send as a value)."""
    # No null in a query string: an optional parameter is one that may be left out.
    schema = {key: value for key, value in param_schema(param).items() if key != "nullable"}
    item = {
        "name": param.name,
        "in": "query",
        "required": param.required and not beside_body,
        "schema": schema,
    }
    if beside_body:
        item["description"] = beside_body
    elif param.example() is not None:
        item["example"] = param.example()
    if param.is_list:  # ?values=1.5&values=2
        item.update(style="form", explode=True)
    return item


def post_operation(sig: Signature) -> dict:
    one = result_schema(sig)
    results = {"anyOf": [one, {"type": "array", "items": one}]} if one else {}
    answer = stream_content(one) if sig.streams else result_content(results)
    responses = {"200": answer, **common_errors(True), **not_loaded(sig)}
    operation = {**describe(sig), "requestBody": request_body(sig), "responses": responses}
    if raw_upload(sig):  # beside a file or image as the body, the others come in the query
        operation["parameters"] = [
            query_parameter(p, "with the file or image as the body; in a form, a field")
            for p in sig.params
            if p.in_query and p.upload is None
        ]
    return operation


def arguments_schema(sig: Signature) -> dict:
    schema = {
        "type": "object",
        "properties": {p.name: param_schema(p) for p in sig.params},
        "additionalProperties": False,
    }
    required = [p.name for p in sig.params if p.required]
    if required:
        schema["required"] = required
    return schema


def request_body(sig: Signature) -> dict:
    """A JSON object of arguments, or a list of them (a batch); uploads as a body or a form."""
    if sig.takes_uploads:
        return upload_body(sig)
    if sig.params and sig.params[0].whole_body:
        one = param_schema(sig.params[0])
    else:
        one = arguments_schema(sig)
    batch = {"type": "array", "items": one, "maxItems": MAX_BATCH}
    forms = [one] if sig.streams else [one, batch]
    if sig.numbers_only and sig.params and not sig.streams:  # deprecated: {"a": [1, 25, 0]}
        forms.append(
            {
                "type": "object",
                "properties": {
                    p.name: {"type": "array", "items": p.kind.schema, "maxItems": MAX_BATCH}
                    for p in sig.params
                },
                "additionalProperties": False,
                "deprecated": True,
            }
        )
        required = [p.name for p in sig.params if p.required]
        if required:  # OpenAPI 3.0: a required list is never empty
            forms[-1]["required"] = required
    media = {"schema": {"anyOf": forms}}
    if all(p.example() is not None for p in sig.params):
        examples = {"one": {"value": {p.name: p.example() for p in sig.params}}}
        if not sig.streams:
            examples["batch"] = {"value": [examples["one"]["value"]] * 2}
        media["examples"] = examples
    return {"required": True, "content": {JSON_TYPE: media}}


def upload_body(sig: Signature) -> dict:
    """A multipart form of the parameters (an image or a file field repeated: a batch, unless
    the function streams; a list[File] field: the files), or for a function of one upload the
    file as the body. Not required when every parameter it must carry has a default."""
    form = arguments_schema(sig)
    for param in sig.params:
        if param.upload is not None:
            form["properties"][param.name] = {
                "type": "array",
                "items": BINARY,
                "minItems": 0 if param.many else 1,
                "maxItems": 1 if sig.streams and not param.many else MAX_IMAGES,
            }
        elif not param.in_query and not takes_text(param.adapter):  # its JSON text
            form["properties"][param.name] = {"type": "string", "description": "JSON"}
    content = {"multipart/form-data": {"schema": form}}
    upload = raw_upload(sig)
    if upload is not None:
        binary = {"schema": BINARY}
        if upload.is_image:
            content = {"image/png": binary, "image/jpeg": binary, **content}
        elif upload.upload is bytes:  # any Content-Type at all; /docs offers a file picker
            content = {"application/octet-stream": binary, **content}
        else:  # a File: the form first, which gives it a filename and a type in /docs too
            content = {**content, "application/octet-stream": binary}
    # With the upload as the body, the others are declared in the query string; else the form
    # carries every parameter.
    needed = upload.required if upload is not None else any(p.required for p in sig.params)
    return {"required": needed, "content": content}


def raw_upload(sig: Signature) -> Param | None:
    """The one upload of a function that may take it as the whole body (no other upload, no
    other required parameter), or None."""
    if not sig.takes_uploads:
        return None
    uploads = [p for p in sig.params if p.upload is not None]
    others = [p for p in sig.params if p.required and p not in uploads[:1]]
    if len(uploads) == 1 and not others and not uploads[0].many:
        return uploads[0]
    return None


def openapi_schema(schema: object) -> object:
    """A JSON Schema from pydantic in OpenAPI 3.0's dialect, all the way down: anyOf with null
    is nullable, const an enum of one, a tuple's prefixItems items of any of them, a numeric
    exclusive bound a boolean beside its bound, examples one example, $ref alone."""
    if isinstance(schema, list):
        return [openapi_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: openapi_schema(value) for key, value in schema.items()}
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        schema = {k: v for k, v in schema.items() if k != "anyOf"}
        schema.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        schema["nullable"] = True
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    if "prefixItems" in schema:
        items = schema.pop("prefixItems")
        distinct = [item for i, item in enumerate(items) if item not in items[:i]]
        schema["items"] = distinct[0] if len(distinct) == 1 else {"anyOf": distinct}
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if not isinstance(schema.get(bound, True), bool):
            schema[limit], schema[bound] = schema[bound], True
    if "examples" in schema:
        examples = schema.pop("examples")
        if isinstance(examples, list) and examples:
            schema["example"] = examples[0]
    if "$ref" in schema and len(schema) > 1:
        # OpenAPI 3.0 ignores whatever stands beside a $ref: keep it beside an allOf of it.
        schema = {"allOf": [{"$ref": schema.pop("$ref")}], **schema}
    return schema
