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
cargo test --workspace --locked -- --test-threads "${DROVER_TEST_THREADS:-2}"
