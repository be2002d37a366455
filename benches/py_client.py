#!/usr/bin/python3
"""picker_client's Camera.still() against a raw socket read of the same bytes (issue 22).

    cargo build --release
    benches/py_client.py --bin target/release/picker [--requests 2000] [--repeat 3]

Runs picker with the test pattern at 512x512, 30 fps, and times, request by request and
interleaved (so both see the same machine weather):

  - raw: what a careful robot hand-writes today: one keep-alive AF_UNIX connection, a GET of
    /still.rgb, the head read up to its blank line, Content-Length parsed, the body read with
    recv_into into a preallocated buffer; bytes only, no array;
  - Camera.still(): the client's call, which also parses every header, checks the frame's age
    and returns a numpy array (height, width, 3) over the body.

Each is timed from the call to the last body byte (the array made). Target: Camera.still()'s
p99 within 1.5x the raw read's p99. Debian's python3 (numpy); not a test: the figures are
measured, and the machine is noisy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

from picker_client import Camera  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary: str, size: int, workdir: str) -> tuple[subprocess.Popen, str]:
    sock = os.path.join(workdir, "still.sock")
    config = os.path.join(workdir, "picker.toml")
    with open(config, "w") as f:
        f.write(
            f'[camera]\nsource = "test-pattern"\n'
            f'[stream]\nbind = "127.0.0.1"\nport = {free_port()}\nwidth = {size}\nheight = {size}\n'
            f'[still]\nsocket = "{sock}"\nwidth = {size}\nheight = {size}\n'
        )
    proc = subprocess.Popen([binary, "--config", config], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"picker did not start: {binary} --config {config}")
        time.sleep(0.05)
    time.sleep(0.5)
    return proc, sock


class Raw:
    """The hand-written floor: keep-alive GET /still.rgb, body into a reused buffer."""

    def __init__(self, path: str, nbytes: int):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buf = bytearray(nbytes)
        self.request = b"GET /still.rgb HTTP/1.1\r\nHost: picker\r\n\r\n"

    def get(self) -> int:
        self.sock.sendall(self.request)
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        head, _, rest = head.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        view = memoryview(self.buf)
        view[:len(rest)] = rest
        got = len(rest)
        while got < length:
            got += self.sock.recv_into(view[got:length])
        return got


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def measure(sock: str, size: int, requests: int) -> dict[str, list[float]]:
    cam = Camera(sock)
    raw = Raw(sock, size * size * 3)
    for _ in range(50):  # connections open, caches warm
        raw.get()
        cam.still()
    times: dict[str, list[float]] = {"raw": [], "camera": []}
    for _ in range(requests):
        t = time.perf_counter()
        assert raw.get() == size * size * 3
        times["raw"].append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        assert cam.still().shape == (size, size, 3)
        times["camera"].append((time.perf_counter() - t) * 1e3)
    raw.sock.close()
    cam.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(REPO / "target" / "release" / "picker"))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    nbytes = args.size * args.size * 3
    print(f"# /still.rgb ({nbytes} bytes) over the Unix socket: picker_client Camera.still() vs "
          f"a raw socket read; {args.requests} requests each per run, interleaved")
    print("| run | raw p50 ms | raw p99 ms | still() p50 ms | still() p99 ms | p50 ratio | "
          "p99 ratio |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for run in range(1, args.repeat + 1):
        workdir = tempfile.mkdtemp(prefix="pkb", dir="/tmp")
        proc, sock = start(args.bin, args.size, workdir)
        try:
            t = measure(sock, args.size, args.requests)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            shutil.rmtree(workdir, ignore_errors=True)
        row = [percentile(t["raw"], 50), percentile(t["raw"], 99),
               percentile(t["camera"], 50), percentile(t["camera"], 99)]
        row += [row[2] / row[0], row[3] / row[1]]
        rows.append(row)
        print(f"| {run} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    median = [statistics.median(r[i] for r in rows) for i in range(6)]
    print("| median | " + " | ".join(f"{v:.3f}" for v in median) + " |")
    verdict = "met" if median[5] <= 1.5 else "NOT met"
    print(f"\ntarget (still() p99 within 1.5x the raw read's p99): {verdict}")


if __name__ == "__main__":
    main()
