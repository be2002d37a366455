#!/usr/bin/env python3
"""Reliability figures for RELIABILITY.md: memory and threads under request bursts, and the
still socket under a TCP flood. Run once per binary, not a test (the figures are noisy):

    cargo build --release
    benches/reliability.py --bin target/release/picker --label after

It starts the given picker binary with the built-in test pattern on loopback, then:
  1. 1000 concurrent GET /snapshot.jpg (TCP, nobody streaming: each needs an encode),
  2. 1000 concurrent GET /still.ppm on the still socket,
and reports, for each, the peak and after-burst RSS (VmHWM reset before each burst through
/proc/PID/clear_refs, which needs root) and the peak and after-burst thread count (sampled
every 5 ms), and the status codes; then
  3. under an open-file limit of 1024 (systemd's default), holds 1100 idle TCP connections
     (replacing each one the server closes) and asks for 20 stills on the socket, one every
     0.7 s, each with an 8 s timeout: how many were answered and the slowest answer.

With --input (issue 18's hostile input), instead:
  4. the panic-line flood: 4 connections pipelining `GET x:80 HTTP/1.1` for 20 s with
     RUST_BACKTRACE=1: answers and log bytes per minute,
  5. the PUT /controls flood: 10 s of back-to-back PUTs with a new value each time (keys the
     test pattern cannot take): requests and log bytes per minute,
  6. 12 stills under 1200 idle still-socket connections (replaced as they are closed): how
     many were answered within 30 s and the slowest.

Python (standard library only) rather than a Rust bench program: it has to drive two builds
of picker (before and after) from outside, like a client would.
"""

import argparse
import collections
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time


def status_field(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(binary, nofile=None):
    d = tempfile.mkdtemp(prefix="pkrel", dir="/tmp")
    port = free_port()
    sock = os.path.join(d, "still.sock")
    config = os.path.join(d, "picker.toml")
    with open(config, "w") as f:
        f.write(
            f'[camera]\nsource = "test-pattern"\n[stream]\nbind = "127.0.0.1"\nport = {port}\n'
            f'[still]\nsocket = "{sock}"\n'
        )
    cmd = [binary, "--config", config]
    if nofile:
        cmd = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] + cmd
    log = open(os.path.join(d, "log"), "w+")
    env = dict(os.environ, RUST_LOG="info")
    for k in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC", "MALLOC_ARENA_MAX"):
        env.pop(k, None)
    proc = subprocess.Popen(cmd, stderr=log, stdout=subprocess.DEVNULL, env=env)
    deadline = time.time() + 30
    while True:
        log.seek(0)
        if "ready" in log.read():
            break
        if proc.poll() is not None or time.time() > deadline:
            log.seek(0)
            sys.exit("picker did not start:\n" + log.read())
        time.sleep(0.05)
    return proc, port, sock, log


def request(connect, path, timeout=60):
    s = connect()
    s.settimeout(timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            head += b[: max(0, 64 - len(head))]
        return head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "no answer"
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()


def burst(pid, n, connect, path):
    # Reset the peak-RSS mark, so VmHWM is this burst's peak.
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    base_rss, base_threads = status_field(pid, "VmRSS"), status_field(pid, "Threads")
    peak_threads = [base_threads]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak_threads[0] = max(peak_threads[0], status_field(pid, "Threads"))
            except (OSError, KeyError):
                return
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    gate = threading.Barrier(n)
    codes = collections.Counter()
    lock = threading.Lock()

    def one():
        def conn():
            gate.wait()
            return connect()

        code = request(conn, path)
        with lock:
            codes[code] += 1

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    peak_rss = status_field(pid, "VmHWM")
    time.sleep(2)
    return {
        "base_rss_mb": base_rss / 1024,
        "peak_rss_mb": peak_rss / 1024,
        "after_rss_mb": status_field(pid, "VmRSS") / 1024,
        "base_threads": base_threads,
        "peak_threads": peak_threads[0],
        "after_threads": status_field(pid, "Threads"),
        "codes": dict(codes),
    }


def hold_idle(connect, n, stop, counts):
    """Keeps n idle connections made by connect() open until stop is set, replacing each one
    the server closes; counts["held"] is how many are open, counts["connects"] how many were
    made."""
    conns = [None] * n
    while not stop.is_set():
        for i, c in enumerate(conns):
            alive = False
            if c is not None:
                try:
                    alive = c.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
                except BlockingIOError:
                    alive = True
                except OSError:
                    alive = False
                if not alive:
                    c.close()
            if not alive:
                try:
                    conns[i] = connect()
                    counts["connects"] += 1
                except OSError:
                    conns[i] = None
        counts["held"] = sum(c is not None for c in conns)
        time.sleep(0.02)
    for c in conns:
        if c is not None:
            c.close()


def stills(sock, n, path, timeout, pause):
    """n stills on the socket, one every pause seconds: how many answered 200, the slowest."""
    answered, slowest = 0, 0.0
    for _ in range(n):
        t0 = time.time()

        def conn():
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            return s

        code = request(conn, path, timeout=timeout)
        dt = time.time() - t0
        if code == "200":
            answered += 1
            slowest = max(slowest, dt)
        time.sleep(pause)
    return answered, slowest


def flood(binary):
    proc, port, sock, log = start(binary, nofile=1024)
    stop = threading.Event()
    counts = {"held": 0, "connects": 0}
    holder = threading.Thread(
        target=hold_idle,
        args=(lambda: socket.create_connection(("127.0.0.1", port), timeout=0.5), 1100, stop, counts),
    )
    holder.start()
    while counts["held"] < 1000:
        time.sleep(0.05)
    answered, slowest = stills(sock, 20, "/still.ppm", 8, 0.7)
    stop.set()
    holder.join()
    proc.terminate()
    proc.wait()
    return {"held": counts["held"], "answered": answered, "slowest_s": slowest}


def log_size(log):
    log.flush()
    return os.fstat(log.fileno()).st_size


def panic_line_flood(binary, seconds=20):
    proc, port, sock, log = start_env(binary, {"RUST_BACKTRACE": "1"})
    before = log_size(log)
    stop = time.time() + seconds
    answers = [0]
    lock = threading.Lock()

    def hammer():
        line = b"GET x:80 HTTP/1.1\r\nHost: x\r\n\r\n" * 64
        while time.time() < stop:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(line)
                got = b""
                while got.count(b"HTTP/1.1 ") < 64:
                    b = s.recv(65536)
                    if not b:
                        break
                    got += b
                s.close()
                with lock:
                    answers[0] += got.count(b"HTTP/1.1 4")
            except OSError:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    grown = log_size(log) - before
    proc.terminate()
    proc.wait()
    return {"answers": answers[0], "log_bytes_per_min": grown * 60 / seconds, "seconds": seconds}


def controls_flood(binary, seconds=10):
    proc, port, sock, log = start_env(binary, {})
    before = log_size(log)
    stop = time.time() + seconds
    n = 0
    while time.time() < stop:
        body = f'{{"lens-position": {n % 10}, "brightness": 0.{n % 9}, "exposure-time": {10000 + n}}}'
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(sock)
        s.sendall(
            f"PUT /controls HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}"
            f"\r\n\r\n{body}".encode()
        )
        while s.recv(65536):
            pass
        s.close()
        n += 1
    time.sleep(0.5)
    grown = log_size(log) - before
    proc.terminate()
    proc.wait()
    return {"requests": n, "log_bytes_per_min": grown * 60 / seconds}


def still_idle_flood(binary, idle=1200):
    proc, port, sock, log = start(binary, nofile=8192)
    stop = threading.Event()
    counts = {"held": 0, "connects": 0}

    def connect():
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(0.5)
        c.connect(sock)
        return c

    holder = threading.Thread(target=hold_idle, args=(connect, idle, stop, counts))
    holder.start()
    time.sleep(2)
    answered, slowest = stills(sock, 12, "/still.rgb", 30, 0.5)
    stop.set()
    holder.join()
    proc.terminate()
    proc.wait()
    return {"answered": answered, "slowest_s": slowest, "connects": counts["connects"]}


def start_env(binary, extra):
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        return start(binary)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def input_floods(label, binary):
    p = panic_line_flood(binary)
    c = controls_flood(binary)
    s = still_idle_flood(binary)
    print(f"### {label}: hostile input\n")
    print("| flood | load | answers | log bytes per minute |")
    print("|---|---|---|---|")
    print(
        f"| `GET x:80` request lines, RUST_BACKTRACE=1 | 4 connections, {p['seconds']} s | "
        f"{p['answers']} x 4xx | {p['log_bytes_per_min'] / 1e6:.3f} MB |"
    )
    print(
        f"| `PUT /controls`, a new value each time | back to back, 10 s | "
        f"{c['requests']} requests | {c['log_bytes_per_min'] / 1e3:.1f} kB |"
    )
    print(
        f"\nStill socket under 1200 idle connections ({s['connects']} connects, replaced as closed): "
        f"{s['answered']}/12 stills answered within 30 s, slowest {s['slowest_s']:.2f} s\n"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--input", action="store_true", help="only the hostile-input floods (issue 18)")
    a = ap.parse_args()
    if a.input:
        input_floods(a.label, a.bin)
        return
    proc, port, sock, log = start(a.bin)

    def tcp():
        return socket.create_connection(("127.0.0.1", port), timeout=60)

    def unix():
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(60)
        s.connect(sock)
        return s

    # Warm up: one of each.
    request(tcp, "/snapshot.jpg")
    request(unix, "/still.ppm")
    rows = [
        (f"{a.n} x /snapshot.jpg", burst(proc.pid, a.n, tcp, "/snapshot.jpg")),
        (f"{a.n} x /still.ppm", burst(proc.pid, a.n, unix, "/still.ppm")),
    ]
    proc.terminate()
    proc.wait()
    print(f"### {a.label}\n")
    print("| burst | RSS before | peak RSS | RSS 2 s after | threads before | peak | after | answers |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['base_rss_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB | "
            f"{r['after_rss_mb']:.0f} MB | {r['base_threads']} | {r['peak_threads']} | "
            f"{r['after_threads']} | {r['codes']} |"
        )
    f = flood(a.bin)
    print(
        f"\nTCP flood, RLIMIT_NOFILE 1024: {f['held']} idle connections held; "
        f"{f['answered']}/20 stills answered within 8 s, slowest {f['slowest_s']:.2f} s\n"
    )


if __name__ == "__main__":
    main()
