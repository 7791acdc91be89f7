# tests/traces/mawk-groupby: a group-by (sum and count per key), the shape of
# an analytics aggregation; prints the keys seen more than 20 times.
{ s[$1] += $2; n[$1]++ }
END { for (k in s) if (n[k] > 20) print k, s[k] / n[k] }
