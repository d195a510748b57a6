#!/bin/sh
# Entrypoint of Drover's images: reads secrets from files, then execs the
# binary with the container's arguments.
#
# Orchestrators hand secrets over as files (Compose `secrets:` in
# /run/secrets, Kubernetes secret volumes). For each VAR below, VAR_FILE
# names a file whose content (without a trailing newline) becomes VAR.
# Setting both is an error, so a stale value cannot silently win.
# drover-agent reads DROVER_TOKEN_FILE itself and is left alone; so does
# drover-server now (`--api-token-file`, …), which makes this conversion
# redundant for builds that have it — it stays for images of older ones.
set -eu

for var in DROVER_DATABASE_URL DROVER_API_TOKEN DROVER_ENROLLMENT_TOKEN \
  DROVER_ADMIN_PASSWORD DROVER_METRICS_TOKEN; do
  file_var="${var}_FILE"
  eval "file=\${$file_var:-}"
  [ -n "$file" ] || continue
  eval "value=\${$var:-}"
  if [ -n "$value" ]; then
    echo "drover-entrypoint: both $var and $file_var are set; set one" >&2
    exit 64
  fi
  if [ ! -r "$file" ]; then
    echo "drover-entrypoint: $file_var=$file is not a readable file" >&2
    exit 66
  fi
  # $(...) drops the trailing newline an editor or `echo` leaves.
  value="$(cat "$file")"
  export "$var=$value"
  unset "$file_var"
done

exec "$@"
