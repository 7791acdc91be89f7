#!/usr/bin/env python3
"""The issue-12 rule per committed trace and gap: a policy passes a cell when
its fast-tier hit ratio is at least the best of lfu, reactive and kernel less
half a point, it promotes no more pages than lfu, and its ping-pong pages are
at most 5% of its moves (promoted + demoted).

  tests/traces/rule.py SIM [POLICY ...] [--check] [--epochs=MS,... [--per-trace]] [--pingpong=F|none]
                       [-- extra tierkit-sim flags]

POLICY defaults to automatic; give several (e.g. automatic:burst=0) to
compare. One line per (trace, gap), ending with the references that pass the
rule themselves ("refs:"; a reference sets the bar, but may break the
promotion or ping-pong bound to reach it). Then per policy: cells passed, the
summed hit-ratio shortfall in points, promotions above lfu's, ping-pong pages,
the cells it fails that some reference passes, and its simulated application
time (migration charges included) over static's, averaged over the cells.
With --check, exits 1 when a POLICY passes fewer cells than the references
pass together (the ctest sim.rule_vs_references).

With --epochs=10,20,50,100,200, the rule runs once per epoch length
(tierkit-sim --epoch_ms), prints each one's summary and then every policy's
totals over all of them: one epoch length decides few boundaries per cell,
so a change that wins there by timing alone shows up as noise across them.
--check then fails if a POLICY is behind the references at any of them.

--pingpong=F replaces the 5% ping-pong bound with F (a fraction of moves),
for everyone judged, references included; none drops it. It asks what the
bound decides; the issue's rule is 0.05.

--per-trace (with --epochs) ends with one line per trace and gap: per
policy, the cells passed, shortfall and ping-pong summed over the epoch
lengths, to see where a change wins and loses.

--bound adds, per cell, what foresight could do within the rule's limits
(tierkit-sim's rule-hindsight and rule-bound, on lfu's epochs): the hit
ratio of a schedule found in hindsight and the most any schedule can reach,
moving only pages already accessed. The summary counts the cells that some
schedule passes and those that none can. With --check it also fails when a
row within the limits beats the bound by more than half a point (the bound
would be wrong). Only with the 5% ping-pong bound.

knob_search.py imports this file for its cells, runs and verdicts."""
import concurrent.futures as cf
import csv, glob, io, os, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
TRACES = sorted(glob.glob(os.path.join(HERE, "*.lackey.gz")))
GAPS = (0, 800, 5000)
REFS = ["lfu", "reactive", "kernel"]
PINGPONG = 0.05  # the bound on ping-pong pages per move; None = no bound (--pingpong=none)
BOUNDS = ["rule-hindsight", "rule-bound"]  # --bound: foresight within the limits


def trace_name(trace):
    return os.path.basename(trace)[:-len(".lackey.gz")]


def run(sim, trace, gap, policies, flags):
    """One tierkit-sim run of `policies` on a trace: {policy: csv row}."""
    cmd = ["nice", sim, "--trace=" + trace, "--fast=25%", "--gap_ns=%d" % gap, "--jobs=1",
           "--policy=" + ",".join(policies), "--format=csv", "--quiet"] + flags
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit("rule.py: %s failed on %s: %s" % (sim, os.path.basename(trace),
                                                   getattr(e, "stderr", None) or e))
    return {r["policy"]: r for r in csv.DictReader(io.StringIO(out))}


def bar(by):
    """The cell's bar from the references' rows: (best hit ratio, lfu's promotions)."""
    return max(float(by[r]["fast_hit_ratio"]) for r in REFS), int(by["lfu"]["promoted_pages"])


def passes(r, best, lfu_promoted):
    hit, promoted = float(r["fast_hit_ratio"]), int(r["promoted_pages"])
    moves, pingpong = promoted + int(r["demoted_pages"]), int(r["pingpong_pages"])
    return (hit >= best - 0.005 and promoted <= lfu_promoted and
            (PINGPONG is None or pingpong <= PINGPONG * moves))


def judge(r, best, lfu_promoted):
    """(passes, shortfall in points, promotions above lfu, ping-pong pages)."""
    hit, promoted = float(r["fast_hit_ratio"]), int(r["promoted_pages"])
    return (passes(r, best, lfu_promoted), max(0.0, 100 * (best - 0.005 - hit)),
            max(0, promoted - lfu_promoted), int(r["pingpong_pages"]))


def app_time(by, p):
    """`p`'s simulated application time (migration charges included) over static's."""
    return float(by[p]["app_time_s"]) / float(by["static"]["app_time_s"])


BOUND_TALLY = {"passable": 0, "impossible": 0, "cells": 0, "broken": []}
PER_TRACE = {}  # (trace, gap) -> policy -> [passed, shortfall, ping-pong], over epoch lengths


def judge_bounds(by, best, lfu_promoted, policies, tally, name, gap):
    """--bound's part of a cell's line; counts into `tally`."""
    hindsight = float(by["rule-hindsight"]["fast_hit_ratio"])
    upper = float(by["rule-bound"]["fast_hit_ratio"])
    tally["cells"] += 1
    tally["passable"] += hindsight >= best - 0.005
    tally["impossible"] += upper < best - 0.005
    for p in REFS + policies:  # a row within the limits over the bound: the bound is wrong
        if passes(by[p], 0, lfu_promoted) and float(by[p]["fast_hit_ratio"]) > upper + 0.005:
            tally["broken"].append("%s@%d %s" % (name, gap, p))
    return " hindsight %5.1f%% bound %5.1f%% |" % (100 * hindsight, 100 * upper)


def evaluate(sim, policies, flags, verbose, bound=False):
    """The rule over every cell with tierkit-sim `flags`: (cells the references
    pass together, per policy [passed, shortfall, promotions over, ping-pong],
    per policy the cells it fails that a reference passes)."""
    cells = [(t, g) for t in TRACES for g in GAPS]
    tally = {p: [0, 0.0, 0, 0, 0.0] for p in policies}
    feasible_fails = {p: [] for p in policies}
    refs_passed = 0
    bounds = BOUND_TALLY if bound else None
    with cf.ThreadPoolExecutor(2) as pool:
        extra = BOUNDS if bound else []
        runs = pool.map(lambda c: run(sim, c[0], c[1], REFS + policies + ["static"] + extra, flags),
                        cells)
        for (trace, gap), by in zip(cells, runs):
            best, lfu_promoted = bar(by)
            name = trace_name(trace)
            line = "%-16s gap %-5d best %5.1f%% lfu promoted %6d |" % (name, gap, 100 * best,
                                                                      lfu_promoted)
            if bound:
                line += judge_bounds(by, best, lfu_promoted, policies, bounds, name, gap)
            ref_ok = [r for r in REFS if passes(by[r], best, lfu_promoted)]
            refs_passed += bool(ref_ok)
            for p in policies:
                verdict = judge(by[p], best, lfu_promoted)
                if not verdict[0] and ref_ok:
                    feasible_fails[p].append("%s@%d" % (name, gap))
                tally[p] = [a + b for a, b in zip(tally[p], verdict + (app_time(by, p),))]
                sums = PER_TRACE.setdefault((name, gap), {}).setdefault(p, [0, 0.0, 0])
                sums[0], sums[1], sums[2] = (sums[0] + verdict[0], sums[1] + verdict[1],
                                             sums[2] + verdict[3])
                line += " %s %5.1f%% %6d pp %5d |" % ("ok" if verdict[0] else "--",
                                                      100 * float(by[p]["fast_hit_ratio"]),
                                                      int(by[p]["promoted_pages"]), verdict[3])
            if verbose:
                print(line + " refs: " + (",".join(ref_ok) or "none"), flush=True)
    return refs_passed, tally, feasible_fails


def summary(refs_passed, tally, feasible_fails):
    n = len(TRACES) * len(GAPS)
    print("references: %d of %d cells are passed by at least one of %s" %
          (refs_passed, n, ", ".join(REFS)))
    if BOUND_TALLY["cells"]:
        b = BOUND_TALLY
        print("foresight: a schedule within the limits passes %d of %d cells; no schedule can pass "
              "%d; rows within the limits above the bound: %s" %
              (b["passable"], b["cells"], b["impossible"], " ".join(b["broken"]) or "none"))
    for p, (ok, short, over, pp, time) in tally.items():
        print("%s: %d of %d cells pass; hit shortfall %.2f points, promotions above lfu %d, "
              "ping-pong %d; fails where a reference passes: %s; app time %.4f of static's" %
              (p, ok, n, short, over, pp, " ".join(feasible_fails[p]) or "none", time / n),
              flush=True)
    return [p for p, t in tally.items() if t[0] < refs_passed]


def per_trace(policies):
    """--per-trace: each (trace, gap)'s sums over the epoch lengths, per policy."""
    print("== per trace and gap, summed over the epoch lengths: cells passed / shortfall / "
          "ping-pong")
    print("%-22s %5s  %s" % ("trace", "gap", " | ".join("%-24s" % p[:24] for p in policies)))
    for (name, gap), by in sorted(PER_TRACE.items()):
        print("%-22s %5d  %s" % (name, gap, " | ".join("%3d %8.2f %8d    " % tuple(by[p])
                                                         for p in policies)))


def main(argv):
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = argv[:argv.index("--")] if "--" in argv else argv
    check = "--check" in args
    bound = "--bound" in args
    by_trace = "--per-trace" in args
    epochs = next((a.split("=", 1)[1].split(",") for a in args if a.startswith("--epochs=")),
                  None)
    pp = next((a.split("=", 1)[1] for a in args if a.startswith("--pingpong=")), None)
    args = [a for a in args
            if a not in ("--check", "--bound", "--per-trace") and not a.startswith("--epochs=")
            and not a.startswith("--pingpong=")]
    global PINGPONG
    if pp is not None:
        try:
            PINGPONG = None if pp == "none" else float(pp)
        except ValueError:
            PINGPONG = -1.0
        if PINGPONG is not None and not 0 <= PINGPONG <= 1:
            sys.exit("rule.py: --pingpong wants a fraction of moves in [0, 1] or none; got %r" % pp)
    if epochs is not None and (not all(e.replace(".", "", 1).isdigit() for e in epochs)
                               or any(float(e) <= 0 for e in epochs)):
        sys.exit("rule.py: --epochs wants positive epoch lengths in ms, comma-separated, e.g. "
                 "--epochs=20,50,100,200; got %r" % ",".join(epochs))
    if not args:
        sys.exit(__doc__)
    if bound and PINGPONG != 0.05:
        sys.exit("rule.py: --bound computes the bounds for the rule's 5% ping-pong bound only; "
                 "drop --pingpong")
    if by_trace and epochs is None:
        sys.exit("rule.py: --per-trace sums over epoch lengths; give --epochs=MS,...")
    sim, policies = args[0], args[1:] or ["automatic"]
    behind = set()
    if epochs is None:
        behind.update(summary(*evaluate(sim, policies, extra, True, bound)))
    else:
        total = {p: [0, 0.0, 0, 0, 0.0] for p in policies}
        refs_total = 0
        for ep in epochs:
            print("== --epoch_ms=%s" % ep)
            BOUND_TALLY.update(passable=0, impossible=0, cells=0, broken=[])
            refs_passed, tally, fails = evaluate(sim, policies, extra + ["--epoch_ms=" + ep], False,
                                                 bound)
            behind.update(summary(refs_passed, tally, fails))
            refs_total += refs_passed
            for p, t in tally.items():
                total[p] = [a + b for a, b in zip(total[p], t)]
        print("== total over --epoch_ms=%s (%d cells)" %
              (",".join(epochs), len(TRACES) * len(GAPS) * len(epochs)))
        print("references: %d" % refs_total)
        cells = len(TRACES) * len(GAPS) * len(epochs)
        for p, (ok, short, over, pp, time) in total.items():
            print("%s: %d cells pass; hit shortfall %.2f points, promotions above lfu %d, "
                  "ping-pong %d; app time %.4f of static's" % (p, ok, short, over, pp,
                                                               time / cells))
        if by_trace:
            per_trace(policies)
    if check:
        print("check: " + ("; ".join("%s passes fewer cells than the references together" % p
                                     for p in sorted(behind)) or "every policy passes at least "
                           "as many cells as the references together"))
        if BOUND_TALLY["broken"]:
            print("check: rows within the rule's limits beat rule-bound: " +
                  " ".join(BOUND_TALLY["broken"]))
        sys.exit(1 if behind or BOUND_TALLY["broken"] else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
