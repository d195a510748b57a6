#!/bin/sh
# Writes the secrets deploy/docker-compose.yml mounts: random tokens and
# passwords in deploy/secrets/ (git-ignored, kept out of the build context
# by .dockerignore). Existing files are kept, so running it again changes
# nothing; delete a file to make a new one.
#
# The directory is private to you (0700). The files are world-readable
# (0644) inside it because plain Compose bind-mounts them as they are, and
# the containers run as their own users (10001, 10002), not as you.
set -eu
dir="$(cd "$(dirname "$0")/.." && pwd)/secrets"
umask 077
mkdir -p "$dir"
chmod 0700 "$dir"

random() {
  # 32 random bytes, URL-safe (they go into a postgres:// URL too).
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

put() {
  if [ ! -s "$dir/$1" ]; then
    printf '%s\n' "$2" >"$dir/$1"
    echo "wrote $dir/$1"
  fi
  chmod 0644 "$dir/$1"
}

put postgres_password "$(random)"
put database_url "postgres://drover:$(tr -d '\n' <"$dir/postgres_password")@postgres:5432/drover?sslmode=disable"
put api_token "$(random)"
put enrollment_token "$(random)"
put admin_password "$(random)"
put metrics_token "$(random)"
