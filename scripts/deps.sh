#!/usr/bin/env bash
# Installs what a fresh machine lacks to build and test Sluice (Debian/Ubuntu, apt).
# Idempotent and quiet when everything is present.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
need=()
check() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
check cmake cmake                      # pingora's C dependencies
check protoc protobuf-compiler         # xDS protobuf (tonic-build)
check redis-server redis-server        # tests start their own redis-server on a free port
check debootstrap debootstrap          # the base image is made from Debian packages
check pkg-config pkg-config
check curl curl
check objcopy binutils                   # strips debug info from binaries copied into images
check python3 python3                  # faas-runtime tests run the Python worker on the host
check sipp sip-tester                  # SIP tests drive the sip-proxy with real SIP clients
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)   # text in the load-test charts
if [ ${#need[@]} -gt 0 ]; then
  echo "[deps] installing: ${need[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
command -v docker >/dev/null || { echo "[deps] docker is required (Docker Engine + compose)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "[deps] the Docker engine is not reachable" >&2; exit 1; }
