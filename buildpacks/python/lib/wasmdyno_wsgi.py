"""WSGI (PEP 3333) on wasi:http/incoming-handler@0.2.x, for componentize-py (written by buildpacks/python).

componentize-py imports the app at build time and snapshots the interpreter; each request then calls
IncomingHandler.handle in a warm instance. The bridge is synchronous (blocking wasi:io calls, no event loop): one
request at a time per instance, while the host runs several instances for concurrency. Module state lives as long
as the instance.
"""

import importlib
import sys
import traceback
from urllib.parse import unquote_to_bytes

# Modules a request imports lazily must be imported at build time (unless the slug ships the standard library
# for runtime imports). Werkzeug encodes the host with the idna codec on every request.
import encodings.idna  # noqa: F401  (stringprep and unicodedata come with it)

from componentize_py_types import Ok, Err
from wit_world import exports
from wit_world.imports import types
from wit_world.imports.streams import StreamError_Closed

# wasmtime-wasi-http's DEFAULT_FORBIDDEN_HEADERS: Fields refuses them, and the host frames the body itself.
_FORBIDDEN = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "transfer-encoding", "upgrade", "host", "http2-settings",
))
_CHUNK = 4096  # blocking-write-and-flush takes at most 4096 bytes a call
_READ = 65536


def _method(m):
    name = type(m).__name__
    return m.value if name == "Method_Other" else name[len("Method_"):].upper()


class _Input:
    """wsgi.input: a file-like reader over the request's incoming-body stream, read lazily."""

    def __init__(self, request):
        self._request = request
        self._body = None
        self._stream = None
        self._buf = b""
        self._eof = False

    def _fill(self, want):
        if self._eof:
            return False
        if self._stream is None:
            self._body = self._request.consume()
            self._stream = self._body.stream()
        try:
            data = self._stream.blocking_read(max(want, _READ))
        except Err as e:
            if isinstance(e.value, StreamError_Closed):
                self._eof = True
                return False
            raise
        self._buf += data
        return True

    def read(self, size=-1):
        if size is None or size < 0:
            while self._fill(_READ):
                pass
            out, self._buf = self._buf, b""
            return out
        while len(self._buf) < size and self._fill(size - len(self._buf)):
            pass
        out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def readline(self, size=-1):
        while True:
            i = self._buf.find(b"\n")
            if i >= 0 or (size is not None and 0 <= size <= len(self._buf)):
                end = i + 1 if i >= 0 else len(self._buf)
                if size is not None and size >= 0:
                    end = min(end, size)
                out, self._buf = self._buf[:end], self._buf[end:]
                return out
            if not self._fill(_READ):
                out, self._buf = self._buf, b""
                return out

    def readlines(self, hint=-1):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")

    def close(self):
        # Children before parents: the stream, then the body.
        if self._stream is not None:
            self._stream.__exit__(None, None, None)
            self._stream = None
        if self._body is not None:
            self._body.__exit__(None, None, None)
            self._body = None


def _environ(request, wsgi_input):
    target = request.path_with_query() or "/"
    path, _, query = target.partition("?")
    authority = request.authority() or "localhost"
    host, port = authority, ""
    if authority.startswith("["):  # an IPv6 literal
        end = authority.find("]") + 1
        if authority[end:end + 1] == ":" and authority[end + 1:].isdigit():
            host, port = authority[:end], authority[end + 1:]
    else:
        h, sep, p = authority.rpartition(":")
        if sep and p.isdigit():
            host, port = h, p
    url_scheme = "https" if type(request.scheme()).__name__ == "Scheme_Https" else "http"
    environ = {
        "REQUEST_METHOD": _method(request.method()),
        "SCRIPT_NAME": "",
        # PEP 3333: PATH_INFO is the percent-decoded path's bytes in a latin-1 str.
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": host,
        "SERVER_PORT": port or ("443" if url_scheme == "https" else "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": authority,  # wasmtime strips Host from the headers and gives it as the authority
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.input": wsgi_input,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        # The body stream ends where the body does (chunked uploads too), so frameworks may read to EOF.
        "wsgi.input_terminated": True,
    }
    headers = request.headers()
    for name, value in headers.entries():
        value = value.decode("latin-1")
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            environ["CONTENT_LENGTH"] = value
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = environ[key] + "," + value if key in environ else value
    headers.__exit__(None, None, None)
    # The wasmdyno router appends the client's address to X-Forwarded-For and sets X-Forwarded-Proto.
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    environ["REMOTE_ADDR"] = forwarded.rsplit(",", 1)[-1].strip() if forwarded else "127.0.0.1"
    if environ.get("HTTP_X_FORWARDED_PROTO") in ("http", "https"):
        environ["wsgi.url_scheme"] = environ["HTTP_X_FORWARDED_PROTO"]
    return environ


class _Response:
    """The head from start_response, sent to the host with the first body bytes (or at the end)."""

    def __init__(self, response_out, is_head):
        self.response_out = response_out
        self.is_head = is_head
        self.status = None
        self.headers = None
        self.body = None
        self.stream = None

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.body is not None:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        self.status = int(status.split(" ", 1)[0])
        self.headers = headers
        return self.write

    def send_head(self):
        if self.body is not None:
            return
        if self.status is None:
            raise AssertionError("the WSGI app returned before calling start_response")
        fields = []
        for name, value in self.headers:
            name = name.lower()
            if name in _FORBIDDEN:
                continue
            if self.is_head and name == "content-length":
                # wasmtime checks Content-Length against the bytes written, and a HEAD response writes none.
                continue
            fields.append((name, value.encode("latin-1")))
        response = types.OutgoingResponse(types.Fields.from_list(fields))
        response.set_status_code(self.status)
        self.body = response.body()
        self.stream = self.body.write()
        types.ResponseOutparam.set(self.response_out, Ok(response))

    def write(self, data):
        self.send_head()
        if self.is_head:
            return
        view = memoryview(data)
        for i in range(0, len(view), _CHUNK):
            self.stream.blocking_write_and_flush(bytes(view[i:i + _CHUNK]))

    def finish(self):
        self.send_head()
        self.stream.__exit__(None, None, None)
        self.stream = None
        types.OutgoingBody.finish(self.body, None)

    def abort(self):
        # Dropping the body without finish tells the host the response failed midway (the router's H18).
        if self.stream is not None:
            self.stream.__exit__(None, None, None)
        if self.body is not None:
            self.body.__exit__(None, None, None)


def _error_response(response_out, status=500, text=b"Internal Server Error\n"):
    response = types.OutgoingResponse(types.Fields.from_list([
        ("content-type", b"text/plain; charset=utf-8"), ("content-length", str(len(text)).encode()),
    ]))
    response.set_status_code(status)
    body = response.body()
    stream = body.write()
    types.ResponseOutparam.set(response_out, Ok(response))
    stream.blocking_write_and_flush(text)
    stream.__exit__(None, None, None)
    types.OutgoingBody.finish(body, None)


def serve(application, request, response_out):
    wsgi_input = _Input(request)
    try:
        environ = _environ(request, wsgi_input)
    except Exception:
        traceback.print_exc()
        wsgi_input.close()
        request.__exit__(None, None, None)
        _error_response(response_out, 400, b"Bad Request\n")
        return
    response = _Response(response_out, environ["REQUEST_METHOD"] == "HEAD")
    result = None
    try:
        result = application(environ, response.start_response)
        for chunk in result:
            if chunk:
                response.write(chunk)
        if hasattr(result, "close"):
            result.close()
            result = None
        wsgi_input.close()
        response.finish()
    except Exception:
        traceback.print_exc()
        try:
            if result is not None and hasattr(result, "close"):
                result.close()
        except Exception:
            traceback.print_exc()
        wsgi_input.close()
        if response.body is None:
            _error_response(response_out)
        else:
            response.abort()
    finally:
        request.__exit__(None, None, None)
        sys.stdout.flush()
        sys.stderr.flush()


def handler(module, attr, factory=False):
    """The IncomingHandler class componentize-py exports, serving `module:attr` (`module:attr()` for a factory).

    The module is imported now, at build time. A factory is called at the first request instead, where the dyno's
    config vars are in os.environ.
    """
    target = getattr(importlib.import_module(module), attr)
    app = [None if factory else target]

    class IncomingHandler(exports.IncomingHandler):
        def handle(self, request, response_out):
            if app[0] is None:
                try:
                    app[0] = target()
                except Exception:
                    traceback.print_exc()
                    request.__exit__(None, None, None)
                    _error_response(response_out)
                    return
            serve(app[0], request, response_out)

    return IncomingHandler
