#!/usr/bin/env bash
# tests/vm/model_vs_kernel.sh: tierkit-sim's kernel model on exactly the
# access stream the emulated machine's kernel-baseline ran (the VM workload's
# --emit mode writes it as lackey records), with the VM's sizes and rate.
#
#   tests/vm/model_vs_kernel.sh BUILD_DIR WORKLOAD OPS FAST_MIB [SCAN_MB_PER_S...]
#
# WORKLOAD  moving | uniform | trace (as tests/vm/run's baseline rows)
# OPS       accesses the VM run made (its ops column): the stream's length,
#           spread over 60 s of virtual time like the VM's run
# FAST_MIB  fast-tier room for the working set (the VM: node 0 free at the
#           start less the ~15 MiB of watermarks the kernel keeps); every
#           page starts on the slow tier, as the VM's hot pages do
# SCAN_MB_PER_S  the NUMA scanner's rate(s) to model (default 256: the
#           kernel's nominal scan_size_mb per 1 s); the VM's real rate is
#           numa_scan_seq x working set / 60 s
# Policies: kernel, kernel:target=1, kernel:target=64 (POLICIES= overrides).
# Prints one key=value line per policy and rate. Needs
# make -C BUILD_DIR tierkit-vm-workload tierkit-vm-model-check.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${1:?build dir} WL=${2:?workload} OPS=${3:?ops} FAST=${4:?fast MiB}
shift 4
RATES=("${@:-256}")
((${#RATES[@]})) || RATES=(256)
POL=${POLICIES:-kernel,kernel:target=1,kernel:target=64}
WS=${WS:-512} HOT=${HOT:-128}
args=(--ws_mib="$WS" --hot_mib="$HOT")
case $WL in
  moving) ;;
  uniform) args+=(--hot_share=0) ;;
  trace) args+=(--trace="$ROOT/tests/traces/sqlite3-lookups.lackey.gz") ;;
  *) echo "unknown workload $WL" >&2; exit 2 ;;
esac
for rate in "${RATES[@]}"; do
  "$B/tests/vm/tierkit-vm-workload" "${args[@]}" --emit="$OPS" |
    "$B/tests/vm/tierkit-vm-model-check" --policies="$POL" --fast_mib="$FAST" \
      --scan_mb_per_s="$rate" | sed "s/^/workload=$WL /"
done
