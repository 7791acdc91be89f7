#!/usr/bin/env python3
"""Issue 14's simulator target on every committed trace: the hit ratio a
policy reaches fed by a sampled hotness source, over the hit ratio it
reaches fed by record_access, and what the source costs.

  tests/traces/sampled_vs_app.py SIM [--policy=automatic] [--gaps=800,5000]
                                     [--check] [-- extra tierkit-sim flags]

One markdown row per trace and gap, with a 25% fast tier: the app-fed hit
ratio, then for `sampled`, `fault` and `births` the ratio to it and the
tracking cost as a share of the application's time. The target is
`sampled` >= 0.9x at <= 1%; the last line counts the rows that meet it.
--check exits 1 when a row misses it."""
import concurrent.futures as cf
import csv, glob, io, os, subprocess, sys

args = sys.argv[1:]
extra = args[args.index("--") + 1:] if "--" in args else []
args = args[:args.index("--")] if "--" in args else args
opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
pos = [a for a in args if not a.startswith("--")]
if not pos:
    sys.exit(__doc__)
sim, policy = pos[0], opts.get("policy", "automatic")
try:
    gaps = [int(g) for g in opts.get("gaps", "800,5000").split(",")]
except ValueError:
    sys.exit("sampled_vs_app.py: --gaps wants integers, comma-separated (ns), e.g. --gaps=800,5000")
traces = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "*.lackey.gz")))
sources = ("sampled", "fault", "births")


def run(cell):
    trace, gap = cell
    cmd = [sim, "--trace=" + trace, "--fast=25%", "--gap_ns=%d" % gap, "--jobs=1", "--quiet",
           "--policy=" + policy, "--hotness=" + ",".join(("app",) + sources)] + extra
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit("sampled_vs_app.py: %s failed on %s: %s" % (sim, os.path.basename(trace),
                 (getattr(e, "stderr", None) or str(e)).strip()))
    return {r["hotness"].split("->")[0]: r for r in csv.DictReader(io.StringIO(out))}


cells = [(t, g) for g in gaps for t in traces]
with cf.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
    results = list(pool.map(run, cells))

print("| trace | gap | app hit | " + " | ".join("`%s` (cost)" % s for s in sources) + " |")
print("|---|--:|--:|" + "--:|" * len(sources))
met, misses = 0, []
for (trace, gap), rows in zip(cells, results):
    app = float(rows["app"]["fast_hit_ratio"])
    name = os.path.basename(trace).replace(".lackey.gz", "")
    ratio = {s: float(rows[s]["fast_hit_ratio"]) / app if app > 0 else 1.0 for s in sources}
    cost = {s: float(rows[s]["tracking_pct_of_app"]) for s in sources}
    print("| %s | %d | %.1f%% | " % (name, gap, 100 * app) +
          " | ".join("%.3fx (%.2f%%)" % (ratio[s], cost[s]) for s in sources) + " |")
    if ratio["sampled"] >= 0.9 and cost["sampled"] <= 1.0:
        met += 1
    else:
        misses.append("%s@%d" % (name, gap))
print("\n%s fed by sampled: %d of %d rows meet 0.9x at <= 1%%; misses: %s" %
      (policy, met, len(cells), " ".join(misses) or "none"))
sys.exit(1 if "--check" in sys.argv[1:] and misses else 0)
