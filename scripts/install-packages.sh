#!/usr/bin/env bash
# Installs Debian packages that benchmarks need (nginx, haproxy, wrk, kamailio, ...) when the
# command each provides is missing, without starting their system services: the benchmarks
# run their own processes from generated configs, on free loopback ports.
#   scripts/install-packages.sh <command>=<package> ...
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
log() { printf '\033[1m[packages]\033[0m %s\n' "$*"; }
die() { printf '\033[1m[packages]\033[0m error: %s\n' "$*" >&2; exit 1; }
need=()
for pair in "$@"; do
  command -v "${pair%%=*}" >/dev/null 2>&1 || need+=("${pair#*=}")
done
[ ${#need[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null 2>&1 || die "missing ${need[*]} and no apt-get to install them"
log "installing ${need[*]} (Debian packages; their system services are not started)"
# invoke-rc.d / deb-systemd-invoke ask policy-rc.d before starting a service: 101 = never.
policy=/usr/sbin/policy-rc.d created_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# Temporary (scripts/install-packages.sh): no service starts during this install.\nexit 101\n' \
    | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  created_policy=1
fi
status=0
{ timeout 600 $SUDO apt-get update -q >/dev/null \
    && DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; } \
  || status=$?
[ -n "$created_policy" ] && $SUDO rm -f "$policy"
[ $status -eq 0 ] || die "installing ${need[*]} failed (exit $status)"
# Not started now, and not at the next boot either.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  for s in "${need[@]}"; do
    timeout 60 $SUDO systemctl disable --now "$s" >/dev/null 2>&1 || true
  done
fi
for pair in "$@"; do
  command -v "${pair%%=*}" >/dev/null 2>&1 || die "${pair%%=*} is still missing after the install"
done
