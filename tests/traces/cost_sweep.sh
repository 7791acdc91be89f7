#!/bin/bash
# How the ranking of policies by total CPU (application + background) moves
# with the application's migration cost: every committed trace at a 25% fast
# tier, --gap_ns=5000, --move_page_ns x --move_call_ns. Prints markdown rows:
# the policies from cheapest to dearest, total CPU in ms.
#   tests/traces/cost_sweep.sh SIM
set -euo pipefail
SIM=$1
HERE=$(cd "$(dirname "$0")" && pwd)
POLICIES=static,kernel,threshold:4,automatic,lfu,reactive,best-static
echo "| trace | move_page_ns | move_call_ns | policies by total CPU, cheapest first (ms) |"
echo "|---|--:|--:|---|"
for t in "$HERE"/*.lackey.gz; do
  for page in 0 1000 3000; do
    for call in 0 5000 30000; do
      rank=$(nice "$SIM" --trace="$t" --fast=25% --gap_ns=5000 --policy=$POLICIES --quiet \
               --move_page_ns=$page --move_call_ns=$call |
             awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "total_cpu_s") c = i; next }
                      { printf "%s %.1f\n", $2, $c * 1000 }' |
             sort -k2 -n | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')
      echo "| $(basename "$t" .lackey.gz) | $page | $call | $rank |"
    done
  done
done
