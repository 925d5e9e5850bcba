#!/usr/bin/env bash
# Group-call setup time, part of `make bench-mdf`: time from the originator's INVITE to its
# 200 OK (sipp's response-time measure), on the platform `make up` runs (started here if it
# is not up), for groups of 3 and of 10 members, with warm handlers and from cold (the group,
# media and session handlers all at zero replicas before each cold call).
#   * members: one sipp UAS per member (sip-proxy/tests/sipp/mcptt-member-answers.xml),
#     registered with sip-proxy/tests/sipp/mcptt-register.xml;
#   * originator: sip-proxy/tests/sipp/mcptt-call.xml (multipart INVITE, ACK, BYE).
# Prints one "case p50_ms p99_ms calls" line per case on stdout.
#
# Env: SLUICE_BENCH_CALLS (40 warm calls per group size), SLUICE_BENCH_COLD_CALLS (5).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/admin.sh
ROOT=$(pwd)
CALLS=${SLUICE_BENCH_CALLS:-40}
COLD=${SLUICE_BENCH_COLD_CALLS:-5}
GATEWAY=http://127.0.0.1:${SLUICE_GATEWAY_PORT:-8080}
SIP=127.0.0.1:5060
SCEN=$ROOT/sip-proxy/tests/sipp
log() { printf '\033[1m[bench-call-setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1m[bench-call-setup]\033[0m error: %s\n' "$*" >&2; exit 1; }

timeout 3600 scripts/up.sh >&2 || die "make up failed"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Members of a group of `size`: `size - 1` UAS (SIP ports from `base`), registered.
start_members() { # group size base
  local group=$1 size=$2 base=$3 members="\"sip:caller-$1@example.org\""
  for i in $(seq 1 $((size - 1))); do
    local user="$group-m$i" port=$((base + i)) rtp=$((41000 + 2 * (base - 5100 + i)))
    (cd "$WORK" && exec sipp -sf "$SCEN/mcptt-member-answers.xml" -i 127.0.0.1 -p "$port" \
      -key rtp_port "$rtp" -nostdin -timeout 3600s >/dev/null 2>&1) &
    PIDS+=($!)
    (cd "$WORK" && timeout 60 sipp -sf "$SCEN/mcptt-register.xml" -s "$user" -key contact_port "$port" \
      -i 127.0.0.1 -p $((base + 50 + i)) -m 1 -nostdin "$SIP" >/dev/null 2>&1) \
      || die "registering $user failed"
    members="$members, \"sip:$user@example.org\""
  done
  curl -sf -X PUT "$GATEWAY/function/mcptt-group/groups/$group" -d "{\"members\": [$members]}" >/dev/null \
    || die "creating group $group failed"
}

# `n` calls from caller-<group> to the group, one at a time; prints the response times (ms).
calls() { # group n rate
  local group=$1 n=$2 rate=$3 dir="$WORK/$1-$RANDOM"
  mkdir -p "$dir"
  (cd "$dir" && timeout 600 sipp -sf "$SCEN/mcptt-call.xml" -s "$group" -key user "caller-$group" \
    -key rtp_port 40990 -d 200 -i 127.0.0.1 -p 5099 -m "$n" -r "$rate" -l 1 -nostdin \
    -trace_rtt -rtt_freq 1 "$SIP" >/dev/null 2>&1) || log "sipp reported failed calls ($group)"
  cat "$dir"/*_rtt.csv 2>/dev/null | awk -F';' 'NR > 1 && $2 != "" { print $2 }'
}

to_zero() {
  for f in mcptt-session mcptt-group mcptt-media; do
    admin_curl -sf -X POST "$GATEWAY/system/scale-function/$f" -d '{"replicas": 0}' >/dev/null || true
  done
  for _ in $(seq 200); do
    local up
    up=$(admin_curl -sf "$GATEWAY/system/functions" | python3 -c '
import json, sys
print(sum(f.get("availableReplicas", 0) for f in json.load(sys.stdin) if f["name"].startswith("mcptt-")))')
    [ "$up" = 0 ] && return 0
    sleep 0.2
  done
  die "the group-call handlers did not scale to zero"
}

stats() { # case file
  python3 - "$1" "$2" <<'PY'
import sys
name, path = sys.argv[1], sys.argv[2]
v = sorted(float(x) for x in open(path).read().split())
if not v:
    print(f"{name} - - 0"); sys.exit()
q = lambda p: v[min(len(v) - 1, round((len(v) - 1) * p))]
print(f"{name} {q(0.5):.0f} {q(0.99):.0f} {len(v)}")
PY
}

# A stack just (re)built is healthy before the orchestrator has built the function images:
# the handlers' first calls would wait on a build, which is not what is measured here.
log "waiting for the handlers' images"
for _ in $(seq 900); do
  pending=$(python3 - "$GATEWAY" "$SLUICE_ADMIN_PASSWORD_FILE" <<'PY' 2>/dev/null || echo unknown
import base64, json, sys, urllib.request
names = ["sip-register", "mcptt-group", "mcptt-media", "mcptt-session"]
auth = "Basic " + base64.b64encode(b"admin:" + open(sys.argv[2], "rb").readline().strip()).decode()
get = lambda n: urllib.request.urlopen(urllib.request.Request(f"{sys.argv[1]}/system/function/{n}", headers={"Authorization": auth}))
state = lambda n: json.load(get(n)).get("build", {}).get("state")
print(" ".join(n for n in names if state(n) != "ready"))
PY
)
  [ -z "$pending" ] && break
  sleep 1
done
[ -z "$pending" ] || die "handler images not built after 15 min: $pending"

log "starting members (groups of 3 and 10)"
start_members bench3 3 5100
start_members bench10 10 5120
for g in bench3 bench10; do
  size=${g#bench}
  log "$g: warm-up, then $CALLS warm calls"
  calls "$g" 3 2 >/dev/null
  calls "$g" "$CALLS" 4 >"$WORK/warm-$g"
  stats "warm-$size" "$WORK/warm-$g"
  log "$g: $COLD cold calls (every handler at zero before each)"
  : >"$WORK/cold-$g"
  for _ in $(seq "$COLD"); do
    to_zero
    calls "$g" 1 1 >>"$WORK/cold-$g"
  done
  stats "cold-$size" "$WORK/cold-$g"
done
