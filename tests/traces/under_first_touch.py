#!/usr/bin/env python3
"""Where a policy does worse than doing nothing: per epoch length, the
committed traces' cells (trace, gap) in which its fast-tier hit ratio is more
than 0.05 points under first touch (`static`, no page ever moves), with a 25%
fast tier.

  tests/traces/under_first_touch.py SIM [POLICY ...] [-- extra tierkit-sim flags]

POLICY defaults to automatic. One line per policy and epoch length (20, 50,
100 and 200 ms): the cells under first touch and by how many points, their
sum, and the policy's ping-pong pages over its moves summed over all cells.
The rule (rule.py) compares against the references, not against doing
nothing; this is the other bar a user expects a tiering library to clear."""
import concurrent.futures as cf
import csv, glob, io, os, subprocess, sys

args = sys.argv[1:]
extra = args[args.index("--") + 1:] if "--" in args else []
args = args[:args.index("--")] if "--" in args else args
if not args:
    sys.exit(__doc__)
sim, policies = args[0], args[1:] or ["automatic"]
traces = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "*.lackey.gz")))
epochs, gaps = (20, 50, 100, 200), (0, 800, 5000)


def run(cell):
    trace, gap, epoch_ms = cell
    cmd = ["nice", sim, "--trace=" + trace, "--fast=25%", "--gap_ns=%d" % gap,
           "--epoch_ms=%d" % epoch_ms, "--jobs=1", "--policy=" + ",".join(["static"] + policies),
           "--format=csv", "--quiet"] + extra
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit("under_first_touch.py: %s failed on %s: %s" % (sim, os.path.basename(trace),
                                                                getattr(e, "stderr", None) or e))
    return cell, {r["policy"]: r for r in csv.DictReader(io.StringIO(out))}


cells = [(t, g, ep) for ep in epochs for t in traces for g in gaps]
with cf.ThreadPoolExecutor(2) as pool:
    results = dict(pool.map(run, cells))
for p in policies:
    for ep in epochs:
        under, total, pingpong, moves = [], 0.0, 0, 0
        for t in traces:
            for g in gaps:
                by = results[(t, g, ep)]
                r = by[p]
                pingpong += int(r["pingpong_pages"])
                moves += int(r["promoted_pages"]) + int(r["demoted_pages"])
                d = 100 * (float(r["fast_hit_ratio"]) - float(by["static"]["fast_hit_ratio"]))
                if d < -0.05:
                    full = os.path.basename(t)[:-len(".lackey.gz")]
                    name = full.split("-")[0] + ("-long" if full.endswith("-long") else "")
                    under.append("%s@%d %.1f" % (name, g, d))
                    total += d
        print("%s %4d ms: %d cells under first touch, sum %.1f points | ping-pong %d of %d moves | %s"
              % (p, ep, len(under), total, pingpong, moves, ", ".join(under) or "-"))
