"""The bare-WSGI ceiling: the bytes of GET /pisqrt?a=25 with no framework, nothing computed.

uWSGI runs it with the project's uwsgi.ini (`--pythonpath bench --module bare_wsgi:app`), so
ours / this measures what Flask and our request handling cost, everything else being equal.
"""

BODY = b'{"result": 8.86226925452758}\n'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
