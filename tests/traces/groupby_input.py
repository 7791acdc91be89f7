# Input of tests/traces/mawk-groupby: 1,200,000 "key value" lines over
# 200,000 distinct keys in 4 phases of 300,000 lines; in phase p, 90% of the
# keys fall in a hot window of 10,000 keys starting at p * 50,000, 10% are
# uniform. Deterministic (a fixed LCG), so re-recordings see the same input.
N, HOT, PHASES, LINES = 200000, 10000, 4, 300000
x = 12345
out = []
for p in range(PHASES):
    for _ in range(LINES):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        k = p * 50000 + (x >> 4) % HOT if x % 10 else (x >> 4) % N
        out.append("user%06d %d\n" % (k, x & 1023))
print("".join(out), end="")
