// In-VM, on the two-node machines: the kernel's own NUMA balancing
// (kernel.numa_balancing=1, as Debian enables it on a multi-node machine)
// migrates slow-node pages the process touches to the node of its CPU, and
// so undoes what the engine placed. A region registered with
// kernel_balancing "exclude" (the default) is kept from it; one registered
// with "share" is not. Both regions start on the slow node and are read over
// and over; the engine (policy static) moves nothing itself, and the shared
// region's engine must count where the kernel put its pages. Where every
// page is comes from move_pages queries; every byte is checked.
#include <numaif.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tierkit/backend/linux.hpp"
#include "tierkit/engine.hpp"
#include "vm_support.hpp"

namespace tierkit::vm {
namespace {

constexpr std::size_t kBytes = 8 * kMiB;
constexpr const char* kDebug = "/sys/kernel/debug/sched/numa_balancing/";

// A region of kBytes on the slow node with a known pattern, registered with
// its own engine (policy static: the engine never moves it).
struct SlowRegion {
  LinuxBackend& be;
  unsigned char* p = nullptr;
  std::unique_ptr<Engine> engine;
  RegionHandle handle;
  SlowRegion(LinuxBackend& backend, const char* kernel_balancing) : be(backend) {
    auto m = be.map(kBytes);
    if (!m.ok()) {
      ADD_FAILURE() << m.status();
      return;
    }
    p = static_cast<unsigned char*>(*m);
    ::madvise(p, kBytes, MADV_NOHUGEPAGE);  // base pages, as the kernel scans them
    for (std::size_t i = 0; i < kBytes; ++i) p[i] = pattern(i);
    std::vector<void*> pages = pages_of(p, kBytes);
    std::vector<NodeId> to(pages.size(), kSlowNode);
    std::vector<int> status(pages.size());
    EXPECT_TRUE(be.move(pages, to, absl::MakeSpan(status)).ok());
    EngineConfig c;
    c.environment = EngineConfig::Environment::kIgnore;
    c.fast_nodes = NodeSet{kFastNode};
    c.slow_nodes = NodeSet{kSlowNode};
    c.policy = "static";
    c.kernel_balancing = kernel_balancing;
    engine = make_engine(c, be);
    if (engine == nullptr) return;
    auto h = engine->register_region(p, kBytes,
                                     RegionOptions().with_name(kernel_balancing).with_base_pages());
    EXPECT_TRUE(h.ok()) << h.status();
    if (h.ok()) handle = std::move(*h);
  }
  ~SlowRegion() {
    handle.reset();
    engine.reset();
    if (p != nullptr) {
      EXPECT_TRUE(be.unmap(p, kBytes).ok());
    }
  }
  SlowRegion(const SlowRegion&) = delete;
  SlowRegion& operator=(const SlowRegion&) = delete;
  static unsigned char pattern(std::size_t i) {
    return static_cast<unsigned char>(i * 131 + (i / kPageSize) * 7 + 1);
  }
  std::size_t on(NodeId node) const {
    std::vector<int> s = nodes_of(be, p, kBytes);
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), node));
  }
  // An epoch in which every page was used 8 times: enough for heat to last
  // from one epoch to the next (a page whose heat is all new is asked about
  // anyway, as the kernel may have placed it at its first touch).
  void epoch() const {
    for (std::size_t off = 0; off < kBytes; off += kPageSize)
      for (int k = 0; k < 8; ++k) engine->record_access(p + off);
    EXPECT_TRUE(engine->step().ok());
  }
  // Reads every byte; returns how many differ from the pattern.
  std::size_t bad_bytes() const {
    std::size_t bad = 0;
    for (std::size_t i = 0; i < kBytes; ++i) bad += p[i] != pattern(i);
    return bad;
  }
};

TEST(KernelBalancing, AnExcludedRegionIsNotMovedByAutoNuma) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  Knobs knobs;
  // The scanner starts at once and comes back every 100 ms of the task's
  // run time (its defaults: after 1 s, then every 1-60 s).
  knobs.set(absl::StrCat(kDebug, "scan_delay_ms"), "0");
  knobs.set(absl::StrCat(kDebug, "scan_period_min_ms"), "100");
  knobs.set(absl::StrCat(kDebug, "scan_period_max_ms"), "200");
  LinuxBackend be;
  SlowRegion excluded(be, "exclude"), shared(be, "share");
  ASSERT_NE(excluded.p, nullptr);
  ASSERT_NE(shared.p, nullptr);
  ASSERT_EQ(excluded.on(kSlowNode), kBytes / kPageSize);
  ASSERT_EQ(shared.on(kSlowNode), kBytes / kPageSize);
  EXPECT_EQ(excluded.engine->stats().regions_kept_from_numa_balancing, 1u);
  EXPECT_EQ(excluded.engine->stats().numa_balancing_errors, 0u);
  EXPECT_EQ(shared.engine->stats().regions_kept_from_numa_balancing, 0u);
  shared.epoch();  // its pages are in use before the kernel moves them
  const std::uint64_t migrated0 = vmstat("numa_pages_migrated");
  knobs.set("/proc/sys/kernel/numa_balancing", "1");
  // Read both until the kernel has moved half the shared region (at most
  // 60 s of wall time: QEMU TCG is slow).
  const auto start = std::chrono::steady_clock::now();
  std::size_t bad = 0, rounds = 0;
  while (shared.on(kFastNode) < kBytes / kPageSize / 2 &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
    bad += excluded.bad_bytes() + shared.bad_bytes();
    shared.epoch();
    ++rounds;
  }
  const std::size_t shared_moved = shared.on(kFastNode), excluded_moved = excluded.on(kFastNode);
  const std::uint64_t migrated = vmstat("numa_pages_migrated") - migrated0;
  std::printf(
      "after %zu rounds: shared region %zu of %zu pages moved to node 0 by the kernel, excluded "
      "region %zu; numa_pages_migrated +%llu, numa_hint_faults %llu\n",
      rounds, shared_moved, kBytes / kPageSize, excluded_moved,
      static_cast<unsigned long long>(migrated),
      static_cast<unsigned long long>(vmstat("numa_hint_faults")));
  report("shared_pages_moved_by_kernel", shared_moved);
  report("excluded_pages_moved_by_kernel", excluded_moved);
  ASSERT_GT(shared_moved, 0u)
      << "the kernel moved none of the shared region in 60 s: this machine cannot show the "
         "exclusion";
  EXPECT_EQ(excluded_moved, 0u) << "the kernel moved pages of a region kept from it";
  EXPECT_EQ(excluded.on(kSlowNode), kBytes / kPageSize);
  EXPECT_EQ(bad, 0u);
  report("bytes_verified", 2 * kBytes * rounds);

  // The shared region's engine (policy static: it moves nothing) counts the
  // pages where the kernel put them: after the kernel's moves it asks about
  // the pages in use, those believed slow too. Before, they stayed believed
  // slow, as they were in use when the kernel moved them.
  const EngineStats st = shared.engine->stats();
  std::printf("the shared region's engine: %llu pages believed fast, %zu there; %llu verified\n",
              static_cast<unsigned long long>(st.fast_pages), shared.on(kFastNode),
              static_cast<unsigned long long>(st.placement_verified));
  EXPECT_GT(st.kernel_moved_pages, 0u);
  EXPECT_EQ(st.fast_pages, shared.on(kFastNode));
  EXPECT_EQ(st.promoted_pages + st.demoted_pages, 0u);
}

// The exclusion binds only what the kernel's scanner would balance: the
// private mappings of the range with the default policy. A policy the
// application set on the middle of the range stays (only the range's ends
// used to be looked at, and the middle's policy was replaced), and a shared
// mapping is left as it is (its policy would bind every process mapping it).
TEST(KernelBalancing, OnlyThePartsTheKernelBalancesAreBound) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  constexpr std::size_t kPages = 16;
  LinuxBackend be;
  auto policy = [](const char* p) {
    int mode = -1;
    EXPECT_EQ(::get_mempolicy(&mode, nullptr, 0, const_cast<char*>(p), MPOL_F_ADDR), 0);
    return mode;
  };
  auto* p = static_cast<char*>(::mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  unsigned long slow = 1ul << kSlowNode;
  ASSERT_EQ(::mbind(p + 4 * kPageSize, 4 * kPageSize, MPOL_PREFERRED, &slow, 64, 0), 0);
  auto changed = be.exclude_from_numa_balancing(p, kPages * kPageSize);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_EQ(policy(p), MPOL_BIND);
  EXPECT_EQ(policy(p + 5 * kPageSize), MPOL_PREFERRED);
  EXPECT_EQ(policy(p + 12 * kPageSize), MPOL_BIND);
  p[5 * kPageSize] = 1;  // the application's policy still places its page
  EXPECT_EQ(nodes_of(be, p + 5 * kPageSize, kPageSize), std::vector<int>{kSlowNode});
  ASSERT_EQ(::munmap(p, kPages * kPageSize), 0);

  auto* shared = static_cast<char*>(::mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                                           MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(shared, MAP_FAILED);
  auto left = be.exclude_from_numa_balancing(shared, kPages * kPageSize);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_FALSE(*left);
  EXPECT_EQ(policy(shared), MPOL_DEFAULT);
  ASSERT_EQ(::munmap(shared, kPages * kPageSize), 0);
}

}  // namespace
}  // namespace tierkit::vm
