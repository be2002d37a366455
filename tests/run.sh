#!/usr/bin/env bash
# The project's test command: installs what the tests need (Debian packages: libjpeg-turbo,
# ffmpeg, curl, chromium; python3 with pytest, numpy and Pillow; promtool) when missing, then
# runs every unit and integration test against the real binary with the built-in test-pattern
# camera: cargo's, then the Python client's (python/tests) against the binary cargo built.
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/host-deps.sh --test
# Every real client is installed now: none of the tests may skip itself.
export PICKER_REQUIRE_BROWSER=1
cargo test "$@"
# Debian's python3 (the one python3-pytest and python3-numpy belong to), not whatever python3
# comes first on PATH. No bytecode or pytest cache written into the tree.
PICKER_BIN=${CARGO_TARGET_DIR:-$(pwd)/target}/debug/picker PYTHONDONTWRITEBYTECODE=1 \
    /usr/bin/python3 -m pytest -p no:cacheprovider python/tests
