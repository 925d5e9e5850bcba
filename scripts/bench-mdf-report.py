#!/usr/bin/env python3
"""The tables of `make bench-mdf` (scripts/bench-mdf.sh): reads relay-bench's JSON lines (one
per relay, case, round and rate) and bench-call-setup.sh's output, writes the CSV, prints the
Markdown for BENCHMARKS.md.

Every case runs in several rounds, the two relays alternating. A rate passes only when it lost
nothing in every round; latency, output and CPU are the median of the rounds, and the side by
side table gives the spread of p99 over the rounds, since one noisy second on a shared machine
moves a single round's tail a lot.
Usage: bench-mdf-report.py RESULTS.jsonl OUT.csv SETUP.txt"""
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
setup = {}
for line in open(sys.argv[3]):
    parts = line.split()
    if len(parts) == 4:
        setup[parts[0]] = parts[1:]
cols = ["case", "round", "target", "sessions", "listeners", "rate_in", "achieved_in", "sent",
        "expected", "received", "loss", "out_pps", "p50_us", "p99_us", "cpu_pct"]
with open(sys.argv[2], "w") as f:
    f.write(",".join(cols) + "\n")
    for r in rows:
        f.write(",".join(str(r.get(c, "")) for c in cols) + "\n")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def at(case, target, rate):
    """The rounds of one relay at one rate, folded: loss summed, the rest as medians."""
    rounds = [r for r in rows if r["case"] == case and r["target"] == target and r["rate_in"] == rate]
    if not rounds:
        return None
    p99s = sorted(r["p99_us"] for r in rounds)
    return {
        "rate_in": rate,
        "rounds": len(rounds),
        "lossy_rounds": sum(1 for r in rounds if r["loss"]),
        "loss": sum(r["loss"] for r in rounds),
        "expected": sum(r["expected"] for r in rounds),
        "achieved_in": median([r["achieved_in"] for r in rounds]),
        "out_pps": median([r["out_pps"] for r in rounds]),
        "p50_us": round(median([r["p50_us"] for r in rounds])),
        "p99_us": round(median(p99s)),
        "p99_min": p99s[0],
        "p99_max": p99s[-1],
        "cpu_pct": median([r["cpu_pct"] for r in rounds]),
    }


def rates(case):
    return sorted({r["rate_in"] for r in rows if r["case"] == case})


def best(case, target):
    ok = [a for a in (at(case, target, rate) for rate in rates(case)) if a and a["loss"] == 0]
    return max(ok, key=lambda a: a["rate_in"]) if ok else None


def cpu(a):
    return f"{a['cpu_pct']:.1f} %" if a and a["cpu_pct"] is not None else "-"


names = {"mdf": "Sluice MDF", "rtpengine": "rtpengine 10.5 (userspace)"}
fanouts = [("fanout3", "1 → 3"), ("fanout9", "1 → 9")]
n_rounds = max((r.get("round", 1) for r in rows), default=1)
print(f"Medians of {n_rounds} rounds; a rate counts as 0 loss only when no round lost a packet.")
print()
print("| relay | fan-out | highest input rate with 0 loss (pkt/s) | output at that rate (pkt/s) | p50 / p99 there (µs) | p50 / p99 at the lowest rate (µs) | CPU there |")
print("|---|---|---|---|---|---|---|")
for case, label in fanouts:
    lowest = min(rates(case), default=0)
    for t in ["mdf", "rtpengine"]:
        b, low = best(case, t), at(case, t, lowest)
        lo = f"{low['p50_us']} / {low['p99_us']}" if low else "-"
        if b:
            print(f"| {names[t]} | {label} | {b['rate_in']} | {b['out_pps']:.0f} | {b['p50_us']} / {b['p99_us']} | {lo} | {cpu(b)} |")
        else:
            print(f"| {names[t]} | {label} | none passed | - | - | {lo} | - |")
print()
print("Side by side at every rate: p50 / p99 µs (the p99 of each round, lowest–highest), relay CPU; "
      "a rate with loss in any round shows the packets lost over all rounds:")
print()
print("| fan-out | input rate (pkt/s) | Sluice MDF | rtpengine | p99, MDF ÷ rtpengine |")
print("|---|---|---|---|---|")


def cell(a):
    if a is None:
        return "-"
    if a["loss"]:
        return f"lost {a['loss']} ({a['lossy_rounds']} of {a['rounds']} rounds)"
    return f"{a['p50_us']} / {a['p99_us']} ({a['p99_min']}–{a['p99_max']}), {cpu(a)}"


both_clean = []
for case, label in fanouts:
    for rate in rates(case):
        m, e = at(case, "mdf", rate), at(case, "rtpengine", rate)
        ratio = "-"
        if m and e and not m["loss"] and not e["loss"] and e["p99_us"]:
            ratio = f"{m['p99_us'] / e['p99_us']:.2f}"
            both_clean.append((label, rate, m["p99_us"] <= e["p99_us"]))
        print(f"| {label} | {rate} | {cell(m)} | {cell(e)} | {ratio} |")
print()
print("| relay | scale: 500 calls × 4 members, 50 pkt/s per talker | loss | p50 / p99 (µs) | relay CPU |")
print("|---|---|---|---|---|")
for t in ["mdf", "rtpengine"]:
    r = at("scale", t, next(iter(rates("scale")), None))
    if r:
        pct = 100.0 * r["loss"] / r["expected"] if r["expected"] else 0
        print(f"| {names[t]} | {r['achieved_in']:.0f} in → {r['out_pps']:.0f} out pkt/s | {r['loss']} ({pct:.3f} %) | {r['p50_us']} / {r['p99_us']} | {cpu(r)} |")
ratio = []
for case, _ in fanouts:
    m, e = best(case, "mdf"), best(case, "rtpengine")
    if m and e:
        ratio.append(f"{case}: {m['rate_in'] / e['rate_in']:.2f}×")
print()
print("MDF ÷ rtpengine, highest 0-loss rate: " + (", ".join(ratio) if ratio else "n/a") + ".")
if both_clean:
    lower = [f"{label} {rate}" for label, rate, ok in both_clean if ok]
    higher = [f"{label} {rate}" for label, rate, ok in both_clean if not ok]
    print(f"MDF p99 no higher than rtpengine's at {len(lower)} of {len(both_clean)} rates where both lost nothing"
          + (f"; higher at {', '.join(higher)}." if higher else "."))
print()
print("| call setup (INVITE → 200 OK at the originator, sipp) | p50 (ms) | p99 (ms) | calls |")
print("|---|---|---|---|")
for key, label in [("warm-3", "group of 3, warm handlers"), ("warm-10", "group of 10, warm handlers"),
                   ("cold-3", "group of 3, every handler from zero"), ("cold-10", "group of 10, every handler from zero")]:
    p50, p99, n = setup.get(key, ["-", "-", "0"])
    print(f"| {label} | {p50} | {p99} | {n} |")
