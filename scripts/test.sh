#!/usr/bin/env bash
# Runs every test of Drover: unit tests, the store suite on SQLite and
# PostgreSQL, and the end-to-end tests that start real server and agent
# processes. Installs what it needs; a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

use_prebuilt_tools
ensure_rust
ensure_postgres

step "building the binaries the end-to-end tests start"
cargo build --workspace --bins --locked

step "running the tests (PostgreSQL: $DROVER_TEST_PG)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets --locked -- --test-threads "${DROVER_TEST_THREADS:-2}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
