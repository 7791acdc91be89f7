#!/usr/bin/env python3
"""What lfu's swaps at the first epoch boundary win, by how much hotter the
newcomer was than the resident it replaced.

  tests/traces/first_boundary.py TRACE [--gap_ns=0] [--epoch_ms=100]

Replays the trace's first epoch as tierkit-sim does before any move: first
touch fills a fast tier of a quarter of the trace's pages, and an access
costs 80 ns fast or 250 ns slow plus the gap (the simulator's defaults).
At the boundary, lfu makes the fast set the top pages by count (ties: first
touched first); each promoted page is paired with a demoted one, hottest
newcomer with coldest resident. Per bucket of count ratio, it prints the
accesses the newcomers and the residents get in the rest of the run: a
swap pays where the newcomers' future beats the residents'. Then, for a
rule that swaps only pairs at least r times apart, the net as points of the
run's hit ratio against making no swap."""
import collections, os, sys

import lackey_pages

opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
args = [a for a in sys.argv[1:] if not a.startswith("--")]
if not args:
    sys.exit(__doc__)
gap, epoch_ns = int(opts.get("gap_ns", 0)), 1e6 * float(opts.get("epoch_ms", 100))

pages = lackey_pages.pages(args[0])
order = lackey_pages.first_touch(pages)
cap = len(order) // 4

end, times, fast = lackey_pages.first_epoch(pages, order, cap, gap, epoch_ns)
if end is None:
    sys.exit("%s: the run ends at %.1f ms, before the first epoch boundary" %
             (os.path.basename(args[0]), times[-1] / 1e6))
count, future = collections.Counter(pages[:end]), collections.Counter(pages[end:])
top = set(sorted(count, key=lambda p: (-count[p], order[p]))[:cap])
newcomers = sorted((p for p in top if p not in fast), key=lambda p: -count[p])
residents = sorted((p for p in fast if p not in top), key=lambda p: count[p])
print("%s: boundary after %d of %d accesses (%.0f%% of the run); lfu swaps %d pages" %
      (os.path.basename(args[0]), end, len(pages), 100.0 * end / len(pages), len(newcomers)))

pairs = [(count[n] / max(1, count[r]), future[n] - future[r]) for n, r in zip(newcomers, residents)]
edges = [(1.5, "< 1.5"), (2, "1.5-2"), (4, "2-4"), (8, "4-8"), (float("inf"), ">= 8")]
rows = collections.OrderedDict((label, [0, 0, 0]) for _, label in edges)
for (n, r), (ratio, _) in zip(zip(newcomers, residents), pairs):
    row = rows[next(label for edge, label in edges if ratio < edge)]
    row[0], row[1], row[2] = row[0] + 1, row[1] + future[n], row[2] + future[r]
print("| count ratio | swaps | newcomers' later accesses | residents' | net |")
print("|---|--:|--:|--:|--:|")
for label, (n, won, lost) in rows.items():
    if n:
        print("| %s | %d | %d | %d | %+d |" % (label, n, won, lost, won - lost))

print("\n| swap when ratio >= | " + " | ".join("%g" % r for r in (1, 1.5, 2, 2.5, 3, 4, 8)) + " |")
print("|---|" + "--:|" * 7)
print("| hit ratio change (points) | " + " | ".join(
    "%+.2f" % (100.0 * sum(d for x, d in pairs if x >= r) / len(pages))
    for r in (1, 1.5, 2, 2.5, 3, 4, 8)) + " |")
