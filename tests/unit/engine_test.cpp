// Engine tests on the simulated backend: deterministic (manual clock, steps).
#include "tierkit/engine.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tierkit/backend/simulated.hpp"

namespace tierkit {
namespace {

constexpr std::uintptr_t kBase = 0x100000000000;  // synthetic addresses: never dereferenced

struct Rig {
  // `fast_pages` of fast capacity, `pages` of data all starting on the slow node.
  Rig(std::size_t fast_pages, std::size_t pages, EngineConfig cfg = {})
      : be({{0, fast_pages * kPageSize}, {1, 1ull << 40}}), n(pages) {
    cfg.fast_nodes = {0};
    cfg.slow_nodes = {1};
    auto e = Engine::create(cfg, &be, &clock);
    EXPECT_TRUE(e.ok()) << e.status();
    engine = std::move(*e);
    for (std::size_t i = 0; i < n; ++i) be.touch(page(i), 1);
    auto h = engine->register_region(reinterpret_cast<void*>(kBase), n * kPageSize,
                                     RegionOptions().with_name("data"));
    EXPECT_TRUE(h.ok()) << h.status();
    handle = std::move(*h);
  }
  static std::uintptr_t page(std::size_t i) { return kBase + i * kPageSize; }
  void touch(std::size_t i, int times = 1) {
    for (int k = 0; k < times; ++k) engine->record_access(reinterpret_cast<void*>(page(i)));
  }
  void step() {
    clock.advance_ns(engine->config().epoch_ms * kNsPerMs);
    ASSERT_TRUE(engine->step().ok());
  }
  std::size_t fast_count(std::size_t from, std::size_t to) const {
    std::size_t c = 0;
    for (std::size_t i = from; i < to; ++i) c += be.node_of(page(i)) == 0;
    return c;
  }

  ManualClock clock{1};
  SimulatedBackend be;
  std::size_t n;
  std::unique_ptr<Engine> engine;
  RegionHandle handle;
};

EngineConfig Fast(std::string policy) {
  EngineConfig c;
  c.policy = std::move(policy);
  c.rate_limit_mbps = 1e6;  // effectively unlimited unless a test says otherwise
  c.burst_bytes = 1ull << 40;
  return c;
}

// A node the backend cannot use (absent, offline, outside the cpuset) is
// refused at create(), naming the field and why: every move to it would
// fail, epoch after epoch.
TEST(Engine, CreateRefusesANodeTheBackendCannotUse) {
  SimulatedBackend be({{0, 1 << 20}, {1, 1 << 20}});
  EngineConfig c = Fast("automatic");
  c.fast_nodes = {0};
  c.slow_nodes = {1, 5};
  auto e = Engine::create(c, &be);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e.status().message(),
            "slow_nodes contains node 5, which the simulated backend cannot use: node 5 does "
            "not exist");
  c.slow_nodes = {1};
  EXPECT_TRUE(Engine::create(c, &be).ok());
}

TEST(Engine, SkewedAccessFillsFastTierWithHotPagesUpToBudget) {
  Rig rig(100, 1000, Fast("automatic"));
  std::mt19937 rng(1);
  for (int e = 0; e < 30; ++e) {
    for (std::size_t i = 0; i < 200; ++i) rig.touch(i, 10);  // 200 hot pages, 2x the budget
    for (int k = 0; k < 500; ++k) rig.touch(200 + rng() % 800);
    rig.step();
  }
  // Budget 100 pages, high watermark 95%: at most 95 fast, and they are hot.
  std::size_t fast_hot = rig.fast_count(0, 200), fast_cold = rig.fast_count(200, 1000);
  EXPECT_GE(fast_hot, 80u);
  EXPECT_LE(fast_hot + fast_cold, 95u);
  EXPECT_EQ(fast_cold, 0u);
  EXPECT_LE(rig.be.used_bytes(0), 100 * kPageSize);
}

// An engine over a simulated fast node of `fast_pages` (node 0) and an
// unbounded slow node (1), with no region registered.
struct TwoNodes {
  explicit TwoNodes(std::size_t fast_pages, EngineConfig c = Fast("automatic"))
      : be({{0, fast_pages * kPageSize}, {1, 1ull << 40}}), cfg(std::move(c)) {
    cfg.fast_nodes = {0};
    cfg.slow_nodes = {1};
    auto e = Engine::create(cfg, &be, &clock);
    EXPECT_TRUE(e.ok()) << e.status();
    if (e.ok()) engine = std::move(*e);
  }
  void step() {
    clock.advance_ns(cfg.epoch_ms * kNsPerMs);
    ASSERT_TRUE(engine->step().ok());
  }
  SimulatedBackend be;
  ManualClock clock{1};
  EngineConfig cfg;
  std::unique_ptr<Engine> engine;
};

// A region registered before its pages are touched is believed fast (first
// touch on a CPU node) as far as the fast node has room, slow beyond. Where
// first touch then puts them is not known until they are touched: here in
// reverse order, so the last pages land fast and the first, believed fast,
// land slow. The engine must learn both when they become active, or it never
// promotes the first (hot here) and keeps the last out of its count.
TEST(Engine, LearnsWhereNewbornPagesLandedInAFullFastNode) {
  constexpr std::size_t kFast = 8, kPages = 32;
  TwoNodes n(kFast);
  ASSERT_NE(n.engine, nullptr);
  auto h = n.engine->register_region(reinterpret_cast<void*>(kBase), kPages * kPageSize);
  ASSERT_TRUE(h.ok()) << h.status();
  auto page = [](std::size_t i) { return kBase + i * kPageSize; };
  for (std::size_t i = kPages; i-- > 0;) n.be.touch(page(i), 0);  // first touch, last first
  ASSERT_EQ(n.be.node_of(page(0)), 1);
  ASSERT_EQ(n.be.node_of(page(kPages - 1)), 0);
  std::size_t hot_fast = 0;
  for (int e = 0; e < 12; ++e) {
    for (std::size_t i = 0; i < kPages; ++i)
      for (int k = 0; k < (i < kFast ? 50 : e == 0 ? 1 : 0); ++k)
        n.engine->record_access(reinterpret_cast<void*>(page(i)));
    n.step();
  }
  for (std::size_t i = 0; i < kFast; ++i) hot_fast += n.be.node_of(page(i)) == 0;
  // Learnt in the epoch they were first touched, before any move was
  // planned: no demotion of a page that was already slow.
  EXPECT_EQ(n.engine->stats().placement_corrected, 2 * kFast);
  EXPECT_LE(n.engine->stats().demoted_pages, kFast);
  EXPECT_GE(hot_fast, kFast / 2);  // believed fast, they would never be promoted
}

// A page the kernel demotes while it stays hot (reclaim under memory
// pressure from other processes) keeps its heat, so it never again looks
// newly active: without asking where it is after the kernel's own moves,
// the engine believed it fast and never promoted it back.
TEST(Engine, HotPagesTheKernelDemotesArePromotedBack) {
  constexpr std::size_t kHot = 32, kCold = 96;
  Rig rig(64, kHot + kCold, Fast("automatic"));
  auto epoch = [&] {
    for (std::size_t i = 0; i < kHot; ++i) rig.touch(i, 20);
    rig.step();
  };
  for (int e = 0; e < 6; ++e) epoch();
  ASSERT_EQ(rig.fast_count(0, kHot), kHot);
  const EngineStats before = rig.engine->stats();
  for (std::size_t i = 0; i < kHot; i += 2) ASSERT_TRUE(rig.be.kernel_move(rig.page(i), 1));
  ASSERT_EQ(rig.fast_count(0, kHot), kHot / 2);
  for (int e = 0; e < 3; ++e) epoch();
  const EngineStats after = rig.engine->stats();
  EXPECT_EQ(rig.fast_count(0, kHot), kHot);
  EXPECT_EQ(after.kernel_moved_pages - before.kernel_moved_pages, kHot / 2);
  EXPECT_EQ(after.placement_corrected - before.placement_corrected, kHot / 2);
  EXPECT_EQ(after.promoted_pages - before.promoted_pages, kHot / 2);
  EXPECT_EQ(after.demoted_pages, before.demoted_pages);
  // Nothing moved since: the check stops.
  for (int e = 0; e < 4; ++e) epoch();
  const std::uint64_t verified = rig.engine->stats().placement_verified;
  for (int e = 0; e < 4; ++e) epoch();
  EXPECT_EQ(rig.engine->stats().placement_verified, verified);
}

// When the kernel demotes cold pages (what its reclaim takes first), the
// fast node has free memory the engine does not know of: it still counts
// them in its budget, which looks full (the node holds other processes'
// memory too, so its free memory does not say otherwise), and warm pages
// wait for swaps, which want far hotter newcomers. Asked about after the
// kernel's moves (the fast tier's clock, as they are idle), the cold pages
// are counted where they are and the warm ones move into the room.
TEST(Engine, ColdPagesTheKernelDemotesFreeTheirRoomInTheBudget) {
  constexpr std::size_t kFast = 64, kCold = 60, kWarm = 40, kOther = 150;
  EngineConfig c = Fast("automatic");
  c.fast_budget_bytes = kFast * kPageSize;
  TwoNodes n(4 * kFast, c);
  ASSERT_NE(n.engine, nullptr);
  auto page = [](std::size_t i) { return kBase + i * kPageSize; };
  for (std::size_t i = 0; i < kCold; ++i) n.be.touch(page(i), 0);
  for (std::size_t i = kCold; i < kCold + kWarm; ++i) n.be.touch(page(i), 1);
  for (std::size_t i = 0; i < kOther; ++i) n.be.touch(page(1000 + i), 0);  // not ours
  auto h = n.engine->register_region(reinterpret_cast<void*>(kBase), (kCold + kWarm) * kPageSize);
  ASSERT_TRUE(h.ok()) << h.status();
  auto epoch = [&](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i)
      n.engine->record_access(reinterpret_cast<void*>(page(i)));
    n.step();
  };
  for (int e = 0; e < 2; ++e) epoch(0, kCold);  // the cold pages' one use
  for (int e = 0; e < 40; ++e) epoch(0, 0);     // then idle: heat 0
  for (std::size_t i = 0; i < kCold; ++i) ASSERT_TRUE(n.be.kernel_move(page(i), 1));
  for (int e = 0; e < 6; ++e) epoch(kCold, kCold + kWarm);  // the warm pages' turn
  std::size_t warm_fast = 0;
  for (std::size_t i = kCold; i < kCold + kWarm; ++i) warm_fast += n.be.node_of(page(i)) == 0;
  EXPECT_EQ(warm_fast, kWarm);
  EXPECT_EQ(n.engine->stats().fast_pages, kWarm);
  EXPECT_EQ(n.engine->stats().demoted_pages, 0u);
}

// Where a region shares NUMA balancing, the kernel promotes slow pages the
// application reads. Believed slow, they held fast memory the budget did
// not count, so the engine's pages and the kernel's together overfilled it.
// Asked about after the kernel's moves, they are counted where they are, and
// the budget is kept by demoting the coldest.
TEST(Engine, PagesTheKernelPromotesAreCountedInTheBudget) {
  constexpr std::size_t kBudget = 64, kHot = kBudget, kWarm = 40, kPromoted = 10;
  EngineConfig c = Fast("automatic");
  c.fast_budget_bytes = kBudget * kPageSize;
  TwoNodes n(4 * kBudget, c);
  ASSERT_NE(n.engine, nullptr);
  auto page = [](std::size_t i) { return kBase + i * kPageSize; };
  for (std::size_t i = 0; i < kHot + kWarm; ++i) n.be.touch(page(i), 1);
  auto h = n.engine->register_region(reinterpret_cast<void*>(kBase), (kHot + kWarm) * kPageSize);
  ASSERT_TRUE(h.ok()) << h.status();
  auto epoch = [&] {
    for (std::size_t i = 0; i < kHot + kWarm; ++i)
      for (int k = 0; k < (i < kHot ? 20 : 1); ++k)
        n.engine->record_access(reinterpret_cast<void*>(page(i)));
    n.step();
  };
  auto on_fast = [&] {
    std::size_t f = 0;
    for (std::size_t i = 0; i < kHot + kWarm; ++i) f += n.be.node_of(page(i)) == 0;
    return f;
  };
  for (int e = 0; e < 8; ++e) epoch();
  ASSERT_EQ(on_fast(), kHot);
  for (std::size_t i = kHot; i < kHot + kPromoted; ++i) ASSERT_TRUE(n.be.kernel_move(page(i), 0));
  ASSERT_GT(on_fast(), kBudget);
  for (int e = 0; e < 4; ++e) epoch();
  EXPECT_EQ(n.engine->stats().fast_pages, on_fast());
  EXPECT_LE(on_fast(), kBudget);
  std::size_t hot_fast = 0;
  for (std::size_t i = 0; i < kHot; ++i) hot_fast += n.be.node_of(page(i)) == 0;
  EXPECT_EQ(hot_fast, kHot);
}

// A budget lowered at runtime is kept even when every resident is in use:
// the coldest go first. Policies demote only residents colder than their
// own threshold, so a fast tier of warm pages stayed over the new budget.
TEST(Engine, ALoweredBudgetDemotesTheColdestResidentsWhenNoneIsIdle) {
  constexpr std::size_t kPages = 64, kLowered = 40;
  EngineConfig c = Fast("automatic");
  c.fast_budget_bytes = kPages * kPageSize;
  Rig rig(2 * kPages, kPages, c);
  auto epoch = [&] {
    for (std::size_t i = 0; i < kPages; ++i) rig.touch(i, i < kLowered ? 20 : 2);
    rig.step();
  };
  for (int e = 0; e < 8; ++e) epoch();
  ASSERT_EQ(rig.fast_count(0, kPages), kPages);
  ASSERT_TRUE(rig.engine->set_fast_budget_bytes(kLowered * kPageSize).ok());
  for (int e = 0; e < 4; ++e) epoch();
  EXPECT_EQ(rig.fast_count(0, kLowered), kLowered);
  EXPECT_EQ(rig.fast_count(kLowered, kPages), 0u);
  EXPECT_EQ(rig.engine->stats().fast_pages, kLowered);
}

// The kernel's count of its own moves is a /proc/vmstat read (about 30 us):
// at 1 ms epochs it is read once per Engine::kKernelMovesPeriodMs, not every
// epoch, and at the 100 ms default every epoch. A demotion is still found.
TEST(Engine, TheKernelsMovesAreReadAtMostOncePerPeriod) {
  for (const std::int64_t epoch_ms : {std::int64_t{1}, std::int64_t{100}}) {
    EngineConfig c = Fast("automatic");
    c.epoch_ms = epoch_ms;
    Rig rig(64, 96, c);
    auto epoch = [&] {
      for (std::size_t i = 0; i < 32; ++i) rig.touch(i, 20);
      rig.step();
    };
    for (int e = 0; e < 10; ++e) epoch();
    ASSERT_EQ(rig.fast_count(0, 32), 32u);
    const std::uint64_t reads = rig.be.kernel_moves_reads();
    ASSERT_TRUE(rig.be.kernel_move(rig.page(3), 1));
    constexpr int kEpochs = 100;
    for (int e = 0; e < kEpochs; ++e) epoch();
    const std::int64_t period = std::max<std::int64_t>(1, Engine::kKernelMovesPeriodMs / epoch_ms);
    EXPECT_EQ(rig.be.kernel_moves_reads() - reads, kEpochs / period) << epoch_ms << " ms epochs";
    EXPECT_EQ(rig.fast_count(0, 32), 32u) << epoch_ms << " ms epochs";
  }
}

// The check after the kernel's moves asks at most kVerifyBatch units an
// epoch, a different stripe each epoch, so over a round of stripes it finds
// a demoted hot page wherever it is among many.
// Three stripes' worth of pages, all active and all fast (the kernel put
// them there), after the round of checks that move started has ended.
struct ManyActiveFastPages {
  static constexpr std::size_t kPages = 3 * Engine::kVerifyBatch;
  ManyActiveFastPages() {
    for (std::size_t i = 0; i < kPages; ++i) EXPECT_TRUE(rig.be.kernel_move(rig.page(i), 0));
    for (int e = 0; e < 11; ++e) epoch();
    EXPECT_EQ(rig.engine->stats().fast_pages, kPages);
  }
  void epoch() {
    for (std::size_t i = 0; i < kPages; ++i) rig.touch(i, 4);
    rig.step();
  }
  Rig rig{2 * kPages, kPages, Fast("automatic")};
};

TEST(Engine, TheCheckAfterTheKernelsMovesIsBoundedAndCoversEveryActivePage) {
  ManyActiveFastPages m;
  constexpr std::size_t kPages = ManyActiveFastPages::kPages;
  Rig& rig = m.rig;
  auto epoch = [&] { m.epoch(); };
  ASSERT_EQ(rig.fast_count(0, kPages), kPages);
  for (std::size_t i : {std::size_t{7}, kPages / 2, kPages - 3})
    ASSERT_TRUE(rig.be.kernel_move(rig.page(i), 1));
  std::uint64_t verified = rig.engine->stats().placement_verified;
  int epochs = 0;
  for (; epochs < 12 && rig.fast_count(0, kPages) < kPages; ++epochs) {
    epoch();
    const std::uint64_t now = rig.engine->stats().placement_verified;
    EXPECT_LE(now - verified, Engine::kVerifyBatch);
    verified = now;
  }
  EXPECT_EQ(rig.fast_count(0, kPages), kPages);
  EXPECT_LE(epochs, 7);  // 6 stripes (each half a batch), and one more
}

// A move planned on a belief the kernel's own moves made wrong, before the
// round of checks reached the unit, is not the engine's move: move_pages
// reports a page already on its target node as moved. While the check
// runs, the units about to move are asked about first; those already there
// are believed where they are, and neither moved nor counted as moved.
TEST(Engine, PagesTheKernelMovedAlreadyAreNotCountedAsTheEnginesMoves) {
  ManyActiveFastPages m;
  constexpr std::size_t kPages = ManyActiveFastPages::kPages;
  Rig& rig = m.rig;
  const EngineStats before = rig.engine->stats();
  for (std::size_t i = 0; i < kPages; ++i) ASSERT_TRUE(rig.be.kernel_move(rig.page(i), 1));
  ASSERT_TRUE(rig.engine->regions().set_tag(rig.handle.id(), RegionTag::cold).ok());
  for (int e = 0; e < 2; ++e) m.epoch();
  const EngineStats after = rig.engine->stats();
  EXPECT_EQ(rig.fast_count(0, kPages), 0u);
  EXPECT_EQ(after.fast_pages, 0u);
  EXPECT_EQ(after.demoted_pages, before.demoted_pages);
  EXPECT_EQ(after.placement_corrected - before.placement_corrected, kPages);
  EXPECT_EQ(after.pingpong_pages, before.pingpong_pages);
}

// A region larger than the fast node, registered before use (a buffer pool,
// an embedding table), is believed fast only as far as the node has free
// memory: first touch cannot put more there. Believed all fast, it counted
// four times the node in stats().fast_pages and in the policy's budget.
TEST(Engine, UntouchedPagesAreBelievedFastOnlyAsFarAsTheFastNodeHasRoom) {
  constexpr std::size_t kFast = 8, kUsed = 2, kPages = 32;
  TwoNodes n(kFast);
  ASSERT_NE(n.engine, nullptr);
  auto page = [](std::size_t i) { return kBase + i * kPageSize; };
  for (std::size_t i = 0; i < kUsed; ++i) n.be.touch(page(100 + i), 0);  // other memory there
  auto h = n.engine->register_region(reinterpret_cast<void*>(kBase), kPages * kPageSize);
  ASSERT_TRUE(h.ok()) << h.status();
  n.step();
  const EngineStats s = n.engine->stats();
  EXPECT_EQ(s.tracked_pages, kPages);
  EXPECT_EQ(s.fast_pages, kFast - kUsed);
  EXPECT_EQ(s.slow_pages, kPages - (kFast - kUsed));
  // The belief is in address order: the first pages.
  EXPECT_TRUE(PageWord::fast(n.engine->tracker().word(page(0))->load()));
  EXPECT_FALSE(PageWord::fast(n.engine->tracker().word(page(kFast - kUsed))->load()));
}

// Two regions registered one after the other before either is touched
// share the node's free memory: the second is not offered what the first
// was believed to take. Each used to be offered all of it, so together they
// were believed 1.5x the node.
TEST(Engine, RegionsRegisteredBeforeUseShareTheFreeMemory) {
  constexpr std::size_t kFast = 16, kPages = 12;
  TwoNodes n(kFast);
  ASSERT_NE(n.engine, nullptr);
  auto a = n.engine->register_region(reinterpret_cast<void*>(kBase), kPages * kPageSize);
  auto b =
      n.engine->register_region(reinterpret_cast<void*>(kBase + (1 << 20)), kPages * kPageSize);
  ASSERT_TRUE(a.ok() && b.ok());
  std::size_t believed_fast = 0;
  for (std::size_t i = 0; i < kPages; ++i)
    for (std::uintptr_t base : {kBase, kBase + (1 << 20)})
      believed_fast += PageWord::fast(n.engine->tracker().word(base + i * kPageSize)->load());
  EXPECT_EQ(believed_fast, kFast);
  n.step();
  EXPECT_EQ(n.engine->stats().fast_pages, kFast);
}

// A backend that runs `hook` once, in the first query() of a page in
// [begin, end), after the wrapped backend answered: register_region() asks
// outside the engine's lock, so an epoch may run right there, between the
// answer and the belief it sets.
class HookedQueryBackend final : public ForwardingBackend {
 public:
  HookedQueryBackend(Backend& inner, std::uintptr_t begin, std::uintptr_t end,
                     std::function<void()> hook)
      : ForwardingBackend(inner), begin_(begin), end_(end), hook_(std::move(hook)) {}
  absl::Status query(absl::Span<void* const> pages, absl::Span<int> status) override {
    absl::Status s = inner().query(pages, status);
    if (hook_ && std::any_of(pages.begin(), pages.end(), [&](void* p) {
          return reinterpret_cast<std::uintptr_t>(p) >= begin_ &&
                 reinterpret_cast<std::uintptr_t>(p) < end_;
        }))
      std::exchange(hook_, nullptr)();  // the epoch's own queries do not run it again
    return s;
  }

 private:
  std::uintptr_t begin_, end_;
  std::function<void()> hook_;
};

// An engine whose backend runs `hook` in the first query of the region
// [kBase, kBase + kPages pages) that registered() registers: a simulated
// fast node (0) of 64 pages and an unbounded slow node (1).
struct RegisteringDuringAnEpoch {
  static constexpr std::size_t kPages = 16;
  explicit RegisteringDuringAnEpoch(EngineConfig c = Fast("threshold:1")) {
    c.fast_nodes = {0};
    c.slow_nodes = {1};
    auto e = Engine::create(c, &be, &clock);
    EXPECT_TRUE(e.ok()) << e.status();
    if (e.ok()) engine = std::move(*e);
  }
  static std::uintptr_t page(std::size_t i) { return kBase + i * kPageSize; }
  RegionHandle registered(RegionOptions options = {}, bool initially_fast = true) {
    auto h = engine->register_region(reinterpret_cast<void*>(kBase), kPages * kPageSize,
                                     std::move(options), initially_fast);
    EXPECT_TRUE(h.ok()) << h.status();
    return h.ok() ? std::move(*h) : RegionHandle();
  }
  void step() {
    clock.advance_ns(engine->config().epoch_ms * kNsPerMs);
    ASSERT_TRUE(engine->step().ok());
  }
  // Pages the engine believes in the other tier than the one they are in.
  std::size_t wrong_beliefs() const {
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < kPages; ++i)
      wrong +=
          PageWord::fast(engine->tracker().word(page(i))->load()) != (sim.node_of(page(i)) == 0);
    return wrong;
  }

  SimulatedBackend sim{{{0, 64 * kPageSize}, {1, 1ull << 40}}};
  std::function<void()> hook;
  HookedQueryBackend be{sim, page(0), page(kPages), [this] { hook(); }};
  ManualClock clock{1};
  std::unique_ptr<Engine> engine;
};

// register_region() learns where a region's pages are with a query made
// outside the engine's lock (a terabyte region must not stall epochs), so an
// epoch may run between that query and the belief it sets. That epoch moved
// the region's pages (here a cold-tagged region's, on the fast node), and
// the stale answer then overwrote what the move had set: believed fast,
// every page was on the slow node. Its units now wait for their placement.
TEST(Engine, AnEpochDuringRegistrationMovesNoneOfTheRegionsPages) {
  RegisteringDuringAnEpoch r;
  ASSERT_NE(r.engine, nullptr);
  for (std::size_t i = 0; i < r.kPages; ++i) r.sim.touch(r.page(i), 0);
  r.hook = [&] { r.step(); };
  RegionHandle h = r.registered(RegionOptions().with_tag(RegionTag::cold));
  EXPECT_EQ(r.wrong_beliefs(), 0u);
  EXPECT_EQ(r.engine->stats().demoted_pages, 0u);
  r.step();  // placed: the tag applies
  EXPECT_EQ(r.sim.used_bytes(0), 0u);
  EXPECT_EQ(r.wrong_beliefs(), 0u);
  EXPECT_EQ(r.engine->stats().fast_pages, 0u);
}

// The same for an untagged region whose pages are hot before its placement
// is known (registered as slow, and so they are): the epoch in between
// promoted them and the stale answer said slow, so the fast node held
// pages the engine did not count. Their heat is kept for the next epoch.
TEST(Engine, HeatRecordedDuringRegistrationIsKeptForTheNextEpoch) {
  RegisteringDuringAnEpoch r;
  ASSERT_NE(r.engine, nullptr);
  for (std::size_t i = 0; i < r.kPages; ++i) r.sim.touch(r.page(i), 1);
  r.hook = [&] {
    for (std::size_t i = 0; i < r.kPages; ++i)
      for (int k = 0; k < 50; ++k) r.engine->record_access(reinterpret_cast<void*>(r.page(i)));
    r.step();
  };
  RegionHandle h = r.registered({}, false);
  EXPECT_EQ(r.wrong_beliefs(), 0u);
  EXPECT_EQ(r.engine->stats().promoted_pages, 0u);
  r.step();
  EXPECT_EQ(r.sim.used_bytes(0), r.kPages * kPageSize);
  EXPECT_EQ(r.wrong_beliefs(), 0u);
  EXPECT_EQ(r.engine->stats().fast_pages, r.kPages);
}

// A region unregistered while register_region() still learns its placement
// leaves nothing behind: the same range registered again moves as any.
TEST(Engine, ARegionUnregisteredDuringItsRegistrationLeavesNothingBehind) {
  RegisteringDuringAnEpoch r;
  ASSERT_NE(r.engine, nullptr);
  for (std::size_t i = 0; i < r.kPages; ++i) r.sim.touch(r.page(i), 0);
  r.hook = [&] {
    ASSERT_TRUE(r.engine->regions()
                    .remove(r.engine->regions().lookup(reinterpret_cast<void*>(r.page(0)))->id)
                    .ok());
    r.step();
  };
  RegionHandle gone = r.registered(RegionOptions().with_tag(RegionTag::cold));
  EXPECT_EQ(r.engine->stats().regions, 0u);
  gone.reset();  // already removed: nothing to do
  RegionHandle again = r.registered(RegionOptions().with_tag(RegionTag::cold));
  r.step();
  EXPECT_EQ(r.sim.used_bytes(0), 0u);
  EXPECT_EQ(r.wrong_beliefs(), 0u);
}

// An arena registered before use is believed fast, but its pages not touched
// yet hold no memory anywhere. Chosen as swap victims (heat 0, so first),
// each fails with -ENOENT: the engine must then believe it slow and keep it
// tracked, or it tries the same pages again every epoch.
TEST(Engine, PagesNeverTouchedAreTriedOnceAndKept) {
  constexpr std::size_t kFast = 64, kBudget = 32, kArena = 64, kHot = 48;
  EngineConfig c = Fast("automatic");
  c.fast_budget_bytes = kBudget * kPageSize;  // less than the hot set: swaps
  TwoNodes n(kFast, c);
  ASSERT_NE(n.engine, nullptr);
  auto page = [](std::size_t i) { return kBase + i * kPageSize; };
  auto arena = n.engine->register_region(reinterpret_cast<void*>(page(0)), kArena * kPageSize);
  ASSERT_TRUE(arena.ok()) << arena.status();  // never touched: believed fast
  for (std::size_t i = kArena; i < kArena + kHot; ++i) n.be.touch(page(i), 1);
  auto data = n.engine->register_region(reinterpret_cast<void*>(page(kArena)), kHot * kPageSize);
  ASSERT_TRUE(data.ok()) << data.status();  // queried: slow
  for (int e = 0; e < 12; ++e) {
    for (std::size_t i = kArena; i < kArena + kHot; ++i)
      for (int k = 0; k < 50 + static_cast<int>(i); ++k)  // a gradient: swaps pay
        n.engine->record_access(reinterpret_cast<void*>(page(i)));
    n.step();
  }
  const EngineStats s = n.engine->stats();
  // One demotion attempt per page at most: then the engine knows it is absent
  // (each used to be tried again every epoch, 620 attempts in 12 epochs).
  EXPECT_GT(s.absent_pages, 0u);
  EXPECT_LE(s.absent_pages, kArena);
  EXPECT_EQ(s.failures_by_errno.count[ENOENT], s.absent_pages);
  EXPECT_EQ(s.failed_pages + s.dropped_pages, 0u);
  // A swap whose victim was absent made no room: its promotion waits.
  EXPECT_LE(n.be.used_bytes(0), kBudget * kPageSize);
  // Still tracked: touched later, they are judged as any page.
  EXPECT_EQ(s.tracked_pages, kArena + kHot);
}

// A region registered before use is believed fast (first touch on a CPU
// node) as far as the fast node has free memory; two such regions share it
// (RegionsRegisteredBeforeUseShareTheFreeMemory). Pages believed fast that
// hold nothing must not make the engine demote: demotions are sized by what
// the fast node really holds. Before, the engine demoted for pages that held
// nothing and, the absent ones tried, took the hot pages.
TEST(Engine, UntouchedPagesBelievedFastDoNotPushHotPagesOut) {
  constexpr std::size_t kNode = 1000, kHot = 300, kRegion = 1500;
  for (const char* policy : {"automatic", "automatic:keep_room=0", "threshold:2"}) {
    TwoNodes n(kNode, Fast(policy));
    ASSERT_NE(n.engine, nullptr);
    std::vector<RegionHandle> regions;
    for (std::size_t r = 0; r < 2; ++r) {
      auto h = n.engine->register_region(reinterpret_cast<void*>(kBase + r * kRegion * kPageSize),
                                         kRegion * kPageSize);
      ASSERT_TRUE(h.ok()) << h.status();
      regions.push_back(std::move(*h));
    }
    ASSERT_EQ(n.engine->tracker().fast_pages(), kNode);
    auto page = [](std::size_t i) { return kBase + i * kPageSize; };
    for (std::size_t i = 0; i < kHot; ++i) n.be.touch(page(i), 0);
    for (int e = 0; e < 20; ++e) {
      for (std::size_t i = 0; i < kHot; ++i)
        for (int k = 0; k < 20; ++k) n.engine->record_access(reinterpret_cast<void*>(page(i)));
      n.step();
    }
    std::size_t hot_fast = 0;
    for (std::size_t i = 0; i < kHot; ++i) hot_fast += n.be.node_of(page(i)) == 0;
    EXPECT_EQ(hot_fast, kHot) << policy;
    EXPECT_EQ(n.engine->stats().demoted_pages, 0u) << policy << "\n"
                                                   << n.engine->stats().to_table();
  }
}

// Pages first touched while the program runs land where the kernel puts
// them: on the fast node while it has free memory. automatic (keep_room=2,
// the default) sees births take free memory and keeps room for them, made
// of idle residents only: the hot pages stay. With keep_room=0 the budget
// is filled and, once the node is full, every birth lands slow.
TEST(Engine, AutomaticKeepsRoomForBirthsMadeOfIdlePagesOnly) {
  constexpr std::size_t kNode = 1000, kHot = 300, kBirths = 50, kEpochs = 40;
  auto page = [](std::size_t i) { return kBase + i * kPageSize; };
  struct Outcome {
    std::size_t late_born_fast = 0, hot_fast = 0, room_epochs = 0;
  };
  auto run = [&](const char* policy) {
    EngineConfig c = Fast(policy);
    c.high_watermark = 1;  // no node reserve: a full node makes no room by itself
    TwoNodes n(kNode, c);
    Outcome o;
    if (n.engine == nullptr) return o;
    auto h = n.engine->register_region(reinterpret_cast<void*>(kBase),
                                       (kHot + kBirths * kEpochs) * kPageSize);
    EXPECT_TRUE(h.ok()) << h.status();
    for (std::size_t i = 0; i < kHot; ++i) n.be.touch(page(i), 0);
    for (std::size_t e = 0; e < kEpochs; ++e) {
      for (std::size_t i = 0; i < kHot; ++i)
        for (int k = 0; k < 20; ++k) n.engine->record_access(reinterpret_cast<void*>(page(i)));
      for (std::size_t b = 0; b < kBirths; ++b) {  // born, used a little, never again
        const std::size_t i = kHot + e * kBirths + b;
        const bool fast = n.be.touch(page(i), 0) == 0;
        if (e >= kEpochs / 2) o.late_born_fast += fast;
        for (int k = 0; k < 3; ++k) n.engine->record_access(reinterpret_cast<void*>(page(i)));
      }
      n.step();
    }
    for (std::size_t i = 0; i < kHot; ++i) o.hot_fast += n.be.node_of(page(i)) == 0;
    o.room_epochs = n.engine->stats().room_epochs;
    return o;
  };
  const Outcome room = run("automatic"), filled = run("automatic:keep_room=0");
  // The node fills after 14 epochs: later births land fast only with room.
  EXPECT_GE(room.late_born_fast, kBirths * kEpochs / 2 * 9 / 10);
  EXPECT_EQ(filled.late_born_fast, 0u);
  EXPECT_EQ(room.hot_fast, kHot);
  EXPECT_EQ(filled.hot_fast, kHot);
  EXPECT_GE(room.room_epochs, kEpochs / 2);
  EXPECT_EQ(filled.room_epochs, 0u);
}

// A budget lowered while automatic keeps room for births (made of idle
// residents only) is still kept: the excess over the budget goes coldest
// first, in use or not, and only the room beyond it waits for idle pages.
TEST(Engine, ALoweredBudgetIsKeptWhileRoomIsKeptForBirths) {
  constexpr std::size_t kNode = 1000, kHot = 300, kBirths = 50, kEpochs = 20, kLowered = 250;
  auto page = [](std::size_t i) { return kBase + i * kPageSize; };
  EngineConfig c = Fast("automatic");
  c.high_watermark = 1;
  TwoNodes n(kNode, c);
  ASSERT_NE(n.engine, nullptr);
  auto h = n.engine->register_region(reinterpret_cast<void*>(kBase),
                                     (kHot + kBirths * 2 * kEpochs) * kPageSize);
  ASSERT_TRUE(h.ok()) << h.status();
  for (std::size_t i = 0; i < kHot; ++i) n.be.touch(page(i), 0);
  std::size_t born = kHot;
  auto epoch = [&] {
    for (std::size_t i = 0; i < kHot; ++i)
      for (int k = 0; k < 20; ++k) n.engine->record_access(reinterpret_cast<void*>(page(i)));
    for (std::size_t b = 0; b < kBirths; ++b, ++born) {
      n.be.touch(page(born), 0);
      for (int k = 0; k < 3; ++k) n.engine->record_access(reinterpret_cast<void*>(page(born)));
    }
    n.step();
  };
  for (std::size_t e = 0; e < kEpochs; ++e) epoch();
  ASSERT_GT(n.engine->stats().room_epochs, 0u);
  ASSERT_TRUE(n.engine->set_fast_budget_bytes(kLowered * kPageSize).ok());
  for (std::size_t e = 0; e < kEpochs; ++e) epoch();
  std::size_t fast = 0, hot_fast = 0;
  for (std::size_t i = 0; i < born; ++i) fast += n.be.node_of(page(i)) == 0;
  for (std::size_t i = 0; i < kHot; ++i) hot_fast += n.be.node_of(page(i)) == 0;
  EXPECT_LE(fast, kLowered + kBirths);  // the budget, and the births since the last epoch
  EXPECT_EQ(n.engine->stats().fast_pages, fast);
  EXPECT_GE(hot_fast, kLowered - kBirths);  // the idle births went first
}

TEST(Engine, ColdPagesAreDemotedAtTheHighWatermark) {
  EngineConfig c = Fast("threshold:2");
  Rig rig(100, 300, c);
  // Warm 100 pages into the fast tier...
  for (int e = 0; e < 5; ++e) {
    for (std::size_t i = 0; i < 100; ++i) rig.touch(i, 5);
    rig.step();
  }
  EXPECT_GE(rig.fast_count(0, 100), 90u);
  // ...then the workload moves to pages 200..260; the old ones go cold.
  for (int e = 0; e < 30; ++e) {
    for (std::size_t i = 200; i < 260; ++i) rig.touch(i, 5);
    rig.step();
  }
  EXPECT_EQ(rig.fast_count(200, 260), 60u);
  EXPECT_GT(rig.engine->stats().demoted_pages, 0u);
  // Demotion stops at the low watermark (90 pages) rather than emptying.
  EXPECT_LE(rig.be.used_bytes(0), 95 * kPageSize);
}

TEST(Engine, BytesMovedNeverExceedRateTimesTimePlusBurst) {
  EngineConfig c = Fast("threshold:1");
  c.rate_limit_mbps = 1;           // 1 MiB/s = 256 pages/s
  c.burst_bytes = 64 * kPageSize;  // 64 pages
  c.epoch_ms = 100;
  Rig rig(5000, 5000, c);
  for (int e = 0; e < 20; ++e) {
    for (std::size_t i = 0; i < 5000; ++i) rig.touch(i, 3);
    rig.step();
    double seconds = (e + 1) * 0.1;
    std::uint64_t moved = rig.engine->stats().promoted_bytes + rig.engine->stats().demoted_bytes;
    EXPECT_LE(static_cast<double>(moved), seconds * RateLimiter::kBytesPerMB + 64 * kPageSize)
        << "epoch " << e;
  }
  EXPECT_GT(rig.engine->stats().deferred_pages, 0u);
  EXPECT_GT(rig.engine->stats().promoted_pages, 256u);  // and it did move at the rate
}

TEST(Engine, RuntimeThresholdChangeTakesEffectAtTheNextEpoch) {
  EngineConfig c = Fast("threshold:100");
  c.half_life_epochs = 1;  // heat settles within a few epochs
  Rig rig(1000, 100, c);
  for (int e = 0; e < 3; ++e) {
    for (std::size_t i = 0; i < 100; ++i) rig.touch(i, 5);
    rig.step();
  }
  EXPECT_EQ(rig.engine->stats().promoted_pages, 0u);  // 5/epoch < 100
  ASSERT_TRUE(rig.engine->set_promotion_threshold(4).ok());
  for (std::size_t i = 0; i < 100; ++i) rig.touch(i, 5);
  rig.step();
  EXPECT_EQ(rig.engine->stats().promoted_pages, 100u);
  EXPECT_EQ(rig.engine->stats().promotion_threshold, 4);
}

// The threshold policy's rates become heats, and a rate past the heat range
// saturates at kMaxHeat; the demotion heat was not held below it. At
// promotion 1000 and demotion 300 accesses/epoch (valid: demotion below
// promotion) and decay 0.5, promotion needed heat min(2000, 511) = 511 and
// demotion took every fast page at heat <= 600: all of them, the ones hot
// enough to be promoted too, so the hysteresis against ping-pong was gone.
TEST(Engine, ThresholdPolicyKeepsTheDemotionHeatBelowASaturatedPromotionHeat) {
  EpochContext ctx;
  ctx.decay = 0.5;  // heat = 2 x rate
  auto thresholds = [&](double promote, double demote) {
    EXPECT_TRUE(ThresholdPolicy::validate(promote, demote).ok());
    ThresholdOptions o;
    o.promotion_threshold = promote;
    o.demotion_threshold = demote;
    return ThresholdPolicy(o).begin_epoch(ctx);
  };
  Thresholds t = thresholds(4, 1);  // unsaturated: as before
  EXPECT_EQ(t.promote_heat, 8u);
  EXPECT_EQ(t.demote_heat, 2u);
  t = thresholds(1000, 300);
  EXPECT_EQ(t.promote_heat, PageWord::kMaxHeat);
  EXPECT_LT(t.demote_heat, t.promote_heat);
  t = thresholds(1e6, 1e5);
  EXPECT_LT(t.demote_heat, t.promote_heat);
}

// The two setters called at once, on the policy itself (the engine holds
// its own lock around them; a user's policy object need not): promotion
// to 2 against demotion to 5, from (10, 1). Either order leaves demotion
// below promotion, (2, 1). Before, the demotion setter could check 5
// against 10, then store it after the promotion setter had made it 2
// (about 1 round in 100,000 here: each of 5 runs failed).
TEST(Engine, ThresholdSettersRacingKeepDemotionBelowPromotion) {
  ThresholdPolicy p;
  std::atomic<int> round{-1}, done{0};
  constexpr int kRounds = 100000;
  auto racer = [&](bool promote) {
    for (int r = 0; r < kRounds; ++r) {
      while (round.load() < r) std::this_thread::yield();
      if (promote)
        (void)p.set_promotion_threshold(2);
      else
        (void)p.set_demotion_threshold(5);
      done.fetch_add(1);
    }
  };
  std::thread a(racer, true), b(racer, false);
  int broken = 0;
  for (int r = 0; r < kRounds; ++r) {
    ASSERT_TRUE(p.set_promotion_threshold(10).ok());
    ASSERT_TRUE(p.set_demotion_threshold(1).ok());
    round.store(r);
    while (done.load() < 2 * (r + 1)) std::this_thread::yield();
    broken += p.demotion_threshold() >= p.current_threshold();
  }
  a.join();
  b.join();
  EXPECT_EQ(broken, 0) << "of " << kRounds << " rounds";
}

TEST(Engine, SetPromotionThresholdRejectsBadValuesAndWrongPolicy) {
  Rig rig(10, 10, Fast("threshold:8"));
  EXPECT_EQ(rig.engine->set_promotion_threshold(-1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rig.engine->set_promotion_threshold(NAN).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(rig.engine->set_policy("automatic").ok());
  absl::Status s = rig.engine->set_promotion_threshold(3);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("automatic"), absl::string_view::npos);
  EXPECT_FALSE(rig.engine->set_policy("nonsense").ok());
  EXPECT_FALSE(rig.engine->set_rate_limit_mbps(-5).ok());
}

// Setters left config() unlike the running engine, and invalid: create()
// and set_policy("threshold") then refused it.
TEST(Engine, ThresholdSettersKeepConfigTrueAndValid) {
  Rig rig(10, 10, Fast("threshold"));
  Engine& e = *rig.engine;
  ASSERT_TRUE(e.set_promotion_threshold(0.5).ok());  // lowers demotion (1) to 0.25
  EXPECT_EQ(e.config().threshold.promotion_threshold, 0.5);
  EXPECT_EQ(e.config().threshold.demotion_threshold, 0.25);
  EXPECT_TRUE(e.config().validate().ok()) << e.config().validate();
  EXPECT_TRUE(e.set_policy("threshold").ok());
  ASSERT_TRUE(e.set_demotion_threshold(0.1).ok());
  EXPECT_EQ(e.config().threshold.demotion_threshold, 0.1);
  // A spec's rate is replaced by the one set.
  ASSERT_TRUE(e.set_policy("threshold:8").ok());
  ASSERT_TRUE(e.set_promotion_threshold(20).ok());
  EXPECT_EQ(e.config().policy, "threshold");
  EXPECT_EQ(e.config().threshold.promotion_threshold, 20);
  EngineConfig c = e.config();
  c.environment = EngineConfig::Environment::kIgnore;
  auto copy = Engine::create(c, &rig.be, &rig.clock);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ((*copy)->policy_unsafe().current_threshold(), 20);
  EXPECT_EQ(static_cast<ThresholdPolicy&>((*copy)->policy_unsafe()).demotion_threshold(), 0.1);
}

// Setters skipped the knobs' ranges: a demotion threshold of 1e11 then
// reached an out-of-range double -> uint32 cast in the next epoch.
TEST(Engine, SettersRefuseValuesOutsideTheKnobsRanges) {
  Rig rig(10, 10, Fast("threshold:8"));
  Engine& e = *rig.engine;
  const EngineConfig before = e.config();
  absl::Status s = e.set_rate_limit_mbps(1e10);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "set_rate_limit_mbps: rate_limit_mbps = 1e+10 must be in [0, 1e+09] (MiB/s)");
  EXPECT_EQ(e.rate_limiter().rate_mbps(), before.rate_limit_mbps);
  s = e.set_promotion_threshold(1e12);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("threshold.promotion_threshold = 1e+12 must be in [0, 1e+06]"),
            absl::string_view::npos)
      << s;
  EXPECT_EQ(e.policy_unsafe().current_threshold(), 8);
  ASSERT_TRUE(e.set_promotion_threshold(1e6).ok());
  s = e.set_demotion_threshold(1e6 - 1);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_FALSE(e.set_demotion_threshold(1e11).ok());
  EXPECT_EQ(e.config().threshold.demotion_threshold, 1e6 - 1);
  EXPECT_EQ(e.config().policy, "threshold");
  EXPECT_TRUE(e.config().validate().ok()) << e.config().validate();
  rig.step();
}

TEST(Engine, TagsAndPinsOverrideThePolicy) {
  ManualClock clock(1);
  SimulatedBackend be({{0, 1000 * kPageSize}, {1, 1ull << 30}});
  EngineConfig c = Fast("threshold:1000");  // the policy alone would promote nothing
  c.slow_nodes = {1};
  auto e = Engine::create(c, &be, &clock);
  ASSERT_TRUE(e.ok());
  auto& eng = **e;
  auto mk = [&](std::uintptr_t base, NodeId n, RegionTag t) {
    for (int i = 0; i < 10; ++i) be.touch(base + i * kPageSize, n);
    auto h = eng.register_region(reinterpret_cast<void*>(base), 10 * kPageSize,
                                 RegionOptions().with_tag(t));
    EXPECT_TRUE(h.ok());
    return std::move(*h);
  };
  auto hot = mk(kBase, 1, RegionTag::hot);
  auto cold = mk(kBase + (1 << 20), 0, RegionTag::cold);
  auto pin_slow = mk(kBase + (2 << 20), 1, RegionTag::pinned);
  auto pin_fast = mk(kBase + (3 << 20), 0, RegionTag::pinned);
  for (int i = 0; i < 10; ++i) {  // pinned pages blazing hot / ice cold
    for (int k = 0; k < 50; ++k)
      eng.record_access(reinterpret_cast<void*>(kBase + (2 << 20) + i * kPageSize));
  }
  clock.advance_ns(100 * kNsPerMs);
  ASSERT_TRUE(eng.step().ok());
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(be.node_of(kBase + i * kPageSize), 0) << "hot region page " << i;
    EXPECT_EQ(be.node_of(kBase + (1 << 20) + i * kPageSize), 1) << "cold region page " << i;
    EXPECT_EQ(be.node_of(kBase + (2 << 20) + i * kPageSize), 1) << "pinned slow page " << i;
    EXPECT_EQ(be.node_of(kBase + (3 << 20) + i * kPageSize), 0) << "pinned fast page " << i;
  }
  // Retag at runtime: the hot region becomes cold.
  ASSERT_TRUE(eng.regions().set_tag(hot.id(), RegionTag::cold).ok());
  clock.advance_ns(100 * kNsPerMs);
  ASSERT_TRUE(eng.step().ok());
  EXPECT_EQ(be.node_of(kBase), 1);
}

// A region registered where another was unregistered starts with no move
// history: demoting its pages is no reversal of the old region's promotions.
// Before, the old history stayed until it aged out (the ping-pong window),
// and the demotions counted as ping-pong.
// Also when more regions are removed between two epochs than the registry
// lists one by one (RegionRegistry::take_removed merges them).
TEST(Engine, ARegionWhereAnotherWasInheritsNoMoveHistory) {
  for (std::size_t others : {std::size_t{0}, 3 * RegionRegistry::kMaxRemovedRanges}) {
    SCOPED_TRACE(absl::StrCat(others, " other regions removed"));
    ManualClock clock(1);
    SimulatedBackend be({{0, 1000 * kPageSize}, {1, 1ull << 30}});
    EngineConfig c = Fast("threshold:1000");
    c.slow_nodes = {1};
    auto e = Engine::create(c, &be, &clock);
    ASSERT_TRUE(e.ok());
    auto& eng = **e;
    for (int i = 0; i < 10; ++i) be.touch(kBase + i * kPageSize, 1);
    auto region = [&](std::uintptr_t at, std::size_t pages, RegionTag t) {
      auto h = eng.register_region(reinterpret_cast<void*>(at), pages * kPageSize,
                                   RegionOptions().with_tag(t));
      EXPECT_TRUE(h.ok()) << h.status();
      return h.ok() ? std::move(*h) : RegionHandle();
    };
    RegionHandle first = region(kBase, 10, RegionTag::hot);
    clock.advance_ns(100 * kNsPerMs);
    ASSERT_TRUE(eng.step().ok());
    ASSERT_EQ(eng.stats().promoted_pages, 10u);
    first.reset();
    for (std::size_t i = 0; i < others; ++i)
      region(kBase + (std::uintptr_t{1} << 30) + 2 * i * kPageSize, 1, RegionTag::automatic)
          .reset();
    RegionHandle second = region(kBase, 10, RegionTag::cold);
    clock.advance_ns(100 * kNsPerMs);
    ASSERT_TRUE(eng.step().ok());
    ASSERT_EQ(eng.stats().demoted_pages, 10u);
    EXPECT_EQ(eng.stats().pingpong_pages, 0u);
  }
}

// A two-socket machine: DRAM nodes 0 and 1 (`fast_pages` each), CPU-less
// slow nodes 2 (near socket 0) and 3 (near socket 1), with the distances of
// tests/fixtures/qemu-two-socket-two-cxl-hmat.xml.
struct TwoSockets {
  explicit TwoSockets(std::size_t fast_pages, EngineConfig c)
      : be({{0, fast_pages * kPageSize},
            {1, fast_pages * kPageSize},
            {2, 1ull << 40},
            {3, 1ull << 40}}) {
    be.set_distance(0, 1, 21);
    be.set_distance(0, 2, 24);
    be.set_distance(0, 3, 34);
    be.set_distance(1, 2, 34);
    be.set_distance(1, 3, 24);
    be.set_distance(2, 3, 44);
    c.fast_nodes = {0, 1};
    c.slow_nodes = {2, 3};
    auto e = Engine::create(c, &be, &clock);
    EXPECT_TRUE(e.ok()) << e.status();
    if (e.ok()) engine = std::move(*e);
  }
  // `n` pages at `base`, first touched on `node`, registered with `tag`
  // (and `home` as RegionOptions::home_node).
  RegionHandle region(std::uintptr_t base, std::size_t n, NodeId node, RegionTag tag,
                      NodeId home = kNoNode) {
    for (std::size_t i = 0; i < n; ++i) be.touch(base + i * kPageSize, node);
    auto h = engine->register_region(reinterpret_cast<void*>(base), n * kPageSize,
                                     RegionOptions().with_tag(tag).with_home_node(home));
    EXPECT_TRUE(h.ok()) << h.status();
    return std::move(*h);
  }
  std::size_t on(std::uintptr_t base, std::size_t n, NodeId node) const {
    std::size_t c = 0;
    for (std::size_t i = 0; i < n; ++i) c += be.node_of(base + i * kPageSize) == node;
    return c;
  }
  void step() {
    clock.advance_ns(engine->config().epoch_ms * kNsPerMs);
    ASSERT_TRUE(engine->step().ok());
  }
  SimulatedBackend be;
  ManualClock clock{1};
  std::unique_ptr<Engine> engine;
};

// Each page moves to the nearest node of its new tier, as the kernel demotes
// to the nearest lower-tier node: a page on the CXL node near socket 1 is
// promoted into socket 1's DRAM, and back. Every move used to go to the
// tier's first node (0 or 2), across the sockets for half the pages.
TEST(Engine, PagesMoveToTheNearestNodeOfTheirNewTier) {
  constexpr std::size_t kPages = 20;
  const std::uintptr_t near0 = kBase, near1 = kBase + (1 << 20);
  TwoSockets m(1000, Fast("threshold:1000"));
  ASSERT_NE(m.engine, nullptr);
  auto a = m.region(near0, kPages, 2, RegionTag::hot);
  auto b = m.region(near1, kPages, 3, RegionTag::hot);
  m.step();
  EXPECT_EQ(m.on(near0, kPages, 0), kPages);
  EXPECT_EQ(m.on(near1, kPages, 1), kPages);
  ASSERT_TRUE(m.engine->regions().set_tag(a.id(), RegionTag::cold).ok());
  ASSERT_TRUE(m.engine->regions().set_tag(b.id(), RegionTag::cold).ok());
  m.step();
  EXPECT_EQ(m.on(near0, kPages, 2), kPages);
  EXPECT_EQ(m.on(near1, kPages, 3), kPages);
}

// A region's home node (the socket that serves it) decides where its pages
// go instead of the node they are on: data on the CXL node near socket 0,
// served from socket 1, is promoted into socket 1's DRAM and demoted to the
// CXL node near socket 1. A node the backend does not know is refused.
TEST(Engine, ARegionsHomeNodeDecidesWhereItsPagesMove) {
  constexpr std::size_t kPages = 20;
  TwoSockets m(1000, Fast("threshold:1000"));
  ASSERT_NE(m.engine, nullptr);
  auto h = m.region(kBase, kPages, 2, RegionTag::hot, /*home=*/1);
  m.step();
  EXPECT_EQ(m.on(kBase, kPages, 1), kPages);
  ASSERT_TRUE(m.engine->regions().set_tag(h.id(), RegionTag::cold).ok());
  m.step();
  EXPECT_EQ(m.on(kBase, kPages, 3), kPages);
  auto bad = m.engine->register_region(reinterpret_cast<void*>(kBase + (1 << 20)), kPageSize,
                                       RegionOptions().with_home_node(9));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "register_region: home_node 9 is not a node the simulated backend can use: node 9 "
            "does not exist");
}

// A fast node without room above its reserve is passed over for the next
// nearest, as the kernel promotes only into a node above its high watermark
// (migrate_balanced_pgdat). Before, every promotion went to node 0 and
// failed there with ENOMEM while node 1 stood empty.
TEST(Engine, AFullFastNodeSpillsToTheNextNearest) {
  constexpr std::size_t kNode = 100, kFiller = 95, kHot = 40;
  TwoSockets m(kNode, Fast("threshold:1000"));
  ASSERT_NE(m.engine, nullptr);
  for (std::size_t i = 0; i < kFiller; ++i) m.be.touch(kBase + (8 << 20) + i * kPageSize, 0);
  auto h = m.region(kBase, kHot, 2, RegionTag::hot);
  m.step();
  EXPECT_EQ(m.on(kBase, kHot, 1), kHot);
  const EngineStats s = m.engine->stats();
  EXPECT_EQ(s.promoted_pages, kHot);
  EXPECT_EQ(s.failed_pages, 0u);
  EXPECT_EQ(s.failures_by_errno.count[ENOMEM], 0u);
}

// Promotions leave the kernel's own reserve free where it is larger than
// 1 - high_watermark of the node: below the zones' high watermarks kswapd
// reclaims, and with demotion on it demotes what was just promoted. The
// default 5% of a small node (a VM's 740 MiB) is below them.
TEST(Engine, PromotionsLeaveTheKernelsReserveFree) {
  constexpr std::size_t kFast = 1000, kKernel = 200, kPages = 2000;
  TwoNodes n(kFast);
  ASSERT_NE(n.engine, nullptr);
  n.be.set_kernel_reserve(0, kKernel * kPageSize);
  auto page = [](std::size_t i) { return kBase + i * kPageSize; };
  for (std::size_t i = 0; i < kPages; ++i) n.be.touch(page(i), 1);
  auto h = n.engine->register_region(reinterpret_cast<void*>(kBase), kPages * kPageSize);
  ASSERT_TRUE(h.ok()) << h.status();
  for (int e = 0; e < 20; ++e) {
    for (std::size_t i = 0; i < kFast; ++i)
      for (int k = 0; k < 20; ++k) n.engine->record_access(reinterpret_cast<void*>(page(i)));
    n.step();
  }
  const std::size_t fast = n.be.used_bytes(0) / kPageSize;
  EXPECT_LE(fast, kFast - kKernel);
  EXPECT_GE(fast, kFast - kKernel - kFast / 20);  // and it did fill up to it
  const EngineStats s = n.engine->stats();
  EXPECT_EQ(s.kernel_reserve_pages, kKernel);
  EXPECT_EQ(s.reserve_pages, kKernel);
}

// A fast node whose free memory is above 1 - high_watermark but below the
// kernel's reserve has no room: promotions go to the next nearest node.
TEST(Engine, AFastNodeUnderTheKernelsReserveIsPassedOver) {
  constexpr std::size_t kNode = 100, kFiller = 80, kHot = 20;
  TwoSockets m(kNode, Fast("threshold:1000"));
  ASSERT_NE(m.engine, nullptr);
  m.be.set_kernel_reserve(0, 30 * kPageSize);  // node 0: 20 free, 5 by the knob, 30 by the kernel
  for (std::size_t i = 0; i < kFiller; ++i) m.be.touch(kBase + (8 << 20) + i * kPageSize, 0);
  auto h = m.region(kBase, kHot, 2, RegionTag::hot);
  m.step();
  EXPECT_EQ(m.on(kBase, kHot, 1), kHot);
  EXPECT_EQ(m.be.used_bytes(0) / kPageSize, kFiller);
}

// Each registered region is kept from the kernel's NUMA balancing (on
// Linux an MPOL_BIND over every allowed node where the range had the default
// policy), so the kernel does not undo the engine's placement; "share"
// leaves it. A failure is counted, not returned: the region still works.
TEST(Engine, RegionsAreKeptFromTheKernelsNumaBalancing) {
  for (const char* mode : {"exclude", "share"}) {
    EngineConfig c = Fast("static");
    c.kernel_balancing = mode;
    TwoNodes n(100, c);
    ASSERT_NE(n.engine, nullptr);
    n.be.set_numa_balancing_result(true);
    auto h = n.engine->register_region(reinterpret_cast<void*>(kBase), 10 * kPageSize);
    ASSERT_TRUE(h.ok()) << h.status();
    const bool exclude = std::string(mode) == "exclude";
    const auto ranges = n.be.numa_balancing_ranges();
    ASSERT_EQ(ranges.size(), exclude ? 1u : 0u) << mode;
    if (exclude) {
      EXPECT_EQ(ranges[0].first, reinterpret_cast<void*>(kBase));
      EXPECT_EQ(ranges[0].second, 10 * kPageSize);
    }
    EXPECT_EQ(n.engine->stats().regions_kept_from_numa_balancing, exclude ? 1u : 0u) << mode;
  }
}

TEST(Engine, AFailureToKeepNumaBalancingAwayIsCountedNotReturned) {
  TwoNodes n(100, Fast("static"));
  ASSERT_NE(n.engine, nullptr);
  n.be.set_numa_balancing_result(absl::InvalidArgumentError("get_mempolicy: Bad address"));
  auto h = n.engine->register_region(reinterpret_cast<void*>(kBase), 10 * kPageSize);
  ASSERT_TRUE(h.ok()) << h.status();
  const EngineStats s = n.engine->stats();
  EXPECT_EQ(s.regions_kept_from_numa_balancing, 0u);
  EXPECT_EQ(s.numa_balancing_errors, 1u);
  EXPECT_EQ(s.numa_balancing_error, "get_mempolicy: Bad address");
  EXPECT_NE(s.to_table().find("1 failed: get_mempolicy"), std::string::npos) << s.to_table();
}

// With no node nearer than another (one slow node, no distances known) the
// promotions are spread by room, so both sockets' DRAM is used; and a hot
// set larger than one fast node but within both ends all fast under
// `automatic`, which fills the budget of both nodes.
TEST(Engine, PromotionsFillEveryFastNode) {
  constexpr std::size_t kNode = 100, kPages = 400, kHot = 150;
  SimulatedBackend be({{0, kNode * kPageSize}, {1, kNode * kPageSize}, {2, 1ull << 40}});
  ManualClock clock(1);
  EngineConfig c = Fast("automatic");
  c.fast_nodes = {0, 1};
  c.slow_nodes = {2};
  auto e = Engine::create(c, &be, &clock);
  ASSERT_TRUE(e.ok()) << e.status();
  for (std::size_t i = 0; i < kPages; ++i) be.touch(kBase + i * kPageSize, 2);
  auto h = (*e)->register_region(reinterpret_cast<void*>(kBase), kPages * kPageSize);
  ASSERT_TRUE(h.ok()) << h.status();
  for (int epoch = 0; epoch < 20; ++epoch) {
    for (std::size_t i = 0; i < kHot; ++i)
      for (int k = 0; k < 20; ++k)
        (*e)->record_access(reinterpret_cast<void*>(kBase + i * kPageSize));
    clock.advance_ns(c.epoch_ms * kNsPerMs);
    ASSERT_TRUE((*e)->step().ok());
  }
  std::size_t hot_fast = 0, on0 = 0, on1 = 0;
  for (std::size_t i = 0; i < kPages; ++i) {
    const NodeId n = be.node_of(kBase + i * kPageSize);
    hot_fast += i < kHot && n != 2;
    on0 += n == 0;
    on1 += n == 1;
  }
  EXPECT_EQ(hot_fast, kHot);
  EXPECT_GE(on0, kHot / 3);
  EXPECT_GE(on1, kHot / 3);
  EXPECT_EQ((*e)->stats().failures_by_errno.count[ENOMEM], 0u);
}

void StationaryHasNoPingPong(const std::string& policy) {
  Rig rig(200, 2000, Fast(policy));
  std::mt19937 rng(7);
  std::discrete_distribution<int> skew({50, 30, 20});
  for (int e = 0; e < 100; ++e) {
    for (int k = 0; k < 20000; ++k) {
      int bucket = skew(rng);  // pages 0-99: 50%, 100-499: 30%, 500-1999: 20%
      std::size_t i = bucket == 0   ? rng() % 100
                      : bucket == 1 ? 100 + rng() % 400
                                    : 500 + rng() % 1500;
      rig.touch(i);
    }
    rig.step();
  }
  auto s = rig.engine->stats();
  EXPECT_GE(rig.fast_count(0, 100), 95u) << policy;
  EXPECT_EQ(s.pingpong_pages, 0u) << policy << "\n" << s.to_table();
  EXPECT_LT(s.promoted_pages, 400u) << policy << ": churning\n" << s.to_table();
}
TEST(Engine, NoPingPongOnStationaryWorkloadThreshold) { StationaryHasNoPingPong("threshold:8"); }
TEST(Engine, NoPingPongOnStationaryWorkloadAutomatic) { StationaryHasNoPingPong("automatic"); }

// Uniform access has no hot set: once the fast tier is full, every swap
// trades one noise winner for another. With 2,000 equally warm pages, the
// 4-sigma margin per pair still lets the extremes through; the heat-spread
// test (AutomaticOptions::spread_confidence) sees that the heats vary no
// more than Poisson counts do and swaps nothing. Returns the swaps after
// the fill.
std::uint64_t SwapsOnUniform(const std::string& policy) {
  Rig rig(500, 2000, Fast(policy));
  std::mt19937 rng(11);
  std::uint64_t filled = 0;
  for (int e = 0; e < 200; ++e) {
    for (int k = 0; k < 6000; ++k) rig.touch(rng() % 2000);
    rig.step();
    if (e == 4) filled = rig.engine->stats().promoted_pages;
  }
  EXPECT_GE(rig.fast_count(0, 2000), 450u) << policy;  // filled (less the watermark)
  return rig.engine->stats().promoted_pages - filled;
}
TEST(Engine, AutomaticDoesNotSwapNoiseOnUniformAccess) {
  EXPECT_EQ(SwapsOnUniform("automatic"), 0u);
  EXPECT_GT(SwapsOnUniform("automatic:spread_confidence=0"), 0u);
}

// Two hot sets take turns every 10 epochs, so each return of the first one
// promotes pages demoted within the ping-pong window. With a reversal bound
// (automatic:reversals=F), at most F of the pages moved undo a recent move;
// without it, most moves do. Returns the engine's stats.
EngineStats Alternating(const std::string& policy) {
  Rig rig(50, 400, Fast(policy));
  for (int e = 0; e < 80; ++e) {
    const std::size_t hot = (e / 10) % 2 == 0 ? 0 : 200;
    for (std::size_t i = hot; i < hot + 50; ++i) rig.touch(i, 16);
    for (std::size_t i = 100; i < 150; ++i) rig.touch(i, 1);  // warm, never worth a move
    rig.step();
  }
  return rig.engine->stats();
}
TEST(Engine, ReversalBoundKeepsUndoneMovesUnderItsShare) {
  const EngineStats free = Alternating("automatic");
  const std::uint64_t free_moves = free.promoted_pages + free.demoted_pages;
  EXPECT_GT(free.pingpong_pages, free_moves / 4) << free.to_table();
  for (double share : {0.0, 0.04, 0.25}) {
    const EngineStats s = Alternating(absl::StrCat("automatic:reversals=", share));
    const std::uint64_t moves = s.promoted_pages + s.demoted_pages;
    EXPECT_LE(static_cast<double>(s.pingpong_pages), share * static_cast<double>(moves))
        << share << "\n"
        << s.to_table();
    EXPECT_GE(s.promoted_pages, 50u) << share;  // the first hot set still moves up
    EXPECT_LT(s.pingpong_pages, free.pingpong_pages) << share;
  }
}

// Policy::reversal_margin: a swap whose resident was promoted within the
// ping-pong window is judged with the newcomer's heat divided by the
// margin. The policy promotes any page with heat, swaps at twice the heat,
// and forgets heat every epoch.
class SwapsAtTwice final : public Policy {
 public:
  explicit SwapsAtTwice(double margin) : margin_(margin) {}
  std::string name() const override { return "swaps-at-twice"; }
  PolicyTraits traits() const override {
    PolicyTraits t;
    t.fills_budget = true;
    return t;
  }
  Thresholds begin_epoch(const EpochContext&) override { return {1, PageWord::kMaxHeat}; }
  double aging(const EpochContext&) const override { return 0; }
  double swap_ratio() const override { return 2; }
  double reversal_margin() const override { return margin_; }
  double current_threshold() const override { return 1; }

 private:
  double margin_;
};

// Pages 0-9 are promoted into an empty budget of 10, then pages 10-19 are
// 2.5 times as hot: enough for the policy's ratio, not with a margin of 2
// while 0-9's promotions are within the window (4 epochs here). Returns how
// many of 10-19 are fast after `epochs` epochs of that.
std::size_t NewcomersSwappedIn(double margin, int epochs) {
  EngineConfig c = Fast("static");
  c.fast_budget_bytes = 10 * kPageSize;
  c.pingpong_window_epochs = 4;
  Rig rig(100, 40, c);
  EXPECT_TRUE(rig.engine->set_policy(std::make_unique<SwapsAtTwice>(margin)).ok());
  for (std::size_t i = 0; i < 10; ++i) rig.touch(i, 4);
  rig.step();
  EXPECT_EQ(rig.fast_count(0, 10), 10u);
  for (int e = 0; e < epochs; ++e) {
    for (std::size_t i = 0; i < 10; ++i) rig.touch(i, 4);
    for (std::size_t i = 10; i < 20; ++i) rig.touch(i, 10);
    rig.step();
  }
  return rig.fast_count(10, 20);
}
TEST(Engine, ASwapThatUndoesARecentPromotionNeedsTheReversalMargin) {
  EXPECT_EQ(NewcomersSwappedIn(1, 1), 10u);  // 10 >= 2 x 4
  EXPECT_EQ(NewcomersSwappedIn(2, 1), 0u);   // 10 / 2 < 2 x 4
  EXPECT_EQ(NewcomersSwappedIn(2, 3), 0u);
  EXPECT_EQ(NewcomersSwappedIn(2, 5), 10u);  // the promotions left the window
}

// The watermark's demotions are charged too: memory outside tierkit fills
// the fast node after a hot set has cooled, and the node's reserve asks for
// the coldest fast pages, all of them promoted within the window.
TEST(Engine, ReversalBoundCoversDemotionsForTheNodesReserve) {
  for (double share : {0.04, 1.0}) {
    Rig rig(100, 400,
            Fast(absl::StrCat("automatic:residency=0/max_cool_epochs=2/reversals=", share)));
    for (int e = 0; e < 3; ++e) {
      for (std::size_t i = 0; i < 50; ++i) rig.touch(i, 4);
      rig.step();
    }
    ASSERT_EQ(rig.fast_count(0, 50), 50u) << share;
    for (int e = 0; e < 10; ++e) rig.step();  // the hot set cools to heat 0
    for (std::size_t i = 0; i < 50; ++i) rig.be.touch(Rig::page(1000 + i), 0);  // not ours
    for (int e = 0; e < 4; ++e) rig.step();
    const EngineStats s = rig.engine->stats();
    const double moves = static_cast<double>(s.promoted_pages + s.demoted_pages);
    if (share < 1) {
      EXPECT_LE(static_cast<double>(s.pingpong_pages), share * moves) << s.to_table();
    } else {  // without a bound the reserve takes them back
      EXPECT_GT(static_cast<double>(s.pingpong_pages), 0.04 * moves) << s.to_table();
    }
  }
}

// A one-epoch burst (pages written whole once, as a program initialising
// its memory does) is not taken for hot data: with room for 50 pages,
// automatic ends with the 50 used epoch after epoch, not with bursts that
// have 4x their accesses (and lower addresses, which win ties). Counting
// bursts in full (burst=0) keeps replacing them with the next burst.
void SustainedBeatsBursts(const std::string& policy, bool expect_sustained) {
  Rig rig(50, 1000, Fast(policy));
  for (int e = 0; e < 16; ++e) {
    for (std::size_t i = 0; i < 50; ++i) rig.touch(50 * static_cast<std::size_t>(e) + i, 64);
    for (std::size_t i = 900; i < 950; ++i) rig.touch(i, 16);  // sustained
    rig.step();
  }
  if (expect_sustained) {
    EXPECT_GE(rig.fast_count(900, 950), 45u) << rig.engine->stats().to_table();
    EXPECT_LE(rig.fast_count(0, 800), 5u);
  } else {
    EXPECT_LT(rig.fast_count(900, 950), 45u) << rig.engine->stats().to_table();
  }
}
TEST(Engine, AutomaticPromotesSustainedUseNotOneEpochBursts) {
  SustainedBeatsBursts("automatic", true);
  SustainedBeatsBursts("automatic:burst=0", false);
}

// Policy::refine_thresholds: thresholds set after the sweep decide the
// epoch's moves, in place of begin_epoch's; a policy that does not refine
// keeps begin_epoch's.
class NeverThenAll final : public Policy {
 public:
  explicit NeverThenAll(bool refine) : refine_(refine) {}
  std::string name() const override { return "never-then-all"; }
  Thresholds begin_epoch(const EpochContext&) override { return {}; }  // promote nothing
  bool refines_thresholds() const override { return refine_; }
  Thresholds refine_thresholds(const EpochContext&, const HeatHistogram& hist,
                               Thresholds) override {
    seen_slow_ = hist.slow_pages;
    return {1, 0};
  }
  double current_threshold() const override { return 1; }
  std::uint64_t seen_slow_ = 0;

 private:
  bool refine_;
};

TEST(Engine, RefinedThresholdsDecideTheEpochsMoves) {
  for (bool refine : {false, true}) {
    Rig rig(100, 200, Fast("static"));
    auto policy = std::make_unique<NeverThenAll>(refine);
    NeverThenAll* p = policy.get();
    ASSERT_TRUE(rig.engine->set_policy(std::move(policy)).ok());
    for (std::size_t i = 0; i < 10; ++i) rig.touch(i, 3);
    rig.step();
    EXPECT_EQ(rig.fast_count(0, 10), refine ? 10u : 0u) << "refine " << refine;
    EXPECT_EQ(rig.fast_count(10, 200), 0u);
    EXPECT_EQ(p->seen_slow_, refine ? 200u : 0u);  // refine saw this epoch's histogram
  }
}

// At a phase change `automatic` promotes the new hot set at the first
// boundary after it (current_histogram=1); with the last epoch's histogram
// (current_histogram=0) its threshold still reflects the old hot set and
// that boundary promotes nothing.
TEST(Engine, AutomaticFollowsAPhaseChangeAtTheNextBoundary) {
  for (int current : {0, 1}) {
    Rig rig(100, 1000, Fast(absl::StrCat("automatic:current_histogram=", current)));
    for (int e = 0; e < 12; ++e) {
      for (std::size_t i = 0; i < 80; ++i) rig.touch(i, 40);
      rig.step();
    }
    ASSERT_EQ(rig.fast_count(0, 80), 80u);
    for (std::size_t i = 500; i < 580; ++i) rig.touch(i, 40);
    rig.step();
    if (current)
      EXPECT_GT(rig.fast_count(500, 580), 0u);
    else
      EXPECT_EQ(rig.fast_count(500, 580), 0u);
  }
}

// In the first epoch (no histogram, every page's heat a burst of unmeasured
// reuse) a newcomer may take the place of a resident, a burst above
// burst_heat included, when its heat beats the resident's by more than
// noise (first_swap_confidence; first_swap_ratio 1). Under session 11's
// rule (the usual margins, first_swap=4) a burst gave way only to a
// newcomer 4 times hotter, and never with first_swap=0.
TEST(Engine, AutomaticFirstEpochSwapsBurstResidentsForANewcomerHotterBeyondNoise) {
  // How many of each group end fast, as "cold warm newcomers".
  auto run = [](const std::string& policy, int newcomer_accesses) -> std::string {
    SimulatedBackend be({{0, 100 * kPageSize}, {1, 1ull << 40}});
    ManualClock clock{1};
    EngineConfig c = Fast(policy);
    c.fast_budget_bytes = 10 * kPageSize;  // full: each newcomer needs a swap
    c.fast_nodes = {0};
    c.slow_nodes = {1};
    auto e = Engine::create(c, &be, &clock);
    EXPECT_TRUE(e.ok()) << e.status();
    if (!e.ok()) return "no engine";
    Engine& engine = **e;
    auto page = [](std::size_t i) { return Rig::page(i); };
    for (std::size_t i = 0; i < 30; ++i) be.touch(page(i), i < 10 ? 0 : 1);
    auto fast = engine.register_region(reinterpret_cast<void*>(page(0)), 10 * kPageSize,
                                       RegionOptions(), true);
    auto slow = engine.register_region(reinterpret_cast<void*>(page(10)), 20 * kPageSize,
                                       RegionOptions(), false);
    EXPECT_TRUE(fast.ok() && slow.ok());  // the handles keep both registered
    auto touch = [&](std::size_t i, int n) {
      for (int k = 0; k < n; ++k) engine.record_access(reinterpret_cast<void*>(page(i)));
    };
    for (std::size_t i = 0; i < 5; ++i) touch(i, 1);    // residents, credible and cold
    for (std::size_t i = 5; i < 10; ++i) touch(i, 40);  // residents, a burst above burst_heat
    for (std::size_t i = 10; i < 20; ++i) touch(i, newcomer_accesses);
    clock.advance_ns(c.epoch_ms * kNsPerMs);
    EXPECT_TRUE(engine.step().ok());
    std::size_t ends_fast[3] = {0, 0, 0};
    for (std::size_t i = 0; i < 20; ++i)
      ends_fast[i < 5 ? 0 : i < 10 ? 1 : 2] += be.node_of(page(i)) == 0;
    return absl::StrCat(ends_fast[0], " ", ends_fast[1], " ", ends_fast[2]);
  };
  EXPECT_EQ(run("automatic", 120), "0 0 10");  // 3x: beyond noise, both give way
  EXPECT_EQ(run("automatic", 42), "0 5 5");    // 42 vs 40: noise, the burst is kept
  const std::string session11 = "automatic:first_swap=4/first_confidence=-1";
  EXPECT_EQ(run(session11, 200), "0 0 10");  // 5x the burst: both give way
  EXPECT_EQ(run(session11, 120), "0 5 5");   // 3x: the burst is kept
  EXPECT_EQ(run("automatic:first_swap=0", 200), "0 5 5");
}

// first_swap_ratio applies to heat that counts accesses only: with a
// hotness source attached (EpochContext::heat_is_counts false) the first
// boundary offers only residents of credible heat, as before.
TEST(AutomaticPolicy, FirstBoundaryOffersBurstResidentsOnlyWhenHeatCounts) {
  auto demote_heat = [](bool counts) {
    AutomaticPolicy p;
    EpochContext ctx;
    ctx.fast_budget_pages = ctx.fast_used_pages = 10;
    ctx.heat_is_counts = counts;
    return p.begin_epoch(ctx).demote_heat;
  };
  EXPECT_EQ(demote_heat(true), PageWord::kMaxHeat);
  EXPECT_EQ(demote_heat(false), AutomaticOptions{}.burst_heat);
}

// The first boundary judges a swap by the noise test alone
// (first_swap_confidence), with no hysteresis, while its own histogram's
// heats vary more than noise; a resident with no heat keeps the usual
// margins, and so do later boundaries.
TEST(AutomaticPolicy, FirstBoundaryJudgesSwapsByNoiseAloneWhileHeatsSpread) {
  EpochContext ctx;
  ctx.fast_budget_pages = ctx.fast_used_pages = 10;
  ctx.heat_is_counts = true;
  HeatHistogram spread, flat;
  spread.add(1, true, 10);
  spread.add(30, false, 10);
  spread.finalize(10, 90);
  flat.add(4, true, 10);
  flat.add(4, false, 90);
  flat.finalize(10, 90);
  // should_swap for (newcomer, resident, resident idle): (5, 3, 0), (3, 3, 0),
  // (2, 0, 1), (9, 0, 1).
  auto first_swaps = [&](const AutomaticOptions& opts, const HeatHistogram& h) {
    AutomaticPolicy p(opts);
    const Thresholds begun = p.begin_epoch(ctx);
    if (p.refines_thresholds()) p.refine_thresholds(ctx, h, begun);
    return absl::StrCat(p.should_swap(5, 3, 0), p.should_swap(3, 3, 0), p.should_swap(2, 0, 1),
                        p.should_swap(9, 0, 1));
  };
  EXPECT_EQ(first_swaps({}, spread), "1001");  // 5 vs 3 swaps under 2x hysteresis
  EXPECT_EQ(first_swaps({}, flat), "0000");    // no spread: the heats are noise
  AutomaticOptions usual;
  usual.first_swap_confidence = -1;
  EXPECT_EQ(first_swaps(usual, spread), "0001");
  AutomaticPolicy p;
  p.begin_epoch(ctx);
  ctx.last = &spread;
  ctx.epoch = 1;
  p.begin_epoch(ctx);
  EXPECT_FALSE(p.refines_thresholds());
  EXPECT_FALSE(p.should_swap(5, 3, 0));  // the second boundary: usual margins
}

// Bursts are credited per size (octave of heat): where pages swept whole
// (64 misses) are never touched again and partly written ones (16-31)
// always are, as on gcc-O2, the partial ones judge hotter. One credit for
// both (0.5) judged the sweep 35 and the partial page 13.
TEST(AutomaticPolicy, CreditsEachBurstSizeByItsOwnReuse) {
  AutomaticPolicy p;
  EpochContext ctx;
  ctx.fast_budget_pages = ctx.fast_used_pages = 10;
  p.begin_epoch(ctx);
  HeatHistogram h;
  h.finalize(10, 100);
  ctx.last = &h;
  std::vector<Policy::BurstOutcome> seen;
  for (int i = 0; i < 100; ++i) seen.push_back({20, true});
  for (int i = 0; i < 100; ++i) seen.push_back({64, false});
  for (std::uint64_t e = 1; e <= 12; ++e) {
    ctx.epoch = e;
    p.begin_epoch(ctx);
    p.observe_bursts(seen);
  }
  EXPECT_NEAR(p.burst_credit(), 0.5, 0.05);
  EXPECT_GT(p.burst_credit(20), 0.9);
  EXPECT_GT(p.burst_credit(31), 0.9);  // the same octave
  EXPECT_LT(p.burst_credit(64), 0.1);
  EXPECT_GT(p.judged_heat(20, false, 0), p.judged_heat(64, false, 0));
  EXPECT_EQ(p.judged_heat(64, true, 0), 64u);  // seasoned heat is not a burst
  // A size not seen keeps the overall share.
  EXPECT_NEAR(p.burst_credit(200), p.burst_credit(), 1e-9);
}

// Volume cooling waits for cool_heat_per_page units per budget page and
// at least min_heat per seen page (tracked and accessed): with a fast tier
// of a tenth of what is in use, the budget's window alone would halve heat
// before the average page could be seen twice. Tracked pages never accessed
// do not lengthen it.
TEST(AutomaticPolicy, VolumeCoolingWaitsForMinHeatPerSeenPage) {
  auto cools = [](AutomaticOptions o, std::uint32_t heat, std::uint64_t seen) {
    HeatHistogram h;
    h.slow[heat] = 300;
    h.finalize(100, 9900);  // 10,000 tracked pages, 100 of them fast
    EpochContext ctx;
    ctx.epoch = 1;
    ctx.fast_budget_pages = ctx.fast_used_pages = 100;
    ctx.seen_pages = seen;
    ctx.last = &h;
    AutomaticPolicy p(o);
    p.begin_epoch(ctx);
    return p.aging(ctx) < 1.0;
  };
  AutomaticOptions o;               // window max(8 x 100, 2 x 1,000) = 2,000 units
  EXPECT_FALSE(cools(o, 4, 1000));  // 1,200 units: past the budget's window only
  EXPECT_TRUE(cools(o, 7, 1000));   // 2,100 units
  EXPECT_TRUE(cools(o, 4, 300));    // window max(800, 600): the rest is idle
  o.min_heat = 1;                   // window max(800, 1,000)
  EXPECT_TRUE(cools(o, 4, 1000));
  o.min_heat = 2;
  o.cool_heat_per_page = 24;  // window max(2,400, 2,000)
  EXPECT_FALSE(cools(o, 7, 1000));
}

// The engine tells the policy what became of last epoch's bursts: a sample
// of the units whose heat was all new, each with whether it was touched
// again.
TEST(Engine, ObserveBurstsCountsTheBurstsTouchedAgain) {
  struct Observer final : Policy {
    std::string name() const override { return "observer"; }
    Thresholds begin_epoch(const EpochContext&) override { return {}; }
    double current_threshold() const override { return 0; }
    void observe_bursts(std::span<const BurstOutcome> bursts) override {
      std::uint32_t again = 0;
      for (const BurstOutcome& b : bursts) again += b.touched_again;
      calls.emplace_back(static_cast<std::uint32_t>(bursts.size()), again);
    }
    std::vector<std::pair<std::uint32_t, std::uint32_t>>& calls;
    explicit Observer(std::vector<std::pair<std::uint32_t, std::uint32_t>>& c) : calls(c) {}
  };
  std::vector<std::pair<std::uint32_t, std::uint32_t>> calls;
  Rig rig(100, 1000, Fast("static"));
  EXPECT_FALSE(rig.engine->set_policy(std::unique_ptr<Policy>()).ok());
  ASSERT_TRUE(rig.engine->set_policy(std::make_unique<Observer>(calls)).ok());
  EXPECT_EQ(rig.engine->config().policy, "observer");
  auto touch = [&](std::size_t i) { rig.touch(i); };
  auto step = [&] { rig.step(); };
  for (std::size_t i = 0; i < 100; ++i) touch(i);  // 100 new units
  step();
  EXPECT_TRUE(calls.empty());                     // nothing to report yet
  for (std::size_t i = 0; i < 25; ++i) touch(i);  // a quarter of them again
  step();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0], std::make_pair(100u, 25u));
  for (std::size_t i = 0; i < 2000; ++i) touch(100 + i % 900);  // 900 new: sampled
  step();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1], std::make_pair(25u, 0u));  // the 25 (heat 1 halves to 0: new again)
  step();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[2], std::make_pair(256u, 0u));  // a sample of the 900
}

// Only bursts above the policy's PolicyTraits::burst_heat are sampled: a
// policy that discounts heat above it learns the credit from bursts that
// large, not from the many small first touches around them.
TEST(Engine, ObserveBurstsSamplesOnlyBurstsAboveThePolicysHeat) {
  struct Observer final : Policy {
    std::string name() const override { return "observer"; }
    Thresholds begin_epoch(const EpochContext&) override { return {}; }
    double current_threshold() const override { return 0; }
    PolicyTraits traits() const override {
      PolicyTraits t;
      t.burst_heat = 2;
      return t;
    }
    void observe_bursts(std::span<const BurstOutcome> bursts) override {
      std::uint32_t again = 0;
      for (const BurstOutcome& b : bursts) {
        again += b.touched_again;
        heats.push_back(b.heat);
      }
      calls.emplace_back(static_cast<std::uint32_t>(bursts.size()), again);
    }
    std::vector<std::pair<std::uint32_t, std::uint32_t>> calls;
    std::vector<std::uint32_t> heats;
  };
  Rig rig(100, 1000, Fast("static"));
  auto owned = std::make_unique<Observer>();
  Observer& o = *owned;
  ASSERT_TRUE(rig.engine->set_policy(std::move(owned)).ok());
  for (std::size_t i = 0; i < 60; ++i) rig.touch(i, 1);    // small bursts
  for (std::size_t i = 60; i < 90; ++i) rig.touch(i, 4);   // large ones
  for (std::size_t i = 90; i < 100; ++i) rig.touch(i, 2);  // at the line: small
  rig.step();
  for (std::size_t i = 0; i < 40; ++i) rig.touch(i);   // most small ones again
  for (std::size_t i = 60; i < 70; ++i) rig.touch(i);  // a third of the large
  rig.step();
  ASSERT_EQ(o.calls.size(), 1u);
  EXPECT_EQ(o.calls[0], std::make_pair(30u, 10u));        // all units: (100, 50)
  EXPECT_EQ(o.heats, std::vector<std::uint32_t>(30, 4));  // each burst's own heat
}

// The engine tells the policy, for kPayoffEpochs epochs after each move,
// whether the moved units were used in the tier they went to: hits the
// promotions won, hits the demotions lost.
TEST(Engine, ObserveMovesCountsHitsWonAndLost) {
  struct Mover final : Policy {
    std::string name() const override { return "mover"; }
    Thresholds begin_epoch(const EpochContext&) override { return next; }
    double current_threshold() const override { return 0; }
    void observe_moves(std::uint64_t up, std::uint64_t up_used, std::uint64_t down,
                       std::uint64_t down_used, std::uint64_t reversed) override {
      calls.push_back({up, up_used, down, down_used, reversed});
    }
    Thresholds next;
    std::vector<std::array<std::uint64_t, 5>> calls;
  };
  Rig rig(20, 100, Fast("static"));
  auto owned = std::make_unique<Mover>();
  Mover& m = *owned;
  ASSERT_TRUE(rig.engine->set_policy(std::move(owned)).ok());
  using Calls = std::array<std::uint64_t, 5>;
  m.next = {1, 0};  // promote what was touched
  for (std::size_t i = 0; i < 10; ++i) rig.touch(i, 4);
  rig.step();
  ASSERT_EQ(rig.fast_count(0, 10), 10u);
  ASSERT_EQ(m.calls.size(), 1u);  // once per epoch, before the policy's
  EXPECT_EQ(m.calls.back(), (Calls{0, 0, 0, 0, 0}));
  m.next = {};
  ASSERT_TRUE(rig.engine->regions().set_tag(rig.handle.id(), RegionTag::cold).ok());
  for (std::size_t i = 0; i < 4; ++i) rig.touch(i);  // 4 promoted units used
  rig.step();                                        // and all 10 demoted
  EXPECT_EQ(m.calls.back(), (Calls{10, 4, 0, 0, 0}));
  const std::size_t demoted = 10 - rig.fast_count(0, 10);
  ASSERT_EQ(demoted, 10u);
  ASSERT_TRUE(rig.engine->regions().set_tag(rig.handle.id(), RegionTag::pinned).ok());
  for (std::size_t i = 0; i < 10; ++i)
    if (rig.be.node_of(Rig::page(i)) != 0) rig.touch(i);  // every demoted unit used
  rig.step();
  // The demotions undid last epoch's promotions: reported once, the epoch after.
  EXPECT_EQ(m.calls.back(), (Calls{0, 0, 10, 10, 10}));
  for (int k = 0; k < 4; ++k) rig.step();
  ASSERT_EQ(m.calls.size(), 7u);
  EXPECT_EQ(m.calls[4], (Calls{0, 0, 10, 0, 0}));     // the demotions, 3 epochs on
  EXPECT_EQ(m.calls.back(), (Calls{0, 0, 0, 0, 0}));  // older than kPayoffEpochs
}

// Moves must pay (AutomaticOptions::payoff_backoff_epochs): after moves
// that lost more hits than they won, automatic swaps nothing for 2 epochs,
// after the next loss for 4; a win resets the wait. payoff=0 turns it off.
TEST(AutomaticPolicy, StopsSwappingWhileItsMovesLoseHits) {
  HeatHistogram h;
  h.fast[1] = 10;
  h.slow[100] = 10;
  h.finalize(10, 10);
  auto swaps_at = [&](AutomaticPolicy& p, std::uint64_t epoch) {
    EpochContext ctx;
    ctx.epoch = epoch;
    ctx.fast_budget_pages = ctx.fast_used_pages = 10;
    ctx.last = &h;
    p.begin_epoch(ctx);
    return p.should_swap(100, 1, 1);
  };
  AutomaticPolicy p;
  EXPECT_TRUE(swaps_at(p, 1));
  p.observe_moves(10, 2, 10, 5, 0);  // won 2 hits, lost 5
  EXPECT_FALSE(swaps_at(p, 2));
  EXPECT_FALSE(p.moves_paying());
  EXPECT_FALSE(swaps_at(p, 3));
  EXPECT_TRUE(swaps_at(p, 4));
  p.observe_moves(10, 0, 10, 3, 0);  // lost again: twice the wait
  for (std::uint64_t e = 5; e < 9; ++e) EXPECT_FALSE(swaps_at(p, e)) << e;
  EXPECT_TRUE(swaps_at(p, 9));
  p.observe_moves(10, 9, 10, 0, 0);  // a win: the wait starts over at 2
  EXPECT_TRUE(swaps_at(p, 10));
  p.observe_moves(10, 0, 10, 20, 0);
  EXPECT_FALSE(swaps_at(p, 11));
  EXPECT_FALSE(swaps_at(p, 12));
  EXPECT_TRUE(swaps_at(p, 13));
  // Moves that undo earlier ones are losses too: 20 hits won would pay,
  // but not with 30 reversals.
  p.observe_moves(10, 20, 10, 0, 30);
  EXPECT_FALSE(swaps_at(p, 14));

  AutomaticOptions off;
  off.payoff_backoff_epochs = 0;
  AutomaticPolicy q(off);
  q.observe_moves(10, 0, 10, 10, 10);
  EXPECT_TRUE(swaps_at(q, 1));
}

TEST(Engine, StatsRenderAsJsonTableAndLine) {
  Rig rig(10, 20, Fast("automatic"));
  rig.touch(0, 5);
  rig.step();
  auto s = rig.engine->stats();
  EXPECT_NE(s.to_json().find("\"policy\":\"automatic\""), std::string::npos);
  EXPECT_NE(s.to_table().find("promoted"), std::string::npos);
  EXPECT_NE(s.to_line().find("epoch"), std::string::npos);
  EXPECT_EQ(s.tracked_pages, 20u);
  EXPECT_EQ(s.seen_pages, 8u);  // pages 0-4 touched: their 8-page group
  EXPECT_NE(s.to_json().find("\"seen_pages\":8,"), std::string::npos);
  EXPECT_NE(s.to_table().find("seen pages             8 (accessed since tracked)"),
            std::string::npos);
}

TEST(Engine, BackgroundThreadStartsAndStops) {
  SimulatedBackend be({{0, 1 << 20}, {1, 1 << 30}});
  EngineConfig c;
  c.epoch_ms = 1;
  c.slow_nodes = {1};
  auto e = Engine::create(c, &be);
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE((*e)->start().ok());
  EXPECT_FALSE((*e)->start().ok());
  while ((*e)->stats().epochs < 3) std::this_thread::yield();
  (*e)->stop();
  auto n = (*e)->stats().epochs;
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ((*e)->stats().epochs, n);
}

// The fast node is shared: others use part of it, and that use (or the
// kernel's free count, which lags behind our moves) wobbles by a few pages
// from epoch to epoch. The node's free memory, not the budget, is the bound.
// Demoting for the node at the reserve and refilling the room at once churned
// cold pages every epoch; the wobble must not move anything.
TEST(Engine, WobblingOtherUseOnTheFastNodeCausesNoPingPong) {
  constexpr std::size_t kNode = 1000, kOther = 250, kWobble = 8;
  constexpr std::size_t kPages = 2000, kHot = 400, kColdFast = 450;
  ManualClock clock(1);
  SimulatedBackend be({{0, kNode * kPageSize}, {1, 1ull << 40}});
  EngineConfig c = Fast("automatic");
  c.fast_budget_bytes = 800 * kPageSize;  // more than the node can give
  c.slow_nodes = {1};
  auto e = Engine::create(c, &be, &clock);
  ASSERT_TRUE(e.ok()) << e.status();
  Engine& eng = **e;
  const std::uintptr_t other = kBase + (1ull << 32);
  for (std::size_t i = 0; i < kOther; ++i) be.touch(other + i * kPageSize, 0);
  // [hot A | hot B | cold]; part of the cold pages start on the fast node.
  for (std::size_t i = 0; i < kPages; ++i)
    be.touch(Rig::page(i), i >= 2 * kHot && i < 2 * kHot + kColdFast ? 0 : 1);
  auto h = eng.register_region(reinterpret_cast<void*>(kBase), kPages * kPageSize);
  ASSERT_TRUE(h.ok()) << h.status();
  std::mt19937 rng(3);
  for (int ep = 0; ep < 140; ++ep) {
    std::size_t hot = ep < 70 ? 0 : kHot;  // the hot set shifts once
    for (std::size_t k = 0; k < kHot * 18; ++k)
      eng.record_access(reinterpret_cast<void*>(Rig::page(hot + rng() % kHot)));
    for (std::size_t k = 0; k < 800; ++k)  // and a little everywhere
      eng.record_access(reinterpret_cast<void*>(Rig::page(rng() % kPages)));
    std::size_t wobble = rng() % (kWobble + 1);
    for (std::size_t i = 0; i < kWobble; ++i) {
      std::uintptr_t a = other + (kOther + i) * kPageSize;
      if (i < wobble)
        be.touch(a, 0);
      else
        be.forget(reinterpret_cast<void*>(a), kPageSize);
    }
    clock.advance_ns(c.epoch_ms * kNsPerMs);
    ASSERT_TRUE(eng.step().ok());
  }
  auto s = eng.stats();
  std::size_t hot_b_fast = 0;
  for (std::size_t i = kHot; i < 2 * kHot; ++i) hot_b_fast += be.node_of(Rig::page(i)) == 0;
  EXPECT_EQ(hot_b_fast, kHot);
  // Each hot set once (800 pages) and a few swaps; no page back and forth.
  EXPECT_LT(s.promoted_pages, 850u) << s.to_table();
  EXPECT_EQ(s.pingpong_pages, 0u) << s.to_table();
  // The engine's pages stay within the reserve (the rest is the wobble).
  EXPECT_LE(be.used_bytes(0), (kNode - kNode / 20 + kWobble) * kPageSize);
}

TEST(EngineConfig, FromEnvNamesTheBadVariable) {
  setenv("TIERKIT_RATE_LIMIT_MBPS", "fast", 1);
  auto c = EngineConfig::from_env();
  unsetenv("TIERKIT_RATE_LIMIT_MBPS");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("TIERKIT_RATE_LIMIT_MBPS"), absl::string_view::npos);
  setenv("TIERKIT_POLICY", "kernel:rate=64", 1);
  setenv("TIERKIT_EPOCH_MS", "50", 1);
  auto ok = EngineConfig::from_env();
  unsetenv("TIERKIT_POLICY");
  unsetenv("TIERKIT_EPOCH_MS");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->epoch_ms, 50);
  setenv("TIERKIT_POLICY", "bogus", 1);
  auto bad = EngineConfig::from_env();
  unsetenv("TIERKIT_POLICY");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("TIERKIT_POLICY"), absl::string_view::npos);
}

}  // namespace
}  // namespace tierkit

namespace tierkit {
namespace {

TEST(ArenaRegions, ArenasBecomeRegionsAndLeaveWithTheirArenas) {
  SimulatedBackend be({{0, 64ull << 20}, {1, 1ull << 30}});
  EngineConfig c;
  c.slow_nodes = {1};
  auto e = Engine::create(c, &be);
  ASSERT_TRUE(e.ok());
  TierResourceOptions o;
  o.nodes = {1};
  o.backend = &be;
  o.arena_bytes = 2 << 20;
  auto res = TierMemoryResource::create(o);
  ASSERT_TRUE(res.ok()) << res.status();
  void* early = (*res)->allocate(4096);  // an arena that exists before tracking starts
  {
    ArenaRegions tracked(**e, **res, RegionOptions().with_name("heap"));
    EXPECT_EQ(tracked.size(), 1u);
    void* big = (*res)->allocate(8 << 20);  // its own arena
    EXPECT_EQ(tracked.size(), 2u);
    EXPECT_EQ((*e)->regions().size(), 2u);
    auto r = (*e)->regions().lookup(big);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->options.name, "heap");
    // Slow arena: its pages start as slow in the tracker.
    auto* w = (*e)->tracker().word(reinterpret_cast<std::uintptr_t>(big));
    ASSERT_NE(w, nullptr);
    EXPECT_FALSE(PageWord::fast(w->load()));
    (*res)->deallocate(big, 8 << 20);  // a dedicated arena is unmapped on free
    EXPECT_EQ(tracked.size(), 1u);
    EXPECT_TRUE(tracked.status().ok());
  }
  EXPECT_EQ((*e)->regions().size(), 0u);
  (*res)->deallocate(early, 4096);
}

}  // namespace
}  // namespace tierkit

namespace tierkit {
namespace {

// A full fast tier of cold pages and hot pages waiting on the slow tier: every
// promotion needs a swap. Under a tight rate limit each swap must go whole:
// a resident is demoted only together with the newcomer it makes room for.
TEST(Engine, RateLimitKeepsSwapsWhole) {
  EngineConfig c = Fast("automatic");
  c.rate_limit_mbps = 10.0 * kPageSize / RateLimiter::kBytesPerMB / 0.1;  // 10 pages per epoch
  c.burst_bytes = 10 * kPageSize;
  c.half_life_epochs = 1;
  ManualClock clock(1);
  SimulatedBackend be({{0, 100 * kPageSize}, {1, 1ull << 40}});
  c.slow_nodes = {1};
  auto e = Engine::create(c, &be, &clock);
  ASSERT_TRUE(e.ok());
  for (std::size_t i = 0; i < 95; ++i) be.touch(kBase + i * kPageSize, 0);    // cold, fast
  for (std::size_t i = 95; i < 295; ++i) be.touch(kBase + i * kPageSize, 1);  // hot, slow
  auto h = (*e)->register_region(reinterpret_cast<void*>(kBase), 295 * kPageSize);
  ASSERT_TRUE(h.ok());
  std::uint64_t promoted = 0;
  for (int epoch = 0; epoch < 30; ++epoch) {
    for (std::size_t i = 95; i < 295; ++i)
      (*e)->record_access(reinterpret_cast<void*>(kBase + i * kPageSize), 1, 50);
    clock.advance_ns(100 * kNsPerMs);
    ASSERT_TRUE((*e)->step().ok());
    auto s = (*e)->stats();
    EXPECT_EQ(s.epoch_demoted, s.epoch_promoted) << "epoch " << epoch << "\n" << s.to_table();
    EXPECT_LE(s.epoch_demoted + s.epoch_promoted, 10u);
    promoted += s.epoch_promoted;
  }
  EXPECT_GT(promoted, 50u);
}

// A step bigger than the whole bucket (a 2 MiB unit under a 1 MiB burst)
// never fitted: limit() deferred it, and every step behind it, for ever.
// It now goes alone once the bucket is full, the bucket owes the rest, and
// the steps behind it follow when that is repaid: the rate still holds.
TEST(Engine, AStepBiggerThanTheBurstGoesAloneAndTheRestFollow) {
  EngineConfig c = Fast("threshold:1");
  c.rate_limit_mbps = 10;  // 1 MiB per 100 ms epoch
  c.burst_bytes = 1 << 20;
  TwoNodes n(1 << 14, c);
  ASSERT_NE(n.engine, nullptr);
  n.be.set_thp_mode(ThpMode::kMadvise);
  const std::uintptr_t small = kBase + 16 * kHugePageSize;
  for (std::uintptr_t a = kBase; a < kBase + kHugePageSize; a += kPageSize) n.be.touch(a, 1);
  for (std::uintptr_t a = small; a < small + 16 * kPageSize; a += kPageSize) n.be.touch(a, 1);
  auto big = n.engine->register_region(reinterpret_cast<void*>(kBase), kHugePageSize,
                                       RegionOptions().with_huge_pages(), false);
  auto sm = n.engine->register_region(reinterpret_cast<void*>(small), 16 * kPageSize,
                                      RegionOptions().with_base_pages(), false);
  ASSERT_TRUE(big.ok() && sm.ok());
  std::vector<std::uint64_t> promoted;
  for (int e = 0; e < 6; ++e) {
    n.engine->record_access(reinterpret_cast<void*>(kBase), 1, 400);  // the hottest
    n.engine->record_access(reinterpret_cast<void*>(small), 16 * kPageSize, 50);
    n.step();
    promoted.push_back(n.engine->stats().promoted_pages);
    const double seconds = (e + 1) * 0.1;
    EXPECT_LE(static_cast<double>(n.engine->stats().promoted_bytes),
              seconds * 10 * RateLimiter::kBytesPerMB + kHugePageSize)
        << "epoch " << e;
  }
  EXPECT_EQ(promoted[0], 512u);  // the 2 MiB unit, alone, from a full bucket
  EXPECT_EQ(promoted[1], 512u);  // the bucket repays the 1 MiB it owed
  EXPECT_EQ(promoted.back(), 512u + 16u);
  EXPECT_EQ(n.be.node_of(kBase + kHugePageSize - kPageSize), 0);
  EXPECT_EQ(n.be.node_of(small + 15 * kPageSize), 0);
}

// The epoch callback ran inside step() under the engine's lock: one that
// called stats() or a setter re-locked it, and step() threw (EDEADLK), or
// under start() the exception ended the process.
TEST(Engine, TheEpochCallbackMayCallTheEngineFromStep) {
  TwoNodes n(64);
  ASSERT_NE(n.engine, nullptr);
  Engine* e = n.engine.get();
  std::vector<std::uint64_t> seen;
  e->set_epoch_callback([&](const EngineStats& s) {
    seen.push_back(s.epochs);
    EXPECT_EQ(e->stats().epochs, s.epochs);
    EXPECT_TRUE(e->set_fast_budget_bytes(s.epochs * kPageSize).ok());
    e->stop();  // not running: nothing to stop
  });
  n.step();
  n.step();
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(e->config().fast_budget_bytes, 2 * kPageSize);
  e->set_epoch_callback(nullptr);
  n.step();
  EXPECT_EQ(seen.size(), 2u);
}

// Waits (bounded, not a timing assertion) until `done` says so.
template <class Done>
bool WaitFor(Done done) {
  for (int i = 0; i < 20000 && !done(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return done();
}

// An engine whose background thread runs an epoch every millisecond, and
// a count of its callback's calls.
struct EveryMillisecond : TwoNodes {
  EveryMillisecond() : TwoNodes(64, config()) {}
  static EngineConfig config() {
    EngineConfig c = Fast("automatic");
    c.epoch_ms = 1;
    return c;
  }
  std::atomic<int> calls{0};
};

TEST(Engine, TheEpochCallbackMayCallTheEngineFromTheBackgroundThread) {
  EveryMillisecond n;
  ASSERT_NE(n.engine, nullptr);
  Engine* e = n.engine.get();
  std::atomic<int>& calls = n.calls;
  e->set_epoch_callback([&](const EngineStats& s) {
    EXPECT_GE(e->stats().epochs, s.epochs);
    EXPECT_TRUE(e->set_fast_budget_bytes(8 * kPageSize).ok());
    calls.fetch_add(1);
  });
  ASSERT_TRUE(e->start().ok());
  EXPECT_TRUE(WaitFor([&] { return calls.load() >= 3; }));
  e->stop();
  EXPECT_FALSE(e->running());
  EXPECT_EQ(e->config().fast_budget_bytes, 8 * kPageSize);
}

// stop() from the callback on the background thread joined that thread
// from itself (std::system_error, then std::terminate): it now asks the
// thread to end, and start() may run it again.
TEST(Engine, StopFromTheEpochCallbackEndsTheBackgroundThread) {
  EveryMillisecond n;
  ASSERT_NE(n.engine, nullptr);
  Engine* e = n.engine.get();
  std::atomic<int>& calls = n.calls;
  e->set_epoch_callback([&](const EngineStats&) {
    calls.fetch_add(1);
    EXPECT_FALSE(e->start().ok());  // running: its own thread cannot start it
    e->stop();
    EXPECT_FALSE(e->running());
  });
  ASSERT_TRUE(e->start().ok());
  ASSERT_TRUE(WaitFor([&] { return calls.load() >= 1; }));
  EXPECT_TRUE(WaitFor([&] { return !e->running(); }));
  ASSERT_TRUE(e->start().ok());  // joins the ended thread, starts a new one
  EXPECT_TRUE(WaitFor([&] { return calls.load() >= 2; }));
  e->stop();
  EXPECT_EQ(calls.load(), 2);  // one epoch per start: each stopped itself
}

// A region's own promotion threshold was not checked: NaN and negatives
// silently meant "no override", 0 promoted any page touched once.
TEST(Engine, ARegionsPromotionThresholdIsCheckedAgainstTheKnobsRange) {
  TwoNodes n(64, Fast("threshold:4"));
  ASSERT_NE(n.engine, nullptr);
  std::uintptr_t a = kBase;
  for (double bad : {std::nan(""), -1.0, 0.0, double{INFINITY}, 1e300, 1e6 + 1}) {
    auto h =
        n.engine->register_region(reinterpret_cast<void*>(a), kPageSize,
                                  RegionOptions().with_name("idx").with_promotion_threshold(bad));
    ASSERT_FALSE(h.ok()) << bad;
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(h.status().message(), absl::StrCat("register_region 'idx': promotion_threshold ", bad,
                                                 " must be in (0, 1e+06] accesses/epoch (as "
                                                 "threshold.promotion_threshold)"));
  }
  EXPECT_EQ(n.engine->regions().size(), 0u);
  for (double good : {1e-3, 1e6}) {
    auto h = n.engine->register_region(reinterpret_cast<void*>(a), kPageSize,
                                       RegionOptions().with_promotion_threshold(good));
    ASSERT_TRUE(h.ok()) << good << ": " << h.status();
    EXPECT_EQ(n.engine->regions().find(h->id())->threshold_override.load(), good);
  }
}

// A RegionHandle that outlived its Engine unregistered through the freed
// registry (heap-use-after-free under ASan): it now does nothing.
TEST(Engine, ARegionHandleMayOutliveItsEngine) {
  RegionHandle h;
  {
    TwoNodes n(64);
    ASSERT_NE(n.engine, nullptr);
    auto r = n.engine->register_region(reinterpret_cast<void*>(kBase), kPageSize);
    ASSERT_TRUE(r.ok()) << r.status();
    h = std::move(*r);
  }
  EXPECT_TRUE(h.valid());
  h.reset();
  EXPECT_FALSE(h.valid());
}

}  // namespace
}  // namespace tierkit
