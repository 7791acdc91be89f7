#!/usr/bin/env python3
"""Summarises repeated kernel-baseline runs: median [min-max] per row.

    tests/vm/baseline_summary.py DIR...      (each DIR, searched recursively, holds one repetition's
                                              kernel-baseline*.csv and
                                              *.damon.txt from tests/vm/run)

One row per (workload, configuration, kernel): the hot set's residency, the
pages each mechanism promoted and demoted (kernel: pgpromote_success,
pgdemote_kswapd + pgdemote_direct; DAMON: migrate_cold's sz_applied / 4 KiB
plus reclaim's demotions, and every other migration as promoted;
tierkit: its own counters), pages moved back and forth, and the kernel's
counters. Prints markdown.
"""
import csv
import glob
import os
import re
import statistics
import sys
from collections import defaultdict


def series(kernel):
    if "tierkit" in kernel:
        return "6.12 + seed patch"
    m = re.match(r"(\d+\.\d+)", kernel)
    return m.group(1) if m else kernel


def workload(name):
    for w in ("uniform", "trace"):
        if name.startswith(w + "-"):
            return w, name[len(w) + 1:]
    if name.startswith("knob-"):
        return "moving (scan_period_max 2 s)", name
    return "moving", name


def damon_deltas(path):
    """config -> {kdamond: bytes applied during it} from a .damon.txt file."""
    out = defaultdict(dict)
    seen = defaultdict(dict)
    for line in open(path):
        m = re.match(r"\s*(\S+): (?:(before|end) )?kdamond=(\d) .*sz_applied=(\d+)", line)
        if not m:
            continue
        cfg, when, k, sz = m.group(1), m.group(2) or "end", m.group(3), int(m.group(4))
        if when == "before":
            seen[cfg][k] = sz
        else:
            out[cfg][k] = sz - seen[cfg].get(k, 0)
    return out


def fmt(vals, pct=False):
    if not vals:
        return "-"
    f = (lambda v: "%.0f%%" % (100 * v)) if pct else (lambda v: "%d" % round(v))
    med = statistics.median(vals)
    if len(vals) == 1:
        return f(med)
    return "%s [%s-%s]" % (f(med), f(min(vals)), f(max(vals)))


def main(dirs):
    rows = defaultdict(lambda: defaultdict(list))
    order = []
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "**", "kernel-*.csv"), recursive=True)):
            if path.endswith(".samples.csv"):
                continue
            dpath = path[:-4] + ".damon.txt"
            damon = damon_deltas(dpath) if os.path.exists(dpath) else {}
            for r in csv.DictReader(open(path)):
                wl, cfg = workload(r["name"])
                key = (wl, cfg, series(r.get("kernel", "?")))
                if key not in rows:
                    order.append(key)
                v = rows[key]
                v["hotA"].append(float(r["hotA_fast_at_shift"]))
                v["hotB"].append(float(r["hotB_fast_end"]))
                v["mean"].append(float(r["hot_fast_mean"]))
                v["pingpong"].append(int(r["pages_moved_back_and_forth"]))
                v["ops"].append(int(r["ops"]) / 1e6)
                if r["engine"] != "none":
                    v["promoted"].append(int(r["tk_promoted"]))
                    v["demoted"].append(int(r["tk_demoted"]))
                elif r["name"] in damon:
                    # Demoted: migrate_cold's sz_applied plus reclaim's
                    # demotions (the safety net). Promoted: every other
                    # migration (nothing else moves pages in these rows);
                    # DAMON's own sz_applied can be stale when its
                    # update_schemes_stats request races the goal feed.
                    dd = damon[r["name"]]
                    dem = dd.get("1", 0) / 4096 + int(r["pgdemote_kswapd"]) + int(r["pgdemote_direct"])
                    v["promoted"].append(int(r["pgmigrate_success"]) - dem)
                    v["demoted"].append(dem)
                else:
                    v["promoted"].append(int(r["pgpromote_success"]))
                    v["demoted"].append(int(r["pgdemote_kswapd"]) + int(r["pgdemote_direct"]))
                for k in ("pgpromote_candidate", "numa_hint_faults", "pgmigrate_success"):
                    v[k].append(int(r[k]))
    print("| workload | configuration | kernel | runs | hot A in DRAM at shift | hot B in DRAM at end "
          "| mean hot residency | promoted | demoted | moved back and forth | pgpromote_candidate "
          "| numa_hint_faults | pgmigrate_success | ops (M) |")
    print("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for key in sorted(order, key=lambda k: (["moving", "uniform", "trace"].index(k[0])
                                            if k[0] in ("moving", "uniform", "trace") else 9,
                                            order.index(k))):
        v = rows[key]
        print("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            key[0], key[1], key[2], len(v["hotA"]), fmt(v["hotA"], True), fmt(v["hotB"], True),
            fmt(v["mean"], True), fmt(v["promoted"]), fmt(v["demoted"]), fmt(v["pingpong"]),
            fmt(v["pgpromote_candidate"]), fmt(v["numa_hint_faults"]),
            fmt(v["pgmigrate_success"]), fmt(v["ops"])))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
