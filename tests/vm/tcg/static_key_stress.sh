#!/bin/sh
# Why tests/vm/run boots QEMU with -accel tcg,thread=single: run in the
# guest, it flips kernel static keys (a cpuset cgroup made and removed,
# numa_balancing 2 and 0) for SECS seconds (default 60) while the other vCPU
# execs in a loop (page allocations). Under multi-threaded TCG (QEMU 7.2) and
# Linux 6.12 the exec side soon runs stale code: "Oops: int3" at
# get_page_from_freelist+0xa1, as in the CI failure it explains. Run as the
# harness's only test program:
#   d=$(mktemp -d) && mkdir -p $d/tests/vm &&
#   cp tests/vm/tcg/static_key_stress.sh $d/tests/vm/vm_stress &&
#   TIERKIT_VM_TCG_THREAD=multi tests/vm/run --build-dir $d \
#     --kernel /boot/vmlinuz-6.12.*-amd64 kernel-tier
#   grep -a -E 'Oops|toggled' $d/tests/vm/logs/kernel-tier.log
# (drop TIERKIT_VM_TCG_THREAD=multi for the default, single: no Oops).
mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
echo +cpuset > /sys/fs/cgroup/cgroup.subtree_control || echo "no cpuset controller"
( taskset -c 1 sh -c 'while :; do /bin/true; done' ) &
bg=$!
i=0
end=$(( $(cut -d. -f1 /proc/uptime) + ${SECS:-60} ))
while [ $(cut -d. -f1 /proc/uptime) -lt $end ]; do
  mkdir /sys/fs/cgroup/s$i && rmdir /sys/fs/cgroup/s$i
  echo 2 > /proc/sys/kernel/numa_balancing; echo 0 > /proc/sys/kernel/numa_balancing
  i=$((i+1))
done
kill $bg
echo "toggled $i times"
echo "[  PASSED  ] 1 test."
