#!/usr/bin/env python3
"""The access stream of tests/vm/workload's --trace mode, as lackey records,
for tierkit-sim --trace=-: each distinct page of TRACE becomes a block of
BLOCK consecutive pages; access i of N is drawn from the WINDOW trace
accesses that follow position i/N of the trace, to a random page of that
access's block (tierkit_vm_workload.cpp, "Trace: a window of the trace").

  tests/vm/trace_stream.py TRACE N [BLOCK=28] [WINDOW=4096] [SEED=1] | \\
    build/tools/tierkit-sim --trace=- ...

What the emulated machine's trace rows (docs/kernel-baseline.md) replay,
so the simulator can price the moves TCG time cannot."""
import gzip, random, sys

args = sys.argv[1:]
if len(args) < 2:
    sys.exit(__doc__)
try:
    path, n = args[0], int(args[1])
    block = int(args[2]) if len(args) > 2 else 28
    window = int(args[3]) if len(args) > 3 else 4096
    seed = int(args[4]) if len(args) > 4 else 1
except ValueError as e:
    sys.exit("trace_stream.py: N, BLOCK, WINDOW and SEED are integers (%s)" % e)
if n < 0 or block < 1 or window < 1:
    sys.exit("trace_stream.py: need N >= 0, BLOCK >= 1, WINDOW >= 1")
rng = random.Random(seed)
index, accesses = {}, []
try:
    with (gzip.open if path.endswith(".gz") else open)(path, "rt") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 2 or parts[0] not in ("L", "S", "M"):
                continue
            page = int(parts[1].split(",")[0], 16) >> 12
            accesses.append((index.setdefault(page, len(index)), "L" if parts[0] == "L" else "S"))
except (OSError, EOFError, ValueError) as e:
    sys.exit("trace_stream.py: cannot read %s: %s" % (path, e))
if len(accesses) <= window:
    sys.exit("%s: %d accesses, need more than the window (%d)" % (path, len(accesses), window))
span, out = len(accesses) - window, sys.stdout
buf = []
for i in range(n):
    page, kind = accesses[i * span // n + rng.randrange(window)]
    buf.append(" %s %x,64\n" % (kind, 0x10000000 + (page * block + rng.randrange(block)) * 4096))
    if len(buf) == 65536:
        out.write("".join(buf))
        buf.clear()
out.write("".join(buf))
