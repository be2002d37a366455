"""``Stream``: the newest frames of picker's MJPEG stream, for a program on another machine.

A thread reads the stream as fast as picker sends it and keeps only the newest frame; the
program takes frames at its own pace. Reading in the program's own loop would not do: while
it works on one frame, the kernel's receive buffer (megabytes, autotuned) fills with the next
ones, and it would be handed ever older frames.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import socket
import threading
import time
import urllib.parse
import warnings
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Tuple

from . import _http
from .errors import CameraOffline, PickerError, ServiceNotRunning

if TYPE_CHECKING:
    import numpy.typing

#: Longest part head we accept (picker's are about 150 bytes).
_MAX_PART_HEAD = 16 * 1024
#: Largest part we accept: far above any JPEG picker sends (a 4056x3040 frame at quality 100
#: is about 10 MB), far below what would hurt the robot's machine. A peer that announces more
#: is not picker, or is broken: the reader stops instead of buffering it.
_MAX_PART = 32 * 1024 * 1024
#: The most of a refusal's body read for its message (picker's are one line).
_MAX_REFUSAL = 64 * 1024


@dataclasses.dataclass(frozen=True, eq=False)
class StreamFrame:
    """One JPEG of the stream.

    ``timestamp_ns`` is the capture time on the camera machine's CLOCK_BOOTTIME (the clock of
    :meth:`picker_client.Camera.capture`'s frames); ``timestamp`` the same moment in Unix
    seconds, to compare with another machine's clock. ``sequence`` is picker's frame counter;
    ``offline`` marks picker's "camera offline" picture (``frames()`` raises instead).
    """

    jpeg: bytes = dataclasses.field(repr=False)
    sequence: int
    timestamp_ns: int
    timestamp: float
    offline: bool

    def array(self, order: str = "rgb") -> "numpy.typing.NDArray[numpy.uint8]":
        """The JPEG decoded to a (height, width, 3) uint8 array, RGB or ``order="bgr"``.
        Needs numpy and Pillow (``python3-pil``) or OpenCV (``python3-opencv``)."""
        if order not in ("rgb", "bgr"):
            raise ValueError(f"order={order!r}: use 'rgb' or 'bgr'")
        try:
            import numpy as np
        except ImportError:
            raise PickerError("numpy is needed for arrays: `sudo apt install python3-numpy`") \
                from None
        try:
            from PIL import Image  # type: ignore[import]
        except ImportError:
            return _decode_with_opencv(self.jpeg, order, np)
        with Image.open(io.BytesIO(self.jpeg)) as im:
            rgb = np.array(im.convert("RGB"))
        return rgb if order == "rgb" else np.ascontiguousarray(rgb[..., ::-1])


def _decode_with_opencv(jpeg: bytes, order: str, np: Any) -> "numpy.typing.NDArray[numpy.uint8]":
    try:
        import cv2  # type: ignore[import]
    except ImportError:
        raise PickerError(
            "decoding a JPEG needs Pillow or OpenCV: `sudo apt install python3-pil` "
            "(or python3-opencv)"
        ) from None
    bgr = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PickerError(f"OpenCV could not decode a {len(jpeg)}-byte frame as JPEG")
    rgb: "numpy.typing.NDArray[numpy.uint8]" = (
        bgr if order == "bgr" else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return rgb


class Stream(_http.Closing):
    """picker's MJPEG stream at ``url`` (``http://HOST:8000/stream.mjpg``; ``http://HOST:8000``
    will do; an IPv6 address in brackets, ``http://[::1]:8000``), always the newest frame.

    ``user``/``password`` for picker's Basic auth (or ``http://user:password@HOST:8000``).
    ``fps`` asks picker to send at most that many frames per second (``?fps=``, 0.1 to 1000):
    less network for a program that needs few; without it picker sends every frame and the
    reader thread drops those the program is too slow for. ``timeout`` in seconds bounds the
    wait for each frame (picker sends one at least every second, a grey "camera offline" one
    while the camera is away) and for the connection; ``None`` waits without a deadline, as
    :class:`Camera` does.

    Use as a context manager or call :meth:`close`; one thread should consume :meth:`frames`.
    A Stream dropped without ``close()`` is closed when Python collects it, with a
    ``ResourceWarning``, as Python's own sockets and files are: until then its connection
    holds one of the few stream slots picker gives an address (``max-clients-per-address``).
    """

    def __init__(self, url: str = "http://127.0.0.1:8000/stream.mjpg",
                 user: Optional[str] = None, password: Optional[str] = None,
                 fps: Optional[float] = None, timeout: Optional[float] = 10.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"{url}: picker's stream is plain http:// (behind a TLS proxy, "
                             f"run this client where it can reach picker's port)")
        if fps is not None and not 0.1 <= fps <= 1000:
            raise ValueError(f"fps={fps}: picker takes 0.1 to 1000")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = parts.path if parts.path not in ("", "/") else "/stream.mjpg"
        query = [q for q in parts.query.split("&") if q]
        if fps is not None:
            query.append(f"fps={fps:g}")
        self.path = path + ("?" + "&".join(query) if query else "")
        # An IPv6 address keeps its brackets in the URL and the Host header (RFC 3986 3.2.2).
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}{self.path}"
        user = user if user is not None else _unquote(parts.username)
        password = password if password is not None else _unquote(parts.password)
        auth = None
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            auth = f"Basic {token}"
        self.timeout = timeout
        # A paced stream sends a frame every 1/fps seconds: wait that long on top.
        self._wait = None if timeout is None else timeout + (1.0 / fps if fps else 0.0)
        self._target = _Target(
            host=self.host, port=self.port, path=self.path, url=self.url,
            authority=host if self.port == 80 else f"{host}:{self.port}", auth=auth, user=user,
            timeout=timeout, wait=self._wait,
        )
        self._box = _Box()
        self._taken: Optional[StreamFrame] = None
        # The reader thread holds the box and the target, never this Stream, so that a Stream
        # dropped unclosed is collected; this then stops its thread and closes the connection.
        # Not at exit: the process's end closes the connection anyway.
        self._finalizer = weakref.finalize(self, _abandoned, self._box, self.url)
        self._finalizer.atexit = False

    def close(self) -> None:
        """Stops the reader thread and closes the connection."""
        self._finalizer.detach()
        reader = self._box.shut()
        if reader is not None:
            reader.stop()

    def frames(self) -> Iterator[StreamFrame]:
        """Yields the newest frame each time the loop asks for one (frames that came while the
        loop was busy are skipped). Raises :class:`CameraOffline` while picker sends its
        "camera offline" picture, :class:`ServiceNotRunning` when nothing listens at the URL,
        :class:`PickerError` for the rest; calling ``frames()`` again reconnects if needed."""
        box = self._box
        while True:
            with box.cond:
                if box.closed:
                    return
                if box.reader is None:
                    box.latest = None
                    box.reader = _Reader(self._target, box)
                deadline = None if self._wait is None else time.monotonic() + self._wait
                while (box.latest is None or box.latest is self._taken) and \
                        box.error is None and not box.closed:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        box.drop_reader()
                        raise PickerError(
                            f"{self.url}: no frame in {self._wait:g} s (picker sends one at "
                            f"least every second, or every 1/fps): network trouble, or picker "
                            f"hangs?"
                        )
                    box.cond.wait(left)
                if box.closed:
                    return
                if box.error is not None:
                    error, box.error = box.error, None
                    box.drop_reader()
                    raise error
                frame = box.latest
                assert frame is not None
                self._taken = frame
            if frame.offline:
                raise CameraOffline(
                    f"camera offline: {self.url} sends its 'camera offline' picture: the camera "
                    f"delivers no frames. picker restarts it by itself; call frames() again to "
                    f"wait, and if it lasts, see `journalctl -u picker` on that machine"
                )
            yield frame


def _unquote(s: Optional[str]) -> Optional[str]:
    return urllib.parse.unquote(s) if s is not None else None


def _abandoned(box: "_Box", url: str) -> None:
    """The finalizer of a Stream collected without ``close()``: stops its reader without waiting
    for it (this runs wherever the collector ran, in any thread, the reader's own too)."""
    reader = box.shut()
    if reader is not None:
        # Stopped first: with warnings made errors (`-W error`, pytest's filterwarnings) the
        # warning raises, and nothing else would stop this reader.
        reader.stop(wait=False)
        warnings.warn(
            f"unclosed picker_client.Stream {url}: its connection stayed open until the Stream "
            f"was collected; call close() or use `with Stream(...) as stream:`",
            ResourceWarning,
        )


@dataclasses.dataclass(frozen=True)
class _Target:
    """Where a reader connects and what it asks for: all it needs of its Stream."""

    host: str
    port: int
    path: str
    url: str
    authority: str  # the Host header: host[:port], an IPv6 address in brackets
    auth: Optional[str]  # the Authorization header
    user: Optional[str]
    timeout: Optional[float]
    wait: Optional[float]

    def connect(self) -> socket.socket:
        authority = self.authority if self.port != 80 else f"{self.authority}:80"
        try:
            s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except ConnectionRefusedError as e:
            raise ServiceNotRunning(
                f"picker is not running at {authority}: connection refused. See "
                f"`systemctl status picker` on that machine; the port is stream.port in "
                f"/etc/picker/picker.toml"
            ) from e
        except socket.gaierror as e:
            raise PickerError(f"{self.url}: cannot resolve {self.host}: {e.strerror}") from e
        except TimeoutError:
            raise PickerError(
                f"{self.url}: no answer within {self.timeout} s: wrong address, or a firewall "
                f"between?"
            ) from None
        except OSError as e:
            raise PickerError(f"{self.url}: cannot connect: {e}") from e
        s.settimeout(self.wait)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def refused(self, status: int, why: str) -> PickerError:
        if status == 401:
            if self.auth is None:
                return PickerError(f"{self.url}: picker wants a user and password "
                                   f"(stream.auth-users): pass user= and password=")
            return PickerError(f"{self.url}: picker refused user {self.user!r}: wrong user or "
                               f"password (see stream.auth-users on that machine)")
        if status == 404:
            return PickerError(f"{self.url}: no stream there: use http://HOST:PORT/stream.mjpg")
        return PickerError(f"{self.url}: HTTP {status}: {why}")


class _Box:
    """What a Stream and its reader thread share: the newest frame, or the error that ended the
    connection, under one condition. The thread holds this, not the Stream (see ``_abandoned``).
    A reader publishes only while it is the box's reader: one dropped for a new connection
    (``frames()`` again after an error) may still be finishing."""

    def __init__(self) -> None:
        # Reentrant (Condition's default), as is the reader's lock: the collector may run a
        # Stream's finalizer, which takes both, in a thread that holds them.
        self.cond = threading.Condition(threading.RLock())
        self.reader: Optional[_Reader] = None
        self.latest: Optional[StreamFrame] = None
        self.error: Optional[BaseException] = None
        self.closed = False

    def shut(self) -> "Optional[_Reader]":
        """Closed for good: wakes the consumer and returns the reader, for the caller to stop."""
        with self.cond:
            self.closed = True
            reader, self.reader = self.reader, None
            self.cond.notify_all()
        return reader

    def drop_reader(self) -> None:
        """Lets the reader go (its connection failed or went silent); the caller holds cond."""
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.stop(wait=False)

    # Called by the reader thread.
    def publish(self, reader: "_Reader", frame: StreamFrame) -> None:
        with self.cond:
            if reader is self.reader:
                self.latest = frame
                self.cond.notify_all()

    def fail(self, reader: "_Reader", error: BaseException) -> None:
        with self.cond:
            if reader is self.reader and not self.closed:
                self.error = error
                self.cond.notify_all()


class _Reader:
    """The thread that reads one connection's parts and publishes each to its box."""

    def __init__(self, target: _Target, box: _Box):
        self._target = target
        self._box = box
        self._sock: Optional[socket.socket] = None
        self._stopping = False
        self._lock = threading.RLock()  # reentrant: see _Box.cond
        self._thread = threading.Thread(target=self._run, name="picker-stream", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Closes the connection, which ends a read in progress, and lets the thread end."""
        with self._lock:
            self._stopping = True
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if wait and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        t = self._target
        try:
            sock = t.connect()
            with self._lock:
                self._sock = sock
                if self._stopping:
                    sock.close()
                    return
            with sock, _http.reader(sock) as f:
                headers = {"Accept": "multipart/x-mixed-replace"}
                if t.auth is not None:
                    headers["Authorization"] = t.auth
                sock.sendall(_http.request_bytes("GET", t.path, t.authority, headers))
                status, head, _ = _http.read_head(f)
                if status != 200:
                    # At most _MAX_REFUSAL of it, whatever its Content-Length (or none) says.
                    why = _body_reader(f, head)(_MAX_REFUSAL).decode("utf-8", "replace")
                    # Its first line, and not more of it than fits a log line.
                    raise t.refused(status, why.strip().partition("\n")[0][:200])
                boundary = _boundary(head.get("content-type", ""))
                if boundary is None:
                    raise PickerError(f"{t.url}: not an MJPEG stream "
                                      f"(Content-Type {head.get('content-type')!r})")
                read = _body_reader(f, head)
                for part in _parts(read, boundary):
                    self._box.publish(self, part)
                raise PickerError(f"{t.url}: picker ended the stream (it is shutting down or "
                                  f"restarting); call frames() again to reconnect")
        except BaseException as e:  # noqa: BLE001 (handed to the consumer thread)
            if not self._stopping:
                if isinstance(e, (OSError, EOFError, _http.ProtocolError)) and \
                        not isinstance(e, PickerError):
                    e = PickerError(f"{t.url}: connection lost: {e}")
                self._box.fail(self, e)


def _boundary(content_type: str) -> Optional[bytes]:
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/x-mixed-replace":
        return None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    return None


def _body_reader(f: io.BufferedReader, head: Dict[str, str]) -> Callable[[int], bytes]:
    if "chunked" in head.get("transfer-encoding", "").lower():
        return _http.ChunkedReader(f).read
    return f.read1


def _parts(read: Callable[[int], bytes], boundary: bytes) -> Iterator[StreamFrame]:
    """The parts of a multipart body as frames; ends at the closing delimiter. A part's JPEG is
    taken by its Content-Length, so boundary-like bytes inside a JPEG do not matter."""
    delimiter = b"--" + boundary
    buf = bytearray()

    def fill() -> None:
        data = read(64 * 1024)
        if not data:
            raise EOFError("the stream ended without its closing boundary")
        buf.extend(data)

    while True:
        while True:
            start = buf.find(delimiter)
            if start >= 0 and len(buf) >= start + len(delimiter) + 2:
                break
            if start < 0 and len(buf) > _MAX_PART_HEAD:
                raise _http.ProtocolError("no multipart boundary where one belongs")
            fill()
        after = start + len(delimiter)
        if buf[after:after + 2] == b"--":
            return
        while (end := buf.find(b"\r\n\r\n", after)) < 0:
            if len(buf) - after > _MAX_PART_HEAD:
                raise _http.ProtocolError("multipart part head too long")
            fill()
        headers = _part_headers(bytes(buf[after:end]))
        length = headers.get("content-length", "")
        if not length.isdigit():
            raise _http.ProtocolError("stream part without a Content-Length")
        if int(length) > _MAX_PART:
            raise _http.ProtocolError(
                f"a stream part of {length} bytes: more than any picker frame ({_MAX_PART})")
        body = end + 4
        while len(buf) < body + int(length):
            fill()
        jpeg = bytes(buf[body:body + int(length)])
        del buf[:body + int(length)]
        sequence, stamp_ns, stamp = _stamps(headers)
        yield StreamFrame(jpeg, sequence, stamp_ns, stamp,
                          headers.get("x-camera", "").lower() == "offline")


def _part_headers(block: bytes) -> Dict[str, str]:
    out = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out


def _stamps(headers: Dict[str, str]) -> Tuple[int, int, float]:
    def num(name: str, kind: Callable[[str], Any]) -> Any:
        try:
            return kind(headers.get(name, "0"))
        except ValueError:
            return kind("0")
    return num("x-sequence", int), num("x-timestamp-ns", int), num("x-timestamp", float)
