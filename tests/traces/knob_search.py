#!/usr/bin/env python3
"""Is a knob change better in general, or only on the traces it was chosen
on? Judges `automatic` variants by the issue-12 rule (rule.py) over every
committed trace, gap and several epoch lengths, with the traces split in
two: the ones the policy was tuned on in sessions 1-9 (python3-dict,
sqlite3-lookups, gcc-O2, xz-3, mawk-groupby) and the held-out rest. A
change worth making gains on both halves; one that gains only on the first
is fitted to it.

  tests/traces/knob_search.py SIM [--epochs=20,50,100,200] [--fast=25%] [--random=N [--seed=S]]
                              [VARIANT ...]

VARIANTs are automatic specs (automatic:cool=16/payoff=8); --random=N adds N
random variants, each setting 1-5 knobs to values from a grid around the
defaults (AutomaticOptions). Per variant and half it prints cells passed,
summed shortfall and ping-pong as differences from the default, then the
variants ranked by cells and shortfall over both halves among those whose
ping-pong is within 5% of the default's. The references run once per cell.
--fast=10%,25%,50% judges at several fast-tier sizes too (tierkit-sim's
--fast), each size its own cells."""
import concurrent.futures as cf
import random, sys

import rule

TUNED_ON = {"python3-dict", "sqlite3-lookups", "gcc-O2", "xz-3", "mawk-groupby"}
GRID = {
    "hysteresis": [1.25, 1.5, 2, 2.5, 3],
    "swap_confidence": [1, 2, 3, 4, 5],
    "idle_swap_confidence": [1, 2, 2.5, 3, 4],
    "cool": [4, 6, 8, 12, 16, 32],
    "min_heat": [1, 2, 3, 4],
    "max_cool_epochs": [0, 4, 8, 16],
    "residency": [2, 4, 6, 8, 12, 16],
    "burst": [0, 4, 8, 16],
    "idle": [0, 0.5, 1, 2],
    "spread_confidence": [0, 2, 4, 6],
    "payoff": [0, 8, 16, 32],
    "first_swap": [0, 1, 2, 4],
    "first_confidence": [-1, 0, 0.5, 1, 2],
    "current_histogram": [0, 1],
}


def random_variant(rng):
    knobs = sorted(rng.sample(sorted(GRID), rng.randint(1, 5)))
    return "automatic:" + "/".join("%s=%s" % (k, rng.choice(GRID[k])) for k in knobs)


def main(argv):
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    args = [a for a in argv if not a.startswith("--")]
    if not args:
        sys.exit(__doc__)
    try:
        epochs = [int(e) for e in opts.get("epochs", "20,50,100,200").split(",")]
        n_random, seed = int(opts.get("random", 0)), int(opts.get("seed", 1))
        fasts = opts.get("fast", "25%").split(",")
    except ValueError as e:
        sys.exit("knob_search.py: --epochs, --random and --seed want integers: %s" % e)
    if any(e <= 0 for e in epochs) or n_random < 0:
        sys.exit("knob_search.py: --epochs wants positive ms and --random a count >= 0")
    sim, rng = args[0], random.Random(seed)
    variants = ["automatic"] + args[1:] + [random_variant(rng) for _ in range(n_random)]
    variants = list(dict.fromkeys(variants))  # once each, in order
    cells = [(t, g, e, f) for t in rule.TRACES for g in rule.GAPS for e in epochs for f in fasts]
    pool = cf.ThreadPoolExecutor(2)

    def runs(policies):
        return dict(zip(cells, pool.map(
            lambda c: rule.run(sim, c[0], c[1], policies, ["--epoch_ms=%d" % c[2], "--fast=" + c[3]]),
            cells)))

    bars = {c: rule.bar(by) for c, by in runs(rule.REFS).items()}
    # per variant, per half: [passed, shortfall, promotions over, ping-pong]
    score, width = {}, max(60, max(map(len, variants)))
    for i in range(0, len(variants), 6):  # six variants per tierkit-sim run
        batch = variants[i:i + 6]
        results = runs(batch)
        for p in batch:
            halves = {True: [0, 0.0, 0, 0], False: [0, 0.0, 0, 0]}
            for c in cells:
                tuned = rule.trace_name(c[0]) in TUNED_ON
                halves[tuned] = [a + b for a, b in zip(halves[tuned], rule.judge(results[c][p],
                                                                                  *bars[c]))]
            score[p] = halves
            base = score["automatic"]
            print("%-*s | tuned-on %s | held-out %s" % (width, p, diff(halves[True], base[True]),
                                                              diff(halves[False], base[False])),
                  flush=True)
    base = score["automatic"]
    both = lambda s: [a + b for a, b in zip(s[True], s[False])]
    limit = 1.05 * both(base)[3]
    ranked = sorted((p for p in score if both(score[p])[3] <= limit),
                    key=lambda p: (-both(score[p])[0], both(score[p])[1]))
    print("== ranked over %d cells (%d traces x %d gaps x epochs %s, fast %s), ping-pong within "
          "5%% of the default's" % (len(cells), len(rule.TRACES), len(rule.GAPS),
                                    ",".join(map(str, epochs)), ",".join(fasts)))
    for p in ranked[:15]:
        print("%-*s | %s" % (width, p, diff(both(score[p]), both(base))))


def diff(s, base):
    return "cells %3d (%+d) shortfall %7.2f (%+.2f) ping-pong %6d (%+d)" % (
        s[0], s[0] - base[0], s[1], s[1] - base[1], s[3], s[3] - base[3])


if __name__ == "__main__":
    main(sys.argv[1:])
