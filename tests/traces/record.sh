#!/bin/bash
# Records the real-program traces of tests/traces: valgrind lackey's raw
# access stream, filtered on the fly through tierkit-sim's LLC model (4 MiB,
# 16-way, LRU, 64 B lines) so only what reaches memory is kept.
#   tests/traces/record.sh SIM OUTDIR [trace ...]   (default: all traces)
# SIM is a built tierkit-sim; inputs are built in OUTDIR. Deterministic inputs;
# addresses vary a little with ASLR and the environment.
set -euo pipefail
SIM=$(realpath "$1"); OUT=$(realpath "$2"); shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$OUT"

# lackey writes its trace to fd 9, which tierkit-sim filters into NAME.lackey.gz.
record() {
  local name=$1; shift
  nice valgrind --tool=lackey --trace-mem=yes --log-fd=9 "$@" \
    9> >(nice "$SIM" --trace=- --llc=4M,16 --write_trace="$OUT/$name.lackey.gz" 2> "$OUT/$name.log")
  wait
}

python3_dict() {
  record python3-dict /usr/bin/python3 -S "$HERE/dict_workload.py" > /dev/null
}

sqlite3_lookups() {
  rm -f lookups.db
  sqlite3 lookups.db "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
    WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 16000)
    INSERT INTO t SELECT i, printf('%08d%0992d', i, i * 7919) FROM c;"
  record sqlite3-lookups /usr/bin/sqlite3 lookups.db < "$HERE/sqlite_lookups.sql" > /dev/null
}

# The same table and lookup mix with 10x the lookups (40,000 per phase): a
# run long enough that steady state, not start-up, decides the cells.
sqlite3_lookups_long() {
  rm -f lookups.db
  sqlite3 lookups.db "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
    WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 16000)
    INSERT INTO t SELECT i, printf('%08d%0992d', i, i * 7919) FROM c;"
  sed 's/WHERE i < 4000)/WHERE i < 40000)/' "$HERE/sqlite_lookups.sql" |
    record sqlite3-lookups-long /usr/bin/sqlite3 lookups.db > /dev/null
}

gcc_o2() {
  record gcc-O2 /usr/lib/gcc/x86_64-linux-gnu/12/cc1 -quiet -O2 "$HERE/gcc_kv.c" -o gcc_kv.s
}

xz_3() {
  head -c 160000 /usr/bin/python3.11 > xz_input
  record xz-3 /usr/bin/xz -3 -c xz_input > /dev/null
}

# mawk hash aggregation, hot key window moving over 4 phases (analytics).
mawk_groupby() {
  python3 "$HERE/groupby_input.py" > groupby.txt
  record mawk-groupby /usr/bin/mawk -f "$HERE/groupby.awk" groupby.txt > /dev/null
}

# The same dictionary with 10x the lookups (40,000 per phase).
python3_dict_long() {
  record python3-dict-long /usr/bin/python3 -S "$HERE/dict_workload.py" 40000 > /dev/null
}

# GNU sort, one in-memory pass (a 64 MiB buffer holds the 6.3 MB input and
# its line table): read, sort by the whole line, write.
sort_lines() {
  python3 "$HERE/sort_input.py" > sort_input.txt
  LC_ALL=C record sort-lines /usr/bin/sort -S 64M --parallel=1 sort_input.txt > /dev/null
}

# redis-server (a key-value server) under redis_load.py's load, sent by
# redis-cli --pipe: 60,000 SETs, then two phases of Zipf-popular GET/SET
# whose popular keys change between them. No persistence.
redis_kv() {
  python3 "$HERE/redis_load.py" > redis_load.resp
  record redis-kv /usr/bin/redis-server --port 6399 --save "" --appendonly no &
  local rec=$!
  until redis-cli -p 6399 ping > /dev/null 2>&1; do sleep 1; done
  redis-cli -p 6399 --pipe --pipe-timeout 0 < redis_load.resp > /dev/null
  redis-cli -p 6399 shutdown nosave > /dev/null 2>&1 || true
  wait "$rec"
}

# graphviz's sfdp (multilevel force-directed layout with a Barnes-Hut
# quadtree) on graph_input.py's 1,000-node preferential-attachment graph.
sfdp_graph() {
  python3 "$HERE/graph_input.py" > graph.gv
  record sfdp-graph /usr/bin/sfdp -Tplain graph.gv > /dev/null
}

# lua5.4 serving a cache of 20,000 records from a string-keyed table whose
# hot window moves each phase; a quarter of requests replace their record, so
# Lua's incremental garbage collector traverses and sweeps the heap as it runs.
lua_cache() {
  record lua-cache /usr/bin/lua5.4 "$HERE/cache_workload.lua" > /dev/null
}

# python3-numpy serving an embedding table (64 MiB, 262,144 rows of 64 floats)
# in batches of 512 Zipf-distributed lookups, pooled and sometimes updated;
# each phase moves a third of the popularity ranks. Needs python3-numpy.
embedding_numpy() {
  record embedding-numpy /usr/bin/python3 "$HERE/embedding_workload.py" > /dev/null
}

# zstd on a pipe does not know the input size, so it allocates (and zeroes)
# its full preset-19 tables, about 80 MB.
zstd_19() {
  head -c 100000 /usr/bin/python3.11 > zstd_input
  record zstd-19 /usr/bin/zstd -q -19 -c < zstd_input > /dev/null
}

for t in "${@:-python3_dict sqlite3_lookups gcc_o2 xz_3 mawk_groupby sort_lines redis_kv sfdp_graph sqlite3_lookups_long python3_dict_long lua_cache embedding_numpy zstd_19}"; do
  for one in $t; do "$one"; done
done
