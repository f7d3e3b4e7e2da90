"""Optional API keys: a key file with keys makes every call of a served function need one;
the probes, the page and the documents stay open (through the stack and in a browser:
stack/test_api_keys_stack.py, system/test_api_keys_page.py)."""

import pytest

from deploy.localstack import PROJECT
from helpers import answer_of, assert_json_error, usermodels
from helpers.keys import KEY, bearer
from modelserver.keys import DIGESTS_ENV, KeyFileError
from server import create_app


def served_client(keys_file: str):
    """A user's functions (usermodels.SERVED), with keys_file as the key file."""
    config = {"TESTING": True, "API_KEYS_FILE": keys_file, "ENDPOINTS": usermodels.SERVED}
    return create_app(config).test_client()


PAGE = PROJECT / "static" / "index.html"


@pytest.fixture
def keyed_client(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"# the first team\n{KEY}\n\n")
    return served_client(str(keys))


# (name, headers, status, words in the message)
REFUSED = [
    ("no header", {}, "needs a key", "Authorization: Bearer"),
    ("wrong key", bearer("guess"), "not valid"),
    ("a prefix of the key", bearer(KEY[:-1]), "not valid"),
    ("another scheme", {"Authorization": f"Basic {KEY}"}, "needs a key"),
    ("empty bearer", {"Authorization": "Bearer "}, "needs a key"),
]


@pytest.mark.parametrize(
    ("headers", "words"), [(c[1], c[2:]) for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_a_call_without_the_key_is_a_json_401(keyed_client, headers, words):
    response = keyed_client.get("/norm?values=3&values=4", headers=headers)
    assert_json_error(
        *answer_of(response),
        401,
        *words,
    )
    assert response.headers["WWW-Authenticate"] == "Bearer realm=modelserver"


def test_the_key_opens_every_function_and_the_rest_is_open_without(keyed_client):
    assert keyed_client.get("/norm?values=3&values=4", headers=bearer(KEY)).status_code == 200
    response = keyed_client.post("/v1/norm", json={"values": [3, 4]}, headers=bearer(KEY))
    assert response.status_code == 200, response.data
    assert response.json == {"result": 5.0}
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        with keyed_client.get(path) as response:  # /docs is a file: closed after
            assert response.status_code == 200, path
    # The demos' page, open too while it is there; removing it leaves a 404, never a 401.
    with keyed_client.get("/") as response:
        assert response.status_code == (200 if PAGE.exists() else 404)


def test_without_a_key_file_no_key_is_needed(tmp_path, caplog):
    (tmp_path / "empty").write_text("\n")
    for keys in ("", str(tmp_path / "empty")):
        assert served_client(keys).get("/norm?values=3&values=4").status_code == 200
    # An empty file is the installed default, or keys an update removed: the log says so.
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [
        f"API keys: {tmp_path / 'empty'} holds no key; every call is answered without one"
    ]


def test_an_unreadable_key_file_stops_the_start(tmp_path):
    (tmp_path / "api-keys").write_text("a-key\n")  # beside it: the path is wrong
    with pytest.raises(KeyFileError) as raised:
        create_app({"TESTING": True, "API_KEYS_FILE": str(tmp_path / "api-key")})
    assert str(raised.value) == (
        f"the API key file {tmp_path / 'api-key'} ($MODELSERVER_API_KEYS_FILE) cannot be read: "
        "No such file or directory; create it (empty to serve without keys) or unset the variable"
    )
    assert raised.value.__suppress_context__  # one message in the log, not two tracebacks


def test_a_directory_mounted_with_nothing_in_it_needs_no_key(tmp_path, monkeypatch, caplog):
    """Kubernetes' optional Secret, absent: an empty directory, or one of its own ..data links,
    at a first start (no keys read before in this process's environment)."""
    monkeypatch.delenv(DIGESTS_ENV, raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    atomic = tmp_path / "atomic"
    (atomic / "..2026_12_05_19_00_00.1").mkdir(parents=True)
    (atomic / "..data").symlink_to("..2026_12_05_19_00_00.1")
    for directory in (empty, atomic):
        client = served_client(str(directory / "api-keys"))
        assert client.get("/norm?values=3&values=4").status_code == 200
    # Meant, or a misnamed Secret: said at every start.
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [
        f"API keys: {directory / 'api-keys'} does not exist and its directory is empty (an "
        "optional Secret that was not created?); every call is answered without a key"
        for directory in (empty, atomic)
    ]


def test_the_document_declares_the_bearer_key(keyed_client):
    response = keyed_client.get("/openapi.json")
    assert response.status_code == 200, response.data
    document = response.json
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert document["security"] == [{"apiKey": []}, {}]
