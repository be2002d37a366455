#!/usr/bin/env python3
"""Reliability figures for RELIABILITY.md: memory and threads under request bursts, and the
still socket under a TCP flood. Run once per binary, not a test (the figures are noisy):

    cargo build --release
    benches/reliability.py --bin target/release/picker --label after

It starts the given picker binary with the built-in test pattern on loopback, then:
  1. 1000 concurrent GET /snapshot.jpg (TCP from 50 addresses, nobody streaming: each needs
     an encode),
  2. 1000 concurrent GET /still.ppm on the still socket,
and reports, for each, the peak and after-burst RSS (VmHWM reset before each burst through
/proc/PID/clear_refs, which needs root) and the peak and after-burst thread count (sampled
every 5 ms), and the status codes; then
  3. under an open-file limit of 1024 (systemd's default), holds 1100 idle TCP connections
     from 50 addresses (127.0.1.1-50: one address may hold only its share of connections)
     (replacing each one the server closes) and asks for 20 stills on the socket, one every
     0.7 s, each with an 8 s timeout: how many were answered and the slowest answer.

With --input (issue 18's hostile input), instead:
  4. the panic-line flood: 4 connections pipelining `GET x:80 HTTP/1.1` for 20 s with
     RUST_BACKTRACE=1: answers and log bytes per minute,
  5. the PUT /controls flood: 10 s of back-to-back PUTs with a new value each time (keys the
     test pattern cannot take): requests and log bytes per minute,
  6. 12 stills under 1200 idle still-socket connections (replaced as they are closed): how
     many were answered within 30 s and the slowest.
With --connections, instead: one address (127.0.0.1) keeps 4200 idle TCP connections open
under the unit's open-file limit (8192) while another (127.0.0.2) asks for a snapshot and the
stream once a second: the most connections open at once, peak RSS, what the other host got.
With --attacks it runs the login and slot attacks of issue 18 instead (other hosts are other
loopback addresses, 127.0.x.y), each for --seconds, reporting peak RSS (VmHWM), logins or
viewers served, and the log's growth in bytes per minute:
  a. login flood that hangs up: 8 loops send a wrong password from 240 addresses and close
     at once; then 5 first-time right logins;
  b. 20 connections sending wrong passwords from one address while 15 first-time right
     logins (each header different, so none is remembered) come from another;
  c. the same from 200 attacking addresses (the per-address allowance does not help: the
     check queue does);
  d. 64 stream clients from one address reading 1 KB/s, while 10 viewers from another
     address open the stream.

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


def start(binary, nofile=None, stream_extra=""):
    d = tempfile.mkdtemp(prefix="pkrel", dir="/tmp")
    port = free_port()
    sock = os.path.join(d, "still.sock")
    config = os.path.join(d, "picker.toml")
    with open(config, "w") as f:
        f.write(
            f'[camera]\nsource = "test-pattern"\n[stream]\nbind = "127.0.0.1"\nport = {port}\n'
            f"{stream_extra}"
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
        if " ready source=" in log.read():
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


def _open(c):
    try:
        return c.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


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
                    # Non-blocking: with a timeout set, Python waits that long for data
                    # before even a MSG_DONTWAIT peek, and judged every open connection closed.
                    conns[i].setblocking(False)
                    counts["connects"] += 1
                except OSError:
                    conns[i] = None
        counts["held"] = sum(c is not None for c in conns)
        counts["alive"] = alive_now = sum(
            c is not None and _open(c) for c in conns
        )
        counts["peak_alive"] = max(counts.get("peak_alive", 0), alive_now)
        time.sleep(0.02)
    for c in conns:
        if c is not None:
            c.close()


def stills(sock, n, path, timeout, pause):
    """n stills on the socket, one every pause seconds: how many answered 200, the slowest."""
    answered, slowest, times = 0, 0.0, []
    for _ in range(n):
        t0 = time.time()

        def conn():
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            return s

        code = request(conn, path, timeout=timeout)
        dt = time.time() - t0
        times.append((dt, code))
        if code == "200":
            answered += 1
            slowest = max(slowest, dt)
        time.sleep(pause)
    return answered, slowest, times


def flood(binary):
    proc, port, sock, log = start(binary, nofile=1024)
    stop = threading.Event()
    counts = {"held": 0, "connects": 0}
    # From 50 addresses, 22 connections each: within each address's share (48 by default),
    # so that together they fill the TCP cap as one host could before there was a share.
    sources = iter(range(10**9))
    holder = threading.Thread(
        target=hold_idle,
        args=(lambda: connect_from(f"127.0.1.{next(sources) % 50 + 1}", port, 0.5), 1100, stop, counts),
    )
    holder.start()
    while counts["held"] < 1000:
        time.sleep(0.05)
    answered, slowest, times = stills(sock, 20, "/still.ppm", 8, 0.7)
    stop.set()
    holder.join()
    proc.terminate()
    proc.wait()
    return {"held": counts["held"], "answered": answered, "slowest_s": slowest, "times": times}


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
    answered, slowest, _ = stills(sock, 12, "/still.rgb", 30, 0.5)
    stop.set()
    holder.join()
    proc.terminate()
    proc.wait()
    return {"answered": answered, "slowest_s": slowest, "connects": counts["connects"]}


def one_host_flood(binary, n=4200, seconds=12):
    """--connections: one address (127.0.0.1) keeps n idle TCP connections open (replacing
    each one picker closes) under the unit's open-file limit (8192: 4096 TCP connections);
    meanwhile another address (127.0.0.2) asks for a snapshot and the stream once a second.
    Returns the most connections seen open at once, picker's peak RSS, and what the other
    host got."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 512)), hard))
    proc, port, sock, log = start(binary, nofile=8192)
    with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
        f.write("5")
    base_rss = status_field(proc.pid, "VmRSS")
    stop = threading.Event()
    counts = {"held": 0, "connects": 0}
    holder = threading.Thread(
        target=hold_idle,
        args=(lambda: connect_from("127.0.0.1", port, 0.5), n, stop, counts),
    )
    holder.start()
    got = collections.Counter()
    until = time.time() + seconds
    time.sleep(2)
    while time.time() < until:
        for path in ("/snapshot.jpg", "/stream.mjpg"):
            try:
                s = connect_from("127.0.0.2", port, 5)
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                head = s.recv(64)
                got[f"{path} {head.split(b' ')[1].decode() if head.startswith(b'HTTP/') else 'closed'}"] += 1
                s.close()
            except OSError as e:
                got[f"{path} {type(e).__name__}"] += 1
        time.sleep(1)
    peak_rss = status_field(proc.pid, "VmHWM")
    stop.set()
    holder.join()
    proc.terminate()
    proc.wait()
    return {
        "peak_alive": counts.get("peak_alive", 0),
        "connects": counts["connects"],
        "base_rss_mb": base_rss / 1024,
        "peak_rss_mb": peak_rss / 1024,
        "other_host": dict(got),
    }


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


def connect_from(src, port, timeout=10):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def basic(scheme, credentials):
    import base64

    return f"{scheme} " + base64.b64encode(credentials.encode()).decode()


def get_status(src, port, path, auth, timeout=15):
    try:
        s = connect_from(src, port, timeout)
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
            f"Connection: close\r\n\r\n".encode()
        )
        head = s.recv(64)
        s.close()
        return head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "no answer"
    except OSError as e:
        return type(e).__name__


def metrics(port):
    s = connect_from("127.0.0.1", port)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    out = {}
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("picker_auth_") or line.startswith("picker_stream_refused"):
            k, v = line.split()
            out[k.replace("picker_", "").replace("_total", "")] = int(float(v))
    return out


SCHEMES = [
    "".join(c.upper() if (i >> j) & 1 else c for j, c in enumerate("basic")) for i in range(32)
]


def attack(binary, seconds, kind):
    """One attack of --attacks on a fresh picker; returns its row."""
    hasher = subprocess.run(
        [binary, "hash-password"], input="right horse\n", capture_output=True, text=True
    )
    extra = (
        f'auth-users = {{ robot = "{hasher.stdout.strip()}" }}\nauth-exempt = ["/metrics"]\n'
        if kind != "slots"
        else ""
    )
    proc, port, sock, log = start(binary, stream_extra=extra)
    pid = proc.pid
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    base_rss = status_field(pid, "VmRSS")
    log_before = os.path.getsize(log.name)
    stop = threading.Event()
    right = "robot:right horse"
    served, tried = 0, 0

    def wrong_hangup(t):
        i = 0
        while not stop.is_set():
            try:
                s = connect_from(f"127.0.{10 + t}.{1 + i % 30}", port)
                s.sendall(
                    f"GET /state HTTP/1.1\r\nHost: x\r\nAuthorization: "
                    f"{basic('Basic', 'robot:wrong')}\r\n\r\n".encode()
                )
                s.close()
            except OSError:
                pass
            i += 1

    def wrong_reading(srcs):
        i = 0
        while not stop.is_set():
            get_status(srcs[i % len(srcs)], port, "/state", basic("Basic", "robot:guess"))
            i += 1

    def slow_reader():
        try:
            s = connect_from("127.0.0.2", port)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            while not stop.is_set():
                if not s.recv(1024):
                    break
                time.sleep(1)
            s.close()
        except OSError:
            pass

    if kind == "hangup":
        workers = [threading.Thread(target=wrong_hangup, args=(t,)) for t in range(8)]
    elif kind == "one-host":
        workers = [threading.Thread(target=wrong_reading, args=(["127.0.0.2"],)) for _ in range(20)]
    elif kind == "many-hosts":
        srcs = [f"127.0.5.{i}" for i in range(1, 201)]
        workers = [
            threading.Thread(target=wrong_reading, args=(srcs[k::20],)) for k in range(20)
        ]
    else:
        workers = [threading.Thread(target=slow_reader) for _ in range(64)]
    t0 = time.time()
    for w in workers:
        w.start()
    time.sleep(1)
    if kind in ("one-host", "many-hosts"):
        # First-time logins during the flood, spread over it.
        for i in range(15):
            tried += 1
            served += get_status("127.0.0.1", port, "/state", basic(SCHEMES[i], right)) == "200"
            time.sleep(max(0, (seconds - 2) / 15 - 0.05))
    elif kind == "slots":
        time.sleep(2)
        for _ in range(10):
            tried += 1
            try:
                s = connect_from("127.0.0.1", port)
                s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
                served += s.recv(64).startswith(b"HTTP/1.1 200")
                s.close()
            except OSError:
                pass
    while time.time() - t0 < seconds:
        time.sleep(0.1)
    elapsed = time.time() - t0
    log_bytes = os.path.getsize(log.name) - log_before
    stop.set()
    for w in workers:
        w.join()
    peak = status_field(pid, "VmHWM")
    if kind == "hangup":
        time.sleep(0.3)
        for i in range(5):
            tried += 1
            served += get_status("127.0.0.1", port, "/state", basic(SCHEMES[i], right)) == "200"
    after = status_field(pid, "VmRSS")
    m = metrics(port)
    proc.terminate()
    proc.wait()
    return {
        "kind": kind,
        "base_rss_mb": base_rss / 1024,
        "peak_rss_mb": peak / 1024,
        "after_rss_mb": after / 1024,
        "served": f"{served}/{tried}",
        "log_bytes_per_min": log_bytes * 60 / elapsed,
        "metrics": m,
    }


def attacks(binary, label, seconds):
    print(f"### {label}: attacks of {seconds} s\n")
    print("| attack | RSS before | peak RSS | RSS after | served | log bytes/min | counters |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("hangup", "one-host", "many-hosts", "slots"):
        r = attack(binary, seconds, kind)
        print(
            f"| {kind} | {r['base_rss_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB | "
            f"{r['after_rss_mb']:.0f} MB | {r['served']} | {r['log_bytes_per_min']:.0f} | "
            f"{r['metrics']} |",
            flush=True,
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--input", action="store_true", help="only the hostile-input floods (issue 18)")
    ap.add_argument("--attacks", action="store_true", help="only the login and slot attacks (issue 18)")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", action="store_true", help="only one address's idle-connection flood")
    ap.add_argument("--samples", help="CSV of each still's time during the flood (benches/plot.py reliability)")
    a = ap.parse_args()
    if a.input:
        input_floods(a.label, a.bin)
        return
    if a.attacks:
        attacks(a.bin, a.label, a.seconds)
        return
    if a.connections:
        r = one_host_flood(a.bin)
        print(f"### {a.label}: one address holding idle connections\n")
        print("| most open at once | connects | RSS before | peak RSS | another host got |")
        print("|---|---|---|---|---|")
        print(
            f"| {r['peak_alive']} | {r['connects']} | {r['base_rss_mb']:.0f} MB | "
            f"{r['peak_rss_mb']:.0f} MB | {r['other_host']} |"
        )
        return
    proc, port, sock, log = start(a.bin)

    # From 50 addresses (127.0.1.1-50), 20 connections each: within one address's share of
    # connections (48 by default), so that the burst stays 1000 concurrent requests.
    sources = iter(range(10**9))

    def tcp():
        return connect_from(f"127.0.1.{next(sources) % 50 + 1}", port, 60)

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
    if a.samples:
        with open(a.samples, "w") as out:
            out.write("request,seconds,status\n")
            for i, (dt, code) in enumerate(f["times"], 1):
                out.write(f"{i},{dt:.4f},{code}\n")


if __name__ == "__main__":
    main()
