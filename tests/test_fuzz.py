"""Fuzzing the real stack (nginx -> uWSGI -> Flask): nothing a client sends yields a 5xx.

schemathesis generates requests from openapi.json and checks every response against it;
hypothesis adds raw query strings and bodies that no schema describes, and their responses are
checked against the document's Result and Error schemas. FUZZED counts what was sent.
"""

import json
from collections import Counter
from urllib.parse import quote

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import record_figure
from server import OPENAPI_FILE

FUZZED: Counter = Counter()
SLOW_FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
SCHEMAS = json.loads(OPENAPI_FILE.read_text())["components"]["schemas"]

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
schema = schemathesis.openapi.from_path(OPENAPI_FILE, config=CONFIG)


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


@schema.parametrize()
@settings(max_examples=1000, deadline=None, suppress_health_check=SLOW_FIXTURE_OK)
def test_every_operation_answers_as_documented(case, stack):
    # A schema cannot say "an image of a digit": for /predict, schema-valid bytes (say, a 1x1
    # PNG) may rightly get a 400, so only that one check is left out there.
    image_content = [schemathesis.checks.positive_data_acceptance] if "predict" in case.path else []
    response = case.call_and_validate(base_url=stack.url, excluded_checks=image_content)
    FUZZED["schemathesis"] += 1
    assert response.status_code < 500, response.content


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
NAME = st.sampled_from(["a", "a", "a", "A", "", "a[]", "a%00", "%61", "b"]) | st.text(URL_CHARS)
PAIR = st.one_of(st.tuples(NAME, VALUE).map("=".join), NAME, VALUE)
QUERY = st.lists(PAIR, max_size=6).map("&".join)


@settings(max_examples=3000, deadline=None, suppress_health_check=SLOW_FIXTURE_OK)
@given(path=st.sampled_from(["/pisqrt", "/v1/pisqrt"]), query=QUERY)
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
    st.dictionaries(st.sampled_from(["a", "b", "A"]), JSON_VALUE).map(json.dumps),
    st.lists(NUMBERISH, max_size=50).map(lambda items: '{"a": [' + ", ".join(items) + "]}"),
    NUMBERISH.map(lambda item: '{"a": ' + item + "}"),
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


@settings(max_examples=3000, deadline=None, suppress_health_check=SLOW_FIXTURE_OK)
@given(path=st.sampled_from(["/pisqrt", "/v1/pisqrt"]), body=BODY, content_type=CONTENT_TYPE)
def test_raw_bodies(stack, path, body, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    status, response_headers, response = stack.request("POST", path, body, headers)
    check("raw bodies", status, response_headers.get("content-type"), response)
