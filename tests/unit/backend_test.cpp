#include <numa.h>
#include <numaif.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tierkit/backend/linux.hpp"
#include "tierkit/backend/simulated.hpp"

namespace tierkit {
namespace {

TEST(LinuxBackend, QueryReportsNodeOfTouchedPagesAndEnoentForUntouched) {
  LinuxBackend be;
  auto mem = be.map(4 * kPageSize);
  ASSERT_TRUE(mem.ok()) << mem.status();
  char* p = static_cast<char*>(*mem);
  std::memset(p, 1, 2 * kPageSize);  // touch the first two pages only
  std::vector<void*> pages = {p, p + kPageSize, p + 2 * kPageSize};
  std::vector<int> status(3, 99);
  ASSERT_TRUE(be.query(pages, absl::MakeSpan(status)).ok());
  EXPECT_GE(status[0], 0);
  EXPECT_GE(status[1], 0);
  EXPECT_EQ(status[2], -ENOENT);
  EXPECT_GE(be.errno_counts().count[ENOENT], 1u);
  EXPECT_TRUE(be.unmap(p, 4 * kPageSize).ok());
}

// A page only read maps the shared zero page, which move_pages(2) reports
// as -EFAULT, like an unmapped one, and mincore(2) as resident: it stayed
// -EFAULT ("not mapped"), and the engine stopped tracking it for good.
TEST(LinuxBackend, APageOnlyReadIsAbsentNotUnmapped) {
  LinuxBackend be;
  auto mem = be.map(2 * kPageSize);
  ASSERT_TRUE(mem.ok()) << mem.status();
  volatile char* p = static_cast<char*>(*mem);
  (void)p[0];  // read only: the zero page where the kernel has one
  std::vector<void*> pages = {*mem};
  std::vector<int> status(1, 99);
  ASSERT_TRUE(be.query(pages, absl::MakeSpan(status)).ok());
  EXPECT_TRUE(status[0] == -ENOENT || status[0] >= 0) << status[0];
  std::vector<NodeId> nodes = {0};
  status[0] = 99;
  ASSERT_TRUE(be.move(pages, nodes, absl::MakeSpan(status)).ok());
  EXPECT_TRUE(status[0] == -ENOENT || status[0] >= 0) << status[0];
  ASSERT_TRUE(be.unmap(*mem, 2 * kPageSize).ok());
  status[0] = 99;
  ASSERT_TRUE(be.query(pages, absl::MakeSpan(status)).ok());
  EXPECT_EQ(status[0], -EFAULT);  // unmapped now
}

TEST(LinuxBackend, MoveToUnknownNodeIsAnError) {
  LinuxBackend be;
  auto mem = be.map(kPageSize);
  ASSERT_TRUE(mem.ok());
  std::memset(*mem, 1, kPageSize);
  std::vector<void*> pages = {*mem};
  std::vector<NodeId> nodes = {NodeSet::kMaxNodes - 1};
  std::vector<int> status(1);
  absl::Status s = be.move(pages, nodes, absl::MakeSpan(status));
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(be.unmap(*mem, kPageSize).ok());
}

// A target node the process cannot use failed only its own move_pages(2)
// batch: the batches before it had moved, the call said "a target node is
// not online" without naming it, and the engine, which does not re-query,
// counted every page as failed. Each target node is now checked before any
// page moves, and the error names it. (On one node, that nothing moved is
// not observable; vm_errors_test's MoveErrors checks it on two.)
TEST(LinuxBackend, MoveNamesABadNodeOfALaterBatch) {
  LinuxBackend be(LinuxBackendOptions{.batch_pages = 1});
  auto mem = be.map(3 * kPageSize);
  ASSERT_TRUE(mem.ok()) << mem.status();
  char* p = static_cast<char*>(*mem);
  std::memset(p, 1, 3 * kPageSize);
  std::vector<void*> pages = {p, p + kPageSize, p + 2 * kPageSize};
  const int highest = numa_available() < 0 ? 0 : numa_max_node();
  for (NodeId bad : {highest + 1, NodeSet::kMaxNodes - 1, NodeSet::kMaxNodes}) {
    std::vector<NodeId> nodes = {0, 0, bad};  // the bad node's batch is the last
    std::vector<int> status(3);
    absl::Status s = be.move(pages, nodes, absl::MakeSpan(status));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad << ": " << s;
    EXPECT_TRUE(absl::StrContains(s.message(), absl::StrCat("node ", bad, " "))) << s;
  }
  std::vector<NodeId> good = {0, 0, 0};
  std::vector<int> status(3);
  ASSERT_TRUE(be.move(pages, good, absl::MakeSpan(status)).ok());
  EXPECT_EQ(status, std::vector<int>({0, 0, 0}));
  EXPECT_TRUE(be.unmap(p, 3 * kPageSize).ok());
}

TEST(LinuxBackend, MapRejectsBadSizes) {
  LinuxBackend be;
  EXPECT_EQ(be.map(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(be.map(100).status().code(), absl::StatusCode::kInvalidArgument);
}

// mbind(2) rounds the length up to whole pages first: a size within a page
// of 2^64 (a -1 cast to size_t) came out 0, and the kernel said OK having
// bound nothing, and with `move` having moved nothing.
TEST(LinuxBackend, BindRefusesARangeThatWraps) {
  LinuxBackend be;
  auto m = be.map(4 * kPageSize);
  ASSERT_TRUE(m.ok()) << m.status();
  const std::size_t to_end =
      std::numeric_limits<std::uintptr_t>::max() - reinterpret_cast<std::uintptr_t>(*m) + 1;
  for (std::size_t bytes : {std::numeric_limits<std::size_t>::max(), to_end}) {
    for (bool move : {false, true}) {
      absl::Status s = be.bind(*m, bytes, NodeSet{0}, BindMode::kBind, move);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bytes << ": " << s;
      EXPECT_TRUE(absl::StrContains(s.message(), "address space")) << s;
    }
  }
  EXPECT_TRUE(be.bind(*m, 4 * kPageSize, NodeSet{0}, BindMode::kBind, false).ok());
  ASSERT_TRUE(be.unmap(*m, 4 * kPageSize).ok());
}

TEST(LinuxBackend, NodeMemoryOfNodeZeroAndMissingNode) {
  LinuxBackend be;
  auto m = be.node_memory(0);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT(m->total_bytes, 0u);
  EXPECT_LE(m->free_bytes, m->total_bytes);
  EXPECT_FALSE(be.node_memory(999).ok());
}

// The kernel's SLIT distance: 10 to itself. A node the kernel does not
// know has no table entry (numa_distance says 0): the Backend default.
TEST(LinuxBackend, DistanceIsLocalToItselfAndDefaultForUnknownNodes) {
  LinuxBackend be;
  EXPECT_EQ(be.distance(0, 0), 10);
  EXPECT_EQ(be.distance(0, 999), 20);
  EXPECT_EQ(be.distance(999, 0), 20);
}

// /proc/zoneinfo's watermark "high" lines, summed per node over its zones;
// the per-CPU pagesets' "high:" lines and other counters are not watermarks.
TEST(ParseZoneinfoHigh, SumsEachNodesZoneWatermarks) {
  constexpr const char* kText =
      "Node 0, zone      DMA\n"
      "  per-node stats\n"
      "      nr_inactive_anon 404\n"
      "  pages free     3840\n"
      "        boost    0\n"
      "        min      22\n"
      "        low      27\n"
      "        high     32\n"
      "        promo    37\n"
      "        managed  3840\n"
      "  pagesets\n"
      "    cpu: 0\n"
      "              count: 0\n"
      "              high:  4000\n"
      "Node 0, zone   Normal\n"
      "  pages free     1968521\n"
      "        high     18493\n"
      "  pagesets\n"
      "              high:  2839\n"
      "Node 2, zone  Movable\n"
      "  pages free     0\n"
      "        high     0\n"
      "Node 3, zone   Normal\n"
      "  pages free     131072\n"
      "        high     bogus\n"
      "        high     1200\n";
  auto high = parse_zoneinfo_high(kText);
  EXPECT_EQ(high.size(), 3u);
  EXPECT_EQ(high[0], 32u + 18493u);
  EXPECT_EQ(high[2], 0u);
  EXPECT_EQ(high[3], 1200u);
  EXPECT_TRUE(parse_zoneinfo_high("").empty());
  EXPECT_TRUE(parse_zoneinfo_high("Node x, zone Normal\n  pages free 1\n high 5\n").empty());
}

// On a real kernel every node with memory has watermarks, far below its size.
TEST(ParseVmstatKernelMoves, SumsDemotionsAndNumaMigrationsOnly) {
  EXPECT_EQ(parse_vmstat_kernel_moves("nr_free_pages 100\npgdemote_kswapd 12\n"
                                      "pgdemote_direct 3\npgmigrate_success 1000\n"
                                      "numa_pages_migrated 5\npgdemote_khugepaged 1\n"
                                      "pgdemote_proactive 2\npgpromote_success 5\n"),
            std::optional<std::uint64_t>(23));
  EXPECT_EQ(parse_vmstat_kernel_moves("numa_pages_migrated 0\n"), std::optional<std::uint64_t>(0));
  // No such line (a kernel without NUMA balancing or demotion), or garbage.
  EXPECT_EQ(parse_vmstat_kernel_moves("nr_free_pages 100\npgmigrate_success 7\n"), std::nullopt);
  EXPECT_EQ(parse_vmstat_kernel_moves("pgdemote_kswapd x\npgdemote_direct\n"), std::nullopt);
  EXPECT_EQ(parse_vmstat_kernel_moves(""), std::nullopt);
}

// The backend reports what the file says (a running count: at least what
// it said a moment before).
// The kernel's moves come from this process's cgroup where its memory.stat
// counts them (newer kernels), else from /proc/vmstat; either way the count
// read is the file's, and it does not go back.
TEST(LinuxBackend, KernelMovedPagesReadsTheCgroupsCountOrVmstat) {
  const std::string source = LinuxBackend::instance().kernel_moves_source();
  ASSERT_TRUE(source == "/proc/vmstat" || absl::EndsWith(source, "/memory.stat")) << source;
  std::ifstream in(source);
  std::stringstream text;
  text << in.rdbuf();
  const std::optional<std::uint64_t> file = parse_vmstat_kernel_moves(text.str());
  const std::optional<std::uint64_t> read = LinuxBackend::instance().kernel_moved_pages();
  ASSERT_EQ(read.has_value(), file.has_value());
  if (source != "/proc/vmstat") {
    EXPECT_TRUE(file.has_value()) << source << " was chosen without the counts";
  }
  if (read) {
    EXPECT_GE(*read, *file);
  }
}

// The cgroup v2 directory of a process from /proc/self/cgroup and
// /proc/self/mountinfo: unified, hybrid (v1 controllers beside a v2 mount),
// a bind-mounted subtree (a container's view), and where there is none.
TEST(ParseCgroup2Dir, JoinsTheMountAndThePath) {
  const std::string mount =
      "24 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
  EXPECT_EQ(parse_cgroup2_dir("0::/app.slice/db.service\n", mount),
            "/sys/fs/cgroup/app.slice/db.service");
  EXPECT_EQ(parse_cgroup2_dir("0::/\n", mount), "/sys/fs/cgroup");
  const std::string hybrid =
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
      "42 31 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
  EXPECT_EQ(parse_cgroup2_dir("4:memory:/x\n0::/\n", hybrid), "/sys/fs/cgroup/unified");
  const std::string sub = "50 40 0:30 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(parse_cgroup2_dir("0::/docker/abc/app\n", sub), "/sys/fs/cgroup/app");
  EXPECT_EQ(parse_cgroup2_dir("0::/docker/abc\n", sub), "/sys/fs/cgroup");
  EXPECT_EQ(parse_cgroup2_dir("0::/docker/abcd\n", sub), std::nullopt);  // not below the root
  EXPECT_EQ(parse_cgroup2_dir("0::/other\n", sub), std::nullopt);
  EXPECT_EQ(parse_cgroup2_dir("4:memory:/x\n", hybrid), std::nullopt);  // v1 only
  EXPECT_EQ(parse_cgroup2_dir("0::/app\n", "24 1 8:1 / / rw - ext4 /dev/sda1 rw\n"), std::nullopt);
  EXPECT_EQ(parse_cgroup2_dir("", ""), std::nullopt);
}

// mountinfo writes a space, tab, newline or backslash in a mount point or
// root as an octal escape (\040 ...), /proc/self/cgroup writes the path as
// it is: the escapes were joined into the directory as they were, naming a
// directory that does not exist, and an escaped root never matched.
TEST(ParseCgroup2Dir, UndoesMountinfosOctalEscapes) {
  EXPECT_EQ(parse_cgroup2_dir("0::/app\n",
                              "35 24 0:30 / /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw\n"),
            "/sys/fs/my cgroup/app");
  EXPECT_EQ(parse_cgroup2_dir("0::/a b/app\n",
                              "35 24 0:30 /a\\040b /mnt/c\\134g rw - cgroup2 cgroup2 rw\n"),
            "/mnt/c\\g/app");
  // A backslash not followed by three octal digits is left as it is.
  EXPECT_EQ(parse_cgroup2_dir("0::/x\n", "35 24 0:30 / /m\\9z rw - cgroup2 cgroup2 rw\n"),
            "/m\\9z/x");
}

// Where a process that moved between cgroups has pages charged: the
// deepest cgroup above both.
TEST(CommonDir, IsTheDeepestDirectoryOfBoth) {
  EXPECT_EQ(common_dir("/sys/fs/cgroup/a/x", "/sys/fs/cgroup/a/y"), "/sys/fs/cgroup/a");
  EXPECT_EQ(common_dir("/sys/fs/cgroup/a", "/sys/fs/cgroup/a/y"), "/sys/fs/cgroup/a");
  EXPECT_EQ(common_dir("/sys/fs/cgroup/a/y", "/sys/fs/cgroup/a"), "/sys/fs/cgroup/a");
  EXPECT_EQ(common_dir("/sys/fs/cgroup/ab", "/sys/fs/cgroup/a"), "/sys/fs/cgroup");
  EXPECT_EQ(common_dir("/sys/fs/cgroup/a/", "/sys/fs/cgroup/a"), "/sys/fs/cgroup/a");
  EXPECT_EQ(common_dir("/x", "/y"), "/");
}

TEST(ContinuousCount, GoesOnFromWhereItWasWhenTheSourceChanges) {
  ContinuousCount c;
  EXPECT_EQ(c.next("a", 10), 10u);
  EXPECT_EQ(c.next("a", 15), 15u);
  EXPECT_EQ(c.next("b", 100), 15u);  // a larger count elsewhere is no rise
  EXPECT_EQ(c.next("b", 104), 19u);
  EXPECT_EQ(c.next("c", 2), 19u);  // nor a smaller one a fall
  EXPECT_EQ(c.next("c", 3), 20u);
}

TEST(LinuxBackend, NodeMemoryReportsTheKernelsReserve) {
  LinuxBackend be;
  auto m = be.node_memory(0);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT(m->kernel_reserve_bytes, 0u);
  EXPECT_LT(m->kernel_reserve_bytes, m->total_bytes / 4);
}

// A range that is not mapped is an error that says so; on a machine of one
// node there is no balancing to keep away, so a mapped range is left as is.
TEST(LinuxBackend, ExcludeFromNumaBalancingNeedsAMappedRange) {
  if (numa_available() < 0) GTEST_SKIP() << "no libnuma NUMA support here";
  LinuxBackend be;
  auto m = be.map(16 * kPageSize);
  ASSERT_TRUE(m.ok()) << m.status();
  auto mapped = be.exclude_from_numa_balancing(*m, 16 * kPageSize);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  if (numa_max_node() == 0) {
    EXPECT_FALSE(*mapped);
  }
  ASSERT_TRUE(be.unmap(*m, 16 * kPageSize).ok());
  auto gone = be.exclude_from_numa_balancing(*m, 16 * kPageSize);
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(gone.status().message().find("is the range mapped?"), absl::string_view::npos)
      << gone.status();
}

// A size that runs past the end of the address space wrapped: the range
// came out empty and the call said "nothing to exclude" (OK, false) where
// any other bad range is an error.
TEST(LinuxBackend, ExcludeFromNumaBalancingRefusesARangeThatWraps) {
  if (numa_available() < 0) GTEST_SKIP() << "no libnuma NUMA support here";
  LinuxBackend be;
  auto m = be.map(16 * kPageSize);
  ASSERT_TRUE(m.ok()) << m.status();
  const std::size_t to_end =
      std::numeric_limits<std::uintptr_t>::max() - reinterpret_cast<std::uintptr_t>(*m) + 1;
  for (std::size_t bytes : {std::numeric_limits<std::size_t>::max(), to_end}) {
    auto r = be.exclude_from_numa_balancing(*m, bytes);
    ASSERT_FALSE(r.ok()) << bytes;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), "address space")) << r.status();
  }
  ASSERT_TRUE(be.unmap(*m, 16 * kPageSize).ok());
}

// The kernel's NUMA balancing scans only private mappings with the default
// policy, so only those parts of a range are bound: a policy the
// application set on part of it (mbind splits the mapping) stays, and a
// shared mapping, whose policy would bind every process mapping it, is left.
// Both ends of the range used to be the only parts looked at.
TEST(LinuxBackend, BalancedPartsAreThePrivateMappingsWithTheDefaultPolicy) {
  if (numa_available() < 0) GTEST_SKIP() << "no libnuma NUMA support here";
  constexpr std::size_t kPages = 16;
  auto* p = static_cast<char*>(::mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  unsigned long node0 = 1;
  ASSERT_EQ(::mbind(p + 4 * kPageSize, 4 * kPageSize, MPOL_PREFERRED, &node0, 64, 0), 0)
      << std::strerror(errno);
  auto parts = LinuxBackend::balanced_parts(a, a + kPages * kPageSize);
  ASSERT_TRUE(parts.ok()) << parts.status();
  using Span = LinuxBackend::Span;
  EXPECT_EQ(*parts, (std::vector<Span>{{a, a + 4 * kPageSize},
                                       {a + 8 * kPageSize, a + kPages * kPageSize}}));
  ASSERT_EQ(::munmap(p + 12 * kPageSize, kPageSize), 0);
  auto hole = LinuxBackend::balanced_parts(a, a + kPages * kPageSize);
  ASSERT_FALSE(hole.ok());
  EXPECT_EQ(hole.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(hole.status().message().find("not mapped"), absl::string_view::npos) << hole.status();
  ASSERT_EQ(::munmap(p, kPages * kPageSize), 0);

  void* shared = ::mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(shared, MAP_FAILED);
  const auto b = reinterpret_cast<std::uintptr_t>(shared);
  auto none = LinuxBackend::balanced_parts(b, b + kPages * kPageSize);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  ASSERT_EQ(::munmap(shared, kPages * kPageSize), 0);
}

TEST(SimulatedBackend, KernelReserveIsWhatWasSet) {
  SimulatedBackend be({{0, 1 << 20}, {1, 1 << 20}});
  be.set_kernel_reserve(1, 8 * kPageSize);
  EXPECT_EQ(be.node_memory(0)->kernel_reserve_bytes, 0u);
  EXPECT_EQ(be.node_memory(1)->kernel_reserve_bytes, 8 * kPageSize);
}

TEST(SimulatedBackend, DistancesAreSetBothWaysAndDefaultOtherwise) {
  SimulatedBackend be({{0, kPageSize}, {1, kPageSize}, {2, kPageSize}});
  be.set_distance(0, 2, 24);
  EXPECT_EQ(be.distance(0, 2), 24);
  EXPECT_EQ(be.distance(2, 0), 24);
  EXPECT_EQ(be.distance(0, 1), 20);
  EXPECT_EQ(be.distance(1, 1), 10);
}

TEST(SimulatedBackend, MovesRespectCapacity) {
  SimulatedBackend be({{0, 2 * kPageSize}, {1, 8 * kPageSize}});
  std::vector<void*> pages;
  for (int i = 0; i < 4; ++i) {
    auto a = 0x10000000u + static_cast<std::uintptr_t>(i) * kPageSize;
    EXPECT_EQ(be.touch(a, 1), 1);
    pages.push_back(reinterpret_cast<void*>(a));
  }
  std::vector<NodeId> to(4, 0);
  std::vector<int> st(4);
  ASSERT_TRUE(be.move(pages, to, absl::MakeSpan(st)).ok());
  EXPECT_EQ(st[0], 0);
  EXPECT_EQ(st[1], 0);
  EXPECT_EQ(st[2], -ENOMEM);
  EXPECT_EQ(st[3], -ENOMEM);
  EXPECT_EQ(be.used_bytes(0), 2 * kPageSize);
  EXPECT_EQ(be.used_bytes(1), 2 * kPageSize);
  EXPECT_EQ(be.moves(), 2u);
  std::vector<NodeId> bad = {7, 7, 7, 7};
  EXPECT_EQ(be.move(pages, bad, absl::MakeSpan(st)).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tierkit
