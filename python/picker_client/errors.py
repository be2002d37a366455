"""The exceptions of picker_client: each says what happened and what to do about it.

Every one is a :class:`PickerError`, so ``except PickerError`` catches them all. Where Python has
a matching built-in exception, ours is that too: :class:`NoPermission` is a built-in
``PermissionError``, :class:`ServiceNotRunning` a ``ConnectionError`` and :class:`NoFreshFrame`
a ``TimeoutError``, so code written against the standard library's exceptions keeps working.
"""

from __future__ import annotations

import builtins
from typing import Any, Dict, Optional, Tuple


class PickerError(Exception):
    """Anything picker could not do for you; the message says why and what to try."""


class CameraOffline(PickerError):
    """The camera delivers no frames (picker answered 503, or the newest frame is too old).

    Usually a loose cable or a camera that stopped; picker restarts it by itself. Try again in
    a second; if it lasts, look at ``journalctl -u picker``.
    """


class PickerRestarted(CameraOffline):
    """picker restarted since this :class:`Camera` set controls with ``set_controls``: they are
    gone (changes over the socket last until picker restarts), and the frames from now on are
    taken without them until they are set again.

    Each thread that used the Camera before the restart hears of it once: the first of its
    calls that does its work after the restart raises this instead of returning (a still it
    fetched is dropped: take another). ``lost`` names the controls the restart took (picker's
    keys, sorted). A ``set_controls`` or ``reset_controls`` that raises it made its own change
    on the new picker all the same, and is not to be repeated: ``in_force`` holds what it would
    have returned (``None`` for every other call).

    A :class:`CameraOffline` too, so a loop that waits and retries on that catches it: set the
    controls again there (and wait for frames taken with them). Values that must survive a
    restart belong in ``[controls]`` of ``/etc/picker/picker.toml``.
    """

    def __init__(self, message: str, lost: Tuple[str, ...] = (),
                 in_force: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.lost = lost
        self.in_force = in_force


class NoFreshFrame(PickerError, builtins.TimeoutError):
    """``fresh=True`` was asked and no frame newer than the request came in time (504).

    The camera is stalled. ``fresh=False`` gives the newest frame at once.
    """


class ServiceNotRunning(PickerError, builtins.ConnectionError):
    """Nothing answers at the socket or URL: picker is not running there (or not yet)."""


class NoPermission(PickerError, builtins.PermissionError):
    """This user may not use picker's still socket: only root and group ``picker`` may.

    A built-in ``PermissionError`` too, so ``except PermissionError`` catches it."""


#: The old name of :class:`NoPermission`, kept so that ``picker_client.PermissionError`` still
#: works. Not in ``__all__``: ``from picker_client import *`` would replace the built-in.
PermissionError = NoPermission  # noqa: A001
