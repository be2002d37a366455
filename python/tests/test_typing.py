"""The package is typed (``py.typed``): mypy --strict finds nothing in it, and a program
using it is checked against its annotations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO

USER = '''
from picker_client import Camera, Frame, Stream, StreamFrame
camera = Camera("/run/picker/still.sock", timeout=5.0)
frame: Frame = camera.capture(fresh=True)
sequence: int = frame.sequence
jpeg: bytes = camera.jpeg()
for f in Stream("http://pi:8000/stream.mjpg", fps=2).frames():
    g: StreamFrame = f
wrong: str = camera.still()
import picker_client
old_name: "type[picker_client.NoPermission]" = picker_client.PermissionError
patient = Camera(timeout=None)
'''


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir=/dev/null",
         *args],
        capture_output=True, text=True, timeout=300, cwd=REPO / "python",
    )


def test_mypy_strict_passes_on_the_package() -> None:
    out = mypy("picker_client")
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_program_is_checked_against_the_annotations(tmp_path: Path) -> None:
    program = tmp_path / "robot.py"
    program.write_text(USER)
    out = mypy(str(program))
    # Exactly the one wrong line: an array is not a str.
    assert out.returncode == 1, out.stdout + out.stderr
    errors = [l for l in out.stdout.splitlines() if ": error:" in l]
    assert len(errors) == 1 and "robot.py:9:" in errors[0], out.stdout
