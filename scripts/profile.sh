#!/usr/bin/env bash
# `make profile`: where the CPU goes on Sluice's warm path, with perf, on this machine.
#
#   1. installs perf (Debian `linux-perf`) and wrk if missing;
#   2. brings the stack up with autoscaling off (scripts/up.sh) and scales `fast` (Rust, http
#      mode: the proxies, not the function, are the bottleneck) to one replica, as
#      `make bench` row (c) does;
#   3. drives `fast` through the gateway's container address (as `make bench` does) with wrk (2 threads, 32 connections) and, in the middle of
#      the run, samples every CPU with `perf record -a -g` for $SLUICE_PROFILE_SECONDS;
#   4. writes bench-results/profile/: perf.data, the text reports (CPU by process; for the
#      gateway and the router the kernel/user split, time by crate and the hottest symbols)
#      and summary.md, which puts the per-request numbers side by side.
#
# A stack that was already running is brought back with the default settings at the end; a
# stack this script started is stopped. Env: SLUICE_PROFILE_SECONDS (10), SLUICE_GATEWAY_PORT
# (8080), SLUICE_PROFILE_OUT (bench-results/profile).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/admin.sh
PORT=${SLUICE_GATEWAY_PORT:-8080}
SECS=${SLUICE_PROFILE_SECONDS:-10}
OUT=${SLUICE_PROFILE_OUT:-bench-results/profile}
log() { printf '\033[1m[profile]\033[0m %s\n' "$*"; }
die() { printf '\033[1m[profile]\033[0m error: %s\n' "$*" >&2; exit 1; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi

need=()
command -v perf >/dev/null 2>&1 || need+=(linux-perf)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  timeout 600 $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive timeout 900 $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

was_up=""
[ -n "$("${COMPOSE[@]}" ps -q gateway 2>/dev/null || true)" ] && was_up=1
restore() {
  if [ -n "$was_up" ]; then
    log "bringing the stack back with its default settings"
    scripts/up.sh >/dev/null
  else
    log "stopping the stack this script started"
    make -s down >/dev/null 2>&1 || true
  fi
}
trap restore EXIT

log "starting the stack with autoscaling off"
SLUICE_AUTOSCALE=false scripts/up.sh >/dev/null
base="http://localhost:$PORT"
admin_curl -fsS -X POST "$base/system/scale-function/fast" -H 'Content-Type: application/json' \
  -d '{"replicas":1}' >/dev/null || die "cannot scale fast (is it in global-function-definition.yml?)"
deadline=$((SECONDS + 300))
until [ "$(admin_curl -s "$base/system/function/fast" | sed -n 's/.*"availableReplicas":\([0-9]*\).*/\1/p')" = 1 ]; do
  [ $SECONDS -lt $deadline ] || die "fast has no ready replica after 300 s (image build?)"
  sleep 0.5
done
[ "$(curl -s "$base/fast")" != "" ] || die "fast answered nothing"

rm -rf "$OUT"; mkdir -p "$OUT"
pid_of() { docker inspect -f '{{.State.Pid}}' "$("${COMPOSE[@]}" ps -q "$1")"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Every thread's voluntary + involuntary switches (the workers are threads, not the main one).
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'; }
# Every thread of every process of a container (host ids).
container_tids() {
  for p in $(docker top "$1" -eo pid | tail -n +2); do ls "/proc/$p/task" 2>/dev/null; done | paste -sd, -
}
gw=$(pid_of gateway); rt=$(pid_of router)
# Straight to the gateway's container address, like `make bench` row (c): through the published
# port every request would also cross docker-proxy (a userland copy loop), which is not Sluice.
gw_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' \
  "$("${COMPOSE[@]}" ps -q gateway)" | awk '{ print $1 }')
target="http://$gw_ip:8080/fast"
hz=$(getconf CLK_TCK)

log "warm-up (2 s)"
wrk -t2 -c32 -d2s "$target" >/dev/null
log "wrk for $((SECS + 4)) s; perf samples every CPU for the middle $SECS s"
g0=$(cpu_ticks "$gw"); r0=$(cpu_ticks "$rt"); gs0=$(switches "$gw"); rs0=$(switches "$rt")
wrk -t2 -c32 -d$((SECS + 4))s --latency "$target" >"$OUT/wrk.txt" &
wrk_pid=$!
sleep 2
perf record -a -g -F 499 -o "$OUT/perf.data" -- sleep "$SECS" 2>"$OUT/perf-record.log"
wait "$wrk_pid"
gw_tids=$(container_tids "$("${COMPOSE[@]}" ps -q gateway)")
rt_tids=$(container_tids "$("${COMPOSE[@]}" ps -q router)")
fn_tids=$(container_tids "$(docker ps -q --filter label=sluice.function=fast | head -n1)")
# The images carry the binaries without debug info but with their symbols; perf cannot open
# them inside the containers' filesystems, so give it a copy of those files (and of the
# containers' libc) at the same paths under a symbol root.
symfs="$OUT/symfs"
rm -rf "$symfs"
for svc in gateway router; do
  c=$("${COMPOSE[@]}" ps -q "$svc")
  mkdir -p "$symfs/usr/local/bin" "$symfs/usr/lib/x86_64-linux-gnu"
  docker cp -L "$c:/usr/local/bin/$svc" "$symfs/usr/local/bin/$svc" >/dev/null 2>&1 || log "no symbols for the $svc"
  [ -e "$symfs/usr/lib/x86_64-linux-gnu/libc.so.6" ] \
    || docker cp -L "$c:/usr/lib/x86_64-linux-gnu/libc.so.6" "$symfs/usr/lib/x86_64-linux-gnu/libc.so.6" >/dev/null 2>&1 || true
done
# Names each line of a `--sort pid,...` report by the process its thread belongs to.
annotate() {
  awk -v g=",$gw_tids," -v r=",$rt_tids," -v f=",$fn_tids," '{
    split($2, a, ":"); t = "," a[1] ","; who = ""
    if (index(g, t)) who = "  <- gateway"; else if (index(r, t)) who = "  <- router"; else if (index(f, t)) who = "  <- fast (the function)"
    print $0 who }'
}
g1=$(cpu_ticks "$gw"); r1=$(cpu_ticks "$rt"); gs1=$(switches "$gw"); rs1=$(switches "$rt")

# perf resolves the symbols of a process that still runs through its own mount namespace
# (where it fails for these binaries) instead of the symbol root: report once it is gone.
trap - EXIT
restore
log "analysing"
report() { perf report -i "$OUT/perf.data" --symfs "$symfs" --kallsyms /proc/kallsyms --stdio "$@" 2>/dev/null; }
report --no-children --sort comm -g none --percent-limit 0.5 >"$OUT/by-process.txt"
report --no-children --sort pid,dso -g none >"$OUT/by-thread-dso.txt"
report --no-children --sort pid,sym -g none >"$OUT/by-thread-sym.txt"
for p in gateway router; do
  t=$gw_tids; [ "$p" = router ] && t=$rt_tids
  # Its lines of the per-thread symbol report (all its threads), as percentages of its own
  # samples.
  awk -v l=",$t," '$1 ~ /%$/ {
      split($2, a, ":"); if (!index(l, "," a[1] ",")) next
      for (i = 3; i <= NF; i++) if ($i == "[k]" || $i == "[.]") break
      if (i > NF) next
      sym = $(i + 1); for (j = i + 2; j <= NF; j++) sym = sym " " $j
      pct[$i " " sym] += $1; total += $1
    }
    END { for (k in pct) printf "%7.2f%%  %s\n", 100 * pct[k] / total, k }' \
    "$OUT/by-thread-sym.txt" | sort -rn >"$OUT/$p-symbols.txt"
done

requests=$(awk '/requests in/ { print $1 }' "$OUT/wrk.txt")
rps=$(awk '/Requests\/sec/ { print $2 }' "$OUT/wrk.txt")
p99=$(awk '$1 == "99%" { print $2 }' "$OUT/wrk.txt")
per_req() { awk -v t="$1" -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }'; }
# Rolls a `--sort sym` report up by crate (the first path segment of a Rust symbol), with the
# kernel, the allocator and libc's memory routines named as such.
by_crate() {
  awk '$1 ~ /%$/ && ($2 == "[k]" || $2 == "[.]") {
      pct = $1 + 0; sym = $3
      for (i = 4; i <= NF; i++) sym = sym " " $i
      if ($2 == "[k]") area = "[k] kernel"
      else if (sym ~ /^_?mi_|^_mi/) area = "mimalloc (allocator)"
      else if (sym ~ /^__mem|^mem|^__str|^str/) area = "libc memory/string routines"
      else {
        gsub(/^[<&]+/, "", sym); gsub(/^(dyn |impl )/, "", sym)
        n = split(sym, seg, "::"); area = (n > 1 ? seg[1] : "other (" substr(sym, 1, 30) ")")
        if (area ~ /^0x/) area = "unresolved"
      }
      sum[area] += pct
    }
    END { for (a in sum) printf "%7.2f%%  %s\n", sum[a], a }' "$1" | sort -rn
}
# Share of all samples, and the kernel's part of it, for the threads in the list $1.
share() {
  awk -v l=",$1," '$1 ~ /%$/ { split($2, a, ":"); if (index(l, "," a[1] ",")) s += $1 }
    END { printf "%.1f%%", s }' "$OUT/by-thread-dso.txt"
}
kernel_share() {
  awk -v l=",$1," '$1 ~ /%$/ { split($2, a, ":"); if (index(l, "," a[1] ",")) { t += $1; if ($NF ~ /kernel/) k += $1 } }
    END { if (t > 0) printf "%.0f%%", 100 * k / t; else print "?" }' "$OUT/by-thread-dso.txt"
}
{
  echo "# Warm-path profile (\`make profile\`), $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
  echo
  echo "wrk -t2 -c32 against \`$target\` (the gateway's container address; one replica, autoscaling off): $rps requests/s, p99 $p99;"
  echo "perf record -a -g -F 499 over $SECS s in the middle of the run."
  echo
  echo "| | gateway | router |"
  echo "|---|---|---|"
  echo "| CPU per request (whole run, /proc) | $(per_req $((g1 - g0))) µs | $(per_req $((r1 - r0))) µs |"
  echo "| context switches per request | $(awk -v a=$((gs1 - gs0)) -v n="$requests" 'BEGIN { printf "%.2f", a / n }') | $(awk -v a=$((rs1 - rs0)) -v n="$requests" 'BEGIN { printf "%.2f", a / n }') |"
  echo "| share of all CPU samples | $(share "$gw_tids") | $(share "$rt_tids") |"
  echo "| of which in the kernel | $(kernel_share "$gw_tids") | $(kernel_share "$rt_tids") |"
  echo
  echo "CPU by thread and object (all samples; \`swapper\` is idle time; \`[kernel.kallsyms]\` is"
  echo "the kernel working for that thread: sockets, the bridge, softirqs):"
  echo
  echo '```'
  grep -E '^ +[0-9]' "$OUT/by-thread-dso.txt" | head -16 | annotate || true
  echo '```'
  for p in gateway router; do
    [ -f "$OUT/$p-symbols.txt" ] || continue
    echo
    echo "The $p's own samples: where they go by crate or area ([k] = kernel), then its"
    echo "hottest symbols (self time; percentages of the $p's samples):"
    echo
    echo '```'
    by_crate "$OUT/$p-symbols.txt" | head -12 || true
    echo
    grep -E '^ +[0-9]' "$OUT/$p-symbols.txt" | head -15 | cut -c1-140 || true
    echo '```'
  done
} >"$OUT/summary.md"
log "wrote $OUT/summary.md (and perf.data, the reports, wrk.txt)"
cat "$OUT/summary.md"
