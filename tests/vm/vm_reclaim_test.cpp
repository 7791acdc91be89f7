// In-VM, on the machines whose slow node is a lower kernel memory tier (so
// the kernel's reclaim demotes there): when memory is short the kernel
// demotes pages on its own, hot ones included, and the engine, which keeps
// a belief of where each page is, does not see it. It learns of it from
// /proc/vmstat (Backend::kernel_moved_pages) and then asks where its active
// fast pages are, so a hot region the kernel demoted is promoted back.
// Where the kernel counts its moves per cgroup, only the process's own
// cgroup's count.
// Reclaim is forced through the process's cgroup (memory.reclaim, cgroup v2,
// 5.19+), which demotes where a lower tier exists; which pages go is up to
// the kernel's LRU, as under real pressure. Every byte is checked.
// NOTE: named to run last (tests/vm/run runs vm_* in name order): on Linux
// 6.12 the memory it frees comes back to node 0's free count in steps for
// several seconds, and vm_engine_test's births test, which reads that count,
// kept room in 13-19 of 32 epochs right after it (22-31 otherwise; it wants
// 16).
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tierkit/backend/linux.hpp"
#include "tierkit/engine.hpp"
#include "vm_support.hpp"

namespace tierkit::vm {
namespace {

constexpr std::size_t kBytes = 16 * kMiB;
constexpr std::size_t kPages = kBytes / kPageSize;

// Why the kernel cannot demote from node 0 to node 1 here, or nullopt: node
// 1 must be in a slower kernel memory tier (Linux 6.1 puts an HMAT node in
// the DRAM tier; only dax/kmem memory gets a lower one).
std::optional<std::string> no_demotion_target() {
  auto topo = discover_and_print();
  if (!topo.ok()) return absl::StrCat("discovery failed: ", topo.status().ToString());
  std::optional<int> tier[2];
  for (const NodeInfo& n : topo->nodes())
    if (n.os_index == kFastNode || n.os_index == kSlowNode) tier[n.os_index] = n.kernel_memory_tier;
  if (!tier[0] || !tier[1]) return "the kernel lists no memory tiers";
  if (*tier[1] <= *tier[0])
    return absl::StrCat("node 1 is in memory_tier", *tier[1], ", not below node 0's memory_tier",
                        *tier[0], ": the kernel does not demote to it");
  return std::nullopt;
}

// Each test: two nodes, node 1 a lower tier, the kernel's demotion on
// (restored after).
class KernelDemotion : public ::testing::Test {
 protected:
  void SetUp() override {
    TIERKIT_VM_REQUIRE_TWO_NODES();
    if (auto why = no_demotion_target()) GTEST_SKIP() << kNotForThisMachine << *why;
    knobs_.set("/sys/kernel/mm/numa/demotion_enabled", "true");
  }
  Knobs knobs_;
};

// A pattern byte for offset i.
unsigned char pattern(std::size_t i) {
  return static_cast<unsigned char>(i * 151 + (i / kPageSize) * 3 + 5);
}

// A region whose first half is read over and over and whose second half is
// never read after it was written.
TEST_F(KernelDemotion, HotPagesTheKernelDemotesArePromotedBackAndIdleOnesCountedSlow) {
  // The region is charged to this cgroup when first touched: reclaim there
  // takes this process's pages, not the rest of the machine's.
  ChildCgroup cgroup("tierkit-reclaim", "memory");
  ASSERT_TRUE(cgroup.ok);
  LinuxBackend be;
  auto m = be.map(2 * kBytes);
  ASSERT_TRUE(m.ok()) << m.status();
  auto* p = static_cast<unsigned char*>(*m);
  ::madvise(p, 2 * kBytes, MADV_NOHUGEPAGE);  // base pages: reclaim takes them one by one
  for (std::size_t i = 0; i < 2 * kBytes; ++i) p[i] = pattern(i);
  ASSERT_TRUE(all_on(be, p, 2 * kBytes, kFastNode));
  EngineConfig c;
  c.environment = EngineConfig::Environment::kIgnore;
  c.fast_nodes = NodeSet{kFastNode};
  c.slow_nodes = NodeSet{kSlowNode};
  c.policy = "automatic";
  c.rate_limit_mbps = 100000;  // the test is about finding the pages, not the rate
  c.burst_bytes = 1ull << 30;
  std::unique_ptr<Engine> engine = make_engine(c, be);
  ASSERT_NE(engine, nullptr);
  auto handle =
      engine->register_region(p, 2 * kBytes, RegionOptions().with_name("data").with_base_pages());
  ASSERT_TRUE(handle.ok()) << handle.status();
  std::size_t bad = 0;
  // Every hot page read 8 times an epoch: with heat from epoch to epoch.
  auto epoch = [&] {
    for (int k = 0; k < 8; ++k)
      for (std::size_t i = 0; i < kBytes; i += kPageSize) {
        bad += p[i] != pattern(i);
        engine->record_access(p + i);
      }
    ASSERT_TRUE(engine->step().ok());
  };
  auto on = [&](unsigned char* from, NodeId node) {
    std::vector<int> s = nodes_of(be, from, kBytes);
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), node));
  };
  for (int e = 0; e < 4; ++e) epoch();
  ASSERT_TRUE(all_on(be, p, 2 * kBytes, kFastNode));
  ASSERT_EQ(engine->stats().fast_pages, 2 * kPages);
  const EngineStats before = engine->stats();
  const std::uint64_t demoted0 = vmstat("pgdemote_direct") + vmstat("pgdemote_proactive");
  // Asks for the cgroup's whole usage back: with no swap, the kernel can
  // only demote. It says EAGAIN when it got less; what moved is what counts.
  const std::string usage = read_line(cgroup.dir + "/memory.current");
  write_file(cgroup.dir + "/memory.reclaim", usage);
  const std::size_t hot_demoted = on(p, kSlowNode), idle_demoted = on(p + kBytes, kSlowNode);
  std::printf(
      "memory.reclaim %s bytes: %zu hot and %zu idle of 2 x %zu pages demoted to node 1; "
      "pgdemote_direct + pgdemote_proactive +%llu\n",
      usage.c_str(), hot_demoted, idle_demoted, kPages,
      static_cast<unsigned long long>(vmstat("pgdemote_direct") + vmstat("pgdemote_proactive") -
                                      demoted0));
  report("hot_pages_demoted_by_kernel", hot_demoted);
  report("idle_pages_demoted_by_kernel", idle_demoted);
  ASSERT_GT(hot_demoted, 0u) << "the kernel demoted no hot page: this machine cannot show it";
  ASSERT_GT(idle_demoted, 0u) << "the kernel demoted no idle page: this machine cannot show it";
  // Still hot: the engine must find the demoted pages and bring them back.
  int epochs = 0;
  for (; epochs < 6 && !all_on(be, p, kBytes, kFastNode); ++epochs) epoch();
  epoch();  // and count the idle ones where they are
  const EngineStats after = engine->stats();
  std::printf(
      "after %d epochs: hot %zu on node 0, idle %zu on node 0; engine's fast pages %llu; "
      "kernel_moved_pages +%llu, placement_verified +%llu, placement_corrected +%llu, "
      "promoted +%llu\n",
      epochs, on(p, kFastNode), on(p + kBytes, kFastNode),
      static_cast<unsigned long long>(after.fast_pages),
      static_cast<unsigned long long>(after.kernel_moved_pages - before.kernel_moved_pages),
      static_cast<unsigned long long>(after.placement_verified - before.placement_verified),
      static_cast<unsigned long long>(after.placement_corrected - before.placement_corrected),
      static_cast<unsigned long long>(after.promoted_pages - before.promoted_pages));
  report("epochs_to_promote_back", static_cast<std::uint64_t>(epochs));
  EXPECT_TRUE(all_on(be, p, kBytes, kFastNode));
  EXPECT_EQ(after.fast_pages, on(p, kFastNode) + on(p + kBytes, kFastNode))
      << "the engine's count of fast pages is not where they are";
  EXPECT_GE(after.kernel_moved_pages - before.kernel_moved_pages, hot_demoted + idle_demoted);
  EXPECT_GE(after.placement_corrected - before.placement_corrected, hot_demoted + idle_demoted);
  EXPECT_EQ(after.promoted_pages - before.promoted_pages, hot_demoted);
  for (std::size_t i = 0; i < 2 * kBytes; ++i) bad += p[i] != pattern(i);
  EXPECT_EQ(bad, 0u);
  handle->reset();
  engine.reset();
  EXPECT_TRUE(be.unmap(p, 2 * kBytes).ok());
}

// Where the kernel counts its moves per cgroup (memory.stat, 6.12), the
// engine's count is its own cgroup's: another container's reclaim, which
// demotes that container's pages, does not start the engine's check; its
// own cgroup's does. On a kernel that counts only per machine the backend
// reads /proc/vmstat, and the test has nothing to show.
TEST_F(KernelDemotion, AnotherCgroupsDemotionsAreNotCounted) {
  constexpr std::size_t kOther = 8 * kMiB;
  // Another process in a cgroup of its own, its memory on node 0.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t other = ::fork();
  ASSERT_GE(other, 0);
  if (other == 0) {
    ChildCgroup cg("tierkit-other", "memory");
    auto* q = static_cast<char*>(
        ::mmap(nullptr, kOther, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (!cg.ok || q == MAP_FAILED) ::_exit(1);
    ::madvise(q, kOther, MADV_NOHUGEPAGE);
    for (std::size_t i = 0; i < kOther; i += kPageSize) q[i] = 1;
    if (::write(ready[1], "r", 1) != 1) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  char r = 0;
  const bool started = ::read(ready[0], &r, 1) == 1;
  ChildCgroup ours("tierkit-ours", "memory");
  LinuxBackend be;
  const std::string source = be.kernel_moves_source();
  std::printf("the kernel's moves are read from %s\n", source.c_str());
  auto stop_other = [&] {
    ::kill(other, SIGKILL);
    ::waitpid(other, nullptr, 0);
    ::rmdir(absl::StrCat(ChildCgroup::kRoot, "/tierkit-other").c_str());
  };
  if (!started || source == "/proc/vmstat") {
    stop_other();
    ASSERT_TRUE(started) << "the other process did not start";
    GTEST_SKIP() << kNotForThisMachine << "this kernel counts its moves per machine only";
  }
  EXPECT_EQ(source, ours.dir + "/memory.stat");
  auto moved = [&] { return be.kernel_moved_pages().value_or(0); };
  auto demoted = [] { return vmstat("pgdemote_direct") + vmstat("pgdemote_proactive"); };
  const std::uint64_t ours0 = moved(), machine0 = demoted();
  write_file(absl::StrCat(ChildCgroup::kRoot, "/tierkit-other/memory.reclaim"),
             std::to_string(kOther));
  const std::uint64_t machine = demoted() - machine0, theirs = moved() - ours0;
  stop_other();
  // Then this process's own memory, reclaimed the same way.
  auto m = be.map(kOther);
  ASSERT_TRUE(m.ok()) << m.status();
  auto* p = static_cast<char*>(*m);
  ::madvise(p, kOther, MADV_NOHUGEPAGE);
  for (std::size_t i = 0; i < kOther; i += kPageSize) p[i] = 1;
  const std::uint64_t ours1 = moved();
  write_file(ours.dir + "/memory.reclaim", std::to_string(kOther));
  const std::uint64_t own = moved() - ours1;
  std::printf(
      "the other cgroup's reclaim: the machine's demotions +%llu, this cgroup's count +%llu; "
      "this cgroup's own reclaim: +%llu\n",
      static_cast<unsigned long long>(machine), static_cast<unsigned long long>(theirs),
      static_cast<unsigned long long>(own));
  ASSERT_GT(machine, 0u) << "the kernel demoted nothing of the other cgroup: nothing to show";
  EXPECT_EQ(theirs, 0u);
  EXPECT_GT(own, 0u);
  EXPECT_TRUE(be.unmap(p, kOther).ok());
}

// A process moved to another cgroup after the backend chose its count: its
// new pages are charged to the new cgroup, its old ones stay with the old,
// so the backend reads the cgroup above both, and its count goes on from
// where it was. With the count kept on the first cgroup, the new cgroup's
// demotions were not seen.
TEST_F(KernelDemotion, AProcessMovedToAnotherCgroupIsFollowed) {
  constexpr std::size_t kSize = 8 * kMiB;
  ChildCgroup first("tierkit-first", "memory");
  ASSERT_TRUE(first.ok);
  LinuxBackend be;
  const std::string source0 = be.kernel_moves_source();
  if (source0 == "/proc/vmstat")
    GTEST_SKIP() << kNotForThisMachine << "this kernel counts its moves per machine only";
  EXPECT_EQ(source0, first.dir + "/memory.stat");
  const std::uint64_t count0 = be.kernel_moved_pages().value_or(0);
  // To a sibling: its pages are charged there from now on.
  ChildCgroup second("tierkit-second", "memory");
  ASSERT_TRUE(second.ok);
  auto m = be.map(kSize);
  ASSERT_TRUE(m.ok()) << m.status();
  auto* p = static_cast<char*>(*m);
  ::madvise(p, kSize, MADV_NOHUGEPAGE);
  for (std::size_t i = 0; i < kSize; i += kPageSize) p[i] = 1;
  const std::uint64_t count1 = be.kernel_moved_pages().value_or(0);
  const std::string source1 = be.kernel_moves_source();
  // The new cgroup's own demotions: the machine's may also count pages
  // charged to no cgroup, which no memory.stat has (+2,068 against +2,048).
  const std::string stat = second.dir + "/memory.stat";
  auto demotions = [](const std::string& file) {
    return vmstat("pgdemote_direct", file) + vmstat("pgdemote_proactive", file);
  };
  const std::uint64_t demoted0 = demotions(stat), machine0 = demotions("/proc/vmstat");
  write_file(second.dir + "/memory.reclaim", std::to_string(kSize));
  const std::uint64_t demoted = demotions(stat) - demoted0;
  const std::uint64_t machine = demotions("/proc/vmstat") - machine0;
  const std::uint64_t count2 = be.kernel_moved_pages().value_or(0);
  std::printf(
      "moved from %s: the count is read from %s; it went %llu -> %llu on the move, then +%llu "
      "for the new cgroup's reclaim (its demotions +%llu, the machine's +%llu)\n",
      first.dir.c_str(), source1.c_str(), static_cast<unsigned long long>(count0),
      static_cast<unsigned long long>(count1), static_cast<unsigned long long>(count2 - count1),
      static_cast<unsigned long long>(demoted), static_cast<unsigned long long>(machine));
  ASSERT_GT(demoted, 0u) << "the kernel demoted nothing of the new cgroup: nothing to show";
  EXPECT_EQ(source1, absl::StrCat(ChildCgroup::kRoot, "/memory.stat"));  // above both
  EXPECT_EQ(count1, count0) << "the move itself is not a rise";
  EXPECT_GE(count2 - count1, demoted);
  EXPECT_TRUE(be.unmap(p, kSize).ok());
}

}  // namespace
}  // namespace tierkit::vm
