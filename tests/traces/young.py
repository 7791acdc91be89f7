#!/usr/bin/env python3
"""Which young pages are used again: what is known of a page when it is
born, against whether it is reused, on a committed trace. Foresight's
promotions within the issue-12 rule's limits are often pages first touched
in the epoch before the boundary (docs/performance.md, "Session 20"); this
asks what could tell the reused ones from the rest before anyone builds it.

  tests/traces/young.py TRACE [--gap_ns=5000] [--epoch_ms=100] [--horizon=4] [--reuse=8]

A young page at boundary t was first accessed in epoch t-1. It counts as
reused when it has at least --reuse accesses in the next --horizon epochs.
Epochs are the trace cut at a constant cost per access: the gap plus 207.5
ns, the memory latency at first touch's 25% of accesses fast (the
simulator's epochs move a little with each policy's hits). For each signal
the AUC of ranking reused pages above the others (0.5 = no better than
chance, below 0.5 = the signal points the wrong way):
  count      its accesses in its first epoch (what heat sees)
  rate       that count per remaining fraction of the epoch after its birth
  late       how late in the epoch it was born
  store      its first access was a store (S or M: a write-only source sees it)
  block      accesses in its first epoch to the other pages of its 2 MiB
             chunk (what a huge-page-grained tracker sees of its neighbours)
  old        accesses before its first epoch to its 2 MiB chunk (does it
             extend memory already in use, or open a new one)
Then, per octave of count (1, 2-3, 4-7, ..., 64-127, 128+): the young
pages, the share touched in the next epoch (what the engine measures a
burst's reuse by, Policy::observe_bursts) and their mean accesses in the
next --horizon epochs. With line misses as accesses, 64 is a page swept
whole once (docs/performance.md, "Session 26")."""
import bisect, collections, sys

import lackey_pages


def auc(scores, labels):
    """P(a reused page scores above one that is not), ties counted half."""
    neg = sorted(s for s, l in zip(scores, labels) if not l)
    pos = [s for s, l in zip(scores, labels) if l]
    if not pos or not neg:
        return float("nan")
    won = sum(bisect.bisect_left(neg, s) + 0.5 * (bisect.bisect_right(neg, s) -
                                                  bisect.bisect_left(neg, s)) for s in pos)
    return won / (len(pos) * len(neg))


CHUNK_SHIFT = 9  # 512 pages of 4 KiB: a 2 MiB chunk


def young_pages(pages, kinds, per_epoch, horizon):
    """(count, rate, late, store, block, old, accesses next epoch, future
    accesses) per young page and boundary."""
    epochs = int(len(pages) // per_epoch) + 1
    counts = [collections.Counter() for _ in range(epochs)]
    chunks = [collections.Counter() for _ in range(epochs)]
    born = {}  # page -> (epoch, position in it, first access kind)
    for i, p in enumerate(pages):
        e = int(i // per_epoch)
        counts[e][p] += 1
        chunks[e][p >> CHUNK_SHIFT] += 1
        if p not in born:
            born[p] = (e, i / per_epoch - e, kinds[i])
    rows = []
    for p, (e, pos, kind) in born.items():
        if e + 1 >= epochs:
            continue  # born in the last epoch: no boundary after it
        c, k = counts[e][p], p >> CHUNK_SHIFT
        future = sum(counts[u][p] for u in range(e + 1, min(epochs, e + 1 + horizon)))
        rows.append((c, c / max(1e-3, 1 - pos), pos, kind != "L", chunks[e][k] - c,
                     sum(chunks[u][k] for u in range(e)), counts[e + 1][p], future))
    return rows


def main(argv):
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 1 or set(opts) - {"gap_ns", "epoch_ms", "horizon", "reuse"}:
        sys.exit(__doc__)
    try:
        gap, epoch_ms = int(opts.get("gap_ns", 5000)), float(opts.get("epoch_ms", 100))
        horizon, reuse = int(opts.get("horizon", 4)), int(opts.get("reuse", 8))
    except ValueError:
        sys.exit("young.py: --gap_ns, --horizon and --reuse want integers and --epoch_ms a number")
    if gap < 0 or epoch_ms <= 0 or horizon < 1 or reuse < 1:
        sys.exit("young.py: --gap_ns >= 0, --epoch_ms > 0, --horizon >= 1 and --reuse >= 1")
    pages, kinds = lackey_pages.records(args[0])
    rows = young_pages(pages, kinds, epoch_ms * 1e6 / (gap + 207.5), horizon)
    labels = [r[-1] >= reuse for r in rows]
    print("%s gap %d: %d young pages, %d reused (>= %d accesses in the next %d epochs)" %
          (args[0].split("/")[-1], gap, len(rows), sum(labels), reuse, horizon))
    print("AUC  count %.3f  rate %.3f  late %.3f  store %.3f  block %.3f  old %.3f" %
          tuple(auc([r[k] for r in rows], labels) for k in range(6)))
    print_octaves(rows, horizon)


def print_octaves(rows, horizon):
    """The per-octave table of young pages (see the module's doc)."""
    octaves = collections.defaultdict(list)
    for r in rows:
        octaves[min(r[0].bit_length() - 1, 7)].append(r)
    print("count     pages  next epoch  accesses in %d" % horizon)
    for o in sorted(octaves):
        rs, lo = octaves[o], 1 << o
        label = "%d+" % lo if o == 7 else "%d" % lo if lo == 1 else "%d-%d" % (lo, 2 * lo - 1)
        print("%-8s %6d  %9.2f  %14.1f" % (label, len(rs), sum(r[6] > 0 for r in rs) / len(rs),
                                           sum(r[7] for r in rs) / len(rs)))


if __name__ == "__main__":
    main(sys.argv[1:])
