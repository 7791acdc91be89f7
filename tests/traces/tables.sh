#!/bin/bash
# Replays every committed real trace at a 25% fast tier and gap_ns 0, 800
# and 5000 with every policy; prints one markdown table per (trace, gap).
#   tests/traces/tables.sh SIM [extra tierkit-sim flags ...]
set -euo pipefail
SIM=$1; shift
HERE=$(cd "$(dirname "$0")" && pwd)
for t in "$HERE"/*.lackey.gz; do
  for gap in 0 800 5000; do
    echo "### $(basename "$t" .lackey.gz), --gap_ns=$gap"
    echo
    nice "$SIM" --trace="$t" --fast=25% --gap_ns="$gap" --policy=all --format=markdown --quiet "$@"
    echo
  done
done
