#!/usr/bin/python3
"""Freshness benchmark (issue 19): the age of each part at receipt, reader pace x link rate.

Starts picker (PICKER_BIN, default target/release/picker) with the test pattern, then for each
case runs tests/fresh_reader.py (requests, aiohttp, OpenCV with default buffers) and prints a
Markdown table of p50/max age against the issue's target: p50 <= 2 frame periods + one period of
the client's own pace (its read period, or its link's time for one part), max <= twice that.
Links are `tc tbf` between two network namespaces this script creates and always removes
(needs root). Also: a fast reader's parts per second on loopback, and how long a client that
never reads stays connected (client-timeout = 3). Every run is bounded by --seconds.

    sudo benches/freshness/run.py [--seconds 15] [--readers requests,aiohttp,opencv]
        [--rates 1,3,10] [--links 1,2,5,20]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READER = os.path.join(ROOT, "tests", "fresh_reader.py")
PYTHON = "/usr/bin/python3"
FRAME_MS = 1000 / 30
NS_S, NS_C = f"pkbs{os.getpid()}", f"pkbc{os.getpid()}"
SERVER_IP = "10.231.29.1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, bind, port, netns=None, timeout=10):
    d = tempfile.mkdtemp(prefix="pkfb")
    cfg = os.path.join(d, "picker.toml")
    with open(cfg, "w") as f:
        f.write(
            f'[camera]\nsource = "test-pattern"\n[stream]\nbind = "{bind}"\nport = {port}\n'
            f'client-timeout = {timeout}\n[still]\nsocket = "{d}/still.sock"\n'
        )
    cmd = (["ip", "netns", "exec", netns] if netns else []) + [binary, "--config", cfg]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    for line in p.stderr:
        if " ready source=" in line:
            break
        if time.monotonic() > deadline:
            break
    # Keep draining its log so that it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    return p


def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def read(url, client, rate, seconds, netns=None):
    cmd = (["ip", "netns", "exec", netns] if netns else []) + [
        PYTHON, READER, "--url", url, "--client", client, "--rate", str(rate),
        "--seconds", str(seconds),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def row(label, pace_ms, d):
    target = 2 * FRAME_MS + pace_ms
    if not d or not d["ages_ms"]:
        return f"| {label} | - | - | - | {target:.0} | {2 * target:.0} | no parts |"
    a = sorted(d["ages_ms"])
    p50, mx = statistics.median(a), a[-1]
    ok = "met" if p50 <= target and mx <= 2 * target else "**not met**"
    fps = len(a) / d["seconds"]
    return f"| {label} | {fps:.1f} | {p50:.0f} | {mx:.0f} | {target:.0f} | {2 * target:.0f} | {ok} |"


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


def links_up(rate_mbit):
    sh("ip", "netns", "add", NS_S)
    sh("ip", "netns", "add", NS_C)
    sh("ip", "link", "add", "pkbvs", "type", "veth", "peer", "name", "pkbvc")
    sh("ip", "link", "set", "pkbvs", "netns", NS_S)
    sh("ip", "link", "set", "pkbvc", "netns", NS_C)
    sh("ip", "-n", NS_S, "addr", "add", SERVER_IP + "/30", "dev", "pkbvs")
    sh("ip", "-n", NS_C, "addr", "add", "10.231.29.2/30", "dev", "pkbvc")
    for ns, dev in ((NS_S, "pkbvs"), (NS_C, "pkbvc")):
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("tc", "-n", NS_S, "qdisc", "add", "dev", "pkbvs", "root", "tbf", "rate",
       f"{rate_mbit}mbit", "burst", "32kbit", "latency", "400ms")


def links_down():
    for ns in (NS_S, NS_C):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def never_reader(binary):
    port = free_port()
    p = start(binary, "127.0.0.1", port, timeout=3)
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            st = json.loads(
                subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/state"],
                               capture_output=True, text=True).stdout)
            if st["clients"] == 0 and time.monotonic() - t0 > 0.5:
                return time.monotonic() - t0
            time.sleep(0.1)
        return None
    finally:
        stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--readers", default="requests,aiohttp,opencv")
    ap.add_argument("--rates", default="1,3,10")
    ap.add_argument("--links", default="1,2,5,20")
    ap.add_argument("--csv", help="also write reader_fps,link_kbit,age_p50_ms,age_max_ms,client "
                    "rows here (what benches/plot.py freshness draws)")
    a = ap.parse_args()
    rows = []

    def keep(client, reader_fps, link_kbit, d):
        if d and d["ages_ms"]:
            ages = sorted(d["ages_ms"])
            rows.append((reader_fps, link_kbit, statistics.median(ages), ages[-1], client))

    binary = os.environ.get("PICKER_BIN", os.path.join(ROOT, "target", "release", "picker"))
    print(f"binary: {binary}\n")
    print("| case | parts/s | age p50 ms | age max ms | target p50 | target max | |")
    print("|---|---|---|---|---|---|---|")
    port = free_port()
    p = start(binary, "127.0.0.1", port)
    try:
        url = f"http://127.0.0.1:{port}/stream.mjpg"
        for client in a.readers.split(","):
            for rate in [float(r) for r in a.rates.split(",")]:
                d = read(url, client, rate, a.seconds)
                print(row(f"{client} {rate:g} parts/s, loopback", 1000 / rate, d), flush=True)
                keep(client, rate, 0, d)
        d = read(url, "requests", 0, a.seconds)
        print(row("requests as fast as it can, loopback", 0, d), flush=True)
        keep("requests", 0, 0, d)
    finally:
        stop(p)
    for mbit in [float(m) for m in a.links.split(",")]:
        links_down()
        try:
            links_up(mbit)
            port = free_port()
            p = start(binary, SERVER_IP, port, netns=NS_S)
            try:
                url = f"http://{SERVER_IP}:{port}/stream.mjpg"
                d = read(url, "requests", 0, a.seconds, netns=NS_C)
                # One part's time on the link: the mean part (about 11 KB) at the link rate.
                part_ms = 11 * 1024 * 8 / (mbit * 1e6) * 1000
                print(row(f"requests as fast as it can, {mbit:g} Mbit/s", part_ms, d), flush=True)
                keep("requests", 0, mbit * 1000, d)
            finally:
                stop(p)
        finally:
            links_down()
    if a.csv:
        with open(a.csv, "w") as out:
            out.write("reader_fps,link_kbit,age_p50_ms,age_max_ms,client\n")
            for r in rows:
                out.write("%g,%g,%.1f,%.1f,%s\n" % r)
    t = never_reader(binary)
    print(f"\nnever-reading client (client-timeout = 3): gone after "
          f"{'%.1f s' % t if t else 'more than 60 s'}")


if __name__ == "__main__":
    sys.exit(main())
