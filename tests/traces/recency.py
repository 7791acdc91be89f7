#!/usr/bin/env python3
"""What the end of an epoch knows that its whole count does not: scores that
weight an epoch's recent accesses more, against the plain count, on a
committed trace. tierkit's heat is an epoch-grained count (the page word
stamps the epoch, not the time within it); this measures what a finer one
would be worth before anyone builds it.

  tests/traces/recency.py first TRACE [--gap_ns=0] [--epoch_ms=100]
  tests/traces/recency.py replay TRACE [--gap_ns=800] [--epoch_ms=100] [--sim=SIM]

Time is the simulator's defaults: an access costs 80 ns fast or 250 ns slow
plus the gap; first touch fills a fast tier of a quarter of the pages.

first: the run's first boundary, as first_boundary.py replays it. Per score,
the fast set becomes the top pages by that score; newcomers are paired with
residents, best newcomer with worst resident, and the net is the accesses
the newcomers get in the rest of the run minus the residents', as points of
the run's hit ratio, for the first 100, 300 and 600 pairs and for all (lfu's
swaps are the `count` row). Scores: count (the epoch's accesses), last:F
(accesses in the epoch's last fraction F), decay:H (each access weighted
2^(t / H epochs)), recent-first (count, but every page touched in the
epoch's last quarter above every page that was not).

replay: free-move top-k over the whole run (moves cost nothing, as
tierkit-sim's lfu and reactive): at each boundary the fast set becomes the
top pages by score. step:H multiplies the counts by 2^(-1/H) at each
boundary (step:1 is reactive, step:inf lfu); cont:H decays them
continuously, so the accesses late in an epoch weigh more than its early
ones. Prints hit ratio and promotions per score. With --sim=SIM (a built
tierkit-sim) it also runs SIM's lfu and reactive on the trace and fails
(exit 1) unless step:inf and step:1 are within a point of them: the check
that this model is the simulator's."""
import collections, csv, io, math, os, subprocess, sys

import lackey_pages

USAGE = __doc__.split("\n\n")[1]


def score(kind, pages, times, end, epoch_ns):
    s = collections.defaultdict(float)
    if kind == "recent-first":
        recent = {pages[i] for i in range(end) if times[i] >= 0.75 * epoch_ns}
        for p, c in score("count", pages, times, end, epoch_ns).items():
            s[p] = c + (1e12 if p in recent else 0)
        return s
    name, _, arg = kind.partition(":")
    for i in range(end):
        if name == "count":
            w = 1.0
        elif name == "last":
            w = 1.0 if times[i] >= epoch_ns * (1 - float(arg)) else 0.0
        else:  # decay
            w = 2.0 ** ((times[i] - epoch_ns) / (float(arg) * epoch_ns))
        s[pages[i]] += w
    return s


def first(pages, order, cap, gap, epoch_ns, name):
    end, times, fast = lackey_pages.first_epoch(pages, order, cap, gap, epoch_ns)
    if end is None:
        sys.exit("%s: the run ends at %.1f ms, before the first epoch boundary" %
                 (name, times[-1] / 1e6))
    future = collections.Counter(pages[end:])
    print("%s: boundary after %d of %d accesses (%.0f%% of the run)" %
          (name, end, len(pages), 100.0 * end / len(pages)))
    print("| score | swaps | net, first 100 pairs | 300 | 600 | all |")
    print("|---|--:|--:|--:|--:|--:|")
    for kind in ("count", "last:0.5", "last:0.25", "decay:0.25", "decay:0.125", "recent-first"):
        s = score(kind, pages, times, end, epoch_ns)
        top = set(sorted(order, key=lambda p: (-s.get(p, 0), order[p]))[:cap])
        newc = sorted((p for p in top if p not in fast), key=lambda p: -s.get(p, 0))
        res = sorted((p for p in fast if p not in top), key=lambda p: s.get(p, 0))
        pairs = [future[n] - future[r] for n, r in zip(newc, res)]
        nets = ["%+.2f" % (100.0 * sum(pairs[:m]) / len(pages)) for m in (100, 300, 600, len(pairs))]
        print("| %s | %d | %s |" % (kind, len(pairs), " | ".join(nets)))


def replay(pages, order, cap, gap, epoch_ns, name):
    """Free-move top-k by each score: {score: hit ratio in points}."""
    out = {}
    print("%s, gap %d ns: free-move top-k re-chosen every %.0f ms" % (name, gap, epoch_ns / 1e6))
    print("| score | hit ratio | promoted | boundaries |")
    print("|---|--:|--:|--:|")
    for kind in ("step:inf", "step:1", "cont:1", "step:0.5", "cont:0.5"):
        mode, h = kind.split(":")
        h = float(h)
        fast, s = set(), collections.defaultdict(float)
        t, start, hits, promoted, n = 0.0, 0.0, 0, 0, 0
        for p in pages:
            if p not in fast and len(fast) < cap and order[p] == len(fast):
                fast.add(p)
            hits += p in fast
            t += (80 if p in fast else 250) + gap
            s[p] += 2.0 ** ((t - start) / (h * epoch_ns)) if mode == "cont" else 1.0
            if t - start >= epoch_ns:
                start, n = start + epoch_ns, n + 1
                if not math.isinf(h):
                    d = 2.0 ** (-1.0 / h)
                    for q in s:
                        s[q] *= d
                top = set(sorted(s, key=lambda q: (-s[q], order[q]))[:cap])
                top |= set(sorted(fast - top, key=order.get)[:cap - len(top)])
                promoted += len(top - fast)
                fast = top
        out[kind] = 100.0 * hits / len(pages)
        print("| %s | %.1f%% | %d | %d |" % (kind, out[kind], promoted, n))
    return out


def check(sim, trace, gap, epoch_ms, model):
    """Fails unless the model's step:inf and step:1 are SIM's lfu and reactive."""
    try:
        res = subprocess.run([sim, "--trace=" + trace, "--gap_ns=%d" % gap, "--epoch_ms=%g" % epoch_ms,
                              "--policy=lfu,reactive", "--format=csv", "--quiet"],
                             capture_output=True, text=True)
    except OSError as e:
        sys.exit("recency.py: cannot run %s: %s" % (sim, e))
    if res.returncode != 0:
        sys.exit("recency.py: %s failed: %s" % (sim, res.stderr.strip()))
    rows = {r["policy"]: 100.0 * float(r["fast_hit_ratio"])
            for r in csv.DictReader(io.StringIO(res.stdout))}
    bad = 0
    for ref, kind in (("lfu", "step:inf"), ("reactive", "step:1")):
        ok = abs(rows[ref] - model[kind]) <= 1.0
        bad += not ok
        print("model check: %s %.1f%%, tierkit-sim %s %.1f%%: %s" %
              (kind, model[kind], ref, rows[ref], "ok" if ok else "FAIL (more than a point apart)"))
    if bad:
        sys.exit(1)


def main(argv):
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    args = [a for a in argv if not a.startswith("--")]
    known = {"gap_ns", "epoch_ms"} | ({"sim"} if args[:1] == ["replay"] else set())
    if len(args) != 2 or args[0] not in ("first", "replay") or set(opts) - known:
        sys.exit(USAGE)
    try:
        gap = int(opts.get("gap_ns", 0 if args[0] == "first" else 800))
        epoch_ns = 1e6 * float(opts.get("epoch_ms", 100))
    except ValueError:
        sys.exit("recency.py: --gap_ns wants an integer and --epoch_ms a number")
    if gap < 0 or epoch_ns <= 0:
        sys.exit("recency.py: --gap_ns must be >= 0 and --epoch_ms > 0")
    pages = lackey_pages.pages(args[1])
    order = lackey_pages.first_touch(pages)
    run = first if args[0] == "first" else replay
    model = run(pages, order, len(order) // 4, gap, epoch_ns, os.path.basename(args[1]))
    if "sim" in opts:
        check(opts["sim"], args[1], gap, epoch_ns / 1e6, model)


if __name__ == "__main__":
    main(sys.argv[1:])
