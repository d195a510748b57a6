#!/usr/bin/env bash
# The dashboard's figures for docs/BENCHMARKS.md: the release wasm's size
# (main module, all files, and what a first visit to the run page loads),
# first render and time to interactive of the run page of a 200-step
# workflow, the requests and bytes of a cold load of /tasks (200 tasks, as
# sent: compressed), and the delay from a change (an API call) to the screen.
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
# The release a user runs: the dashboard compiled into the server, brotli
# (quality 11) and gzip made at build time. The site first: the server's
# build script embeds it.
cargo leptos build --release --split --frontend-only --cargo-locked
cargo build --release --locked -p drover-server --features embed-site -p drover-agent

wasm=target/site/pkg/drover.wasm
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "main wasm: $raw bytes ($(( raw / 1024 )) KiB), gzip -9: $gz bytes ($(( gz / 1024 )) KiB)"
files=(target/site/pkg/*.wasm)
echo "all wasm files: ${#files[@]}, $(cat "${files[@]}" | wc -c) bytes (what a page loads: run_page_wasm below)"

step "measuring in Chromium"
(cd end2end && DROVER_E2E_PERF=1 DROVER_E2E_EMBEDDED_SITE=1 DROVER_BIN_DIR="$PWD/../target/release" CHROMIUM="$(command -v chromium)" \
  npx playwright test tests/perf.spec.ts --reporter=line) | grep -E "DASHBOARD-FIGURES|DASHBOARD-LIST-FIGURES|passed|failed"
figures="${DROVER_E2E_DATA:-target/e2e-data}/dashboard-figures.json"
node -e '
  const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).cold_tasks;
  const kb = (n) => (n / 1024).toFixed(0) + " KiB";
  console.log(`cold ${c.path}: ${c.requests} requests, ${c.bytes} bytes transferred (${kb(c.bytes)}), HTML ${c.html_bytes} bytes (${kb(c.html_bytes)}); target: at most 400 KB`);
  console.log(`  uncompressed, the same load: ${c.decoded_bytes} bytes of bodies (${kb(c.decoded_bytes)}), HTML ${c.html_decoded_bytes} bytes (${kb(c.html_decoded_bytes)})`);
  for (const [kind, k] of Object.entries(c.by_kind)) console.log(`  ${kind}: ${k.requests} requests, ${k.bytes} bytes`);
' "$figures"
