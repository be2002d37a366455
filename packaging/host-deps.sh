#!/usr/bin/env bash
# Installs the Debian packages picker needs on this machine: to build it (libjpeg-turbo,
# pkg-config); with --test, the real clients the tests drive (ffmpeg/ffprobe, curl, headless
# Chromium, the stream's other players: mpv, GStreamer, Python readers with requests, aiohttp and
# OpenCV, iproute2's ip and tc for links shaped in network namespaces; and what the Python
# client's tests run on: Debian's python3 with pytest, numpy and Pillow, mypy, promtool from
# prometheus for the alert rules); with --bench, what the benchmarks compare against (tjbench,
# valgrind), draw with (matplotlib) and the Python client's benchmark needs (numpy). Installs
# only what is missing, so it is quick when all is there.
set -euo pipefail

pkgs=(libturbojpeg0-dev pkg-config)
for flag in "$@"; do
    case $flag in
        --test)
            pkgs+=(ffmpeg curl chromium)
            # The stream's other players (tests/ending.rs).
            pkgs+=(mpv gstreamer1.0-tools gstreamer1.0-plugins-good python3-aiohttp)
            # Slow readers and shaped links (tests/freshness.rs).
            pkgs+=(python3-requests python3-opencv iproute2)
            # The Python client's tests (python/tests) and the alert rules' promtool.
            pkgs+=(python3-pytest python3-numpy python3-pil python3-mypy prometheus)
            # The order of picker's first system calls (tests/hostile_input.rs).
            pkgs+=(strace)
            ;;
        # The benchmarks' yardsticks: libjpeg-turbo's own tjbench, callgrind's instruction counts;
        # matplotlib draws their results (benches/plot.py); numpy for benches/py_client.py.
        --bench) pkgs+=(libjpeg-turbo-progs valgrind python3-matplotlib python3-numpy) ;;
        *) echo "host-deps.sh: unknown option $flag (--test, --bench)" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
