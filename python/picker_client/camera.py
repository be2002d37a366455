"""``Camera``: stills and controls over picker's local Unix socket (HTTP over ``AF_UNIX``)."""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import math
import numbers
import os
import socket as _socket
import threading
import time
import weakref
from typing import (
    TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Set, Tuple, Union,
)

from . import _http
from .errors import (
    CameraOffline,
    NoFreshFrame,
    NoPermission,
    PickerError,
    PickerRestarted,
    ServiceNotRunning,
)

if TYPE_CHECKING:
    import numpy.typing

#: Where the packaged service listens (``still.socket`` in ``/etc/picker/picker.toml``).
DEFAULT_SOCKET = "/run/picker/still.sock"

PathLike = Union[str, "os.PathLike[str]"]


def boottime_ns() -> int:
    """Now on CLOCK_BOOTTIME, the clock of picker's frame timestamps (``X-Timestamp-Ns``)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


@dataclasses.dataclass(frozen=True, eq=False)
class Frame:
    """One still with what picker says about it.

    ``timestamp_ns`` is the capture time on CLOCK_BOOTTIME (compare with :func:`boottime_ns`);
    ``sequence`` is picker's frame counter, which grows by one per camera frame.

    What the frame was taken with, as the camera reports it (``None`` where it reports
    nothing): ``exposure_time`` (microseconds), ``analogue_gain``, ``digital_gain``,
    ``lens_position`` (dioptres), ``colour_gains`` (red, blue) and ``colour_temperature``
    (kelvin). A Raspberry Pi camera reports the exposure and gains its sensor used for this very
    frame, automatic or not; they can differ a little from a value asked with
    :meth:`Camera.set_controls` (the sensor counts exposure in lines), so compare with a
    tolerance. ``lens_position`` is reported only by a camera with autofocus (Camera Module 3),
    and is where the Pi told the lens to go when it processed the frame: the lens moves after
    that, so a pick that needs it takes a frame two later (the README's "A robot loop").
    """

    array: "numpy.typing.NDArray[numpy.uint8]" = dataclasses.field(repr=False)
    sequence: int
    timestamp_ns: int
    width: int
    height: int
    exposure_time: Optional[int] = None
    analogue_gain: Optional[float] = None
    digital_gain: Optional[float] = None
    lens_position: Optional[float] = None
    colour_gains: Optional[Tuple[float, float]] = None
    colour_temperature: Optional[int] = None


def _gains(text: str) -> Tuple[float, float]:
    """``X-Colour-Gains: 1.5,2.25`` (red, blue); ValueError for anything else."""
    red, blue = text.split(",")
    return float(red), float(blue)


# Frame field, picker's header, its parser: what a still says it was taken with.
_SETTINGS: Tuple[Tuple[str, str, Callable[[str], Any]], ...] = (
    ("exposure_time", "x-exposure-time", int),
    ("analogue_gain", "x-analogue-gain", float),
    ("digital_gain", "x-digital-gain", float),
    ("lens_position", "x-lens-position", float),
    ("colour_gains", "x-colour-gains", _gains),
    ("colour_temperature", "x-colour-temperature", int),
)


def _numpy() -> Any:
    try:
        import numpy.typing
    except ImportError:
        raise PickerError(
            "numpy is needed for arrays: `sudo apt install python3-numpy` "
            "(jpeg() and png() work without it)"
        ) from None
    return numpy


def _controls_key(name: str) -> str:
    """``lens_position`` (a Python keyword) is picker's ``lens-position``."""
    return name.replace("_", "-")


#: The controls picker takes in whole numbers only (``exposure-time``, microseconds, a u32 in
#: picker's ``ControlsConfig``; every other number is a float there).
_WHOLE_NUMBER_CONTROLS = frozenset({"exposure-time"})


def _control_value(key: str, value: Any, said: str) -> Any:
    """``value`` as the JSON picker takes for control ``key``: numpy scalars and arrays become
    Python numbers and lists (duck-typed by ``tolist()``/``item()``: no numpy needed), other
    real numbers (``fractions.Fraction``) floats, and an integral float an int for a
    whole-number control (``exposure_time=8000.0``). NaN, infinities and anything JSON cannot
    carry raise :class:`PickerError` with ``said``, the argument as the caller wrote it."""

    def convert(v: Any, unwrapped: bool) -> Any:
        if v is None or isinstance(v, (str, bool, int)):
            return v
        if isinstance(v, float):
            if not math.isfinite(v):
                raise PickerError(
                    f"set_controls({said}): {v!r} is no control value: give a finite number, "
                    f'"auto" for the camera\'s own, or None for the config\'s'
                )
            return int(v) if key in _WHOLE_NUMBER_CONTROLS and v.is_integer() else v
        if isinstance(v, (list, tuple)):
            return [convert(x, unwrapped) for x in v]
        if not unwrapped and callable(getattr(v, "tolist", None)):  # numpy array or scalar
            return convert(v.tolist(), True)
        if not unwrapped and callable(getattr(v, "item", None)):
            return convert(v.item(), True)
        if isinstance(v, numbers.Integral):
            return int(v)
        if isinstance(v, numbers.Real):
            return convert(float(v), True)
        raise PickerError(
            f"set_controls({said}): picker takes no {type(v).__name__}: give a number, a "
            f"list of two numbers (colour_gains), a name such as \"auto\", or None"
        )

    return convert(value, False)


#: A change of every control back to the config's (``DELETE /controls``), for ``_request``.
_EVERY: Mapping[str, Any] = {"*": None}


class _Call:
    """One public call of a :class:`Camera`: what it returns when it changed controls."""

    in_force: Optional[Dict[str, Any]] = None


class Camera(_http.Closing):
    """picker's stills and controls, for a program on the same machine.

    ``Camera()`` talks to the packaged service; a second camera (``picker@NAME``) has its own
    socket, ``Camera("/run/picker-NAME/still.sock")``. One keep-alive connection is opened when
    first needed and reused (and reopened when picker closed it while idle). Several threads
    may share a Camera: their requests take turns on that connection. For stills taken in
    parallel, give each thread its own Camera (picker serves 64 connections at once). When
    picker restarted and took the controls this Camera set, each thread that used it before
    hears so once, from its next call (:class:`PickerRestarted`).

    ``timeout`` bounds each wait for picker in seconds (a ``fresh`` still waits for the next
    frame; picker itself answers 504 after 10 frame periods, at least 2 s); ``None`` waits
    without a deadline, for stills and controls alike.

    ``offline_after``: a still whose frame is older than this many seconds raises
    :class:`CameraOffline` instead of handing a robot an old picture. picker serves the latest
    frame it has, even when the camera stopped delivering; 2 s is picker's own limit for
    calling its camera offline at 5 fps or more. ``None`` turns the check off.
    """

    def __init__(self, socket: PathLike = DEFAULT_SOCKET, timeout: Optional[float] = 15.0,
                 offline_after: Optional[float] = 2.0):
        self.socket = os.fspath(socket)
        self.timeout = timeout
        self.offline_after = offline_after
        self._lock = threading.Lock()  # the connection: one request at a time
        self._conn = _http.Connection(self._connect, "picker")
        # What a restart takes, shared by every thread, under `_known` (taken while `_lock` is
        # held, never the other way round, and never held over a request): the picker process
        # that answered last (its `X-Picker-Instance`), the controls this Camera set there, and
        # per thread that used this Camera the controls a restart took that it has not yet
        # heard of (see PickerRestarted). An ended thread's entry goes with its Thread object.
        self._known = threading.Lock()
        self._instance: Optional[str] = None
        self._runtime: Dict[str, Any] = {}
        self._unheard: "weakref.WeakKeyDictionary[threading.Thread, Set[str]]" = (
            weakref.WeakKeyDictionary())

    def close(self) -> None:
        """Closes the connection (the next request opens a new one)."""
        with self._lock:
            self._conn.close()

    # --- stills ------------------------------------------------------------------------------

    def still(self, fresh: bool = False,
              order: str = "rgb") -> "numpy.typing.NDArray[numpy.uint8]":
        """The newest frame as a writable ``numpy.ndarray`` of shape (height, width, 3), dtype
        uint8, channels RGB (``order="bgr"`` for OpenCV).

        ``fresh=True`` waits for a frame captured after this call (:class:`NoFreshFrame` if none
        comes); by default the latest frame comes at once."""
        with self._call():
            return self._capture(fresh, order).array

    def capture(self, fresh: bool = False, order: str = "rgb") -> Frame:
        """Like :meth:`still`, with the frame's sequence number, timestamp and size."""
        with self._call():
            return self._capture(fresh, order)

    def _capture(self, fresh: bool, order: str) -> Frame:
        if order not in ("rgb", "bgr"):
            raise ValueError(f"order={order!r}: use 'rgb' or 'bgr'")
        np = _numpy()
        # The body goes straight into the array's memory: no copy, no zero-filling first.
        resp = self._still(order, fresh, into=lambda n: np.empty(n, dtype=np.uint8))
        width, height, sequence, timestamp = self._frame_headers(resp)
        if len(resp.body) != width * height * 3:
            raise PickerError(
                f"{self.socket}: /still.{order} gave {len(resp.body)} bytes for "
                f"{width}x{height}x3: is this picker?"
            )
        return Frame(resp.body.reshape(height, width, 3), sequence, timestamp, width, height,
                     **self._settings(resp))

    def jpeg(self, fresh: bool = False) -> bytes:
        """The newest frame as JPEG (picker's `stream.quality`), encoded once per frame for every
        client that asks."""
        with self._call():
            return bytes(self._still("jpg", fresh).body)

    def png(self, fresh: bool = False) -> bytes:
        """The newest frame as PNG (lossless, fast compression)."""
        with self._call():
            return bytes(self._still("png", fresh).body)

    def _still(self, ext: str, fresh: bool,
               into: Optional[_http.Sink] = None) -> _http.Response:
        path = f"/still.{ext}?fresh=1" if fresh else f"/still.{ext}"
        resp = self._request("GET", path, into=into)
        if resp.status != 200:
            self._raise_for(resp, path)
        if not fresh:
            self._check_age(resp)
        return resp

    def _frame_headers(self, resp: _http.Response) -> Tuple[int, int, int, int]:
        try:
            h = resp.headers
            return (int(h["x-width"]), int(h["x-height"]), int(h["x-sequence"]),
                    int(h["x-timestamp-ns"]))
        except (KeyError, ValueError) as e:
            raise PickerError(
                f"{self.socket}: a still without a valid {e} header: is this picker?"
            ) from None

    def _settings(self, resp: _http.Response) -> Dict[str, Any]:
        """The :class:`Frame` fields the settings headers fill (absent headers: ``None``)."""
        out: Dict[str, Any] = {}
        for field, header, parse in _SETTINGS:
            text = resp.headers.get(header)
            if text is None:
                continue
            try:
                out[field] = parse(text)
            except ValueError:
                raise PickerError(
                    f"{self.socket}: a still with an invalid {header} header ({text!r}): "
                    f"is this picker?"
                ) from None
        return out

    def _check_age(self, resp: _http.Response) -> None:
        if self.offline_after is None:
            return
        stamp = resp.headers.get("x-timestamp-ns", "")
        if not stamp.isdigit():
            return
        age = (boottime_ns() - int(stamp)) / 1e9
        if age > self.offline_after:
            raise CameraOffline(
                f"camera offline: picker's newest frame is {age:.1f} s old (offline_after = "
                f"{self.offline_after} s): the camera stopped delivering. picker restarts a "
                f"stalled camera by itself; try again in a second, and if it lasts, see "
                f"`journalctl -u picker`"
            )

    # --- controls and state ------------------------------------------------------------------

    def controls(self) -> Dict[str, Any]:
        """``GET /controls``: the config's values (``config``), the changes made over the socket
        (``runtime``), what is in force per key (``in_force``) and the camera's limits
        (``camera``)."""
        with self._call():
            return self._controls()

    def _controls(self) -> Dict[str, Any]:
        return self._json("GET", "/controls")

    def set_controls(self, values: Optional[Mapping[str, Any]] = None, /,
                     **kwargs: Any) -> Dict[str, Any]:
        """Changes controls until picker restarts, e.g. ``set_controls(lens_position=4,
        exposure_time=8000)`` (underscores stand for the dashes of picker's keys; a mapping with
        picker's own keys works too). ``"auto"`` makes a control automatic again, ``None``
        returns it to the config's value.

        Waits until the change is in the next request picker queues to the camera and returns
        what is in force then, per key (``{"lens-position": {"status": "applied", "value": 4.0,
        ...}}``). Frames already queued come first, and on a Raspberry Pi the sensor and lens
        take a few more frames: before a pick that needs the new values, take
        ``capture(fresh=True)`` until the frame says it was taken with the values in force
        returned here (``frame.exposure_time``, ``frame.lens_position``: see :class:`Frame`;
        a Pi's lens reaches its position only after the first frame that says so; the README's
        "A robot loop" has the loop). A key or value picker refuses raises :class:`PickerError`
        naming it; nothing changes then (``unsupported`` is no refusal: that key's value is not
        in the answer).

        numpy numbers and arrays work as values (``np.float32(4.0)``, an array of two gains
        for ``colour_gains``); a whole-number control takes an integral float
        (``exposure_time=8000.0``); NaN and infinities raise :class:`PickerError` here.

        If picker restarted since this thread's last call and took controls this Camera set,
        the change is made on the new picker all the same and then :class:`PickerRestarted`
        raised, naming the lost controls (``lost``) and holding what this call would have
        returned (``in_force``)."""
        patch: Dict[str, Any] = {}
        for key, value in (values or {}).items():
            patch[_controls_key(key)] = _control_value(
                _controls_key(key), value, f"{{{key!r}: {value!r}}}")
        for key, value in kwargs.items():
            patch[_controls_key(key)] = _control_value(
                _controls_key(key), value, f"{key}={value!r}")
        with self._call() as call:
            self._json("PUT", "/controls", patch, changes=patch)
            call.in_force = self._in_force()
            return call.in_force

    def reset_controls(self, *keys: str) -> Dict[str, Any]:
        """Returns the named controls (all of them without names) to the config's values;
        returns what is in force then, as :meth:`set_controls` does (and raises
        :class:`PickerRestarted` as it does)."""
        with self._call() as call:
            if keys:
                reset = {_controls_key(k): None for k in keys}
                self._json("PUT", "/controls", reset, changes=reset)
            else:
                self._json("DELETE", "/controls", changes=_EVERY)
            call.in_force = self._in_force()
            return call.in_force

    def _in_force(self) -> Dict[str, Any]:
        """``in_force`` once the camera thread has taken every pending change: it does so before
        its next frame, so this takes a frame period or two; with ``timeout=None``, as long as
        that takes (as a still waits)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            state = self._controls()
            if not state.get("pending"):
                return dict(state.get("in_force", {}))
            if deadline is not None and time.monotonic() > deadline:
                raise PickerError(
                    f"{self.socket}: the camera took no control change within {self.timeout} s: "
                    f"is it stalled? See `journalctl -u picker`"
                )
            time.sleep(0.01)

    def state(self) -> Dict[str, Any]:
        """What the socket tells of the camera, with the names picker's ``/state`` uses:
        ``online`` (the newest frame is at most ``offline_after`` old, and picker does not
        answer "offline"), ``still`` (``width``, ``height``), ``frames`` (``sequence``),
        ``controls`` (per key, as in force), plus the newest frame's ``timestamp_ns`` and
        ``age_s`` (``None`` for each while picker says the camera is offline). The stream port's ``/state`` has more
        (fps, stream clients, crop)."""
        with self._call():
            return self._state()

    def _state(self) -> Dict[str, Any]:
        resp = self._request("HEAD", "/still.rgb")
        if resp.status == 503:
            # picker refuses stills while the camera is offline (or before its first frame):
            # that is the state to report, not an error of this call.
            return {
                "online": False,
                "still": None,
                "frames": None,
                "timestamp_ns": None,
                "age_s": None,
                "controls": self._controls().get("in_force", {}),
            }
        if resp.status != 200:
            self._raise_for(resp, "/still.rgb")
        width, height, sequence, timestamp = self._frame_headers(resp)
        age = (boottime_ns() - timestamp) / 1e9
        limit = self.offline_after if self.offline_after is not None else 2.0
        return {
            "online": age <= limit,
            "still": {"width": width, "height": height},
            "frames": {"sequence": sequence},
            "timestamp_ns": timestamp,
            "age_s": age,
            "controls": self._controls().get("in_force", {}),
        }

    # --- transport ---------------------------------------------------------------------------

    def _json(self, method: str, path: str, value: Any = None,
              changes: Mapping[str, Any] = {}) -> Dict[str, Any]:
        body = None if value is None else json.dumps(value).encode()
        headers = {"Content-Type": "application/json"} if body is not None else None
        resp = self._request(method, path, headers=headers, body=body, changes=changes)
        if resp.status != 200:
            self._raise_for(resp, path)
        try:
            out = json.loads(resp.body)
        except ValueError:
            raise PickerError(f"{self.socket}: {path} gave no JSON: {resp.text()[:200]}") from None
        if not isinstance(out, dict):
            raise PickerError(f"{self.socket}: {path} gave {type(out).__name__}, not an object")
        return out

    def _connect(self) -> _socket.socket:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.socket)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            s.close()
            raise ServiceNotRunning(
                f"picker is not running: nothing listens at {self.socket} ({e.strerror}). "
                f"See `systemctl status picker` (a second camera: `systemctl status "
                f"picker@NAME`) and `journalctl -u picker`; the path is still.socket in "
                f"/etc/picker/picker.toml"
            ) from e
        except PermissionError as e:
            s.close()
            raise NoPermission(
                e.errno, f"{self.socket}: permission denied: only root and members of group "
                f"picker may take stills. Add this user with `sudo usermod -a -G picker "
                f"{_user()}`, then log in again (or start a shell with `newgrp picker`)",
            ) from e
        except BaseException:
            s.close()
            raise
        return s

    def _request(self, method: str, path: str, headers: Optional[Dict[str, str]] = None,
                 body: Optional[bytes] = None, into: Optional[_http.Sink] = None,
                 changes: Mapping[str, Any] = {}) -> _http.Response:
        """One request and its answer; ``changes``: the controls it sets (``None``: back to the
        config's; :data:`_EVERY`: all of them), recorded when picker takes them (see
        :meth:`_note_answer`)."""
        with self._lock:
            try:
                resp = self._conn.request(method, path, headers, body, into)
            except PickerError:
                raise
            except TimeoutError:
                if "fresh=1" in path:
                    raise NoFreshFrame(
                        f"{self.socket}: no fresh frame within timeout = {self.timeout} s: the "
                        f"camera is stalled (see `journalctl -u picker`); fresh=False gives the "
                        f"latest frame at once"
                    ) from None
                raise PickerError(
                    f"{self.socket}: picker did not answer {method} {path} within "
                    f"{self.timeout} s: is it overloaded or stopped? See `systemctl status picker`"
                ) from None
            except (EOFError, ConnectionError, _http.Closed) as e:
                # Closed before the whole answer came: picker stopped (a restart, a crash). A
                # connection that was only stale is tried again by _http first.
                raise ServiceNotRunning(
                    f"{self.socket}: picker closed the connection during {method} {path} ({e}): "
                    f"it stopped or restarted; try again in a second, and see `systemctl "
                    f"status picker` if it lasts"
                ) from e
            except (OSError, _http.ProtocolError) as e:
                raise PickerError(f"{self.socket}: {method} {path} failed: {e}") from e
            self._note_answer(resp, changes)
            return resp

    def _note_answer(self, resp: _http.Response, changes: Mapping[str, Any]) -> None:
        """Records the controls this answer says picker took, and a restart: when a new picker
        process answered, the controls this Camera set on the one before, except those this
        request sets again, are lost, and every thread that used this Camera is to hear so
        (:meth:`_call`). Raises nothing itself: the caller's own errors come first."""
        instance = resp.headers.get("x-picker-instance")
        if instance is None:
            return  # an answer hyper gave itself (a 408, a 503 at shutdown)
        # A change picker refused was made nowhere: it neither sets a control nor spares one.
        made = changes if resp.status == 200 else {}
        with self._known:
            self._unheard.setdefault(threading.current_thread(), set())
            before, self._instance = self._instance, instance
            if before is not None and before != instance:
                lost = {k for k in self._runtime if k not in made and "*" not in made}
                self._runtime.clear()
                if lost:
                    for thread in [t for t in self._unheard if not t.is_alive()]:
                        del self._unheard[thread]
                    for unheard in self._unheard.values():
                        unheard |= lost
            for key, value in made.items():
                if key == "*":
                    self._runtime.clear()
                elif value is None:
                    self._runtime.pop(key, None)
                else:
                    self._runtime[key] = value

    @contextlib.contextmanager
    def _call(self) -> Iterator[_Call]:
        """Around each public method: when it did its work, this thread hears of a restart it
        has not heard of yet (:meth:`_tell_restart`); a call that raised leaves it to the next.
        Public methods call each other's private halves (``_capture``, ``_controls``,
        ``_state``), so one call hears it once."""
        call = _Call()
        yield call
        self._tell_restart(call.in_force)

    def _tell_restart(self, in_force: Optional[Dict[str, Any]]) -> None:
        """Raises PickerRestarted if a restart took controls this thread has not heard of."""
        with self._known:
            unheard = self._unheard.get(threading.current_thread())
            if not unheard:
                return
            lost = tuple(sorted(unheard))
            unheard.clear()
            missing: List[str] = [k for k in lost if k not in self._runtime]
        them = "it" if len(missing) == 1 else "them"
        text = (
            f"picker restarted: the controls this Camera had set ({', '.join(lost)}) were "
            f"lost with it, as every change over the socket is at a restart. "
        )
        if missing:
            text += (f"Frames are taken without {', '.join(missing)} now: set {them} again "
                     f"(and wait for frames taken with {them})")
        else:
            text += "This Camera has set them again since (wait for frames taken with them)"
        text += ("; values that must survive a restart belong in [controls] of "
                 "/etc/picker/picker.toml")
        if in_force is not None:
            text += (". This call's own change was made on the new picker all the same: do "
                     "not repeat it (in_force: what is in force now)")
        raise PickerRestarted(text, lost, in_force)

    def _raise_for(self, resp: _http.Response, path: str) -> None:
        why = resp.text()
        if resp.status == 504:
            raise NoFreshFrame(
                f"no fresh frame: {why} The camera is stalled (see `journalctl -u picker`); "
                f"fresh=False gives the latest frame at once"
            )
        if resp.status == 503 and why.startswith("busy"):
            raise PickerError(
                f"picker is busy: {why}. Too many encodes at once; try again in a second "
                f"(the camera's own byte order needs no encoding: order=\"bgr\" on a "
                f"Raspberry Pi)"
            )
        if resp.status == 503:
            raise CameraOffline(
                f"camera offline: picker has no frame to give ({why}). The camera is starting, "
                f"stopping or offline; try again in a second, and if it lasts, see "
                f"`journalctl -u picker`"
            )
        if resp.status == 400:
            raise PickerError(f"picker refused {path}: {why}")
        if resp.status == 404:
            raise PickerError(f"{self.socket}: picker has no {path}: is it an older version?")
        raise PickerError(f"{self.socket}: {path}: HTTP {resp.status}: {why}")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "$USER"
