# Input of tests/traces/sfdp-graph: a 1,000-node preferential-attachment
# (Barabasi-Albert-like) digraph in DOT, 2 edges per new node, 80% of the
# endpoints drawn in proportion to degree, so a few hubs carry most edges.
# random.seed fixes the graph, so re-recordings see the same input.
#   python3 graph_input.py [NODES [EDGES_PER_NODE]]
import random
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
m = int(sys.argv[2]) if len(sys.argv) > 2 else 2
random.seed(7)
ends = []  # every edge's endpoints: drawing from it is drawing by degree
print("digraph g {")
for v in range(m, n):
    chosen = set()
    while len(chosen) < m:
        chosen.add(random.choice(ends) if ends and random.random() < 0.8 else random.randrange(v))
    for u in chosen:
        print(f"  n{u} -> n{v};")
        ends += [u, v]
print("}")
