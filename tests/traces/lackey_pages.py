"""The page stream of a committed trace, for the analysis scripts here.

pages(path) -> the 4 KiB page of every access (L, S and M lines, in order).
first_touch(pages) -> {page: its rank in first-touch order}; with a fast tier
of len(order) // 4 pages, first touch makes a page fast when its rank is below
that (tierkit-sim's default initial placement)."""
import gzip


def pages(path):
    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("L", "S", "M"):
                out.append(int(parts[1].split(",")[0], 16) >> 12)
    return out


def first_touch(stream):
    order = {}
    for p in stream:
        order.setdefault(p, len(order))
    return order
