#!/usr/bin/env bash
# Sets everything up and runs Drover's main job on this machine: the server
# on embedded SQLite, one local agent (examples/agent.toml) and a demo stream
# of tasks with mixed priorities. Ctrl-C stops all of it.
#
# Environment: DROVER_LISTEN (default 127.0.0.1:8080), DROVER_DATA_DIR
# (default ./drover-data), DEMO_RATE (tasks per second, default 5),
# DEMO_SECONDS (stop after this many seconds; default: run until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

use_prebuilt_tools
ensure_rust
need curl "Install curl (Debian: apt-get install curl)."

step "setting up the front-end toolchain"
# shellcheck source=/dev/null
source scripts/setup-frontend.sh

step "building the dashboard, then the server with it inside (release)"
# Two steps: in one, cargo-leptos builds both at once, and the server's
# build script (which embeds target/site) can run before the site exists.
cargo leptos build --release --split --frontend-only
cargo leptos build --release --split --server-only --bin-features embed-site
step "building the agent and the drover CLI (release)"
cargo build --release --locked -p drover-agent -p drover-cli

listen="${DROVER_LISTEN:-127.0.0.1:8080}"
data_dir="${DROVER_DATA_DIR:-drover-data}"
mkdir -p "$data_dir"
pids=()
cleanup() {
  trap - EXIT INT TERM
  step "stopping"
  # The agent first, so it can finish its work and deregister; then the
  # server. Both run in sessions of their own (setsid), so Ctrl-C reaches
  # only this script and this order holds.
  local i
  for (( i=${#pids[@]}-1; i>=0; i-- )); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT
# A signal stops the script too, not only its processes.
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# The dashboard's admin password: chosen on the first start, kept in the data
# directory (mode 0600) so every later demo run can print it.
if [ ! -s "$data_dir/admin-password" ]; then
  if [ -e "$data_dir/drover.db" ]; then
    step "note: $data_dir has a database from before; the admin password is the one chosen then"
  fi
  (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$data_dir/admin-password")
fi
admin_password="$(cat "$data_dir/admin-password")"

step "starting drover-server on http://$listen (SQLite in $data_dir)"
DROVER_ADMIN_PASSWORD="$admin_password" DROVER_LISTEN="$listen" DROVER_DATA_DIR="$data_dir" \
  DROVER_TASK_TYPES="${DROVER_TASK_TYPES:-echo,sleep}" \
  setsid ./target/release/drover-server &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs "http://$listen/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://$listen/healthz" >/dev/null || die "drover-server did not start; see the log above"
api_token="$(cat "$data_dir/api-token")"

step "starting a local agent (examples/agent.toml)"
setsid ./target/release/drover-agent --server "http://$listen" --token-file "$data_dir/enrollment-token" \
  --config examples/agent.toml --name "demo-agent" --state-dir "$data_dir/agent" &
pids+=($!)

step "uploading the example workflows and starting two runs"
for f in examples/workflows/*.yaml; do
  curl -fs -H "Authorization: Bearer $api_token" --data-binary "@$f" "http://$listen/api/v1/workflows" >/dev/null \
    || die "could not upload $f"
done
run_ids=""
for body in '{"workflow":"nightly-etl","inputs":{"date":"2026-11-24"}}' \
            '{"workflow":"purchase-approval","inputs":{"item":"laptop","amount":2500}}'; do
  id=$(curl -fs -H "Authorization: Bearer $api_token" -d "$body" "http://$listen/api/v1/runs" | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2)
  run_ids="$run_ids $id"
done

cat <<INFO

  Drover is running.
    dashboard   http://$listen/   sign in as admin / $admin_password
                (password also in $data_dir/admin-password; approve the purchase as
                 another user: ./target/release/drover-server user add ann --role approver --password ...)
    API token   $api_token   (also in $data_dir/api-token)
    try         curl -s -H "Authorization: Bearer $api_token" http://$listen/api/v1/agents
    workflows   runs$run_ids started (nightly ETL; a purchase waiting for an approver):
                DROVER_SERVER=http://$listen ./target/release/drover run list
                DROVER_SERVER=http://$listen ./target/release/drover run watch <id>

  Submitting a demo stream of tasks; Ctrl-C stops everything.

INFO

rate="${DEMO_RATE:-5}"
end=$(( $(date +%s) + ${DEMO_SECONDS:-315360000} ))
n=0
while [ "$(date +%s)" -lt "$end" ]; do
  batch=""
  for _ in $(seq 1 "$rate"); do
    n=$((n + 1))
    u=$((RANDOM % 11)); t=$((RANDOM % 11)); i=$((RANDOM % 11))
    if [ $((n % 3)) -eq 0 ]; then
      task="{\"task_type\":\"sleep\",\"payload\":{\"ms\":$((200 + RANDOM % 800))},\"urgency\":$u,\"time_sensitivity\":$t,\"importance\":$i}"
    else
      task="{\"task_type\":\"echo\",\"payload\":{\"order\":$n},\"urgency\":$u,\"time_sensitivity\":$t,\"importance\":$i}"
    fi
    batch="${batch:+$batch,}$task"
  done
  curl -fs -H "Authorization: Bearer $api_token" "http://$listen/api/v1/tasks" \
    -d "{\"tasks\":[$batch]}" >/dev/null || echo "submit failed (is an agent registered yet?)" >&2
  stats=$(curl -fs -H "Authorization: Bearer $api_token" "http://$listen/api/v1/stats" || true)
  echo "submitted $n  $stats"
  sleep 1
done
