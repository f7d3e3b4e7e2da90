"""Flask less the per-request work this app never uses (sessions, async checks, host checks),
and a multipart form's text parts handed on with their bytes unchanged."""

from collections.abc import Callable

from flask import Flask, Request, Response, request
from flask.sessions import NullSession, SessionInterface
from werkzeug.datastructures import Headers
from werkzeug.exceptions import BadHost, BadRequest
from werkzeug.formparser import FormDataParser, MultiPartParser
from werkzeug.routing import MapAdapter
from werkzeug.sansio.multipart import Epilogue, MultipartDecoder, NeedData, State

# Hosts whose server name (lower case, IDNA) is remembered; past this many the memory is
# emptied, so clients sending made-up Host headers cannot grow it.
MAX_HOSTS = 256


class NoSessions(SessionInterface):
    """The app keeps no session: every request shares one empty, read-only session instead of
    Flask building one, finding no secret key, and building a null one in its place."""

    null_session = NullSession()

    def open_session(self, app, request):
        return self.null_session

    def save_session(self, app, session, response) -> None:
        return None


# The text of a form's parts in request.form: a character a byte, so that the bytes come back
# whole with text.encode(PART_BYTES) (modelserver.uploads.part_bytes and part_text).
PART_BYTES = "latin-1"


class PartBytes(MultiPartParser):
    """Werkzeug's multipart parser, with each text part (one with no filename) handed on as its
    bytes, a character a byte. Werkzeug would read it as UTF-8, with U+FFFD in place of bytes
    that are not: a file sent as a text part (curl -F 'data=<file') would reach a bytes
    parameter altered, and text that is not UTF-8 would reach a str one as other text. A part's
    charset is not read: form text is UTF-8, as browsers send it."""

    def get_part_charset(self, headers: Headers) -> str:
        return PART_BYTES


class FormParser(FormDataParser):
    """Werkzeug's form parser, raising ValueError on a malformed form rather than reading it as
    one with no fields (modelserver.uploads.parse_form answers it with a 400), its multipart
    text parts read by PartBytes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "silent": False})

    def _parse_multipart(self, stream, mimetype, content_length, options):
        """FormDataParser._parse_multipart (Werkzeug 3.1) with PartBytes as its parser."""
        parser = PartBytes(
            stream_factory=self.stream_factory,
            max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
        )
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        read = AfterClose(stream, boundary)
        form, files = parser.parse(read, boundary, content_length)
        if read.after:
            raise PartsAfterClose(boundary.decode("ascii"))
        return stream, form, files


class PartsAfterClose(ValueError):
    """Bytes after a form's closing boundary (the epilogue), which Werkzeug leaves unread."""


class AfterClose:
    """A stream that notes whether anything but white space follows the form's closing
    boundary in what is read of it: whatever a client puts there, another part say, would go
    unread. A decoder of Werkzeug's own, fed the same bytes, finds that boundary as the form's
    parser does (only the bytes after it are kept, to be looked at)."""

    def __init__(self, stream, boundary: bytes):
        self.stream, self.decoder = stream, MultipartDecoder(boundary)
        self.after = False

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        decoder = self.decoder
        decoder.receive_data(data or None)
        while not isinstance(decoder.next_event(), NeedData | Epilogue):
            pass
        if decoder.state in (State.EPILOGUE, State.COMPLETE):
            self.after = self.after or bool(decoder.buffer.strip())
            decoder.buffer.clear()
        return data


class LeanRequest(Request):
    """Flask's request, closing its uploaded files only when it has opened some, and reading
    forms with FormParser."""

    form_data_parser_class = FormParser

    def _get_file_stream(self, *args, **kwargs):
        """Werkzeug's stream for a file part, remembered: a form that fails to parse leaves
        the parts read so far out of request.files, and close() must close them all the same."""
        stream = super()._get_file_stream(*args, **kwargs)
        self.__dict__.setdefault("file_streams", []).append(stream)
        return stream

    def close(self) -> None:
        """Every file part's stream is one _get_file_stream opened: those are all there is to
        close, whether the form parsed or not."""
        for stream in self.__dict__.get("file_streams", ()):
            stream.close()


class App(Flask):
    """The Flask app: the same routing, hooks and errors, with less done per request."""

    session_interface = NoSessions()
    request_class = LeanRequest

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sync_functions: dict[Callable, Callable] = {}
        self.server_names: dict[str, str] = {}

    def make_default_options_response(self) -> Response:
        """OPTIONS: the methods in Allow and no body (204), where Flask gives an empty 200 that
        calls itself HTML: every answer is JSON or has no body at all."""
        if has_body(request.environ):  # a preflight has none; one sent would go unread
            raise BadRequest("an OPTIONS request's body is not read: send none")
        response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response

    def ensure_sync(self, func: Callable) -> Callable:
        """Flask's answer for each view and hook, remembered: it asks inspect whether the
        function is a coroutine on every call, though the answer never changes."""
        found = self.sync_functions.get(func)
        if found is None:
            found = self.sync_functions[func] = super().ensure_sync(func)
        return found

    def create_url_adapter(self, request: Request | None) -> MapAdapter | None:
        """Flask's adapter, bound from the environ directly when nothing needs the host checked
        or matched (no TRUSTED_HOSTS, SERVER_NAME, host or subdomain matching): Flask would
        work out the host twice, once for itself and once inside bind_to_environ."""
        if request is None or not self.plain_routing():
            return super().create_url_adapter(request)
        environ = request.environ
        return MapAdapter(
            self.url_map,
            self.server_name(environ.get("HTTP_HOST") or environ["SERVER_NAME"]),
            script_name=environ.get("SCRIPT_NAME") or "/",
            subdomain=self.url_map.default_subdomain or "",
            url_scheme=environ["wsgi.url_scheme"],
            default_method=environ["REQUEST_METHOD"],
            path_info=wsgi_text(environ.get("PATH_INFO", "")),
            query_args=wsgi_text(environ.get("QUERY_STRING", "")),
        )

    def server_name(self, host: str) -> str:
        """The server name Map.bind makes of host (BadHost for one it cannot encode),
        remembered: its IDNA codec is most of the binding's cost."""
        found = self.server_names.get(host)
        if found is None:
            if len(self.server_names) >= MAX_HOSTS:
                self.server_names.clear()
            try:
                found = self.url_map.bind(host).server_name
            except BadHost:  # Werkzeug's says only that the request could not be understood
                raise BadHost(
                    f"the Host header {host[:80]!r} is not a host name (labels of letters, "
                    "digits and hyphens, each at most 63 characters)"
                ) from None
            self.server_names[host] = found
        return found

    def plain_routing(self) -> bool:
        config = self.config
        return (
            config["TRUSTED_HOSTS"] is None
            and config["SERVER_NAME"] is None
            and not self.url_map.host_matching
            and not self.subdomain_matching
        )


def has_body(environ: dict) -> bool:
    """Whether the request carries a body: a length over 0, or one sent in chunks."""
    return environ.get("CONTENT_LENGTH", "") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ


def wsgi_text(value: str) -> str:
    """A WSGI environ string (bytes as latin-1) as the text it is, as Werkzeug decodes it."""
    return value.encode("latin1").decode(errors="replace")
