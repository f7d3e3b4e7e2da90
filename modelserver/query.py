"""The query string's values by name: split directly when plain, else as Werkzeug parses it."""

from flask import request

PARSED = "modelserver.query"  # the split query string, in its request's WSGI environ


def query_texts(name: str) -> list[str]:
    """request.args.getlist(name), the same values: a plain query string (the common
    ?a=25&b=x) is split once per request, with no MultiDict built; any other goes to Werkzeug."""
    environ = request.environ
    lists = environ.get(PARSED)
    if lists is None:
        lists = environ[PARSED] = split_plain(environ.get("QUERY_STRING", ""))
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
