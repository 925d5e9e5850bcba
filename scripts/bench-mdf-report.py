#!/usr/bin/env python3
"""The tables of `make bench-mdf` (scripts/bench-mdf.sh): reads relay-bench's JSON lines and
bench-call-setup.sh's output, writes the CSV, prints the Markdown for BENCHMARKS.md.
Usage: bench-mdf-report.py RESULTS.jsonl OUT.csv SETUP.txt"""
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
setup = {}
for line in open(sys.argv[3]):
    parts = line.split()
    if len(parts) == 4:
        setup[parts[0]] = parts[1:]
cols = ["case", "target", "sessions", "listeners", "rate_in", "achieved_in", "sent", "expected",
        "received", "loss", "out_pps", "p50_us", "p99_us", "cpu_pct"]
with open(sys.argv[2], "w") as f:
    f.write(",".join(cols) + "\n")
    for r in rows:
        f.write(",".join(str(r.get(c, "")) for c in cols) + "\n")
def best(case, target):
    ok = [r for r in rows if r["case"] == case and r["target"] == target and r["loss"] == 0]
    return max(ok, key=lambda r: r["rate_in"]) if ok else None
def at(case, target, rate):
    return next((r for r in rows if r["case"] == case and r["target"] == target and r["rate_in"] == rate), None)
names = {"mdf": "Sluice MDF", "rtpengine": "rtpengine 10.5 (userspace)"}
print("| relay | fan-out | highest input rate with 0 loss (pkt/s) | output at that rate (pkt/s) | p50 / p99 there (µs) | p50 / p99 at the lowest rate (µs) | CPU there |")
print("|---|---|---|---|---|---|---|")
for case, label in [("fanout3", "1 → 3"), ("fanout9", "1 → 9")]:
    lowest = min((r["rate_in"] for r in rows if r["case"] == case), default=0)
    for t in ["mdf", "rtpengine"]:
        b, low = best(case, t), at(case, t, lowest)
        lo = f"{low['p50_us']} / {low['p99_us']}" if low else "-"
        if b:
            print(f"| {names[t]} | {label} | {b['rate_in']} | {b['out_pps']:.0f} | {b['p50_us']} / {b['p99_us']} | {lo} | {b['cpu_pct']} % |")
        else:
            print(f"| {names[t]} | {label} | none passed | - | - | {lo} | - |")
print()
print("Side by side at every rate (p50 / p99 µs, relay CPU; a rate with loss shows the lost packets):")
print()
print("| fan-out | input rate (pkt/s) | Sluice MDF | rtpengine |")
print("|---|---|---|---|")
def cell(r):
    if r is None:
        return "-"
    if r["loss"]:
        return f"lost {r['loss']}"
    return f"{r['p50_us']} / {r['p99_us']}, {r['cpu_pct']} %"
for case, label in [("fanout3", "1 → 3"), ("fanout9", "1 → 9")]:
    for rate in sorted({r["rate_in"] for r in rows if r["case"] == case}):
        print(f"| {label} | {rate} | {cell(at(case, 'mdf', rate))} | {cell(at(case, 'rtpengine', rate))} |")
print()
print("| relay | scale: 500 calls × 4 members, 50 pkt/s per talker | loss | p50 / p99 (µs) | relay CPU |")
print("|---|---|---|---|---|")
for t in ["mdf", "rtpengine"]:
    r = next((r for r in rows if r["case"] == "scale" and r["target"] == t), None)
    if r:
        pct = 100.0 * r["loss"] / r["expected"] if r["expected"] else 0
        print(f"| {names[t]} | {r['achieved_in']:.0f} in → {r['out_pps']:.0f} out pkt/s | {r['loss']} ({pct:.3f} %) | {r['p50_us']} / {r['p99_us']} | {r['cpu_pct']} % |")
ratio = []
for case in ["fanout3", "fanout9"]:
    m, e = best(case, "mdf"), best(case, "rtpengine")
    if m and e:
        ratio.append(f"{case}: {m['rate_in'] / e['rate_in']:.2f}×")
print()
print("MDF ÷ rtpengine, highest 0-loss rate: " + (", ".join(ratio) if ratio else "n/a") + ".")
print()
print("| call setup (INVITE → 200 OK at the originator, sipp) | p50 (ms) | p99 (ms) | calls |")
print("|---|---|---|---|")
for key, label in [("warm-3", "group of 3, warm handlers"), ("warm-10", "group of 10, warm handlers"),
                   ("cold-3", "group of 3, every handler from zero"), ("cold-10", "group of 10, every handler from zero")]:
    p50, p99, n = setup.get(key, ["-", "-", "0"])
    print(f"| {label} | {p50} | {p99} | {n} |")
