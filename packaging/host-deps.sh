#!/usr/bin/env bash
# Installs the Debian packages picker needs on this machine: to build it (libjpeg-turbo,
# pkg-config) and, with --test, the real clients the tests drive (ffmpeg/ffprobe, curl,
# headless Chromium). Installs only what is missing, so it is quick when all is there.
set -euo pipefail

pkgs=(libturbojpeg0-dev pkg-config)
if [[ "${1:-}" == "--test" ]]; then
    pkgs+=(ffmpeg curl chromium)
fi

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
