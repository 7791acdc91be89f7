"""The page stream of a committed trace, for the analysis scripts here.

pages(path) -> the 4 KiB page of every access (L, S and M lines, in order);
exits with a message naming the file when it cannot be read as gzip text.
records(path) -> (pages(path), each access's kind: "L", "S" or "M").
first_touch(pages) -> {page: its rank in first-touch order}; with a fast tier
of len(order) // 4 pages, first touch makes a page fast when its rank is below
that (tierkit-sim's default initial placement).
first_epoch(pages, order, cap, gap, epoch_ns) -> the run's first epoch as
tierkit-sim replays it before any move (first touch fills `cap` fast pages;
an access costs 80 ns fast or 250 ns slow plus `gap`): (the index after the
boundary's last access, or None when the run ends first; each access's
time; the fast set)."""
import gzip, sys


def pages(path):
    return records(path)[0]


def records(path):
    out, kinds = [], []
    try:
        with gzip.open(path, "rt") as f:
            for n, line in enumerate(f, 1):
                parts = line.split()
                if len(parts) >= 2 and parts[0] in ("L", "S", "M"):
                    out.append(int(parts[1].split(",")[0], 16) >> 12)
                    kinds.append(parts[0])
    except (OSError, EOFError, UnicodeDecodeError) as e:
        sys.exit("cannot read %s as a gzipped lackey trace: %s" % (path, e))
    except ValueError:
        sys.exit("%s line %d: not a lackey access record (L/S/M ADDR,SIZE)" % (path, n))
    return out, kinds


def first_touch(stream):
    order = {}
    for p in stream:
        order.setdefault(p, len(order))
    return order


def first_epoch(stream, order, cap, gap, epoch_ns):
    fast, t, times = set(), 0.0, []
    for i, p in enumerate(stream):
        if p not in fast and len(fast) < cap and order[p] == len(fast):
            fast.add(p)  # first touch while room is left
        t += (80 if p in fast else 250) + gap
        times.append(t)
        if t >= epoch_ns:
            return i + 1, times, fast
    return None, times, fast
