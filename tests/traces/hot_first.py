#!/usr/bin/env python3
"""Whether the pages that fault first are the hot ones: the kernel's
hint-fault latency idea, measured on a committed trace.

  tests/traces/hot_first.py [TRACE] [--armed=400] [--draws=20]

At 20%, 40% and 60% of the run, arm `armed` random slow pages (those first
touch leaves outside a 25% fast tier), keep the first 1/r of them to be
touched (r = 2, 4) and compare their hotness (accesses in the rest of the
run) with all armed pages'. A source that disarms the rest pays more per
page kept than a uniform draw (docs/performance.md, session 13), so it
gains only where this ratio beats that cost ratio."""
import collections, os, random, sys

import lackey_pages

opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
args = [a for a in sys.argv[1:] if not a.startswith("--")]
here = os.path.dirname(os.path.abspath(__file__))
trace = args[0] if args else os.path.join(here, "redis-kv.lackey.gz")
armed_n, draws = int(opts.get("armed", 400)), int(opts.get("draws", 20))

pages = lackey_pages.pages(trace)
order = lackey_pages.first_touch(pages)
slow = [p for p in order if order[p] >= len(order) // 4]
rng = random.Random(1)
print("trace %s: %d accesses, %d pages, %d slow" % (os.path.basename(trace), len(pages),
                                                    len(order), len(slow)))
for at in (0.2, 0.4, 0.6):
    t = int(len(pages) * at)
    future = collections.Counter(pages[t:])
    for r in (2, 4):
        ratios = []
        for _ in range(draws):
            armed = rng.sample(slow, min(armed_n, len(slow)))
            waiting, first = set(armed), []
            for p in pages[t:]:
                if p in waiting:
                    first.append(p)
                    waiting.discard(p)
                    if len(first) >= len(armed) // r:
                        break
            mean_all = sum(future[p] for p in armed) / len(armed)
            if first and mean_all > 0:
                ratios.append(sum(future[p] for p in first) / len(first) / mean_all)
        print("at %.0f%% of the run, first 1/%d to fault: %.2fx as hot as all armed" %
              (100 * at, r, sum(ratios) / max(1, len(ratios))))
