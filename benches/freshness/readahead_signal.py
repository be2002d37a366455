#!/usr/bin/python3
"""Can a sender tell an aiohttp reader's pace? (issue 19, the aiohttp rows)

aiohttp's `StreamReader` reads the socket whenever it is readable until it holds more than its
high-water mark (2 x `limit`, 128 KiB by default), and reads again only once the application
has taken it below `limit` (64 KiB). Below the mark the peer's advertised window, all a sender
sees of how a reader reads (`TCP_INFO`; the kernel acknowledges data as it arrives, read or
not), stays open whatever the application's pace. This measures how much an aiohttp reader
holds before its window first shows it behind, with ground truth from the application.

No picker here: one sender and one real client on loopback, default socket buffers, the sender
speaking HTTP/1.1 and multipart (close-delimited, where picker's body is chunked: aiohttp's
chunk-count limit, 16384, is far off here), parts of ~10.6 KB (the test pattern's). The
client is aiohttp (its `StreamReader`, as `tests/fresh_reader.py` reads it) or `requests`
(`iter_content(1024)`), taking a part, then sleeping 1/rate s (no sleep: as fast as it can).
Each run has two phases:

- **under**: the sender sends a part every 2 s, slower than any reader here takes them, for
  UNDER_PARTS parts: how far the window ever falls below the largest it has shown. (Sent
  slower than it reads, no reader shows anything: a server that holds back learns nothing.)
- **over**: the sender then sends a part every frame (33 ms) until the window falls by 3/4 of a
  part below its largest (the drain's "early"), or OVER_LIMIT s. Reported: when, and how many
  parts the application had not yet taken (sent minus taken: what stands between a new part
  and the application, in its buffers and the kernel's) at that moment.

    benches/freshness/readahead_signal.py     # 8 runs, about 2.5 min; no picker, no root

Prints a Markdown table, one row per client and pace.
"""

import argparse
import asyncio
import os
import socket
import sys
import threading
import time

# The sender's view of the window, as window_signal.py reads it (beside this script), and
# the multipart splitter the freshness readers use (tests/fresh_reader.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from fresh_reader import Parts  # noqa: E402
from window_signal import window  # noqa: E402

PART = 10_600
FRAME = 1 / 30
UNDER_EVERY, UNDER_PARTS = 2.0, 5
OVER_LIMIT = 20.0
EARLY = PART * 3 // 4
BOUNDARY = "picker-frame"


def part(seq):
    head = (
        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {PART}\r\n"
        f"X-Sequence: {seq}\r\n\r\n"
    ).encode()
    return head + b"x" * PART + b"\r\n"


def aiohttp_reader(url, period, taken, stop):
    import aiohttp

    async def main():
        timeout = aiohttp.ClientTimeout(total=None, sock_read=OVER_LIMIT + 10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url) as resp:
                content = resp.content
                while not stop.is_set():
                    length = None
                    while True:
                        line = (await content.readline()).decode("latin-1").strip()
                        if not line and length is not None:
                            break
                        if line.lower().startswith("content-length:"):
                            length = int(line.split(":", 1)[1])
                    await content.readexactly(length)
                    taken.append(time.monotonic())
                    if period:
                        await asyncio.sleep(period)

    try:
        asyncio.run(main())
    except Exception:  # the sender closing ends the run
        pass


def requests_reader(url, period, taken, stop):
    import requests

    parts = Parts()
    try:
        with requests.get(url, stream=True, timeout=OVER_LIMIT + 10) as r:
            for chunk in r.iter_content(chunk_size=1024):
                for _ in parts.feed(chunk):
                    taken.append(time.monotonic())
                    if period:
                        time.sleep(period)
                if stop.is_set():
                    return
    except Exception:
        pass


def run(client, rate):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    url = "http://127.0.0.1:%d/stream.mjpg" % listener.getsockname()[1]
    taken, stop = [], threading.Event()
    reader = {"aiohttp": aiohttp_reader, "requests": requests_reader}[client]
    thread = threading.Thread(
        target=reader, args=(url, 1 / rate if rate else 0, taken, stop), daemon=True
    )
    thread.start()
    sock, _ = listener.accept()
    sock.settimeout(5)
    request = b""
    while b"\r\n\r\n" not in request:
        request += sock.recv(4096)
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary="
        + BOUNDARY.encode()
        + b"\r\nCache-Control: no-store\r\n\r\n"
    )
    sent = 0
    largest = 0
    lowest_gap = 0
    # under: a part every UNDER_EVERY s; watch the window.
    for _ in range(UNDER_PARTS):
        sock.sendall(part(sent))
        sent += 1
        at = time.monotonic()
        while time.monotonic() < at + UNDER_EVERY:
            wnd = window(sock)
            largest = max(largest, wnd)
            lowest_gap = max(lowest_gap, largest - wnd)
            time.sleep(0.005)
    # A fast reader and a slow one have both taken every part by now; wait for a slow one
    # to take its last so both start the next phase holding nothing.
    deadline = time.monotonic() + 3
    while len(taken) < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    under_taken = len(taken)
    # over: a part every frame until the window shows the reader is behind.
    start = time.monotonic()
    fell_at, held, timed_out = None, None, False
    next_at = start
    try:
        while time.monotonic() < start + OVER_LIMIT:
            now = time.monotonic()
            if now >= next_at:
                sock.sendall(part(sent))
                sent += 1
                next_at += FRAME
            wnd = window(sock)
            largest = max(largest, wnd)
            if largest - wnd >= EARLY:
                fell_at, held = time.monotonic() - start, sent - len(taken)
                break
            time.sleep(0.002)
    except socket.timeout:
        # A send blocked for 5 s: the window closed between two looks.
        timed_out = True
    stop.set()
    sock.close()
    listener.close()
    thread.join(timeout=5)
    return {
        "gap": lowest_gap,
        "under_taken": f"{under_taken}/{UNDER_PARTS}",
        "fell_at": fell_at,
        "held": held,
        "timed_out": timed_out,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--runs",
        default="aiohttp:0,aiohttp:1,aiohttp:3,aiohttp:10,"
        "requests:0,requests:1,requests:3,requests:10",
        help="client:rate pairs (rate in parts/s, 0 = as fast as it can)",
    )
    args = ap.parse_args()
    print(
        "| client | pace | under: parts taken | under: window below its largest by at most"
        " (bytes) | over: window fell after (s) | over: parts sent, not yet taken by the"
        " application, then |"
    )
    print("|---|---|---|---|---|---|")
    for pair in args.runs.split(","):
        client, rate = pair.split(":")
        rate = float(rate)
        if client not in ("aiohttp", "requests") or not 0 <= rate <= 30:
            raise SystemExit("--runs takes aiohttp:R or requests:R, R 0-30")
        r = run(client, rate)
        pace = f"{rate:g} parts/s" if rate else "as fast as it can"
        if r["fell_at"] is not None:
            fell = f"{r['fell_at']:.2f}"
        elif r["timed_out"]:
            fell = "a send blocked 5 s first"
        else:
            fell = f"never ({OVER_LIMIT:g} s)"
        held = r["held"] if r["held"] is not None else "-"
        print(
            f"| {client} | {pace} | {r['under_taken']} | {r['gap']} | {fell} | {held} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
