"""Runs the real picker binary for the client's tests: a temp config (test-pattern camera,
loopback, a free port, the still socket in a temp dir), started before a test and stopped
after it. ``PICKER_BIN`` names the binary (tests/run.sh passes cargo's debug build); by default
``target/debug/picker`` of this repository."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))


def picker_bin() -> str:
    path = os.environ.get("PICKER_BIN") or str(REPO / "target" / "debug" / "picker")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no picker binary at {path}: run `cargo build` (or set PICKER_BIN)")
    return path


# What picker's ready line holds (`INFO ready source=... camera=...`).
READY = " ready source="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Picker:
    """One running picker. ``stream``, ``still`` and ``extra`` are TOML lines for those tables;
    ``extra`` is appended as is (another table, such as ``[controls]``)."""

    def __init__(self, stream: List[str], still: List[str], camera: List[str], extra: str,
                 env: Dict[str, str]):
        # Short: a Unix socket path may have at most 107 bytes.
        self.dir = tempfile.mkdtemp(prefix="pk", dir="/tmp")
        self.socket = os.path.join(self.dir, "still.sock")
        self.config = os.path.join(self.dir, "picker.toml")
        self.log: List[str] = []
        self.proc: Optional[subprocess.Popen[str]] = None
        # The free port may be taken between finding and binding it: try others.
        for _ in range(4):
            self.port = free_port()
            with open(self.config, "w") as f:
                f.write("[camera]\nsource = \"test-pattern\"\n" + "".join(l + "\n" for l in camera))
                f.write(f"[stream]\nbind = \"127.0.0.1\"\nport = {self.port}\n")
                f.write("".join(l + "\n" for l in stream))
                f.write(f"[still]\nsocket = \"{self.socket}\"\n" + "".join(l + "\n" for l in still))
                f.write(extra)
            if self._start(env):
                self._env = env
                return
        raise RuntimeError("no free port in four tries:\n" + self.log_text())

    def _start(self, env: Dict[str, str]) -> bool:
        full = {k: v for k, v in os.environ.items()
                if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")}
        full.update(env, RUST_LOG="info")
        self.log = []
        self.proc = subprocess.Popen(
            [picker_bin(), "--config", self.config], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=full,
        )
        threading.Thread(target=self._read_log, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + 30
        # The ready line itself: "Address already in use" contains "ready" too.
        while not any(READY in l for l in self.log):
            if self.proc.poll() is not None:
                time.sleep(0.1)  # the log reader may be behind the exit
                if any("cannot listen on" in l for l in self.log):
                    return False
                raise RuntimeError("picker exited before it was ready:\n" + self.log_text())
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("picker not ready within 30 s:\n" + self.log_text())
            time.sleep(0.02)
        return True

    def restart(self) -> None:
        """Stops picker and starts it again with the same config (socket path, port)."""
        self.stop()
        if not self._start(self._env):
            raise RuntimeError("port taken on restart:\n" + self.log_text())

    def _read_log(self, proc: "subprocess.Popen[str]") -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log.append(line.rstrip("\n"))

    def log_text(self) -> str:
        return "\n".join(self.log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return r.read().decode()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def start_picker() -> Iterator:
    """``start_picker(stream=[...], still=[...], camera=[...], extra="", env={})`` starts a picker;
    every one started is stopped when the test ends."""
    started: List[Picker] = []

    def start(stream: Optional[List[str]] = None, still: Optional[List[str]] = None,
              camera: Optional[List[str]] = None, extra: str = "",
              env: Optional[Dict[str, str]] = None) -> Picker:
        p = Picker(stream or [], still or [], camera or [], extra, env or {})
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
        shutil.rmtree(p.dir, ignore_errors=True)


@pytest.fixture
def picker(start_picker) -> Picker:
    """A picker with the defaults: 512x512 at 30 fps."""
    return start_picker()
