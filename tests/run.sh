#!/usr/bin/env bash
# The project's test command: installs what the tests need (Debian packages: libjpeg-turbo,
# ffmpeg, curl, chromium) when missing, then runs every unit and integration test against
# the real binary with the built-in test-pattern camera.
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/host-deps.sh --test
# Every real client is installed now: none of the tests may skip itself.
export PICKER_REQUIRE_BROWSER=1
cargo test "$@"
