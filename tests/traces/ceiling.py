#!/usr/bin/env python3
"""Issue 14's target against an optimistic ceiling, per committed trace: how
high can a source that pays a fault for every page it finds lift the hit
ratio at a given CPU budget?

  tests/traces/ceiling.py SIM [--gap_ns=800] [--fraction=0.01] [--found_ns=34800]

Per trace: `automatic` fed by app and by sampled (tierkit-sim, 25% fast), the
target (0.9x app), K = fraction * the app run's application time / found_ns
(pages a fault-paying source can find at all; 34.8 us = the simulator's
fault_arm_page_ns + fault_fire_ns, the cheapest read observation its cost
constants allow), and the ceiling: first-touch hits plus the accesses of the
K slow pages that have the most, chosen in hindsight, with no hit lost to
demotion. A real source must also find those pages, so it stays below the
ceiling; a ceiling under the target means no fault-paying source can meet
it at that budget. It ignores births (free, but they carry the order pages
were born in, not how hot they will be) and write sources (they too pay a
fault per page found)."""
import collections, csv, glob, io, os, subprocess, sys

import lackey_pages

opts = dict(a[2:].split("=", 1) for a in sys.argv[2:] if a.startswith("--") and "=" in a)
if len(sys.argv) < 2 or sys.argv[1].startswith("--"):
    sys.exit(__doc__)
sim = sys.argv[1]
gap, fraction = int(opts.get("gap_ns", 800)), float(opts.get("fraction", 0.01))
found_ns = float(opts.get("found_ns", 34800))
here = os.path.dirname(os.path.abspath(__file__))


def run(trace, hotness):
    cmd = [sim, "--trace=" + trace, "--fast=25%", "--gap_ns=%d" % gap, "--policy=automatic",
           "--hotness=" + hotness, "--source_cpu_fraction=%g" % fraction, "--format=csv", "--quiet"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return next(csv.DictReader(io.StringIO(out)))


def ceiling(trace, k):
    stream = lackey_pages.pages(trace)
    counts, order = collections.Counter(stream), lackey_pages.first_touch(stream)
    fast_cap = len(order) // 4
    first_touch = sum(c for p, c in counts.items() if order[p] < fast_cap)
    slow = sorted((c for p, c in counts.items() if order[p] >= fast_cap), reverse=True)
    total = sum(counts.values())
    return first_touch / total, (first_touch + sum(slow[:k])) / total


print("%-16s %6s %6s %7s %6s %11s %8s  %s" % ("trace", "app", "target", "sampled", "K",
                                              "first-touch", "ceiling", "verdict"))
for trace in sorted(glob.glob(os.path.join(here, "*.lackey.gz"))):
    app, sampled = run(trace, "app"), run(trace, "sampled")
    k = int(fraction * float(app["app_time_s"]) * 1e9 / found_ns)
    ft, top = ceiling(trace, k)
    target = 0.9 * float(app["fast_hit_ratio"])
    verdict = "ceiling below target" if top < target else "reachable in principle"
    print("%-16s %5.1f%% %5.1f%% %6.1f%% %6d %10.1f%% %7.1f%%  %s" % (
        os.path.basename(trace)[:-len(".lackey.gz")], 100 * float(app["fast_hit_ratio"]),
        100 * target, 100 * float(sampled["fast_hit_ratio"]), k, 100 * ft, 100 * top, verdict))
