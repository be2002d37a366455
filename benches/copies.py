#!/usr/bin/env python3
"""What the CPU copies out of camera buffers, per frame (issue 14), from picker's own counters.

    cargo build --release
    benches/copies.py --bin target/release/picker [--seconds 20] [--clients 5]

Runs picker on the fake request pipeline (PICKER_TEST_PIPELINE=fast:1: a camera at the
configured 30 fps whose buffers are lent to readers and given back, as libcamera's are; the
test pattern has no camera buffers, so it would show nothing) at 512x512, RGB still and YUV
video, and measures from /metrics over each window:

  A. stream clients, no still requests: bytes copied per captured frame (target: 0; the
     encoder reads the lent buffer itself), frames lent / captured, encoder and camera-thread
     time per frame (histogram means);
  B. the same plus one /still.rgb?fresh=1 per second on the still socket: bytes copied per
     second (target: one still, 786432 bytes, per second);
  C. no client at all: frames published and replaced unread (picker_frames_unconsumed_total).

Not a test: the figures are measured, and the machine is noisy. Python (standard library only)
rather than a Rust bench program: it drives the binary from outside, like a client would.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

WIDTH = HEIGHT = 512
STILL = WIDTH * HEIGHT * 3
FRAME = STILL + WIDTH * HEIGHT * 3 // 2


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    out = {}
    for line in data.split(b"\r\n\r\n", 1)[1].decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def stream_client(port, stop, counts, i):
    """Reads /stream.mjpg until stop, counting bytes (the parts themselves are not parsed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        while not stop.is_set():
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            counts[i] += len(chunk)


def still(sock_path):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock_path)
        s.sendall(b"GET /still.rgb?fresh=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        n = 0
        while chunk := s.recv(1 << 16):
            n += len(chunk)
        return n


def delta(a, b, name):
    return b.get(name, 0.0) - a.get(name, 0.0)


def mean_ms(a, b, hist):
    n = delta(a, b, hist + "_count")
    return delta(a, b, hist + "_sum") / n * 1e3 if n else float("nan")


def window(port, seconds, clients, sock_path=None):
    stop = threading.Event()
    counts = [0] * clients
    threads = [threading.Thread(target=stream_client, args=(port, stop, counts, i), daemon=True)
               for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(2)  # every client streaming
    a = metrics(port)
    stills = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if sock_path:
            if still(sock_path) > STILL:
                stills += 1
        time.sleep(max(0.0, min(1.0, end - time.monotonic())))
    b = metrics(port)
    stop.set()
    for t in threads:
        t.join(timeout=5)
    return a, b, stills


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/picker")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=5)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="pkcopies", dir="/tmp")
    port = free_port()
    sock_path = os.path.join(d, "still.sock")
    config = os.path.join(d, "picker.toml")
    with open(config, "w") as f:
        f.write(f'[camera]\nsource = "test-pattern"\nframerate = 30\n'
                f'[stream]\nbind = "127.0.0.1"\nport = {port}\nwidth = {WIDTH}\nheight = {HEIGHT}\n'
                f'[still]\nsocket = "{sock_path}"\nwidth = {WIDTH}\nheight = {HEIGHT}\n')
    env = dict(os.environ, PICKER_TEST_PIPELINE="fast:1", RUST_LOG="warn")
    p = subprocess.Popen([args.bin, "--config", config], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                if metrics(port).get("picker_frames_captured_total", 0) > 0:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            sys.exit("picker did not start")
        print(f"picker {args.bin}: fake camera 30 fps, {WIDTH}x{HEIGHT}, "
              f"{args.clients} stream clients, {args.seconds:.0f} s windows")
        print()
        print("| window | frames captured | lent | bytes copied | per frame | per second | "
              "encode ms/frame | camera thread ms/frame |")
        print("|---|---|---|---|---|---|---|---|")
        for label, sp in (("A: stream only", None), ("B: stream + 1 still/s", sock_path)):
            a, b, stills = window(port, args.seconds, args.clients, sp)
            captured = delta(a, b, "picker_frames_captured_total")
            lent = delta(a, b, "picker_frames_lent_total")
            copied = delta(a, b, "picker_camera_bytes_copied_total")
            secs = args.seconds
            extra = f" ({stills} stills = {stills * STILL / secs:.0f} B/s of stills)" if sp else ""
            print(f"| {label} | {captured:.0f} | {lent:.0f} | {copied:.0f} | "
                  f"{copied / max(captured, 1):.0f} | {copied / secs:.0f}{extra} | "
                  f"{mean_ms(a, b, 'picker_encode_frame_seconds'):.2f} | "
                  f"{mean_ms(a, b, 'picker_camera_frame_seconds'):.3f} |")
        a = metrics(port)
        time.sleep(args.seconds / 2)
        b = metrics(port)
        print()
        print(f"C: no client for {args.seconds / 2:.0f} s: "
              f"{delta(a, b, 'picker_frames_captured_total'):.0f} frames captured, "
              f"{delta(a, b, 'picker_frames_unconsumed_total'):.0f} replaced unread, "
              f"{delta(a, b, 'picker_camera_bytes_copied_total'):.0f} bytes copied")
        print(f"(before issue 14 every frame was copied whole: {FRAME} bytes per frame, "
              f"{FRAME * 30} B/s at 30 fps)")
    finally:
        p.terminate()
        p.wait(timeout=10)


if __name__ == "__main__":
    main()
