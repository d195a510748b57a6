# Sourced by demo.sh (and usable alone: `source scripts/setup-frontend.sh`):
# makes sure the front-end toolchain is on PATH, installing only what is
# missing. The versions are pinned (see ../shared/TOOLCHAIN.md for why):
#   - the wasm32-unknown-unknown Rust target
#   - cargo-leptos 0.3.10
#   - wasm-bindgen CLI 0.2.130 (must equal the wasm-bindgen in Cargo.lock)
#   - wasm-opt from the npm package binaryen@132 (Debian's is too old)
# shellcheck shell=bash

_drover_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$_drover_root/scripts/lib.sh"
use_prebuilt_tools

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  step "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown || die "could not add the wasm32 target (rustup target add wasm32-unknown-unknown)"
fi

if ! cargo leptos --version 2>/dev/null | grep -q "0.3.10"; then
  step "installing cargo-leptos 0.3.10 (once; ~15 minutes on 2 cores)"
  cargo install cargo-leptos --version 0.3.10 --locked || die "cargo install cargo-leptos failed"
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q "0.2.130"; then
  step "installing wasm-bindgen-cli 0.2.130 (once; ~3 minutes)"
  # Not --locked: its lock file names a crate version the registry no longer has.
  cargo install wasm-bindgen-cli --version 0.2.130 || die "cargo install wasm-bindgen-cli failed"
fi

_drover_tools="$_drover_root/.tools"
if [ ! -x "$_drover_tools/node_modules/.bin/wasm-opt" ]; then
  need npm "Install Node.js and npm (Debian: apt-get install nodejs npm); they provide wasm-opt."
  step "installing wasm-opt (npm binaryen@132)"
  mkdir -p "$_drover_tools"
  npm install --prefix "$_drover_tools" --no-audit --no-fund --silent binaryen@132 >/dev/null \
    || die "npm install binaryen@132 failed"
fi
export PATH="$_drover_tools/node_modules/.bin:$PATH"
unset _drover_root _drover_tools
