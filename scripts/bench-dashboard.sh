#!/usr/bin/env bash
# The dashboard's figures for docs/BENCHMARKS.md: the release wasm's size
# (main module, all files, and what a first visit to the run page loads),
# first render and time to interactive of the run page of a 200-step
# workflow, and the delay from a change (an API call) to the screen.
# Builds the release server and wasm with cargo-leptos, then runs
# end2end/tests/perf.spec.ts in Chromium against them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

use_prebuilt_tools
ensure_rust
ensure_chromium
source scripts/setup-frontend.sh
ensure_playwright

step "building the release server and wasm"
cargo leptos build --release --split --cargo-locked
cargo build --release --locked -p drover-agent

wasm=target/site/pkg/drover.wasm
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "main wasm: $raw bytes ($(( raw / 1024 )) KiB), gzip -9: $gz bytes ($(( gz / 1024 )) KiB)"
files=(target/site/pkg/*.wasm)
echo "all wasm files: ${#files[@]}, $(cat "${files[@]}" | wc -c) bytes (what a page loads: run_page_wasm below)"

step "measuring in Chromium"
(cd end2end && DROVER_E2E_PERF=1 DROVER_BIN_DIR="$PWD/../target/release" CHROMIUM="$(command -v chromium)" \
  npx playwright test tests/perf.spec.ts --reporter=line) | grep -E "DASHBOARD-FIGURES|passed|failed"
