#!/bin/sh
# in_memory_cgroup.sh LIMIT_BYTES COMMAND [ARG...]: runs COMMAND in a new
# memory cgroup limited to LIMIT_BYTES (cgroup v2 memory.max, or v1
# memory.limit_in_bytes), then removes the cgroup. Needs root and a
# writable cgroup mount; without them it prints "cannot make a memory
# cgroup: ..." (the tests that use it skip on that) and exits 0.
limit=$1
shift
skip() { echo "cannot make a memory cgroup: $*"; exit 0; }
name=tierkit-test-$$
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then  # v2
  grep -qw memory /sys/fs/cgroup/cgroup.controllers || skip "no memory controller in cgroup v2"
  grep -qw memory /sys/fs/cgroup/cgroup.subtree_control ||
    echo +memory > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || skip "cannot enable it"
  dir=/sys/fs/cgroup/$name file=memory.max
elif [ -d /sys/fs/cgroup/memory ]; then  # v1
  dir=/sys/fs/cgroup/memory/$name file=memory.limit_in_bytes
else
  skip "no cgroup v2 or v1 memory mount"
fi
mkdir "$dir" 2>/dev/null || skip "mkdir $dir failed (not root?)"
trap 'rmdir "$dir"' EXIT
echo "$limit" > "$dir/$file" || skip "cannot write $dir/$file"
sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$dir" "$@"
