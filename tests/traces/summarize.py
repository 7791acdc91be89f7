#!/usr/bin/env python3
"""Compact real-trace tables: per trace, one row per policy, per --gap_ns the
fast-tier hit ratio, promotions, ping-pong pages and total CPU (application +
background, ms), plus the dominance verdict for `automatic`.

  tests/traces/summarize.py SIM [--ref_sim SIM2] [-- extra tierkit-sim flags]

--ref_sim runs lfu, reactive and best-static with another binary (to put the
references beside an older tierkit-sim that lacks them)."""
import csv, glob, io, os, subprocess, sys

ENGINE = ["static", "automatic", "threshold:4", "kernel"]
REFS = ["lfu", "reactive", "best-static", "oracle"]
GAPS = [0, 800, 5000]
ONLINE = ["static", "threshold:4", "kernel", "lfu", "reactive"]


def run(sim, trace, gap, policies, extra):
    cmd = ["nice", sim, "--trace=" + trace, "--fast=25%", "--gap_ns=%d" % gap,
           "--policy=" + ",".join(policies), "--format=csv", "--quiet"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {r["policy"]: r for r in csv.DictReader(io.StringIO(out))}


def dominates(other, x):
    """sim::dominates: at least x's hit ratio with no more promotions, and
    better in one of the two (a tie is not dominance)."""
    hit, xhit = float(other["fast_hit_ratio"]), float(x["fast_hit_ratio"])
    promoted, xpromoted = int(other["promoted_pages"]), int(x["promoted_pages"])
    return hit >= xhit and promoted <= xpromoted and (hit > xhit or promoted < xpromoted)


def total_ms(r):
    if "total_cpu_s" in r:
        return float(r["total_cpu_s"]) * 1000
    return (float(r["app_time_s"]) + float(r["background_time_s"])) * 1000


def main():
    args = sys.argv[1:]
    extra = args[args.index("--") + 1:] if "--" in args else []
    args = args[:args.index("--")] if "--" in args else args
    sim = args[0]
    ref_sim = args[args.index("--ref_sim") + 1] if "--ref_sim" in args else sim
    here = os.path.dirname(os.path.abspath(__file__))
    for trace in sorted(glob.glob(os.path.join(here, "*.lackey.gz"))):
        name = os.path.basename(trace).replace(".lackey.gz", "")
        res = {}
        for gap in GAPS:
            res[gap] = run(sim, trace, gap, ENGINE, extra)
            res[gap].update(run(ref_sim, trace, gap, REFS, extra))
        print("#### %s\n" % name)
        print("| policy | " + " | ".join(
            "gap %d: hit / promoted / ping-pong / total CPU ms" % g for g in GAPS) + " |")
        print("|---|" + "--:|" * len(GAPS))
        for p in ENGINE + REFS:
            cells = []
            for g in GAPS:
                r = res[g][p]
                cells.append("%.1f%% / %s / %s / %.1f" % (
                    100 * float(r["fast_hit_ratio"]), r["promoted_pages"], r["pingpong_pages"],
                    total_ms(r)))
            print("| %s | %s |" % (p, " | ".join(cells)))
        verdicts = []
        for g in GAPS:
            a = res[g]["automatic"]
            by = [p for p in ONLINE if dominates(res[g][p], a)]
            verdicts.append("gap %d: %s" % (g, "dominated by " + ", ".join(by) if by else "not dominated"))
        print("\n`automatic`: " + "; ".join(verdicts) + "\n")


main()
