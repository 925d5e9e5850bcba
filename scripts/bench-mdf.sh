#!/usr/bin/env bash
# `make bench-mdf`: the MDF's RTP relay next to rtpengine (Debian's `rtpengine-daemon`,
# userspace forwarding, sessions set up over its ng protocol: the talker publishes, each
# listener subscribes), in one run, each on the same loopback port range in turn.
# Driven by tools/relay-bench (real RTP, 160-byte payloads carrying the send time):
#   1. relay: SLUICE_BENCH_MDF_CALLS calls of 1 talker → 3 listeners, input rate ramp;
#      the highest rate with 0 loss, and latency through the relay (p50/p99);
#   2. the same for groups of 10 (1 → 9);
#   3. scale: 500 calls of 4 members, the talker at 50 packets/s each: loss and CPU;
#   4. group-call setup through the whole platform (scripts/bench-call-setup.sh: starts
#      `make up` if needed): INVITE → 200 OK for groups of 3 and 10, warm and cold.
# The relays run as shipped (the MDF with a worker per core, rtpengine with its default
# threads). Prints a table, writes bench-results/mdf.csv and the "Group-call relay" section of
# BENCHMARKS.md.
#
# Each case runs SLUICE_BENCH_MDF_ROUNDS times, the relays alternating (MDF first in odd
# rounds, rtpengine first in even ones); the report takes the median of the rounds.
#
# Env: SLUICE_BENCH_MDF_RATES ("10000 20000 30000 40000 50000 60000 80000"),
#      SLUICE_BENCH_MDF_RATES_10 ("5000 10000 15000 20000 30000"),
#      SLUICE_BENCH_MDF_STEP (5 s per rate), SLUICE_BENCH_MDF_CALLS (100),
#      SLUICE_BENCH_MDF_ROUNDS (3).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
RATES=${SLUICE_BENCH_MDF_RATES:-"10000 20000 30000 40000 50000 60000 80000"}
RATES_10=${SLUICE_BENCH_MDF_RATES_10:-"5000 10000 15000 20000 30000"}
STEP=${SLUICE_BENCH_MDF_STEP:-5}
CALLS=${SLUICE_BENCH_MDF_CALLS:-100}
ROUNDS=${SLUICE_BENCH_MDF_ROUNDS:-3}
# Below the kernel's ephemeral ports (32768-60999), where the benchmark's own sockets live.
PORT_MIN=20000 PORT_MAX=29999
log() { printf '\033[1m[bench-mdf]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1m[bench-mdf]\033[0m error: %s\n' "$*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

timeout 1200 scripts/deps.sh || die "scripts/deps.sh failed"
timeout 1800 scripts/install-packages.sh rtpengine=rtpengine-daemon || die "installing rtpengine-daemon failed"
log "building mdf and relay-bench (release)"
cargo build --release --locked -q -p mdf -p relay-bench || die "build failed"

WORK=$(mktemp -d)
RELAY_PID=""
cleanup() {
  [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

CONTROL=$(free_port) NG=$(free_port)
start_relay() { # mdf|rtpengine
  if [ "$1" = mdf ]; then
    SLUICE_MDF_CONTROL_LISTEN=127.0.0.1:$CONTROL SLUICE_MDF_PORT_MIN=$PORT_MIN SLUICE_MDF_PORT_MAX=$PORT_MAX \
      SLUICE_MDF_MAX_SESSIONS=2000 SLUICE_LOG=warn target/release/mdf >"$WORK/mdf.log" 2>&1 &
    RELAY_PID=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$CONTROL/healthz" >/dev/null && return 0; sleep 0.1; done
    die "the MDF did not start: $(tail -5 "$WORK/mdf.log")"
  else
    rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng=127.0.0.1:$NG \
      --port-min=$PORT_MIN --port-max=$PORT_MAX --foreground --log-stderr --log-level=3 \
      --delete-delay=0 >"$WORK/rtpengine.log" 2>&1 &
    RELAY_PID=$!
    for _ in $(seq 100); do
      python3 - "$NG" <<'PY' 2>/dev/null && return 0
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
s.sendto(b"1 d7:command4:pinge", ("127.0.0.1", int(sys.argv[1])))
sys.exit(0 if b"pong" in s.recv(1000) else 1)
PY
      sleep 0.1
    done
    die "rtpengine did not start: $(tail -5 "$WORK/rtpengine.log")"
  fi
}
stop_relay() { kill "$RELAY_PID" 2>/dev/null || true; wait "$RELAY_PID" 2>/dev/null || true; RELAY_PID=""; }

run() { # round target name sessions listeners rates seconds
  local round=$1 target=$2 name=$3 sessions=$4 listeners=$5 rates=$6 seconds=$7
  start_relay "$target"
  log "round $round/$ROUNDS, $target: $name ($sessions calls, 1 → $listeners, rates ${rates// /,} /s, ${seconds}s each)"
  target/release/relay-bench --target "$target" --control "http://127.0.0.1:$CONTROL" --ng "127.0.0.1:$NG" \
    --sessions "$sessions" --listeners "$listeners" --rates "${rates// /,}" --seconds "$seconds" \
    --pid "$RELAY_PID" | sed "s/^{/{\"case\":\"$name\",\"round\":$round,/" | tee -a "$WORK/results.jsonl" >&2
  stop_relay
}

# Case by case and round by round, the relays in turn and in alternating order, so that drift
# in the machine's load hits both alike.
each_round() { # case runs the same for every round
  local round targets
  for round in $(seq "$ROUNDS"); do
    targets="mdf rtpengine"
    [ $((round % 2)) = 0 ] && targets="rtpengine mdf"
    for target in $targets; do run "$round" "$target" "$@"; done
  done
}
each_round fanout3 "$CALLS" 3 "$RATES" "$STEP"
each_round fanout9 "$CALLS" 9 "$RATES_10" "$STEP"
each_round scale 500 3 25000 $((STEP * 2))

log "group-call setup on the running platform (scripts/bench-call-setup.sh)"
scripts/bench-call-setup.sh >"$WORK/setup.txt" || die "the call-setup benchmark failed"
cat "$WORK/setup.txt" >&2

CORES=$(nproc)
CSV=bench-results/mdf.csv
mkdir -p bench-results
python3 scripts/bench-mdf-report.py "$WORK/results.jsonl" "$CSV" "$WORK/setup.txt" >"$WORK/table.md"
TABLE=$(cat "$WORK/table.md")
printf '\n%s\n\n' "$TABLE"
NOTE="Both relays on the same loopback port range ($PORT_MIN–$PORT_MAX), case by case in turn, driven by \`tools/relay-bench\` on the same machine (its sender and receivers share the $CORES cores with the relay), ${STEP} s per rate after a 2 s warm-up of new sessions, $ROUNDS rounds with the order of the relays alternating. A rate passes when every listener got every packet in every round; latency and CPU are the medians of the rounds. Latency is send → receive through the relay, on loopback. CPU is the relay process's, from /proc (100 % = one core). Call setup runs on \`make up\`'s platform: sipp members answer at once, so it is the platform's own time (proxy, the three handlers, the relay)."
# The relay's changes, before → after (measured by hand with relay-bench, the two binaries
# alternated in one run; kept here because this section is rewritten on every run).
HISTORY="### The MDF, before → after

| change | measure | before | after |
|---|---|---|---|
| relay-bench warms new sessions up (2 s) before measuring (428302e) | MDF p99 at 10k pkt/s 1 → 3 (rtpengine in the same runs: 394, 218 µs) | 1427 µs (first packets pay page faults) | 565 µs (one round; see the 10k row above for the median) |
| a relay thread per core, a session wholly on one (15762ce; was one multi-thread tokio runtime) | 100 calls 1 → 3 at 20k pkt/s: CPU, p99 (two rounds) | 61.8 % / 52.2 %, 888 / 747 µs | 52.4 % / 43.0 %, 787 / 419 µs |
| (same) | at 2k pkt/s: p99 (two rounds) | 150 / 131 µs | 123 / 131 µs |"
SECTION=$(printf '<!-- bench-mdf:start -->\n## Group-call relay (`make bench-mdf`, %s, %s cores)\n\n%s\n\n%s\n\n%s\n<!-- bench-mdf:end -->' "$(date -u +%Y-%m-%d)" "$CORES" "$NOTE" "$TABLE" "$HISTORY")
python3 - "$SECTION" <<'PY'
import re, sys
section = sys.argv[1]
path = "BENCHMARKS.md"
text = open(path).read()
pattern = re.compile(r"<!-- bench-mdf:start -->.*?<!-- bench-mdf:end -->", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
log "wrote BENCHMARKS.md (Group-call relay) and $CSV"
