#!/usr/bin/python3
"""Reads picker's /stream.mjpg the way robot code does, and reports each frame's age.

An application in a loop: take a frame, work on it (here: sleep 1/--rate seconds), take the
next; with requests (iter_content, the usual snippet), aiohttp (its StreamReader) or OpenCV
(cv2.VideoCapture on the URL), all with default socket buffers. The age of a frame is the time
it reached the application (CLOCK_BOOTTIME) minus its capture time (X-Timestamp-Ns, same clock).
OpenCV hands over pixels only: there the frame number the test pattern draws is read off the
picture and turned into a capture time with two X-Sequence/X-Timestamp-Ns pairs read on a second
connection at the start and the end.

Prints one JSON object: {"client", "rate", "ages_ms": [...], "seconds"}. Used by
tests/freshness.rs and benches/freshness/run.py; every loop is bounded by --seconds.
"""

import argparse
import json
import socket
import sys
import time
from urllib.parse import urlsplit


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class Parts:
    """Splits multipart bytes into (headers, body) by Content-Length."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return out
            head = self.buf[:end].decode("latin-1")
            headers = {}
            for line in head.split("\r\n"):
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            if "content-length" not in headers:
                # The boundary line before the first part's headers, or a closing delimiter.
                self.buf = self.buf[self.buf.find(b"\r\n") + 2:]
                continue
            n = int(headers["content-length"])
            if len(self.buf) < end + 4 + n:
                return out
            out.append((headers, self.buf[end + 4:end + 4 + n]))
            self.buf = self.buf[end + 4 + n:]


def run_requests(url, period, until):
    import requests

    ages = []
    parts = Parts()
    with requests.get(url, stream=True, timeout=10) as r:
        r.raise_for_status()
        for chunk in r.iter_content(chunk_size=1024):
            for headers, _jpeg in parts.feed(chunk):
                ages.append((now_ns() - int(headers["x-timestamp-ns"])) / 1e6)
                if period:
                    time.sleep(period)
            if time.monotonic() > until:
                break
    return ages


def run_aiohttp(url, period, until):
    import asyncio

    import aiohttp

    async def main():
        ages = []
        timeout = aiohttp.ClientTimeout(total=None, sock_read=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url) as resp:
                resp.raise_for_status()
                content = resp.content
                while time.monotonic() < until:
                    headers = {}
                    while True:
                        line = (await content.readline()).decode("latin-1").strip()
                        if not line:
                            if headers:
                                break
                            continue
                        if ":" in line:
                            k, v = line.split(":", 1)
                            headers[k.strip().lower()] = v.strip()
                    await content.readexactly(int(headers["content-length"]))
                    ages.append((now_ns() - int(headers["x-timestamp-ns"])) / 1e6)
                    if period:
                        await asyncio.sleep(period)
        return ages

    return asyncio.run(main())


# The test pattern's 5x7 digit glyphs (src/camera/test_pattern.rs), row bits, bit 4 leftmost.
DIGITS = [
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
]


def frame_number(gray):
    """The number the test pattern draws at the top left (scale = height / 64)."""
    scale = max(gray.shape[0] // 64, 1)
    origin = 4 * scale  # box margin + text margin
    number = ""
    for i in range(12):
        rows = []
        for gy in range(7):
            bits = 0
            for gx in range(5):
                x = origin + (i * 6 + gx) * scale + scale // 2
                y = origin + gy * scale + scale // 2
                if x >= gray.shape[1]:
                    return int(number) if number else None
                if gray[y, x] > 128:
                    bits |= 0x10 >> gx
            rows.append(bits)
        if rows not in DIGITS:
            break
        number += str(DIGITS.index(rows))
    return int(number) if number else None


def reference(url):
    """(X-Sequence, X-Timestamp-Ns) of the next part, on a connection of its own."""
    u = urlsplit(url)
    s = socket.create_connection((u.hostname, u.port or 80), timeout=5)
    s.sendall(f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}\r\n\r\n".encode())
    buf = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        buf += s.recv(65536)
        i = buf.find(b"X-Timestamp-Ns: ")
        j = buf.find(b"X-Sequence: ")
        if i >= 0 and j >= 0 and buf.find(b"\r\n", j) > 0 and buf.find(b"\r\n", i) > 0:
            ts = int(buf[i + 16:buf.find(b"\r\n", i)])
            seq = int(buf[j + 12:buf.find(b"\r\n", j)])
            s.close()
            return seq, ts
    raise SystemExit("no X-Sequence in 5 s from " + url)


def run_opencv(url, period, until):
    import cv2

    start = reference(url)
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise SystemExit("OpenCV cannot open " + url)
    seen = []
    while time.monotonic() < until:
        ok, frame = cap.read()
        t = now_ns()
        if not ok:
            break
        n = frame_number(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        if n is not None:
            seen.append((n, t))
        if period:
            time.sleep(period)
    cap.release()
    end = reference(url)
    if end[0] == start[0]:
        raise SystemExit("the camera made no frames")
    ns_per_frame = (end[1] - start[1]) / (end[0] - start[0])
    return [(t - (start[1] + (n - start[0]) * ns_per_frame)) / 1e6 for n, t in seen]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--client", choices=["requests", "aiohttp", "opencv"], required=True)
    ap.add_argument("--rate", type=float, default=0, help="parts per second (0: as fast as it can)")
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    period = 1 / a.rate if a.rate > 0 else 0
    started = time.monotonic()
    until = started + a.seconds
    run = {"requests": run_requests, "aiohttp": run_aiohttp, "opencv": run_opencv}[a.client]
    ages = run(a.url, period, until)
    out = {
        "client": a.client,
        "rate": a.rate,
        "ages_ms": [round(x, 2) for x in ages],
        "seconds": round(time.monotonic() - started, 3),
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
