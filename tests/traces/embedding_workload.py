"""An embedding-table workload for python3-numpy, traced by record.sh.

  /usr/bin/python3 embedding_workload.py [ROWS] [BATCHES]

A recommender's embedding table (ROWS x 64 float32; 64 MiB at the default
262,144 rows) serves batches of 512 lookups in three phases. Row popularity
is Zipf-like (s = 1.05) over a fixed random permutation, so hot rows are
scattered over the table's pages as a trained model's are; each phase moves
a third of the popularity ranks to other rows (trending items). A batch
gathers its rows and pools them (EmbeddingBag's sum); one batch in four
also writes an update to its rows (a training step). numpy's C loops do the
gathers, sums and scatters; the interpreter's import of numpy and its exit
are in the trace too (tests/traces/README.md gives each part's share)."""
import sys

import numpy as np

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 262144
BATCHES = int(sys.argv[2]) if len(sys.argv) > 2 else 600
DIM, BAG, PHASES = 64, 512, 3

rng = np.random.default_rng(1)
table = np.empty((ROWS, DIM), dtype=np.float32)
table[:] = (np.arange(ROWS, dtype=np.float32) % 97.0)[:, None] * 0.01

weights = 1.0 / np.arange(1, ROWS + 1, dtype=np.float64) ** 1.05
cdf = np.cumsum(weights)
cdf /= cdf[-1]
row_of_rank = rng.permutation(ROWS)

checksum = 0.0
for phase in range(PHASES):
    if phase:
        moved = rng.choice(ROWS, ROWS // 3, replace=False)
        row_of_rank[moved] = rng.permutation(row_of_rank[moved])
    for b in range(BATCHES // PHASES):
        rows = row_of_rank[np.searchsorted(cdf, rng.random(BAG))]
        pooled = table[rows].sum(axis=0)
        if b % 4 == 0:
            table[rows] -= 0.001 * pooled
        checksum += float(pooled[0])
print("phases %d batches %d checksum %.3f" % (PHASES, BATCHES, checksum))
