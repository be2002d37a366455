"""Camera: stills, controls and errors through the real picker's still socket."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Tuple

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from picker_client import (
    Camera, CameraOffline, Frame, NoFreshFrame, PickerError, PickerRestarted, ServiceNotRunning,
    boottime_ns,
)


def raw_get(path: str, target: str) -> Tuple[Dict[str, str], bytes]:
    """What a robot hand-writes today: one request, read to the close. Independent of the
    client's own HTTP code, so the two can be compared."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: picker\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(1 << 20):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200"), lines[0]
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return headers, body


def test_still_is_an_array_of_the_configured_size_in_both_orders_equal_to_still_rgb(start_picker):
    # 4:3, so that a swapped width and height shows; 2 fps, so that three requests in a row
    # mostly see one frame.
    p = start_picker(stream=["width = 640", "height = 480"], still=["width = 640", "height = 480"],
                     camera=["framerate = 2"])
    cam = Camera(p.socket)
    for _ in range(20):
        headers, raw = raw_get(p.socket, "/still.rgb")
        rgb = cam.capture()
        bgr = cam.capture(order="bgr")
        if rgb.sequence == bgr.sequence == int(headers["x-sequence"]):
            break
    else:
        pytest.fail("never three requests within one frame at 2 fps")
    assert rgb.array.shape == (480, 640, 3)
    assert rgb.array.dtype == np.uint8
    assert (rgb.width, rgb.height) == (640, 480)
    assert rgb.timestamp_ns == int(headers["x-timestamp-ns"])
    assert rgb.array.tobytes() == raw
    assert np.array_equal(bgr.array, rgb.array[..., ::-1])
    assert not np.array_equal(bgr.array, rgb.array), "the colour bars are not grey"
    # Writable, as picamera2's arrays are: a robot may draw on it.
    rgb.array[0, 0] = 0
    still = cam.still(order="bgr")
    assert (still.shape, still.dtype) == ((480, 640, 3), np.uint8)


def test_fresh_captures_move_forward_in_sequence_and_time(picker):
    cam = Camera(picker.socket)
    asked = boottime_ns()
    a = cam.capture(fresh=True)
    b = cam.capture(fresh=True)
    now = boottime_ns()
    # Captured after each call, on CLOCK_BOOTTIME.
    assert asked < a.timestamp_ns < b.timestamp_ns <= now
    assert b.sequence > a.sequence
    assert cam.capture().sequence >= b.sequence


def test_jpeg_and_png_are_the_configured_size(picker):
    cam = Camera(picker.socket)
    jpeg = cam.jpeg()
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    png = cam.png(fresh=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    for data, fmt in ((jpeg, "JPEG"), (png, "PNG")):
        with Image.open(io.BytesIO(data)) as im:
            assert (im.format, im.size, im.mode) == (fmt, (512, 512), "RGB")


def test_controls_round_trip(start_picker):
    p = start_picker(extra="[controls]\nbrightness = 0.1\n", env={"PICKER_TEST_CONTROLS": "imx708"})
    cam = Camera(p.socket)
    assert cam.controls()["config"] == {"brightness": 0.1}

    in_force = cam.set_controls(lens_position=5, exposure_time=8000)
    assert in_force["lens-position"] == {"status": "applied", "asked": 5.0, "value": 5.0}
    assert in_force["exposure-time"]["value"] == 8000
    assert in_force["brightness"]["value"] == 0.1
    # Returned once the camera took the change, and in force for the stream port's /state too.
    c = cam.controls()
    assert c["pending"] is False
    assert c["runtime"] == {"lens-position": 5.0, "exposure-time": 8000}
    state = json.loads(p.get("/state"))
    assert state["controls"]["lens-position"]["value"] == 5.0

    # picker's own keys work too; out of range is clamped and said so.
    assert cam.set_controls({"lens-position": 20})["lens-position"]["status"] == "adjusted"
    assert cam.controls()["in_force"]["lens-position"]["value"] == 15.0

    in_force = cam.reset_controls("exposure_time")
    assert "exposure-time" not in in_force
    assert cam.controls()["runtime"] == {"lens-position": 20.0}
    in_force = cam.reset_controls()
    assert cam.controls()["runtime"] == {}
    assert in_force["af-mode"]["value"] == "continuous", in_force

    with pytest.raises(PickerError, match='unknown key "no-such-control"'):
        cam.set_controls(no_such_control=1)
    assert cam.controls()["runtime"] == {}


def test_no_timeout_means_no_deadline_for_controls_as_for_stills(start_picker):
    """``timeout=None`` waits as long as picker takes, for every call: ``set_controls`` raised
    TypeError (a deadline of monotonic() + None) after its PUT had changed the controls."""
    p = start_picker(env={"PICKER_TEST_CONTROLS": "imx708"})
    cam = Camera(p.socket, timeout=None)
    assert cam.still().shape == (512, 512, 3)
    assert cam.capture(fresh=True).sequence > 0
    in_force = cam.set_controls(lens_position=5)
    assert in_force["lens-position"]["value"] == 5.0
    assert cam.controls()["runtime"] == {"lens-position": 5.0}
    assert "lens-position" not in cam.reset_controls("lens_position")
    assert cam.reset_controls()["af-mode"]["value"] == "continuous"
    assert cam.state()["online"] is True


def test_state_says_size_sequence_and_controls(start_picker):
    p = start_picker(env={"PICKER_TEST_CONTROLS": "imx708"})
    state = Camera(p.socket).state()
    assert state["online"] is True
    assert state["still"] == {"width": 512, "height": 512}
    assert state["frames"]["sequence"] >= 1
    assert 0 <= state["age_s"] < 2
    assert state["controls"] == json.loads(p.get("/state"))["controls"]


def test_stalled_camera_raises_no_fresh_frame_then_camera_offline_and_recovers(start_picker):
    # The test pattern delivers nothing for 8 s after frame 15 (fault injection).
    p = start_picker(env={"PICKER_TEST_STALL": "15:8000"})
    cam = Camera(p.socket)
    deadline = time.monotonic() + 10
    while cam.capture().sequence < 15:
        assert time.monotonic() < deadline, "the pattern never reached frame 15"
        time.sleep(0.05)

    # picker answers 504 after its stall limit (2 s at 30 fps).
    with pytest.raises(NoFreshFrame, match="fresh=False gives the latest frame"):
        cam.still(fresh=True)
    # By now the newest frame is over 2 s old: no old picture handed out as the newest.
    with pytest.raises(CameraOffline, match="journalctl -u picker") as e:
        cam.still()
    assert "offline" in str(e.value)
    assert cam.state()["online"] is False
    # picker itself refuses the old frame while offline (503), so even a client that does not
    # check ages gets no stale picture.
    with pytest.raises(CameraOffline):
        Camera(p.socket, offline_after=None).capture()

    deadline = time.monotonic() + 20
    while True:
        try:
            frame = cam.capture()
            break
        except CameraOffline:
            assert time.monotonic() < deadline, "the camera never came back"
            time.sleep(0.1)
    assert frame.sequence > 15
    assert cam.state()["online"] is True


def test_a_socket_nobody_listens_on_means_service_not_running(tmp_path):
    missing = str(tmp_path / "none.sock")
    with pytest.raises(ServiceNotRunning) as e:
        Camera(missing).still()
    assert missing in str(e.value) and "systemctl status picker" in str(e.value)
    assert isinstance(e.value, ConnectionError)

    # A socket file left behind by a picker that is gone: refused, not missing.
    stale = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()
    with pytest.raises(ServiceNotRunning, match="systemctl status picker"):
        Camera(stale).jpeg()


def test_a_user_outside_group_picker_gets_a_permission_error_naming_group_and_socket(picker):
    # The socket's directory is root's 0700 temp dir: like /run/picker (0750 picker:picker) for
    # a user outside the group. Root may open anything, so the client runs as nobody.
    assert os.geteuid() == 0, "this test switches to user nobody: run the tests as root (CI does)"
    code = (
        "import sys, picker_client as pc\n"
        "try:\n"
        "    pc.Camera(sys.argv[1]).still()\n"
        "except pc.NoPermission as e:\n"
        "    assert isinstance(e, PermissionError) and isinstance(e, pc.PickerError)\n"
        "    print(e)\n"
        "    sys.exit(3)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, picker.socket], user="nobody", capture_output=True,
        text=True, timeout=60, env={"PYTHONPATH": str(REPO / "python"), "PATH": "/usr/bin:/bin"},
        cwd="/",
    )
    assert out.returncode == 3, out.stdout + out.stderr
    assert picker.socket in out.stdout
    assert "group picker" in out.stdout and "usermod -a -G picker nobody" in out.stdout


def test_threads_share_one_camera(picker):
    cam = Camera(picker.socket)
    errors = []
    counts = []

    def work() -> None:
        n = 0
        try:
            for i in range(10):
                if i % 3 == 0:
                    assert cam.jpeg()[:2] == b"\xff\xd8"
                elif i % 3 == 1:
                    assert cam.still().shape == (512, 512, 3)
                else:
                    assert "in_force" in cam.controls()
                n += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        counts.append(n)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert counts == [10] * 8


def test_one_connection_is_reused_and_reopened_after_picker_restarts(picker):
    cam = Camera(picker.socket)
    cam.still()
    first = cam._conn._sock
    cam.jpeg()
    cam.controls()
    assert cam._conn._sock is first, "a new connection per request"

    picker.stop()
    with pytest.raises(ServiceNotRunning):
        cam.still()
    picker.restart()  # as `systemctl restart picker` does
    assert cam.still().shape == (512, 512, 3)
    assert cam._conn._sock is not first


def test_the_connection_is_reused_on_a_descriptor_above_1023(picker):
    # A robot with many files open: select() cannot watch such a descriptor, poll() can.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(4096, hard)), hard))
    fillers = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        cam = Camera(picker.socket)
        cam.still()
        first = cam._conn._sock
        assert first is not None and first.fileno() > 1023
        cam.still()
        assert cam._conn._sock is first
        cam.close()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_controls_take_numpy_scalars_and_arrays(start_picker):
    cam = Camera(start_picker(env={"PICKER_TEST_CONTROLS": "imx708"}).socket)
    # What a vision pipeline computes: numpy scalars and arrays.
    in_force = cam.set_controls(lens_position=np.float32(4.0), exposure_time=np.int64(8000),
                                analogue_gain=np.float64(2.5),
                                colour_gains=np.array([1.5, 1.75], dtype=np.float32))
    assert in_force["lens-position"]["value"] == 4.0
    assert in_force["exposure-time"]["value"] == 8000
    assert in_force["analogue-gain"]["value"] == 2.5
    assert in_force["colour-gains"]["value"] == [1.5, 1.75]
    assert cam.controls()["runtime"] == {"lens-position": 4.0, "exposure-time": 8000,
                                         "analogue-gain": 2.5, "colour-gains": [1.5, 1.75]}


def test_a_whole_number_control_takes_an_integral_float(start_picker):
    cam = Camera(start_picker(env={"PICKER_TEST_CONTROLS": "imx708"}).socket)
    assert cam.set_controls(exposure_time=8000.0)["exposure-time"]["value"] == 8000
    assert cam.set_controls({"exposure-time": np.float64(10000.0)})["exposure-time"]["value"] \
        == 10000
    assert cam.controls()["runtime"] == {"exposure-time": 10000}
    # A fraction of a microsecond is still picker's to refuse, naming the key.
    with pytest.raises(PickerError, match="exposure-time = 8000.5"):
        cam.set_controls(exposure_time=8000.5)


def test_nan_infinity_and_other_non_values_are_refused_naming_the_argument(start_picker):
    cam = Camera(start_picker(env={"PICKER_TEST_CONTROLS": "imx708"}).socket)
    cam.set_controls(ev=0.5)
    # Refused here, naming the argument; nothing sent, nothing changed.
    with pytest.raises(PickerError, match=r"set_controls\(lens_position=nan\): .*finite number"):
        cam.set_controls(lens_position=float("nan"), ev=1)
    with pytest.raises(PickerError, match=r"set_controls\(\{'analogue-gain': inf\}\)"):
        cam.set_controls({"analogue-gain": float("inf")})
    with pytest.raises(PickerError, match=r"set_controls\(colour_gains=\[nan, 1.5\]\): .*finite"):
        cam.set_controls(colour_gains=[float("nan"), 1.5])
    with pytest.raises(PickerError, match=r"set_controls\(ev=.*\): picker takes no object"):
        cam.set_controls(ev=object())
    assert cam.controls()["runtime"] == {"ev": 0.5}


def test_a_frame_says_which_fixed_settings_it_was_taken_with(start_picker):
    # The test pattern reports the manual values in force, from the frame after the change
    # (a Raspberry Pi reports every frame's own values, automatic ones too).
    p = start_picker(extra="[controls]\nexposure-time = 20000\n",
                     env={"PICKER_TEST_CONTROLS": "imx708"})
    cam = Camera(p.socket)
    f = cam.capture(fresh=True)
    assert (f.exposure_time, f.analogue_gain, f.lens_position, f.colour_gains) \
        == (20000, None, None, None)
    cam.set_controls(exposure_time=8000, lens_position=4.5, analogue_gain=2.5,
                     colour_gains=(1.5, 2.25))
    f = cam.capture(fresh=True, order="bgr")
    assert isinstance(f.exposure_time, int) and f.exposure_time == 8000
    assert (f.analogue_gain, f.lens_position, f.colour_gains) == (2.5, 4.5, (1.5, 2.25))
    assert (f.digital_gain, f.colour_temperature) == (None, None)
    cam.reset_controls()
    f = cam.capture(fresh=True)
    assert (f.exposure_time, f.lens_position) == (20000, None)


def test_a_frame_from_a_camera_that_reports_nothing_has_no_settings(picker):
    f = Camera(picker.socket).capture()
    assert (f.exposure_time, f.analogue_gain, f.digital_gain, f.lens_position,
            f.colour_gains, f.colour_temperature) == (None,) * 6


def readme_wait_loop() -> str:
    """The README's loop that waits for frames taken with new controls (the block that
    follows "take frames until they show them")."""
    text = (REPO / "README.md").read_text()
    after = text[text.index("take frames until they show"):]
    start = after.index("```python\n") + len("```python\n")
    return after[start:after.index("```", start)]


class Counting:
    """A Camera whose captures are counted and kept; ``replace`` changes what each frame says
    (a camera that does not report a value)."""

    def __init__(self, camera: Camera, **replace: object) -> None:
        self.camera, self.replace, self.frames = camera, replace, []  # type: ignore[var-annotated]

    def set_controls(self, **values: object) -> object:
        return self.camera.set_controls(**values)

    def capture(self, fresh: bool = False) -> object:
        import dataclasses
        frame = dataclasses.replace(self.camera.capture(fresh=fresh), **self.replace)
        self.frames.append(frame)
        return frame


def test_the_readmes_wait_loop_waits_for_what_the_camera_has_and_no_longer(start_picker):
    # A camera without a lens (Camera Module 2, HQ): lens-position is unsupported, and its
    # frames never report a lens; the loop waits for the exposure only, not 60 frames.
    p = start_picker(env={"PICKER_TEST_CONTROLS": "imx219"})
    cam = Counting(Camera(p.socket))
    scope: Dict[str, object] = {"camera": cam}
    exec(readme_wait_loop(), scope)
    frame = scope["frame"]
    assert frame.exposure_time == 8000 and frame.lens_position is None  # type: ignore[attr-defined]
    assert len(cam.frames) <= 10, f"{len(cam.frames)} frames for a camera without a lens"

    # A Camera Module 3: a Pi reports where it told the lens to go, which it reaches only
    # after that frame: the pick is two frames after the first one that says so.
    p = start_picker(env={"PICKER_TEST_CONTROLS": "imx708"})
    cam = Counting(Camera(p.socket))
    scope = {"camera": cam}
    exec(readme_wait_loop(), scope)
    frame = scope["frame"]
    first = next(f for f in cam.frames if f.lens_position == 4.0)  # type: ignore[attr-defined]
    assert (frame.exposure_time, frame.lens_position) == (8000, 4.0)  # type: ignore[attr-defined]
    assert frame.sequence >= first.sequence + 2, [f.sequence for f in cam.frames]  # type: ignore

    # Frames that never show the values: the loop gives up loudly, not with a wrong frame.
    cam = Counting(Camera(p.socket), exposure_time=None)
    with pytest.raises(RuntimeError, match="no frame taken with"):
        exec(readme_wait_loop(), {"camera": cam})
    assert len(cam.frames) == 60


def readme_robot_loop() -> str:
    """The README's robot loop (the block under "### A robot loop")."""
    text = (REPO / "README.md").read_text()
    after = text[text.index("### A robot loop"):]
    start = after.index("```python\n") + len("```python\n")
    return after[start:after.index("```", start)]


class Done(Exception):
    """Ends the README's endless loop from its `pick`."""


def test_the_readmes_robot_loop_sets_its_controls_again_after_picker_restarts(start_picker):
    # A restart between two captures that the loop never sees fail (as `systemctl restart`
    # between two picks), then picker stopped for 2.5 s (systemd's RestartSec while it is
    # down): the loop goes on, and its frames are taken with its controls again.
    p = start_picker(env={"PICKER_TEST_CONTROLS": "imx708"})
    said, exposures = [], []  # type: ignore[var-annotated]

    class Recording(Camera):
        def capture(self, fresh: bool = False, order: str = "rgb") -> Frame:
            frame = super().capture(fresh=fresh, order=order)
            exposures.append(frame.exposure_time)
            return frame

    def away() -> None:
        p.stop()
        time.sleep(2.5)
        p.restart()

    def pick(array: object, age_ms: float) -> None:
        n = len(exposures)
        if n == 10:
            p.restart()
        elif n == 40:
            threading.Thread(target=away).start()
        elif n == 70:
            raise Done

    scope: Dict[str, object] = {"pick": pick, "print": said.append}
    code = readme_robot_loop().replace("camera = Camera()", f"camera = Recording({p.socket!r})")
    scope["Recording"] = Recording
    with pytest.raises(Done):
        exec(code, scope)
    kinds = [type(e).__name__ for e in said]
    assert "PickerRestarted" in kinds and "ServiceNotRunning" in kinds, kinds
    # Each time, the controls again within a few frames (the fake camera applies them a frame
    # or two after the request, as a Pi's sensor does), and kept.
    for start, end in [(0, 10), (11, 40), (41, 70)]:
        seen = exposures[start:end]
        assert 8000 in seen[:5] and seen[-5:] == [8000] * 5, (start, seen)


def test_picker_restarted_is_raised_once_only_for_a_camera_that_set_controls(start_picker):
    p = start_picker(env={"PICKER_TEST_CONTROLS": "imx708"})
    plain, setter = Camera(p.socket), Camera(p.socket)
    plain.still()
    setter.set_controls(exposure_time=8000, analogue_gain=2.0)
    setter.still()
    p.restart()
    plain.still()  # set nothing: nothing lost
    with pytest.raises(PickerRestarted) as e:
        setter.still()
    assert "analogue-gain, exposure-time" in str(e.value) and isinstance(e.value, CameraOffline)
    setter.still()  # once
    # Controls set again reach the new picker; a reset of all of them loses nothing.
    setter.set_controls(exposure_time=8000)
    p.restart()
    setter.reset_controls()
    setter.still()
    # Setting again what was lost is no loss either; what it does not set again is.
    setter.set_controls(exposure_time=8000, analogue_gain=2.0)
    p.restart()
    with pytest.raises(PickerRestarted) as e:
        setter.set_controls(exposure_time=9000)
    assert "(analogue-gain)" in str(e.value), str(e.value)


def test_picker_stopping_inside_an_answer_is_service_not_running(start_picker):
    # SIGKILL while a fresh still is awaited (the watchdog's SIGABRT ends it as abruptly).
    # On a new connection: a reused one closed before any answer is tried once more, and then
    # nothing listens (ServiceNotRunning before too).
    p = start_picker(env={"PICKER_TEST_CONTROLS": "imx708"}, camera=["framerate = 1"])
    cam = Camera(p.socket)
    threading.Timer(0.3, p.proc.kill).start()
    with pytest.raises(ServiceNotRunning) as e:
        cam.still(fresh=True)
    assert "closed the connection during GET /still.rgb?fresh=1" in str(e.value), str(e.value)


def test_a_set_controls_that_meets_a_restarted_picker_is_recorded_and_says_it_was_made(
        start_picker):
    # The first request to reach the new picker is a set_controls: it reports what the restart
    # took, and its own keys, made on the new picker, are lost at the next restart in turn.
    p = start_picker(env={"PICKER_TEST_CONTROLS": "imx708"})
    cam = Camera(p.socket)
    cam.set_controls(exposure_time=8000, analogue_gain=2.0)
    p.restart()
    with pytest.raises(PickerRestarted) as first:
        cam.set_controls(exposure_time=9000)
    assert "(analogue-gain)" in str(first.value), str(first.value)
    assert cam.controls()["runtime"] == {"exposure-time": 9000}
    cam.still()  # heard once
    p.restart()
    with pytest.raises(PickerRestarted) as second:
        cam.still()
    # Each says what was lost, and only the one whose own change was made says so.
    said = str(first.value)
    assert "(analogue-gain) were lost" in said and "made on the new picker" in said, said
    said = str(second.value)
    assert "(exposure-time) were lost" in said and "made on the new picker" not in said, said
    assert first.value.lost == ("analogue-gain",)
    assert first.value.in_force["exposure-time"]["value"] == 9000, first.value.in_force
    assert second.value.lost == ("exposure-time",) and second.value.in_force is None


def test_a_refused_set_controls_at_a_restart_spares_nothing_and_the_next_call_hears_of_it(
        start_picker):
    p = start_picker(env={"PICKER_TEST_CONTROLS": "imx708"})
    cam = Camera(p.socket)
    cam.set_controls(exposure_time=8000)
    p.restart()
    # picker refuses the whole change (a key it does not know): nothing of it was made.
    with pytest.raises(PickerError) as refused:
        cam.set_controls(exposure_time=8000, no_such_control=1)
    assert not isinstance(refused.value, PickerRestarted), str(refused.value)
    assert "no-such-control" in str(refused.value), str(refused.value)
    with pytest.raises(PickerRestarted) as e:
        cam.still()
    assert "(exposure-time) were lost" in str(e.value), str(e.value)
    assert cam.controls()["runtime"] == {}


def test_every_thread_sharing_a_camera_hears_of_a_restart_once(start_picker):
    p = start_picker(env={"PICKER_TEST_CONTROLS": "imx708"})
    cam = Camera(p.socket)
    cam.set_controls(exposure_time=8000)
    workers = 4
    used, restarted = threading.Barrier(workers + 1, timeout=60), threading.Barrier(
        workers + 1, timeout=60)
    heard: Dict[int, List[str]] = {}

    def work(i: int) -> None:
        cam.still()
        used.wait()
        restarted.wait()  # picker restarted meanwhile
        said = []
        for _ in range(3):
            try:
                cam.still()
                said.append("frame")
            except PickerRestarted as e:
                said.append("restarted" if "(exposure-time)" in str(e) else str(e))
            except Exception as e:  # noqa: BLE001 - recorded for the assertion
                said.append(repr(e))
        heard[i] = said

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    used.wait()
    p.restart()
    restarted.wait()
    for t in threads:
        t.join(timeout=60)
    assert heard == {i: ["restarted", "frame", "frame"] for i in range(workers)}, heard
    # The thread that set them hears too; one that first used the Camera after the restart,
    # with the new picker only, has nothing to hear.
    with pytest.raises(PickerRestarted):
        cam.still()
    late: List[str] = []
    t = threading.Thread(target=lambda: late.append(cam.still().shape and "frame"))
    t.start()
    t.join(timeout=60)
    assert late == ["frame"]
