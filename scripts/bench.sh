#!/usr/bin/env bash
# `make bench`: the platform benchmark in one command, from a clean clone.
#   1. installs what is missing: scripts/deps.sh, plus nginx, haproxy and wrk (Debian packages),
#      without starting their system services (the benchmark runs its own nginx/haproxy
#      processes from generated configs, on free loopback ports);
#   2. builds the images (scripts/images.sh; incremental, so the numbers are this tree's);
#   3. runs `cargo run --release -p platform-bench`, which brings the compose stack up in
#      a project of its own, measures, and writes BENCHMARKS.md, bench-results/*.csv and *.png.
# Every step has a time limit: a missing or hung tool is an error, never a hang.
#
# Env: SLUICE_BENCH_* (see tools/platform-bench/src/main.rs), SLUICE_BENCH_TIMEOUT (seconds for
#      the measurements, default 1500), SLUICE_BENCH_SKIP_IMAGES=1 (use the images as they are).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
T0=$(date +%s.%N)
export SLUICE_BENCH_T0=$T0
# nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
log() { printf '\033[1m[bench]\033[0m %s\n' "$*"; }
die() { printf '\033[1m[bench]\033[0m error: %s\n' "$*" >&2; exit 1; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'; }

command -v cargo >/dev/null 2>&1 || die "cargo is required (Rust toolchain)"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is required"

# 1. Tools.
timeout 1200 scripts/deps.sh || die "scripts/deps.sh failed (or took more than 20 minutes)"
timeout 1800 scripts/install-packages.sh nginx=nginx haproxy=haproxy wrk=wrk || die "installing nginx, haproxy and wrk failed"

# 2. Images (incremental: only what changed is rebuilt).
if [ -n "${SLUICE_BENCH_SKIP_IMAGES:-}" ]; then
  log "SLUICE_BENCH_SKIP_IMAGES set: using the images as they are"
  VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
  for i in base python python-build runtime rust-build redis gateway router xds-connector stats-listener orchestrator; do
    docker image inspect "sluice/$i:$VERSION" >/dev/null 2>&1 || die "image sluice/$i:$VERSION is missing: run make images"
  done
else
  log "building images (make images)"
  timeout 3600 scripts/images.sh || die "make images failed (or took more than an hour)"
fi

# 3. The benchmark. Compile first (its own limit), then measure under SLUICE_BENCH_TIMEOUT.
log "compiling the benchmark ($(elapsed) s so far)"
timeout 1800 cargo build --release --locked -p platform-bench \
  || die "compiling the benchmark failed (or took more than 30 minutes)"

# Compose projects and proxy process groups the benchmark starts are listed here; if it is
# killed, they are removed (a normal exit has removed them already).
projects=$(mktemp)
pids=$(mktemp)
export SLUICE_STACK_PROJECTS_FILE=$projects SLUICE_BENCH_PIDS_FILE=$pids
cleanup() {
  while read -r pid; do
    # Only our own proxies: the group leader must still be nginx or haproxy.
    case $(cat "/proc/$pid/comm" 2>/dev/null) in
      nginx|haproxy)
        kill -TERM -- "-$pid" 2>/dev/null || true; sleep 1; kill -KILL -- "-$pid" 2>/dev/null || true ;;
    esac
  done <"$pids"
  rm -f "$pids"
  while read -r p; do
    [ -n "$p" ] || continue
    ids=$( { timeout 60 docker ps -aq --filter "label=com.docker.compose.project=$p"
             timeout 60 docker ps -aq --filter "label=sluice.instance=$p"; } 2>/dev/null | sort -u)
    if [ -n "$ids" ]; then
      log "removing what the interrupted run left: project $p"
      # shellcheck disable=SC2086
      timeout 120 docker rm -f $ids >/dev/null 2>&1 || true
    fi
    timeout 60 docker volume ls -q --filter "label=com.docker.compose.project=$p" 2>/dev/null \
      | xargs -r timeout 60 docker volume rm >/dev/null 2>&1 || true
    timeout 60 docker network rm "$p-net" >/dev/null 2>&1 || true
  done <"$projects"
  rm -f "$projects"
}
trap cleanup EXIT

log "measuring ($(elapsed) s so far); progress below"
status=0
timeout -k 30 "${SLUICE_BENCH_TIMEOUT:-1500}" target/release/platform-bench || status=$?
if [ $status -eq 124 ] || [ $status -eq 137 ]; then
  die "the benchmark did not finish within ${SLUICE_BENCH_TIMEOUT:-1500} s (killed)"
fi
[ $status -eq 0 ] || die "the benchmark failed (exit $status); see the messages above and BENCHMARKS.md"
OUT=${SLUICE_BENCH_OUT:-$ROOT}
log "done in $(elapsed) s: $OUT/BENCHMARKS.md, $OUT/bench-results/"
