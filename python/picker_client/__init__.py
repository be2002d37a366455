"""picker_client: stills, controls and the live stream of picker, the Raspberry Pi camera service.

On the camera's machine, over picker's local socket (``/run/picker/still.sock``; the user must be
root or in group ``picker``)::

    from picker_client import Camera

    camera = Camera()
    rgb = camera.still()                 # numpy array (height, width, 3), uint8, RGB
    frame = camera.capture(fresh=True)   # a frame captured after this call, with its
    frame.array, frame.sequence, frame.timestamp_ns   # sequence and CLOCK_BOOTTIME time
    camera.set_controls(lens_position=4, exposure_time=8000)

From another machine, over the stream port (always the newest frame)::

    from picker_client import Stream

    with Stream("http://robot-cam.local:8000/stream.mjpg") as stream:
        for frame in stream.frames():
            rgb = frame.array()          # needs Pillow or OpenCV

Standard library only; numpy for arrays. Every error is a :class:`PickerError` whose message
says what to do.
"""

from .camera import DEFAULT_SOCKET, Camera, Frame, boottime_ns
from .errors import (
    CameraOffline,
    NoFreshFrame,
    NoPermission,
    PickerError,
    PickerRestarted,
    ServiceNotRunning,
)
# The old name of NoPermission, for `picker_client.PermissionError`; not in __all__, where a star
# import would replace the built-in PermissionError with it. `as` tells type checkers that it is
# exported all the same.
from .errors import PermissionError as PermissionError  # noqa: A004
from .stream import Stream, StreamFrame

__all__ = [
    "DEFAULT_SOCKET",
    "Camera",
    "CameraOffline",
    "Frame",
    "NoFreshFrame",
    "NoPermission",
    "PickerError",
    "PickerRestarted",
    "ServiceNotRunning",
    "Stream",
    "StreamFrame",
    "boottime_ns",
]

__version__ = "0.1.0"
