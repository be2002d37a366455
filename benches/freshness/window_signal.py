#!/usr/bin/python3
"""Does a sender see a slow reader take each part? (issue 19, the `requests` 1 part/s median)

The freshness target for a reader taking one part a second (p50 <= 2 frame periods + one read
period) needs the server to know, part by part, when the reader has taken the part it holds:
then the next part can go at once and be read one period later at most. The only thing a Linux
sender can see of a reader is the receive window its acknowledgements advertise
(`tcpi_snd_wnd` in `TCP_INFO`). This measures, with ground truth, whether that window tells a
read, as a function of how many unread parts the reader holds (its backlog).

No picker here: a sender and a reader on loopback in one process, default socket buffers, parts
of ~10.6 KB (the test pattern's). The reader reads as `requests` does (`http.client` through an
8 KB `BufferedReader`, 1 KB at a time), one part, then sleeps 1/rate s. The sender keeps the
reader's backlog at exactly B parts (it is told of each read: the ground truth the real server
lacks), but only SEEN_WITHIN (300 ms) after the read, and reads `TCP_INFO` every 10 ms. With `--probe`, it also sends the next part's bytes
one at a time, 20 ms apart (TCP_NODELAY), so that the reader's kernel acknowledges something
(and advertises its window) between two parts. A read counts as *seen* when a window reading
within 300 ms after it is at least 4 KB (the drain's threshold) above the last one before it.

    benches/freshness/window_signal.py [--backlogs 1,2,4,8] [--reads 8] [--rate 1]

Prints a Markdown table: backlog, probing, reads, reads seen, the window's range.
"""

import argparse
import socket
import struct
import threading
import time

PART = 10_600
# Offsets in Linux's `struct tcp_info` (include/uapi/linux/tcp.h), stable since 5.4.
SND_WND_AT, INFO_LEN = 228, 232
SEEN_WITHIN = 0.3
SEEN_BY = 4 * 1024


def window(sock):
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, INFO_LEN)
    if len(info) < INFO_LEN:
        raise SystemExit("this kernel's TCP_INFO has no tcpi_snd_wnd (before 5.4)")
    return struct.unpack_from("I", info, SND_WND_AT)[0]


def run(backlog, probe, reads, rate):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    taken = threading.Semaphore(0)
    read_at = []
    t0 = time.monotonic()

    def reader():
        conn = socket.create_connection(listener.getsockname())
        f = conn.makefile("rb", buffering=8192)
        # Let the sender fill the backlog first.
        time.sleep(0.5)
        for _ in range(reads):
            got = 0
            while got < PART:
                got += len(f.read(min(1024, PART - got)))
            read_at.append(time.monotonic() - t0)
            taken.release()
            time.sleep(1 / rate)
        conn.close()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    sock, _ = listener.accept()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    readings = []
    body = b"x" * PART
    for _ in range(backlog):
        sock.sendall(body)
    # Each part after the backlog: its first bytes dribbled out as probes (with --probe),
    # the rest once the reader has taken one part, which keeps the backlog at B.
    sent_of_next = 0
    next_probe = time.monotonic()
    done, pending_since = 0, None
    while done < reads or pending_since is not None:
        now = time.monotonic()
        if probe and sent_of_next < 40 and now >= next_probe:
            sock.send(body[:1])
            sent_of_next += 1
            next_probe = now + 0.02
        if pending_since is not None and now >= pending_since + SEEN_WITHIN:
            # The reader's kernel has had SEEN_WITHIN to say it read: now the rest of the
            # next part, so that the backlog is B again.
            sock.sendall(body[sent_of_next:])
            sent_of_next, pending_since = 0, None
        elif pending_since is None and taken.acquire(timeout=0.01):
            done += 1
            pending_since = time.monotonic()
        else:
            time.sleep(0.01)
        readings.append((time.monotonic() - t0, window(sock)))
    thread.join(timeout=5)
    sock.close()
    listener.close()
    seen = 0
    for r in read_at:
        before = [w for t, w in readings if t <= r]
        after = [w for t, w in readings if r < t <= r + SEEN_WITHIN]
        if before and after and max(after) >= before[-1] + SEEN_BY:
            seen += 1
    windows = [w for _, w in readings]
    return seen, len(read_at), min(windows), max(windows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backlogs", default="1,2,4,8")
    ap.add_argument("--reads", type=int, default=6)
    ap.add_argument("--rate", type=float, default=1.0)
    args = ap.parse_args()
    if not 0.1 <= args.rate <= 30 or not 1 <= args.reads <= 100:
        raise SystemExit("--rate must be 0.1-30 and --reads 1-100")
    print("| backlog (parts) | probing | reads | reads seen | window min-max (bytes) |")
    print("|---|---|---|---|---|")
    for b in (int(x) for x in args.backlogs.split(",")):
        if not 1 <= b <= 16:
            raise SystemExit("backlogs must be 1-16 parts")
        for probe in (False, True):
            seen, n, lo, hi = run(b, probe, args.reads, args.rate)
            print(f"| {b} | {'yes' if probe else 'no'} | {n} | {seen} | {lo}-{hi} |", flush=True)


if __name__ == "__main__":
    main()
