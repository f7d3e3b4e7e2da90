"""The query string's values by name: split directly when plain, else as Werkzeug parses it."""

from urllib.parse import unquote_to_bytes

from flask import request
from werkzeug.exceptions import BadRequest

PARSED = "modelserver.query"  # the split query string, in its request's WSGI environ


def query_texts(name: str) -> list[str]:
    """request.args.getlist(name), the same values: a plain query string (the common
    ?a=25&b=x) is split once per request, with no MultiDict built; any other goes to Werkzeug."""
    environ = request.environ
    lists = environ.get(PARSED)
    if lists is None:
        text = environ.get("QUERY_STRING", "")
        lists = environ[PARSED] = split_plain(text)
        if lists is False and (bad := not_utf8(text)) is not None:
            raise BadRequest(
                f"query parameter {bad!r} is not UTF-8 text once unescaped: send its characters "
                "as UTF-8, percent-escaped"
            )
    if lists is False:
        return request.args.getlist(name)
    return lists.get(name, [])


def split_plain(text: str) -> dict[str, list[str]] | bool:
    """A query string of ASCII with no escapes (% or +) as {name: [values]}, as Python's
    parse_qsl(keep_blank_values=True) splits it for Werkzeug: on & only, empty parts skipped,
    a part without = a blank value. False for any other: Werkzeug decodes it."""
    if not text.isascii() or "%" in text or "+" in text:
        return False
    lists: dict[str, list[str]] = {}
    for part in text.split("&"):
        if part:
            name, _, value = part.partition("=")
            lists.setdefault(name, []).append(value)
    return lists


def not_utf8(text: str) -> str | None:
    """The name of the first parameter of the query string (as WSGI gives it: its bytes as
    latin-1) whose bytes, unescaped, are not UTF-8; None when all are. Werkzeug would keep such
    bytes as escapes ("%FF"), which a function would then take for the text the client meant."""
    for part in text.split("&"):
        raw = unquote_to_bytes(part.replace("+", " ").encode("latin-1"))
        try:
            raw.decode()
        except UnicodeDecodeError:
            name = raw.partition(b"=")[0]
            return name.decode(errors="replace")
    return None
