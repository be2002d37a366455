#!/usr/bin/env bash
# Regenerates the README's screenshots (docs/preview.png, docs/offline.png) from the browser
# tests themselves, so they show what the tests check: the live page and the page during a
# camera stall. Needs chromium (packaging/host-deps.sh --test).
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/host-deps.sh --test
mkdir -p docs
PICKER_SCREENSHOTS="$PWD/docs" PICKER_REQUIRE_BROWSER=1 cargo test --test preview -- \
    chromium_shows_the_stream chromium_status_goes_offline
ls -l docs/preview.png docs/offline.png
