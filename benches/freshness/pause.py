#!/usr/bin/python3
"""A reader of every frame that pauses once: parts it gets in each second, and their worst age.

The case that a drain rule must not starve (BENCHMARKS.md, "Pauses teach the pace nothing"):
a viewer or robot taking every frame with `requests`, which stops for PAUSE seconds after
PAUSE_AT seconds and then reads every frame again. Run against a picker already serving:

    benches/freshness/pause.py http://127.0.0.1:8000/stream.mjpg 8 1 20

Prints "fps" (second: parts taken in it) and "age" (second: worst age in ms, receipt on
CLOCK_BOOTTIME minus X-Timestamp-Ns). Every loop is bounded by TOTAL seconds.
"""

import os
import sys
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from fresh_reader import Parts, now_ns  # noqa: E402


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: pause.py URL PAUSE_AT PAUSE TOTAL (seconds)")
    url = sys.argv[1]
    pause_at, pause, total = (float(a) for a in sys.argv[2:])
    parts, counts, ages, paused = Parts(), {}, {}, False
    t0 = time.monotonic()
    with requests.get(url, stream=True, timeout=10) as r:
        r.raise_for_status()
        for chunk in r.iter_content(chunk_size=1024):
            for headers, _jpeg in parts.feed(chunk):
                t = time.monotonic() - t0
                sec = int(t)
                counts[sec] = counts.get(sec, 0) + 1
                age = (now_ns() - int(headers["x-timestamp-ns"])) / 1e6
                ages.setdefault(sec, []).append(age)
                if t > pause_at and not paused:
                    paused = True
                    time.sleep(pause)
            if time.monotonic() - t0 > total:
                break
    print("fps", " ".join(f"{s}:{counts.get(s, 0)}" for s in range(int(total) + 1)))
    print("age", " ".join(f"{s}:{round(max(a))}" for s, a in sorted(ages.items())))


if __name__ == "__main__":
    main()
