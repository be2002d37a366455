#!/usr/bin/python3
"""Draws the benchmarks' results as SVG, from the files the benchmarks write (Debian's
python3-matplotlib; `packaging/host-deps.sh --bench` installs it). `benches/run.sh` calls it
after each benchmark; by hand:

    benches/plot.py load      target/bench-results/load.md      benches/plots/fanout.svg
    benches/plot.py still     target/bench-results/still.csv    benches/plots/still.svg
    benches/plot.py freshness target/bench-results/freshness.csv benches/plots/freshness.svg
    benches/plot.py reliability target/bench-results/reliability.csv benches/plots/flood-stills.svg

Inputs:
- load: the Markdown the load benchmark prints (`benches/load.rs --paired`), or any file
  holding its table (BENCHMARKS.md itself): rows `picker median` and `floor median`, columns
  `clients`, `server CPU %`, `CPU us per client-frame`.
- still: the CSV of `benches/still.rs --samples FILE` (`run,mode,server,ms`, one row per
  request; server `picker` or `floor`); or its Markdown table (p50, p99, max per mode).
- freshness: a CSV with the header `reader_fps,link_kbit,age_p50_ms,age_max_ms`, one row per
  (reader pace, link rate) measured: how old the frame a client receives is, by how fast the
  client reads (frames per second it asks for; 0 = as fast as it can) and the link's rate in
  kbit/s (0 = unshaped). Extra columns are ignored.
- reliability: the CSV of `benches/reliability.py --samples FILE`
  (`request,seconds,status`: each still asked for during the TCP flood).
"""

import csv
import re
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

# Same input, same SVG bytes: no random ids, no date.
plt.rcParams["svg.hashsalt"] = "picker"
plt.rcParams["font.size"] = 9
PICKER, FLOOR = "#1f77b4", "#7f7f7f"


def md_tables(text):
    """Every Markdown table in `text` as (header cells, rows of cells)."""
    tables, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-| :]+\|$", lines[i + 1]):
            head = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            tables.append((head, rows))
        else:
            i += 1
    return tables


def table_with(path, *columns):
    with open(path) as f:
        for head, rows in md_tables(f.read()):
            if all(c in head for c in columns):
                return head, rows
    sys.exit(f"plot.py: {path}: no table with the columns {', '.join(columns)}")


def save(fig, out):
    fig.tight_layout()
    fig.savefig(out, format="svg", metadata={"Date": None})
    print(f"plot.py: wrote {out}")


def load(src, out):
    head, rows = table_with(src, "clients", "server CPU %", "CPU us per client-frame")
    col = {name: head.index(name) for name in ("clients", "server CPU %", "CPU us per client-frame")}
    series = defaultdict(list)
    for r in rows:
        who = r[0].replace("**", "")
        if who.endswith("median"):
            series[who.split()[0]].append(
                (int(r[col["clients"]]), float(r[col["server CPU %"]]), float(r[col["CPU us per client-frame"]]))
            )
    if not series.get("picker"):
        sys.exit(f"plot.py: {src}: no 'picker median' rows")
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
    for who, colour in (("picker", PICKER), ("floor", FLOOR)):
        pts = sorted(series.get(who, []))
        if not pts:
            continue
        n = [p[0] for p in pts]
        a.plot(n, [p[1] for p in pts], "o-", color=colour, label=who)
        b.plot(n, [p[2] for p in pts], "o-", color=colour, label=who)
    a.set(xlabel="stream clients", ylabel="server CPU, % of one core", title="CPU by client count")
    b.set(xlabel="stream clients", ylabel="CPU µs per client and frame", title="CPU per client-frame", yscale="log")
    for ax in (a, b):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0 if ax is a else None)
        ax.legend()
    fig.suptitle("Stream fan-out at 30 fps: picker against the floor (a bare sender of the same bytes)")
    save(fig, out)


def still(src, out):
    fig, ax = plt.subplots(figsize=(8, 3.4))
    if src.endswith(".csv"):
        samples = defaultdict(list)
        with open(src) as f:
            for row in csv.DictReader(f):
                samples[(row["mode"], row["server"])].append(float(row["ms"]))
        modes = list(dict.fromkeys(m for m, _ in samples))
        colours = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd"]
        for mode, colour in zip(modes, colours):
            for server, style in (("picker", "-"), ("floor", ":")):
                v = sorted(samples.get((mode, server), []))
                if not v:
                    continue
                y = [100.0 * (i + 1) / len(v) for i in range(len(v))]
                # At most ~200 steps per curve (keeps the SVG small), always the last one.
                keep = sorted(set(range(0, len(v), max(1, len(v) // 200))) | {len(v) - 1})
                v, y = [v[i] for i in keep], [y[i] for i in keep]
                label = f"{mode}" if server == "picker" else f"{mode}: floor"
                ax.step(v, y, style, where="post", color=colour, label=label, linewidth=1.3 if server == "picker" else 1)
        ax.set(xscale="log", xlabel="ms from request to last byte (log)", ylabel="% of requests at most")
        ax.set_title("Still latency, /still.rgb (768 KiB) over the Unix socket: distribution (dotted: the floor)")
        ax.legend(fontsize=7, loc="lower right")
    else:
        head, rows = table_with(src, "mode", "p50 ms", "p99 ms", "max ms")
        rows = [r for r in rows if "run" not in head or r[head.index("run")] == "median"]
        modes = [r[head.index("mode")] for r in rows]
        x = range(len(modes))
        for k, (name, colour) in enumerate((("p50 ms", "#1f77b4"), ("p99 ms", "#ff7f0e"), ("max ms", "#d62728"))):
            ax.bar([i + (k - 1) * 0.27 for i in x], [float(r[head.index(name)]) for r in rows], 0.27, label=name[:-3], color=colour)
        ax.set_xticks(list(x), modes)
        ax.set(yscale="log", ylabel="ms (log)")
        ax.set_title("Still latency, /still.rgb over the Unix socket (medians of the runs)")
        ax.legend()
    ax.grid(True, alpha=0.3, which="both")
    save(fig, out)


def freshness(src, out):
    by_link = defaultdict(list)
    with open(src) as f:
        for row in csv.DictReader(f):
            # One series per link rate, and per reading client where the CSV names it.
            by_link[(float(row["link_kbit"]), row.get("client") or "")].append(
                (float(row["reader_fps"]), float(row["age_p50_ms"]), float(row["age_max_ms"]))
            )
    if not by_link:
        sys.exit(f"plot.py: {src}: no rows")
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for (link, pts), colour in zip(sorted(by_link.items()), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        pts.sort()
        link, client = link
        label = "unshaped link" if link == 0 else f"{link:g} kbit/s"
        label = f"{client}, {label}" if client else label
        x = [p[0] for p in pts]
        ax.plot(x, [p[1] for p in pts], "o-", color=colour, label=f"{label}: median")
        ax.plot(x, [p[2] for p in pts], "x--", color=colour, label=f"{label}: max")
    ax.set(xlabel="reader pace, frames/s asked for (0 = as fast as it reads)", ylabel="age of the frame received, ms")
    ax.set_title("Freshness: how old the frame a client gets is, by reader pace and link rate")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, out)


def reliability(src, out):
    with open(src) as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(8, 3))
    x = [int(r["request"]) for r in rows]
    y = [float(r["seconds"]) * 1e3 for r in rows]
    ok = [r["status"] == "200" for r in rows]
    ax.bar(x, y, color=["#1f77b4" if o else "#d62728" for o in ok])
    ax.set(xlabel="still request (one every 0.7 s)", ylabel="ms to the answer")
    ax.set_xticks(x)
    if y and max(y) > 50 * max(min(y), 1e-3):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_title("Stills on the Unix socket during a flood of 1100 idle TCP connections (red: not answered)", fontsize=9)
    ax.grid(True, alpha=0.3, which="both")
    save(fig, out)


def main():
    kinds = {"load": load, "still": still, "freshness": freshness, "reliability": reliability}
    if len(sys.argv) != 4 or sys.argv[1] not in kinds:
        sys.exit(f"usage: plot.py {{{'|'.join(kinds)}}} INPUT OUTPUT.svg")
    kinds[sys.argv[1]](sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
