"""The OpenAPI document, generated from the endpoints' signatures."""

from modelserver.answers import JSON_TYPE
from modelserver.endpoints import Signature
from modelserver.limits import MAX_BATCH, MAX_IMAGES

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
    for sig in signatures:
        operations = {"post": post_operation(sig)}
        if not sig.takes_images:
            operations = {"get": get_operation(sig), **operations}
        paths[f"/{sig.name}"] = operations
        paths[f"/v1/{sig.name}"] = {"$ref": "#/paths/~1" + sig.name}
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
    parameters = []
    for param in sig.params:
        item = {
            "name": param.name,
            "in": "query",
            "required": param.required,
            "schema": openapi_schema(param.schema()),
            "example": param.example(),
        }
        if param.is_list:  # ?values=1.5&values=2
            item.update(style="form", explode=True)
        parameters.append(item)
    responses = {"200": result_content(openapi_schema(sig.returns)), **common_errors(False)}
    return {**describe(sig), "parameters": parameters, "responses": responses}


def post_operation(sig: Signature) -> dict:
    one = openapi_schema(sig.returns)
    results = {"anyOf": [one, {"type": "array", "items": one}]} if one else {}
    responses = {"200": result_content(results), **common_errors(True)}
    if sig.model is not None:
        responses["503"] = error_response(f"the model {sig.model!r} is not loaded")
    return {**describe(sig), "requestBody": request_body(sig), "responses": responses}


def arguments_schema(sig: Signature) -> dict:
    schema = {
        "type": "object",
        "properties": {p.name: openapi_schema(p.schema()) for p in sig.params},
        "additionalProperties": False,
    }
    required = [p.name for p in sig.params if p.required]
    if required:
        schema["required"] = required
    return schema


def request_body(sig: Signature) -> dict:
    """A JSON object of arguments, or a list of them (a batch); images as a file or a form."""
    if sig.takes_images:
        form = arguments_schema(sig)
        for name, schema in form["properties"].items():
            if schema.get("format") == "binary":
                form["properties"][name] = {
                    "type": "array",
                    "items": schema,
                    "minItems": 1,
                    "maxItems": MAX_IMAGES,
                }
        content = {"multipart/form-data": {"schema": form}}
        if len(sig.params) == 1:
            binary = {"schema": {"type": "string", "format": "binary"}}
            content = {"image/png": binary, "image/jpeg": binary, **content}
        return {"required": True, "content": content}
    one = arguments_schema(sig)
    batch = {"type": "array", "items": one, "maxItems": MAX_BATCH}
    forms = [one, batch]
    if sig.numbers_only:  # deprecated: {"a": [1, 25, 0]}
        forms.append(
            {
                "type": "object",
                "properties": {
                    p.name: {"type": "array", "items": p.kind.schema, "maxItems": MAX_BATCH}
                    for p in sig.params
                },
                "required": [p.name for p in sig.params if p.required],
                "additionalProperties": False,
                "deprecated": True,
            }
        )
    examples = {"one": {"value": {p.name: p.example() for p in sig.params}}}
    examples["batch"] = {"value": [examples["one"]["value"]] * 2}
    return {
        "required": True,
        "content": {JSON_TYPE: {"schema": {"anyOf": forms}, "examples": examples}},
    }


def openapi_schema(schema: dict) -> dict:
    """A JSON Schema from pydantic in OpenAPI 3.0's dialect: anyOf with null is nullable."""
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0], "nullable": True}
    if schema.get("type") == "array" and "items" in schema:
        schema = {**schema, "items": openapi_schema(schema["items"])}
    return schema
