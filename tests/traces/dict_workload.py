# A dictionary workload for tests/traces/python3-dict: builds a dict of
# 8,000 str keys -> 2 KiB bytes values (about 16 MB), then does 2 x 4,000
# lookups, 90% within a hot window of 2,000 keys that moves halfway, 10%
# uniform; each lookup reads one byte of every 64 of its value (a slice).
# An argument sets the lookups per phase (python3-dict-long: 40,000).
import sys

N, HOT = 8000, 2000
LOOKUPS = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
d = {}
for i in range(N):
    d["key%d" % i] = bytes([i & 255]) * 2048
x, s = 12345, 0
for phase in range(2):
    base = phase * (N - HOT)
    for j in range(LOOKUPS):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        k = base + (x >> 4) % HOT if x % 10 else (x >> 4) % N
        s += d["key%d" % k][::64][5]
print(s)
