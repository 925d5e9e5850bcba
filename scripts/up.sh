#!/usr/bin/env bash
# Builds whatever image is missing or out of date, starts the stack with whichever Compose is
# installed, and waits until every service is healthy.
set -euo pipefail
cd "$(dirname "$0")/.."
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
scripts/images.sh
# Made once, kept across restarts, in a folder only the user can read: the admin password of
# /system/* (basic auth as `admin`) and the key function secrets are sealed with at rest.
secrets=${SLUICE_SECRETS_DIR:-secrets}
make_secret() { # file random-bytes what
  local f=$secrets/$1
  [ -s "$f" ] && return 0
  if [ -d "$f" ]; then
    echo "[up] $f is a folder (the engine made it when the stack was started without it); remove it and run make up again" >&2
    exit 1
  fi
  (umask 077 && mkdir -p "$secrets" && chmod 700 "$secrets" &&
    od -An -tx1 -N"$2" /dev/urandom | tr -d ' \n' >"$f.tmp" && echo >>"$f.tmp" && mv "$f.tmp" "$f")
  echo "[up] generated $3 into $f"
}
make_secret admin-password 24 "the admin password (user: admin)"
make_secret secrets-key 32 "the key function secrets are sealed with (keep a copy: without it they cannot be read)"
# The orchestrator runs as the owner of the project folder and of secrets/: the user running
# this, or 10001 when that is root (secrets/ then goes to 10001; root reads it still).
if [ "$(id -u)" = 0 ]; then
  SLUICE_UID=${SLUICE_UID:-10001} SLUICE_GID=${SLUICE_GID:-10001}
  chown -R "$SLUICE_UID:$SLUICE_GID" "$secrets"
else
  SLUICE_UID=${SLUICE_UID:-$(id -u)} SLUICE_GID=${SLUICE_GID:-$(id -g)}
fi
export SLUICE_UID SLUICE_GID
# Absolute: compose would take a bare relative name for a named volume.
SLUICE_SECRETS_DIR=$(cd "$secrets" && pwd)
export SLUICE_SECRETS_DIR
net=${SLUICE_NETWORK:-sluice}
# The function network is internal (no route out of the machine; see docker-compose.yml). One
# made by an older Sluice is not: it is remade when nothing is attached to it.
if docker network inspect "$net" >/dev/null 2>&1 && [ "$(docker network inspect -f '{{.Internal}}' "$net")" != true ]; then
  if [ "$(docker network inspect -f '{{len .Containers}}' "$net")" = 0 ]; then
    docker network rm "$net" >/dev/null
  else
    echo "[up] warning: the function network $net is not internal (functions can reach outside); make down, then make up, remakes it" >&2
  fi
fi
docker network inspect "$net" >/dev/null 2>&1 || docker network create --internal --label sluice.managed=true "$net" >/dev/null
"${COMPOSE[@]}" up -d --remove-orphans
echo "[up] waiting for every service to be healthy"
deadline=$((SECONDS + 180))
services=$("${COMPOSE[@]}" config --services)
while :; do
  bad=""
  for s in $services; do
    id=$("${COMPOSE[@]}" ps -q "$s" 2>/dev/null || true)
    st=$( [ -n "$id" ] && docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || echo missing)
    [ "$st" = healthy ] || bad="$bad $s($st)"
  done
  [ -z "$bad" ] && break
  if [ $SECONDS -ge $deadline ]; then
    echo "[up] not healthy after 180 s:$bad" >&2
    "${COMPOSE[@]}" logs --tail=30 >&2 || true
    exit 1
  fi
  sleep 1
done
echo
port=${SLUICE_GATEWAY_PORT:-8080}
echo "Sluice is up:  curl http://localhost:$port/hello"
echo "Functions:     curl -u admin:\$(cat $secrets/admin-password) http://localhost:$port/system/functions"
echo "Stop:          make down"
