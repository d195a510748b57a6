# Shared helpers of Drover's scripts. Source it; it does nothing by itself.
# Every ensure_* function is idempotent: it checks first and installs only
# what is missing, and stops with a clear message when it cannot.

die() {
  echo "error: $*" >&2
  exit 1
}

step() {
  echo "==> $*" >&2
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed. $2"
}

# Prebuilt tools shipped beside the project (cargo-leptos, wasm-bindgen) go
# first on PATH when present, saving ~20 minutes of cargo installs.
use_prebuilt_tools() {
  local shared
  shared="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." 2>/dev/null && pwd)/shared/bin"
  if [ -d "$shared" ]; then
    export PATH="$shared:$PATH"
  fi
  export PATH="$HOME/.cargo/bin:$PATH"
}

ensure_rust() {
  need cargo "Install Rust with rustup (https://rustup.rs), then run this again."
}

# PostgreSQL on 127.0.0.1:5432 (trust auth) for the tests; DROVER_TEST_PG
# points elsewhere. Starts a local cluster that is installed but down.
ensure_postgres() {
  export DROVER_TEST_PG="${DROVER_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
  need psql "Install the PostgreSQL client and server (Debian: apt-get install postgresql)."
  if psql "$DROVER_TEST_PG" -qAtc 'select 1' >/dev/null 2>&1; then
    return 0
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    local version
    for version in $(ls /etc/postgresql 2>/dev/null); do
      step "starting PostgreSQL $version"
      pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
    done
    for _ in $(seq 1 30); do
      psql "$DROVER_TEST_PG" -qAtc 'select 1' >/dev/null 2>&1 && return 0
      sleep 0.5
    done
  fi
  die "PostgreSQL is not reachable at $DROVER_TEST_PG. The tests need a server that accepts that URL
(trust auth on 127.0.0.1:5432 by default). Start one, or set DROVER_TEST_PG to a URL of a role
that may CREATE DATABASE."
}

# Debian's Chromium for the dashboard tests (CHROMIUM points elsewhere).
ensure_chromium() {
  if [ -n "${CHROMIUM:-}" ] && [ -x "$CHROMIUM" ]; then
    return 0
  fi
  if command -v chromium >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing Chromium (Debian package, once)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
      || die "could not install chromium (apt-get install chromium)"
    return 0
  fi
  die "Chromium is needed for the dashboard tests: apt-get install chromium (or set CHROMIUM to a Chromium binary)."
}

# @playwright/test in end2end/, as pinned by its package-lock.json.
ensure_playwright() {
  need npm "Install Node.js and npm (Debian: apt-get install nodejs npm)."
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [ ! -x "$root/end2end/node_modules/.bin/playwright" ] \
    || [ "$root/end2end/package-lock.json" -nt "$root/end2end/node_modules/.package-lock.json" ]; then
    (cd "$root/end2end" && npm ci --no-audit --no-fund --silent) || die "npm ci in end2end/ failed"
  fi
}
