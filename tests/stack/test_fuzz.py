"""Fuzzing the real stack (nginx -> uWSGI -> Flask): nothing a client sends yields a 5xx.

schemathesis generates requests from the OpenAPI document that the registry generates, for
every registered function and for a user's functions (usermodels.py), and checks every
response against it;
hypothesis adds raw query strings and bodies that no schema describes, sent to a user's
functions (usermodels.SERVED, what the `stack` fixture serves), and their responses are
checked against the document's Result and Error schemas. FUZZED counts what was sent.

make test sends a quarter of the cases that CI's deep lane sends (make test-deep sets
MODELSERVER_FUZZ_SCALE=4): the rare finds come from the long run, the quick one keeps make test
within its minutes.
"""

import json
import os
from collections import Counter
from urllib.parse import quote

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import record_figure, usermodels
from modelserver.endpoints import signature_of
from modelserver.openapi import openapi
from registry import ENDPOINTS

FUZZED: Counter = Counter()
SCALE = int(os.environ.get("MODELSERVER_FUZZ_SCALE", "1"))
SLOW_FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
# The user's functions that fail on purpose answer 5xx by design: a bug, a NaN result, a model
# that did not load (and with it /readyz).
FAILING_BY_DESIGN = {"broken", "nan", "needs-broken"}


def document(algorithms: dict) -> dict:
    return openapi([signature_of(name, entry) for name, entry in algorithms.items()])


REGISTERED = document(ENDPOINTS)
SERVED = document(usermodels.SERVED)
USERS = document({k: v for k, v in usermodels.ENDPOINTS.items() if k not in FAILING_BY_DESIGN})
del USERS["paths"]["/readyz"]
SCHEMAS = SERVED["components"]["schemas"]
# Every function's paths that take a query string or a JSON body, and its parameters' names.
QUERY_PATHS = [p for p, item in SERVED["paths"].items() if "parameters" in item.get("get", {})]
JSON_PATHS = [
    p
    for p, item in SERVED["paths"].items()
    if "application/json" in item.get("post", {}).get("requestBody", {}).get("content", {})
]
NAMES = sorted(
    {p["name"] for path in QUERY_PATHS for p in SERVED["paths"][path]["get"]["parameters"]}
)
QUERY_PATHS += ["/v1" + path for path in QUERY_PATHS]
JSON_PATHS += ["/v1" + path for path in JSON_PATHS]

# Invalid input is rejected with any 4xx the API documents: 413 for an over-long batch, too.
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": ["400", "404", "405", "413", "414", "415", "431"]
            }
        }
    }
)
registered = schemathesis.openapi.from_dict(REGISTERED, config=CONFIG)
users = schemathesis.openapi.from_dict(USERS, config=CONFIG)


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    record_figure("fuzzed requests through the real stack", dict(FUZZED))


def check(kind: str, status: int, content_type: str | None, body: bytes) -> None:
    """Count the case; never a 5xx; the body is a Result (200) or an Error (4xx) as documented."""
    FUZZED[kind] += 1
    FUZZED["5xx seen"] += status >= 500
    assert status < 500, body
    assert content_type == "application/json", body
    payload = json.loads(body)
    jsonschema.validate(payload, SCHEMAS["Result" if status == 200 else "Error"])


def call_and_validate(case, url: str) -> None:
    # Valid data may rightly get a 400 where a schema cannot say it all: an image in which no
    # digit is found, a value outside the function's domain (a < 0); so that check is left out.
    excluded = [schemathesis.checks.positive_data_acceptance]
    if case.media_type == "multipart/form-data":
        # A form cannot carry every wrong type the schema can say: a number field sent as an
        # empty list is no field at all, so the parameter's default rightly applies.
        excluded.append(schemathesis.checks.negative_data_rejection)
    response = case.call_and_validate(base_url=url, excluded_checks=excluded)
    FUZZED["schemathesis"] += 1
    assert response.status_code < 500, response.content


@registered.parametrize()
@settings(max_examples=125 * SCALE, deadline=None, suppress_health_check=SLOW_FIXTURE_OK)
def test_every_registered_function_answers_as_documented(case, registry_stack):
    call_and_validate(case, registry_stack.url)


@users.parametrize()
@settings(max_examples=40 * SCALE, deadline=None, suppress_health_check=SLOW_FIXTURE_OK)
def test_a_users_functions_answer_as_documented(case, user_stack):
    call_and_validate(case, user_stack.url)


# --- raw query strings ----------------------------------------------------------------------

# What an URL can carry without encoding (no controls, no space), '%' and '&' and '=' included,
# so broken escapes ("%", "%zz", "%%41") and odd separators ("a==1", "&&a") reach the server.
URL_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#")
NUMBERISH = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
    st.text(alphabet="0123456789+-.eE_xXnNaAiIfF ", max_size=30),
)
VALUE = st.one_of(
    NUMBERISH.map(lambda text: quote(text, safe="")),
    st.binary(max_size=100).map(lambda data: quote(data, safe="")),  # any bytes, as %XX
    st.text(max_size=100).map(lambda text: quote(text, safe="")),  # any unicode, UTF-8 %XX
    st.text(alphabet=URL_CHARS, max_size=100),  # raw, unencoded
)
NAME = st.sampled_from([*NAMES, *NAMES, "A", "", "a[]", "a%00", "%61", "b"]) | st.text(URL_CHARS)
PAIR = st.one_of(st.tuples(NAME, VALUE).map("=".join), NAME, VALUE)
QUERY = st.lists(PAIR, max_size=6).map("&".join)


@settings(max_examples=750 * SCALE, deadline=None, suppress_health_check=SLOW_FIXTURE_OK)
@given(path=st.sampled_from(QUERY_PATHS), query=QUERY)
def test_raw_query_strings(stack, path, query):
    status, headers, body = stack.request("GET", f"{path}?{query}")
    check("raw query strings", status, headers.get("content-type"), body)


# --- raw bodies -----------------------------------------------------------------------------

JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
JSON_BODY = st.one_of(
    st.dictionaries(st.sampled_from([*NAMES, "b", "A"]), JSON_VALUE).map(json.dumps),
    st.lists(st.dictionaries(st.sampled_from([*NAMES, "b"]), JSON_VALUE), max_size=5).map(
        json.dumps
    ),
    st.lists(NUMBERISH, max_size=50).map(lambda items: '{"values": [' + ", ".join(items) + "]}"),
    NUMBERISH.map(lambda item: '{"values": ' + item + "}"),
    JSON_VALUE.map(json.dumps),
).map(str.encode)
BODY = JSON_BODY | st.binary(max_size=500)
CONTENT_TYPE = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "image/png",
        "",
    ]
)


@settings(max_examples=750 * SCALE, deadline=None, suppress_health_check=SLOW_FIXTURE_OK)
@given(path=st.sampled_from(JSON_PATHS), body=BODY, content_type=CONTENT_TYPE)
def test_raw_bodies(stack, path, body, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    status, response_headers, response = stack.request("POST", path, body, headers)
    check("raw bodies", status, response_headers.get("content-type"), response)
