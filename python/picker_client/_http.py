"""Just enough HTTP/1.1 for picker's two sockets, on the standard library's sockets.

``http.client`` would do for the still socket, but not for the stream: it cannot hand out a
chunked body piece by piece as a multipart parser needs it, and on the still socket its
header parser costs more than the rest of a request. This module reads a response head,
then a body by ``Content-Length`` (for raw stills straight into the caller's buffer, a numpy
array, with no copy and no zero-filling), chunked, or up to the close.
"""

from __future__ import annotations

import io
import select
import socket
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, cast

#: Longest response head we accept: picker's heads are a few hundred bytes.
MAX_HEAD = 64 * 1024


_C = TypeVar("_C", bound="Closing")


class Closing:
    """``with x:`` closes ``x`` at the end (the public classes' context manager)."""

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class ProtocolError(Exception):
    """The peer's answer is not the HTTP we expected (the message says where it broke)."""


class Closed(ProtocolError):
    """The peer closed the connection inside its answer (it stopped, or cut the client off)."""


class Response:
    """A complete response: status, headers with lower-case names, body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Dict[str, str], body: Any):
        self.status = status
        self.headers = headers
        self.body = body

    def text(self) -> str:
        return bytes(self.body).decode("utf-8", "replace").strip()


def request_bytes(
    method: str, path: str, host: str, headers: Optional[Dict[str, str]] = None,
    body: Optional[bytes] = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body else head


def read_head(f: io.BufferedReader) -> Tuple[int, Dict[str, str], bool]:
    """Reads a status line and headers: (status, headers, HTTP/1.1). EOFError if the peer
    closed before sending a byte; ProtocolError for anything that is not HTTP."""
    line = f.readline(MAX_HEAD)
    if not line:
        raise EOFError("connection closed before the response")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP status line: {line[:80]!r}")
    http11 = parts[0] == b"HTTP/1.1"
    headers: Dict[str, str] = {}
    size = len(line)
    while True:
        line = f.readline(MAX_HEAD)
        size += len(line)
        if not line:
            raise Closed("connection closed inside the response head")
        if size > MAX_HEAD:
            raise ProtocolError(f"response head longer than {MAX_HEAD} bytes")
        if line in (b"\r\n", b"\n"):
            break
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"not a header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, http11


#: ``into(n)`` gives a writable buffer of n bytes for a body (see :func:`read_body`).
Sink = Callable[[int], Any]


def read_into(f: io.BufferedReader, buf: Any, n: int) -> Any:
    """Fills ``buf`` (n bytes, any writable buffer) from f."""
    view = memoryview(buf).cast("B")
    got = 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise Closed(f"connection closed after {got} of {n} body bytes")
        got += k
    return buf


class ChunkedReader:
    """The payload of a chunked body, piece by piece: ``read(n)`` gives up to n bytes, and b""
    once the last chunk has come."""

    def __init__(self, f: io.BufferedReader):
        self._f = f
        self._left = 0  # bytes of the current chunk not yet read
        self._done = False

    def read(self, n: int) -> bytes:
        if self._done:
            return b""
        if self._left == 0:
            line = self._f.readline(1024)
            if not line:
                raise Closed("connection closed before a chunk")
            try:
                self._left = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line: {line[:40]!r}") from None
            if self._left == 0:
                # Trailer fields, if any, up to the empty line.
                while self._f.readline(MAX_HEAD) not in (b"\r\n", b"\n", b""):
                    pass
                self._done = True
                return b""
        data = self._f.read(min(n, self._left))
        if not data:
            raise Closed("connection closed inside a chunk")
        self._left -= len(data)
        if self._left == 0 and self._f.read(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
        return data

    def read_all(self) -> bytes:
        out = bytearray()
        while True:
            piece = self.read(1 << 20)
            if not piece:
                return bytes(out)
            out += piece


def read_body(
    f: io.BufferedReader, method: str, status: int, headers: Dict[str, str],
    into: Optional[Sink] = None,
) -> Tuple[Any, bool]:
    """The body of a response whose head was read, and whether it ended where the connection can
    carry the next request (False: read up to the close). A 200 answer with a Content-Length
    goes into ``into(length)`` when given; anything else is bytes."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b"", True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return ChunkedReader(f).read_all(), True
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ProtocolError(f"bad Content-Length {length!r}")
        n = int(length)
        if into is not None and status == 200:
            return read_into(f, into(n), n), True
        return _read_bytes(f, n), True
    return f.read(), False


def _read_bytes(f: io.BufferedReader, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise Closed(f"connection closed after {len(data)} of {n} body bytes")
    return data


def reader(sock: socket.socket) -> io.BufferedReader:
    """A buffered reader of ``sock`` (what ``makefile("rb")`` gives, typed as such)."""
    return cast(io.BufferedReader, sock.makefile("rb", buffering=64 * 1024))


class Connection:
    """One keep-alive connection, opened by ``connect`` when first needed and again whenever the
    server has closed it (picker closes a still-socket connection left idle for 3 s, its
    request-head deadline, and sooner when all its still-socket slots are taken).

    Not thread-safe by itself: callers serialise requests (``Camera`` holds a lock).
    """

    def __init__(self, connect: Callable[[], socket.socket], host: str):
        self._connect = connect
        self._host = host
        self._sock: Optional[socket.socket] = None
        self._file: Optional[io.BufferedReader] = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    def _usable(self) -> bool:
        """An idle keep-alive connection has nothing to read; if it has (the close, or junk),
        it cannot carry the next request."""
        if self._sock is None:
            return False
        # poll, not select: select fails on descriptors above 1023, which a busy robot has.
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        return not poller.poll(0)

    def request(
        self, method: str, path: str, headers: Optional[Dict[str, str]] = None,
        body: Optional[bytes] = None, into: Optional[Sink] = None,
    ) -> Response:
        """Sends a request and reads the whole answer. On a reused connection that turns out to
        be closed before any byte of the answer came, reconnects and sends it once more (every
        request picker's still socket takes is idempotent)."""
        data = request_bytes(method, path, self._host, headers, body)
        reused = self._usable()
        if not reused:
            self.close()
        for attempt in (0, 1):
            if self._sock is None:
                self._sock = self._connect()
                self._file = reader(self._sock)
            assert self._file is not None
            try:
                self._sock.sendall(data)
                status, head, http11 = read_head(self._file)
            except (EOFError, BrokenPipeError, ConnectionResetError):
                self.close()
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                self.close()
                raise
            try:
                payload, reusable = read_body(self._file, method, status, head, into)
            except BaseException:
                self.close()
                raise
            if not reusable or not http11 or head.get("connection", "").lower() == "close":
                self.close()
            return Response(status, head, payload)
        raise AssertionError("unreachable")
