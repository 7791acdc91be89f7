# Load of tests/traces/redis-kv, in RESP for `redis-cli --pipe`: SET 60,000
# keys (256-byte values), then two phases of 60,000 requests (90% GET, 10%
# SET) whose keys follow a Zipf(0.99) popularity over all keys, scattered
# over the keyspace by a permutation that changes between the phases (the
# popular keys change, as a cache's do). Deterministic (seeded), so
# re-recordings see the same load.
import bisect
import random
import sys

KEYS, REQUESTS, VALUE = 60000, 60000, 256
rng = random.Random(14)
cdf, total = [], 0.0
for rank in range(KEYS):
    total += 1.0 / (rank + 1) ** 0.99
    cdf.append(total)


def cmd(*args):
    parts = ["*%d\r\n" % len(args)]
    for a in args:
        parts.append("$%d\r\n%s\r\n" % (len(a), a))
    return "".join(parts)


def value(i):
    return ("%08d" % i) * (VALUE // 8)


out = [cmd("SET", "key:%06d" % k, value(k)) for k in range(KEYS)]
for phase in range(2):
    perm = list(range(KEYS))
    rng.shuffle(perm)
    for i in range(REQUESTS):
        k = perm[bisect.bisect_left(cdf, rng.random() * total)]
        if rng.random() < 0.9:
            out.append(cmd("GET", "key:%06d" % k))
        else:
            out.append(cmd("SET", "key:%06d" % k, value(k + i)))
sys.stdout.write("".join(out))
