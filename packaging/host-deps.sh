#!/usr/bin/env bash
# Installs the Debian packages picker needs on this machine: to build it (libjpeg-turbo,
# pkg-config); with --test, the real clients the tests drive (ffmpeg/ffprobe, curl, headless
# Chromium, Python readers of the stream with requests, aiohttp and OpenCV, iproute2's ip and
# tc for links shaped in network namespaces); with --bench, what the benchmarks compare
# against (tjbench, valgrind). Installs only what is missing, so it is quick when all is there.
set -euo pipefail

pkgs=(libturbojpeg0-dev pkg-config)
for flag in "$@"; do
    case $flag in
        --test) pkgs+=(ffmpeg curl chromium python3-requests python3-aiohttp python3-opencv python3-numpy iproute2) ;;
        # The benchmarks' yardsticks: libjpeg-turbo's own tjbench, callgrind's instruction counts.
        --bench) pkgs+=(libjpeg-turbo-progs valgrind) ;;
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
