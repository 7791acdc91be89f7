#!/bin/bash
# Every command behind the README's Performance figures, in the README's
# order, each output under a heading: run it after a change to the policy
# or the engine, and update the README (and docs/performance.md) from it.
#   tests/traces/readme_figures.sh SIM [OUT]    (about 4 minutes on 2 cores)
# SIM is build/tools/tierkit-sim; OUT (default: standard output) gets the
# whole log. Each section names the README paragraph it feeds.
set -euo pipefail
SIM=$1
[ -x "$SIM" ] || { echo "readme_figures: '$SIM' is not an executable tierkit-sim" >&2; exit 2; }
[ $# -ge 2 ] && exec > "$2"
HERE=$(cd "$(dirname "$0")" && pwd)
E=--epochs=10,20,30,40,50,70,100,150,200,300
REFS=(automatic lfu reactive kernel)

section() { printf '\n## %s\n$ %s\n\n' "$1" "$2"; }
run() {  # run TITLE CMD...: the command, echoed, then its output
  local title=$1; shift
  section "$title" "$*"
  "$@"
}

run "Real programs: the table (its gap 5000 columns), wins, losses, headroom" \
  python3 "$HERE/summarize.py" "$SIM"
run "Judged by issue 12's rule, 100 ms" python3 "$HERE/rule.py" "$SIM" "${REFS[@]}"
run "Judged by issue 12's rule, ten epoch lengths; app time" \
  python3 "$HERE/rule.py" "$SIM" "${REFS[@]}" $E
run "Against doing nothing" python3 "$HERE/under_first_touch.py" "$SIM" automatic lfu
run "Options: reversals, current_histogram (ten epoch lengths)" \
  python3 "$HERE/rule.py" "$SIM" automatic automatic:reversals=0.04 automatic:current_histogram=1 $E
run "Limits: placement at first access, 100 ms" \
  python3 "$HERE/rule.py" "$SIM" automatic automatic:keep_room=0 automatic:keep_room=1 \
  -- --place_at_access=true
run "Limits: placement at first access, ten epoch lengths" \
  python3 "$HERE/rule.py" "$SIM" automatic automatic:keep_room=0 $E -- --place_at_access=true
for f in 10% 50%; do
  run "Limits: tier size $f, 100 ms" python3 "$HERE/rule.py" "$SIM" "${REFS[@]}" -- --fast=$f
done
for ns in 160 400; do
  run "Limits: slow tier at $ns ns, ten epoch lengths" \
    python3 "$HERE/rule.py" "$SIM" "${REFS[@]}" $E -- --slow_ns=$ns
done
run "Limits: the rate limit, a sixteenth of the default" \
  python3 "$HERE/rule.py" "$SIM" automatic $E --per-trace -- --rate_limit_mbps=16
binding_limit() {  # the rule at each epoch length with a one-epoch bucket, summed
  local r=$1 ep
  for ep in 10 20 30 40 50 70 100 150 200 300; do
    python3 "$HERE/rule.py" "$SIM" automatic -- --epoch_ms=$ep --rate_limit_mbps=$r \
      --burst=$((r * 1048576 * ep / 1000)) | grep '^automatic:'
  done | awk -v r="$r" '{ c += $2; s += $9; p += $16; a += $(NF-2) }
    END { printf "rate %s MiB/s, bucket one epoch: %d cells, shortfall %.2f, ping-pong %d, app time %.4f\n", r, c, s, p, a / NR }'
}
for r in 32 64; do
  run "Limits: the rate limit binding (bucket one epoch's worth), $r MiB/s, ten epoch lengths" \
    binding_limit $r
done
run "Built-in workloads" "$SIM" --workload=all --policy=all --format=markdown --quiet
run "Built-in workloads: dense zipf against the oracle" \
  "$SIM" --workload=zipf --gap_ns=0 --accesses=100M --policy=automatic,oracle --format=markdown --quiet
run "Hotness without record_access: sampled against app" \
  python3 "$HERE/sampled_vs_app.py" "$SIM" --gaps=800,5000
