// The kernel model reproduces Linux 6.1-6.8 tiering's threshold dynamics:
// with the stock 65536 MB/s limit the hot threshold only ever rises (to
// 2 x hot_threshold_ms); with the seed's 1 MB/s adjustment target it falls
// (to hot_threshold_ms / 8) while the hard cap stays.
#include <functional>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/engine.hpp"
#include "tierkit/policy/kernel_model.hpp"

namespace tierkit {
namespace {

constexpr std::uintptr_t kBase = 0x200000000000;

// Runs the kernel model for `epochs` epochs of `epoch_ms` over `pages` slow
// pages (fast tier: 64 pages), touching every page in the epochs where
// `touch(epoch)` is true. Returns the threshold after every epoch.
std::vector<double> RunKernel(
    const std::string& policy, int epochs, std::size_t pages, EngineStats* out = nullptr,
    std::int64_t epoch_ms = 1000,
    const std::function<bool(int)>& touch = [](int) { return true; }) {
  ManualClock clock(1);
  SimulatedBackend be({{0, 64 * kPageSize}, {1, 1ull << 40}});
  EngineConfig c;
  c.policy = policy;
  c.epoch_ms = epoch_ms;
  c.slow_nodes = {1};
  auto e = Engine::create(c, &be, &clock);
  EXPECT_TRUE(e.ok()) << e.status();
  for (std::size_t i = 0; i < pages; ++i) be.touch(kBase + i * kPageSize, 1);
  auto h = (*e)->register_region(reinterpret_cast<void*>(kBase), pages * kPageSize);
  EXPECT_TRUE(h.ok());
  std::vector<double> th;
  for (int s = 0; s < epochs; ++s) {
    if (touch(s))
      for (std::size_t i = 0; i < pages; ++i)
        (*e)->record_access(reinterpret_cast<void*>(kBase + i * kPageSize));
    clock.advance_ns(epoch_ms * kNsPerMs);
    EXPECT_TRUE((*e)->step().ok());
    th.push_back((*e)->stats().promotion_threshold);
  }
  if (out) *out = (*e)->stats();
  return th;
}

TEST(KernelModel, StockDefaultsOnlyRaiseTheThreshold) {
  EngineStats st;
  auto th = RunKernel("kernel", 11 * 60, 2000, &st);
  EXPECT_EQ(th.front(), 1000);  // hot_threshold_ms default
  for (std::size_t i = 1; i < th.size(); ++i) EXPECT_GE(th[i], th[i - 1]) << "second " << i;
  EXPECT_EQ(th.back(), 2000);  // clamped at 2 * hot_threshold_ms
  EXPECT_GT(st.promotion_candidates, 0u);
  EXPECT_EQ(st.threshold_unit, "ms");
}

TEST(KernelModel, SeedThroughputTargetLowersTheThreshold) {
  // Every page faults ~500 ms after its stamp (1 s epochs, faults mid-epoch),
  // 2000 candidates/s against a 256 pages/s target: the threshold falls 125 ms
  // a minute until it drops below that latency, then holds around it.
  auto th = RunKernel("kernel:target=1", 11 * 60, 2000);
  std::size_t first_low = 0;
  while (first_low < th.size() && th[first_low] > 500) ++first_low;
  ASSERT_LT(first_low, th.size()) << "never fell to 500 ms";
  for (std::size_t i = 1; i <= first_low; ++i) EXPECT_LE(th[i], th[i - 1]) << "second " << i;
  for (std::size_t i = first_low; i < th.size(); ++i) EXPECT_LE(th[i], 625) << "second " << i;
  // Stock kernel on the same workload: the threshold is at 2000 by then.
  EXPECT_EQ(RunKernel("kernel", 11 * 60, 2000).back(), 2000);
}

TEST(KernelModel, SeedTargetWithShortLatenciesReachesTheFloor) {
  // 100 ms epochs: faults come ~50 ms after the stamp, under every threshold,
  // so the candidate rate stays above target and the threshold reaches its
  // floor, 2 * 1000 / 16 = 125 ms.
  auto th = RunKernel("kernel:target=1", 10 * 60 * 10, 500, nullptr, 100);
  EXPECT_EQ(th.back(), 125);
}

TEST(KernelModel, LoweredHardCapStillRaisesTheThresholdWhenBelowTarget) {
  // 64 MB/s = 16384 pages/s: 2000 candidates/s stays under 90% of it.
  auto th = RunKernel("kernel:rate=64", 3 * 60, 2000);
  EXPECT_GT(th.back(), 1000);
}

TEST(KernelModel, HintFaultLatencyAboveThresholdIsNoCandidate) {
  // Pages touched only every 3 s fault with ~2.5 s latency > 1 s: never candidates.
  EngineStats st;
  RunKernel("kernel", 30, 100, &st, 1000, [](int s) { return s % 3 == 2; });
  EXPECT_EQ(st.promotion_candidates, 0u);
  EXPECT_EQ(st.promoted_pages, 0u);
}

TEST(KernelModel, ScanBudgetIsAddressSpaceFastPagesIncluded) {
  // 4096 fast pages, then 4096 slow ones; every page touched every 1 s epoch;
  // a scan of 16 MB (4096 pages) per second. task_numa_work() spends its
  // budget on the fast half too (their PTEs are skipped, the range still
  // counts): the first second's scan covers the fast half and stamps nothing,
  // the second's stamps the slow half, and only in the third do slow pages
  // take hint faults and become candidates. (Counting slow pages only, the
  // first scan stamped all 4096 slow pages and they faulted a second later.)
  constexpr std::size_t kHalf = 4096;
  ManualClock clock(1);
  SimulatedBackend be({{0, kHalf * kPageSize}, {1, 1ull << 40}});
  EngineConfig c;
  c.policy = "kernel";
  c.epoch_ms = 1000;
  c.slow_nodes = {1};
  c.kernel.scan_size_mb = 16;
  auto e = Engine::create(c, &be, &clock);
  ASSERT_TRUE(e.ok()) << e.status();
  for (std::size_t i = 0; i < 2 * kHalf; ++i) be.touch(kBase + i * kPageSize, i < kHalf ? 0 : 1);
  auto h = (*e)->register_region(reinterpret_cast<void*>(kBase), 2 * kHalf * kPageSize);
  ASSERT_TRUE(h.ok());
  std::vector<std::uint64_t> candidates;
  for (int s = 0; s < 3; ++s) {
    for (std::size_t i = 0; i < 2 * kHalf; ++i)
      (*e)->record_access(reinterpret_cast<void*>(kBase + i * kPageSize));
    clock.advance_ns(1000 * kNsPerMs);
    ASSERT_TRUE((*e)->step().ok());
    candidates.push_back((*e)->stats().promotion_candidates);
  }
  EXPECT_EQ(candidates[0], 0u);
  EXPECT_EQ(candidates[1], 0u) << "slow pages were stamped by a scan spent on the fast half";
  EXPECT_GT(candidates[2], kHalf / 2);
}

// validate() takes any finite scan size and period, so a scan faster than
// 2^64 pages an epoch is valid: it stamps every page it passes. Before, the
// epoch's page budget was cast from double to uint64 out of range (undefined;
// 0 on x86-64), so such a scan stamped nothing and nothing was ever promoted.
TEST(KernelModel, AScanBeyondTwoToThe64PagesAnEpochStampsEveryPage) {
  for (double size_mb : {256.0, 1e18, 1e300}) {
    KernelModelOptions o;
    o.scan_size_mb = size_mb;
    ASSERT_TRUE(KernelModelPolicy::validate(o).ok()) << size_mb;
    KernelModelPolicy p(o);
    HeatHistogram hist;
    EpochContext ctx;
    ctx.epoch_ns = kNsPerSec;
    ctx.fast_free_pages = std::uint64_t{1} << 40;  // free space enough: promote every candidate
    const std::uint16_t slow = PageWord::kTracked;
    ctx.epoch = 1, ctx.now_ns = kNsPerSec;
    p.begin_epoch(ctx);
    EXPECT_EQ(p.visit(kBase, slow, ctx).action, PageVerdict::kNone);  // stamped by the scan
    p.end_epoch(ctx, hist);
    ctx.epoch = 2, ctx.now_ns = 2 * kNsPerSec;
    p.begin_epoch(ctx);
    const std::uint16_t hit = PageWord::with_epoch(PageWord::with_heat(slow, 1), 2);
    EXPECT_EQ(p.visit(kBase, hit, ctx).action, PageVerdict::kPromote)
        << "scan_size_mb " << size_mb << ": the page took no hint fault";
  }
}

// The model keeps a scan stamp per page scanned and not yet faulted. A
// region unregistered takes its stamps with it at the next epoch, whether
// the engine kept the removed ranges or (more than it keeps between two
// epochs) only knows which pages are no longer tracked; a live region's
// stamps stay. Before, they stayed forever: a leak under map/unmap churn.
TEST(KernelModel, UnregisteredRegionsLeaveNoScanStamps) {
  for (std::size_t regions : {std::size_t{3}, RegionRegistry::kMaxRemovedRanges + 8}) {
    ManualClock clock(1);
    SimulatedBackend be({{0, 64 * kPageSize}, {1, 1ull << 40}});
    EngineConfig c;
    c.epoch_ms = 1000;
    c.slow_nodes = {1};
    auto e = Engine::create(c, &be, &clock);
    ASSERT_TRUE(e.ok()) << e.status();
    auto owned = std::make_unique<KernelModelPolicy>();
    KernelModelPolicy* kernel = owned.get();
    ASSERT_TRUE((*e)->set_policy(std::move(owned)).ok());
    constexpr std::size_t kPages = 4;  // per region, 1 MiB apart
    std::vector<RegionHandle> handles;
    for (std::size_t r = 0; r <= regions; ++r) {  // the last one stays
      const std::uintptr_t base = kBase + r * (1 << 20);
      for (std::size_t i = 0; i < kPages; ++i) be.touch(base + i * kPageSize, 1);
      auto h = (*e)->register_region(reinterpret_cast<void*>(base), kPages * kPageSize);
      ASSERT_TRUE(h.ok()) << h.status();
      handles.push_back(std::move(*h));
    }
    clock.advance_ns(kNsPerSec);
    ASSERT_TRUE((*e)->step().ok());  // the scan stamps every page; none is accessed
    ASSERT_EQ(kernel->stamped_pages(), (regions + 1) * kPages) << regions;
    for (std::size_t r = 0; r < regions; ++r) handles[r].reset();
    clock.advance_ns(kNsPerSec);
    ASSERT_TRUE((*e)->step().ok());
    EXPECT_EQ(kernel->stamped_pages(), kPages) << regions << " regions unregistered";
  }
}

}  // namespace
}  // namespace tierkit
