"""The query string split directly (modelserver/query.py) gives what Werkzeug's request.args
gives, for every query string; the ones it does not split go to Werkzeug."""

from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from modelserver.query import not_utf8, split_plain

# Names, values and separators of every kind a client may put in a URL, escapes included.
QUERY_TEXT = st.text(alphabet=st.sampled_from("ab=&;+%20é?x_-.[]"), max_size=40)


def werkzeug_lists(text: str) -> dict[str, list[str]]:
    environ = EnvironBuilder(path="/f").get_environ()
    environ["QUERY_STRING"] = text.encode().decode("latin1")
    return Request(environ).args.to_dict(flat=False)


@given(QUERY_TEXT)
def test_a_split_query_string_is_werkzeugs(text):
    lists = split_plain(text.encode().decode("latin1"))
    if lists is not False:
        assert lists == werkzeug_lists(text)


def test_plain_query_strings_are_split():
    assert split_plain("a=25") == {"a": ["25"]}
    assert split_plain("v=1&v=2&&w&x=") == {"v": ["1", "2"], "w": [""], "x": [""]}
    assert split_plain("") == {}


def test_escapes_and_other_characters_go_to_werkzeug():
    for text in ("a=%32", "a=1+2", "a=\u00e9".encode().decode("latin1")):
        assert split_plain(text) is False


def test_a_query_string_that_is_not_utf8_once_unescaped_is_named():
    assert not_utf8("text=%ff%fe") == "text"
    assert not_utf8("a=1&b=%C3&c=2") == "b"  # half a character
    assert not_utf8("a=\u00ff") == "a"  # a raw byte 0xFF, as WSGI gives it
    assert not_utf8("a=%C3%A9&b=" + "\u00c3\u00a9") is None  # é escaped, and é raw
    assert not_utf8("a=%25FF") is None  # the text "%FF", escaped as it should be
