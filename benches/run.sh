#!/usr/bin/env bash
# Runs the benchmarks behind BENCHMARKS.md and keeps their output in target/bench-results/;
# benches/plot.py draws each result into benches/plots/*.svg (linked from BENCHMARKS.md and
# RELIABILITY.md).
#   benches/run.sh                 # all: encode callgrind still idle load copies reliability pyclient (~24 min)
#   benches/run.sh load still      # some of them (floor: the floor alone)
#   SECONDS_PER_RUN=5 REPEAT=1 benches/run.sh   # a quick smoke run
# The machine is shared and noisy: each figure is a median over REPEAT runs, and the encode
# comparison is also given in callgrind instruction counts, which noise does not move.
set -euo pipefail
cd "$(dirname "$0")/.."

REPEAT=${REPEAT:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
CLIENTS=${CLIENTS:-1,50,100,200}
out=target/bench-results
mkdir -p "$out"
what=("$@")
[ ${#what[@]} -gt 0 ] || what=(encode callgrind still idle load copies reliability pyclient) # load runs the floor too
plots=benches/plots
mkdir -p "$plots"

packaging/host-deps.sh --bench
# Release builds of the server and of the bench programs (the bench profile is release).
cargo build --release --quiet
cargo bench --no-run --quiet 2>/dev/null || cargo bench --no-run
# The bench program's own executable: cargo also lists the picker binary it builds for the
# benches, in no fixed order.
bench_exe() {
    cargo bench --no-run --bench "$1" --message-format=json 2>/dev/null |
        grep -F "\"kind\":[\"bench\"],\"crate_types\":[\"bin\"],\"name\":\"$1\"" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1
}

for w in "${what[@]}"; do
    echo "::: $w"
    case $w in
    encode)
        cargo bench --quiet --bench encode -- --blocks 20 --per-block 100 | tee "$out/encode.md"
        ;;
    callgrind)
        # Instructions per encode: the difference between N and 0 encodes, divided by N.
        exe=$(bench_exe encode)
        n=50
        {
            echo "| path | instructions per encode (callgrind) |"
            echo "|---|---|"
            for path in ours direct; do
                ir() {
                    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" \
                        --only "$path" --iters "$1" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
                }
                a=$(ir 0)
                b=$(ir "$n")
                echo "| $path | $(((b - a) / n)) |"
            done
        } | tee "$out/callgrind.md"
        ;;
    still)
        cargo bench --quiet --bench still -- --requests 1000 --repeat "$REPEAT" \
            --samples "$out/still.csv" | tee "$out/still.md"
        benches/plot.py still "$out/still.csv" "$plots/still.svg"
        ;;
    idle)
        cargo bench --quiet --bench load -- --idle 30 --repeat "$REPEAT" | tee "$out/idle.md"
        ;;
    load)
        # Each run of the service followed by one of the floor, under the same machine load.
        cargo bench --quiet --bench load -- --paired --clients "$CLIENTS" \
            --seconds "$SECONDS_PER_RUN" --repeat "$REPEAT" | tee "$out/load.md"
        benches/plot.py load "$out/load.md" "$plots/fanout.svg"
        ;;
    floor)
        cargo bench --quiet --bench load -- --floor --clients "$CLIENTS" \
            --seconds "$SECONDS_PER_RUN" --repeat "$REPEAT" | tee "$out/floor.md"
        ;;
    freshness)
        # Issue 19: each part's age at receipt, reader pace x link rate (root: network
        # namespaces and tc tbf); not in the default set, it needs the test clients.
        packaging/host-deps.sh --test
        PICKER_BIN=${PICKER_BIN:-target/release/picker} benches/freshness/run.py \
            --seconds "$SECONDS_PER_RUN" --csv "$out/freshness.csv" | tee "$out/freshness.md"
        ;;
    copies)
        # Bytes the CPU copies out of camera buffers (issue 14), from picker's own counters.
        benches/copies.py --bin target/release/picker --seconds "$SECONDS_PER_RUN" |
            tee "$out/copies.md"
        ;;
    reliability)
        # Memory and threads under bursts, stills under a TCP flood (RELIABILITY.md).
        benches/reliability.py --bin target/release/picker --label "$(git rev-parse --short HEAD)" \
            --samples "$out/reliability.csv" | tee "$out/reliability.md"
        benches/plot.py reliability "$out/reliability.csv" "$plots/flood-stills.svg"
        ;;
    pyclient)
        # The Python client's Camera.still() against a raw socket read of the same bytes (issue 22).
        PYTHONDONTWRITEBYTECODE=1 benches/py_client.py --bin target/release/picker \
            --requests 2000 --repeat "$REPEAT" | tee "$out/pyclient.md"
        ;;
    *)
        echo "unknown benchmark $w (encode callgrind still idle load floor copies reliability pyclient freshness)" >&2
        exit 2
        ;;
    esac
done

# The freshness benchmark (benches/freshness) writes its results as
# target/bench-results/freshness.csv (reader_fps,link_kbit,age_p50_ms,age_max_ms): drawn here
# whenever it is there.
if [ -f "$out/freshness.csv" ]; then
    benches/plot.py freshness "$out/freshness.csv" "$plots/freshness.svg"
fi
