#!/usr/bin/env bash
# Runs every test of Drover: unit tests, the store suite on SQLite and
# PostgreSQL, the end-to-end tests that start real server and agent
# processes, and the dashboard's Playwright tests in Debian's Chromium.
# Installs what it needs; a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
SERVER_FEATURES=drover-server/embed-site,drover-server/otlp

use_prebuilt_tools
ensure_rust
ensure_postgres
ensure_chromium
ensure_deploy_tools
ensure_cargo_deb
ensure_schemathesis

step "setting up the front-end toolchain"
source scripts/setup-frontend.sh

# The dashboard first: the server is built with it inside (feature
# `embed-site`), as releases are, so every test runs that binary.
step "building the dashboard (wasm) the browser tests load"
cargo leptos build --frontend-only --split --cargo-locked
step "building the binaries the end-to-end tests start"
cargo build --workspace --bins --locked --features "$SERVER_FEATURES"

step "installing Playwright for the browser tests"
ensure_playwright

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
step "running the Rust tests (PostgreSQL: $DROVER_TEST_PG)"
cargo test --workspace --all-targets --locked --features "$SERVER_FEATURES" --no-fail-fast -- --test-threads "${DROVER_TEST_THREADS:-2}" 2>&1 | tee "$log"
rust_status=${PIPESTATUS[0]}
step "running the dashboard tests in Chromium (screenshots: end2end/test-results)"
(cd end2end && CHROMIUM="$(command -v chromium)" npx playwright test) 2>&1 | tee -a "$log"
e2e_status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite.
awk '/^test result:/ { p += $4; f += $6 }
     /^ +[0-9]+ passed/ { p += $1 }
     /^ +[0-9]+ failed/ { f += $1 }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
[ "$rust_status" -eq 0 ] && [ "$e2e_status" -eq 0 ]
