#!/usr/bin/env bash
# tests/vm/model_vs_kernel.sh: tierkit-sim's kernel model on exactly the
# access stream the emulated machine's kernel-baseline ran (the VM workload's
# --emit mode writes it as lackey records), with the VM's sizes and rate.
#
#   tests/vm/model_vs_kernel.sh BUILD_DIR WORKLOAD OPS FAST_MIB [POLICIES]
#
# WORKLOAD  moving | uniform | trace (as tests/vm/run's baseline rows)
# OPS       accesses the VM run made (its ops column): the stream's length
# FAST_MIB  fast-tier room for the working set (the VM: node 0 free at the
#           start less the watermarks the kernel keeps, ~15 MiB); every page
#           starts on the slow tier (--all_slow), as the VM's hot pages do
# POLICIES  default kernel,kernel:target=1,kernel:target=64
# The run is 60 s of virtual time like the VM's (--gap_ns from OPS). Prints
# tierkit-sim's markdown table.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${1:?build dir} WL=${2:?workload} OPS=${3:?ops} FAST=${4:?fast MiB}
POL=${5:-kernel,kernel:target=1,kernel:target=64}
SECS=${SECS:-60} WS=${WS:-512} HOT=${HOT:-128}
args=(--ws_mib="$WS" --hot_mib="$HOT")
case $WL in
  moving) ;;
  uniform) args+=(--hot_share=0) ;;
  trace) args+=(--trace="$ROOT/tests/traces/sqlite3-lookups.lackey.gz") ;;
  *) echo "unknown workload $WL" >&2; exit 2 ;;
esac
# virtual ns per access = gap + the tier's latency (80 / 250 ns)
GAP=$(awk -v s="$SECS" -v n="$OPS" 'BEGIN {g = s * 1e9 / n - 165; printf "%d", g < 0 ? 0 : g}')
"$B/tests/vm/tierkit-vm-workload" "${args[@]}" --emit="$OPS" |
  "$B/tools/tierkit-sim" --trace=- --policy="$POL" --fast="${FAST}M" --all_slow=true \
    --gap_ns="$GAP" --format=markdown --quiet
