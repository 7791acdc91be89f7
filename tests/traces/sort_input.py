# Input of tests/traces/sort-lines: 150,000 lines of a 10-digit key and a
# 30-letter payload (6.3 MB), keys and payloads from a fixed LCG, so
# re-recordings see the same input.
x = 2024
out = []
for _ in range(150000):
    x = (x * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
    key = (x >> 20) % 10**10
    pay = "".join("abcdefghij"[(x >> (2 * i)) % 10] for i in range(30))
    out.append("%010d %s\n" % (key, pay))
print("".join(out), end="")
