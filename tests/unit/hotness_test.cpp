// HotnessTracker unit tests. Addresses are synthetic: the tracker never
// dereferences them.
#include "tierkit/hotness.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tierkit {
namespace {

constexpr std::uintptr_t kBase = 0x200000000000;  // 2 MiB (and 1 GiB) aligned, < 2^47

const void* P(std::uintptr_t a) { return reinterpret_cast<const void*>(a); }
std::uint16_t W(const HotnessTracker& t, std::uintptr_t a) {
  auto* w = t.word(a);
  return w == nullptr ? 0 : w->load();
}
std::uint32_t Heat(const HotnessTracker& t, std::uintptr_t a) { return PageWord::heat(W(t, a)); }

TEST(PageWord, FieldsAreIndependent) {
  std::uint16_t w = PageWord::kTracked;
  w = PageWord::with_heat(w, 377);
  w = PageWord::with_epoch(w, 13);
  w = PageWord::with_fast(w, true);
  w |= PageWord::kSeasoned;
  EXPECT_TRUE(PageWord::tracked(w));
  EXPECT_TRUE(PageWord::fast(w));
  EXPECT_TRUE(PageWord::seasoned(w));
  EXPECT_EQ(PageWord::heat(w), 377u);
  EXPECT_EQ(PageWord::epoch(w), 13u);
  w = PageWord::with_fast(PageWord::with_epoch(w, 16 + 2), false);  // epoch is modulo 16
  EXPECT_EQ(PageWord::epoch(w), 2u);
  EXPECT_FALSE(PageWord::fast(w));
  EXPECT_TRUE(PageWord::seasoned(w));
  EXPECT_EQ(PageWord::heat(w), 377u);
  EXPECT_EQ(PageWord::heat(PageWord::with_heat(w, 5000)), PageWord::kMaxHeat);  // clamps
  EXPECT_TRUE(PageWord::seasoned(PageWord::with_heat(w, 5000)));
}

// The two-argument decay sees whether the heat is all from the last epoch
// and the word then records whether heat is left; the one-argument form
// leaves the bit alone.
TEST(HotnessTracker, TwoArgumentDecaySeesAndKeepsTheSeasonedBit) {
  HotnessTracker t;
  t.track(kBase, kBase + 2 * kPageSize, false, false);
  t.record_access(P(kBase), kPageSize, 40);
  t.record_access(P(kBase + kPageSize), kPageSize, 1);
  std::vector<bool> seen;
  auto cap_bursts = [&](std::uint32_t h, bool seasoned) {
    seen.push_back(seasoned);
    return seasoned ? h : std::min<std::uint32_t>(h, 8) / 2;  // a burst keeps 8, halved
  };
  t.collect_warm([](auto, auto, auto) {}, cap_bursts);
  EXPECT_EQ(seen, std::vector<bool>({false, false}));
  EXPECT_EQ(Heat(t, kBase), 4u);
  EXPECT_TRUE(PageWord::seasoned(W(t, kBase)));
  EXPECT_EQ(Heat(t, kBase + kPageSize), 0u);  // 1 / 2 = 0: nothing left, not seasoned
  EXPECT_FALSE(PageWord::seasoned(W(t, kBase + kPageSize)));
  t.record_access(P(kBase), kPageSize, 40);
  seen.clear();
  t.collect_warm([](auto, auto, auto) {}, cap_bursts);
  EXPECT_EQ(seen, std::vector<bool>({true}));  // only the warm page is visited
  EXPECT_EQ(Heat(t, kBase), 44u);              // seasoned: kept whole
  t.sweep(
      kBase, kBase + kPageSize, [](auto, auto, auto) {}, [](std::uint32_t) { return 0u; });
  EXPECT_TRUE(PageWord::seasoned(W(t, kBase)));  // the one-argument form leaves it
}

TEST(HotnessTracker, RecordAccessCountsOnePerCallPerPage) {
  HotnessTracker t;
  t.track(kBase, kBase + 4 * kPageSize, false, false);
  for (int i = 0; i < 7; ++i) t.record_access(P(kBase + kPageSize + 123));
  EXPECT_EQ(Heat(t, kBase + kPageSize), 7u);
  EXPECT_EQ(Heat(t, kBase), 0u);
  EXPECT_EQ(Heat(t, kBase + 2 * kPageSize), 0u);
  EXPECT_EQ(t.outside_accesses(), 0u);
  // Tracking bits survive the counting.
  EXPECT_TRUE(PageWord::tracked(W(t, kBase + kPageSize)));
  EXPECT_FALSE(PageWord::fast(W(t, kBase + kPageSize)));
}

TEST(HotnessTracker, RangeAccessWeightsEveryPageTouched) {
  HotnessTracker t;
  t.track(kBase, kBase + 8 * kPageSize, false, true);
  // [base + 4000, base + 4000 + 5000) touches pages 0, 1 and 2.
  t.record_access(P(kBase + 4000), 5000, 3);
  EXPECT_EQ(Heat(t, kBase), 3u);
  EXPECT_EQ(Heat(t, kBase + kPageSize), 3u);
  EXPECT_EQ(Heat(t, kBase + 2 * kPageSize), 3u);
  EXPECT_EQ(Heat(t, kBase + 3 * kPageSize), 0u);
  // Zero bytes still counts the page holding the pointer.
  t.record_access(P(kBase + 5 * kPageSize), 0, 2);
  EXPECT_EQ(Heat(t, kBase + 5 * kPageSize), 2u);
  EXPECT_TRUE(PageWord::fast(W(t, kBase)));
}

// An access of weight 0 (an empty batch) records nothing. Before, it
// stamped the page with the current epoch and marked its group: a page
// idle for epochs read as touched now (PageWord::touched), and a page never
// accessed counted in seen_pages().
TEST(HotnessTracker, AZeroWeightAccessRecordsNothing) {
  HotnessTracker t;
  t.track(kBase, kBase + 16 * kPageSize, false, false);
  t.set_epoch(3);
  t.record_access(P(kBase), kPageSize, 5);
  t.set_epoch(5);
  const std::uint16_t before = W(t, kBase);
  t.record_access(P(kBase), kPageSize, 0);
  t.record_access(P(kBase + 8 * kPageSize), kPageSize, 0);  // another group, never accessed
  EXPECT_EQ(W(t, kBase), before);
  EXPECT_FALSE(PageWord::touched(W(t, kBase), 5));
  EXPECT_EQ(W(t, kBase + 8 * kPageSize), PageWord::kTracked);
  t.collect_warm([](auto, auto, auto) {}, HotnessTracker::kNoAging);
  EXPECT_EQ(t.seen_pages(), 8u);  // the first group only
  EXPECT_EQ(t.outside_accesses(), 0u);
}

TEST(HotnessTracker, HeatSaturatesAtMaxHeat) {
  HotnessTracker t;
  t.track(kBase, kBase + 2 * kPageSize, false, false);
  for (int i = 0; i < 3000; ++i) t.record_access(P(kBase));
  EXPECT_EQ(Heat(t, kBase), PageWord::kMaxHeat);
  EXPECT_TRUE(PageWord::tracked(W(t, kBase)));  // no overflow into the flag bits
  // Huge weights saturate too, from any starting heat (no 32-bit wrap-around).
  t.record_access(P(kBase + kPageSize), kPageSize, 5);
  t.record_access(P(kBase + kPageSize), kPageSize, std::numeric_limits<std::uint32_t>::max());
  EXPECT_EQ(Heat(t, kBase + kPageSize), PageWord::kMaxHeat);
  // Weight times the sampling factor does not wrap either.
  HotnessTracker s;
  s.track(kBase, kBase + kPageSize, false, false);
  s.set_sampling(8);
  std::thread([&] {  // a fresh countdown: one of the first 8 accesses is sampled
    for (int i = 0; i < 8; ++i) s.record_access(P(kBase), 1, 0x40000000u);
  })
      .join();
  EXPECT_EQ(Heat(s, kBase), PageWord::kMaxHeat);
}

TEST(HotnessTracker, AccessesAreStampedWithTheEpochModulo16) {
  HotnessTracker t;
  t.track(kBase, kBase + 2 * kPageSize, false, false);
  t.set_epoch(5);
  t.record_access(P(kBase));
  EXPECT_EQ(PageWord::epoch(W(t, kBase)), 5u);
  t.set_epoch(16 + 9);
  t.record_access(P(kBase));
  EXPECT_EQ(PageWord::epoch(W(t, kBase)), 9u);
  EXPECT_EQ(PageWord::epoch(W(t, kBase + kPageSize)), 0u);  // untouched page keeps its stamp
  EXPECT_EQ(t.epoch(), 25u);
}

// A visited unit's idle count saturates at 14-15 instead of wrapping: with
// the bare modulo a page idle 16 epochs read as touched, 17 as idle 1.
// Both visiting paths hold the stamp; an access starts the count again.
TEST(HotnessTracker, IdleSaturatesForVisitedUnitsInsteadOfWrapping) {
  for (const bool by_sweep : {false, true}) {
    HotnessTracker t;
    t.track(kBase, kBase + 2 * kPageSize, false, false);
    t.record_access(P(kBase), kPageSize, 40);      // heat kept: its group stays warm
    t.record_access(P(kBase + kPageSize), 1, 40);  // read once more at epoch 30
    const auto keep = [](std::uint32_t h) { return h; };
    for (std::uint32_t e = 1; e <= 40; ++e) {
      t.set_epoch(e);
      if (e == 30) t.record_access(P(kBase + kPageSize));
      std::uint32_t idle_seen = 99;
      const auto visit = [&](std::uintptr_t a, std::uint16_t w, std::uint32_t) {
        if (a == kBase) idle_seen = PageWord::idle(w, e);
      };
      if (by_sweep)
        t.sweep(kBase, kBase + 2 * kPageSize, visit, keep);
      else
        t.collect_warm(visit, keep);
      EXPECT_EQ(idle_seen, std::min(e, 15u)) << "epoch " << e << (by_sweep ? " sweep" : "");
      const std::uint32_t after = PageWord::idle(W(t, kBase), e);
      EXPECT_EQ(after, std::min(e, PageWord::kIdleCap)) << "epoch " << e;
      const std::uint32_t other = PageWord::idle(W(t, kBase + kPageSize), e);
      EXPECT_EQ(other, e < 30 ? std::min(e, PageWord::kIdleCap) : e - 30) << "epoch " << e;
    }
  }
}

// Once its heat is gone a unit is no longer visited, and its held stamp
// wraps to "idle 0" two epochs later; touched() is not fooled by it.
TEST(HotnessTracker, TouchedIgnoresTheWrapOfAUnitWithoutHeat) {
  HotnessTracker t;
  t.track(kBase, kBase + kPageSize, false, false);
  t.record_access(P(kBase), kPageSize, 40);
  std::uint32_t e = 0;
  const auto cool_at_20 = [&](std::uint32_t h) { return e < 20 ? h : 0; };
  bool wrapped = false;
  for (e = 1; e <= 40; ++e) {
    t.set_epoch(e);
    t.collect_warm([](auto, auto, auto) {}, cool_at_20);
    EXPECT_FALSE(PageWord::touched(W(t, kBase), e)) << "epoch " << e;
    EXPECT_GE(PageWord::idle(W(t, kBase), e), 1u) << "epoch " << e;
    wrapped = wrapped || (PageWord::heat(W(t, kBase)) == 0 && PageWord::idle(W(t, kBase), e) == 1);
  }
  EXPECT_TRUE(wrapped);  // the stamp wrapped: idle() reads 1, not 0
  t.set_epoch(41);
  t.record_access(P(kBase));
  EXPECT_TRUE(PageWord::touched(W(t, kBase), 41));
}

TEST(HotnessTracker, SweepVisitsTrackedUnitsAndAgesWithTheDecay) {
  HotnessTracker t;
  t.track(kBase, kBase + 4 * kPageSize, false, false);
  t.track(kBase + 8 * kPageSize, kBase + 9 * kPageSize, false, true);
  for (int i = 0; i < 100; ++i) t.record_access(P(kBase));
  for (int i = 0; i < 9; ++i) t.record_access(P(kBase + 8 * kPageSize));
  std::vector<std::pair<std::uintptr_t, std::uint32_t>> seen;
  auto half = [](std::uint32_t h) { return h / 2; };
  t.sweep(
      kBase, kBase + 16 * kPageSize,
      [&](std::uintptr_t a, std::uint16_t w, auto) { seen.emplace_back(a, PageWord::heat(w)); },
      half);
  // Pages 4..7 and 9..15 are not tracked: not visited.
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[0], std::make_pair(kBase, 100u));  // heat before aging
  EXPECT_EQ(seen[4], std::make_pair(kBase + 8 * kPageSize, 9u));
  EXPECT_EQ(Heat(t, kBase), 50u);
  EXPECT_EQ(Heat(t, kBase + 8 * kPageSize), 4u);
  EXPECT_TRUE(PageWord::fast(W(t, kBase + 8 * kPageSize)));  // aging keeps the other bits
  for (int e = 0; e < 10; ++e)
    t.sweep(
        kBase, kBase + 16 * kPageSize, [](auto, auto, auto) {}, half);
  EXPECT_EQ(Heat(t, kBase), 0u);
  EXPECT_TRUE(PageWord::tracked(W(t, kBase)));
  // A sub-range sweep touches only that range.
  t.record_access(P(kBase), kPageSize, 40);
  t.record_access(P(kBase + kPageSize), kPageSize, 40);
  t.sweep(
      kBase + kPageSize, kBase + 2 * kPageSize, [](auto, auto, auto) {}, half);
  EXPECT_EQ(Heat(t, kBase), 40u);
  EXPECT_EQ(Heat(t, kBase + kPageSize), 20u);
}

TEST(HotnessTracker, SamplingCountsOneInNWithWeightN) {
  HotnessTracker t;
  t.track(kBase, kBase + kPageSize, false, false);
  t.set_sampling(4);
  EXPECT_EQ(t.sampling(), 4u);
  std::thread([&] {
    for (int i = 0; i < 400; ++i) t.record_access(P(kBase));
  }).join();
  // 100 samples of weight 4: the estimate equals the true count.
  EXPECT_EQ(Heat(t, kBase), 400u);
  // Two threads sample independently: each thread's count is still exact.
  HotnessTracker u;
  u.track(kBase, kBase + kPageSize, false, false);
  u.set_sampling(10);
  std::thread a([&] {
    for (int i = 0; i < 300; ++i) u.record_access(P(kBase));
  });
  std::thread b([&] {
    for (int i = 0; i < 200; ++i) u.record_access(P(kBase));
  });
  a.join();
  b.join();
  // 30 + 20 samples of weight 10: none lost to the race on the word.
  EXPECT_EQ(Heat(u, kBase), 500u);
  EXPECT_EQ(Heat(u, kBase) % 10, 0u);  // every recorded sample weighs 10
  u.set_sampling(0);                   // 0 means every access
  EXPECT_EQ(u.sampling(), 1u);
}

// Threads recording accesses to the same page at the same time each count:
// record_access() retries its compare-exchange while the page is tracked.
// Before, the loser of a race dropped its access, so a page shared by many
// threads looked colder than one each thread had to itself.
TEST(HotnessTracker, ConcurrentAccessesToOnePageAreAllCounted) {
  HotnessTracker t;
  constexpr int kThreads = 2, kPages = 2048, kEach = 255;  // 2 * 255 = 510 <= kMaxHeat
  t.track(kBase, kBase + kPages * kPageSize, false, false);
  std::atomic<int> arrived{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&] {
      for (int p = 0; p < kPages; ++p) {
        // Spin until every thread reached page p, so they hit it together.
        arrived.fetch_add(1);
        while (arrived.load() < (p + 1) * kThreads) std::this_thread::yield();
        for (int k = 0; k < kEach; ++k) t.record_access(P(kBase + p * kPageSize));
      }
    });
  for (auto& th : threads) th.join();
  int short_pages = 0;
  for (int p = 0; p < kPages; ++p)
    short_pages += Heat(t, kBase + p * kPageSize) != kThreads * kEach ? 1 : 0;
  EXPECT_EQ(short_pages, 0) << "pages that lost concurrent accesses";
  EXPECT_EQ(t.outside_accesses(), 0u);
}

// Each tracker keeps its own sampling countdown per thread. Before, one
// thread_local countdown served every tracker: a thread feeding two sampled
// trackers (two engines) had the 1-in-100 tracker's countdown skip the
// 1-in-2 tracker's accesses, which came out about 50 times too cold.
TEST(HotnessTracker, TrackersSampleIndependentlyOnOneThread) {
  HotnessTracker a, b;
  a.track(kBase, kBase + kPageSize, false, false);
  b.track(kBase, kBase + kPageSize, false, false);
  a.set_sampling(100);
  b.set_sampling(2);
  std::thread([&] {
    for (int i = 0; i < 400; ++i) {
      a.record_access(P(kBase));
      b.record_access(P(kBase));
    }
  }).join();
  EXPECT_EQ(Heat(a, kBase), 400u);  // 4 samples of weight 100
  EXPECT_EQ(Heat(b, kBase), 400u);  // 200 samples of weight 2
}

// Two sampled trackers whose ids share a countdown slot (ids 8 apart) and
// whose accesses alternate on one thread take the slot from each other at
// every access. Before, a slot taken over started at 0, so every access was
// sampled with weight n: both trackers read n times too hot (16,000 for
// 4,000 accesses at 1 in 4). A random start keeps the estimate unbiased.
TEST(HotnessTracker, TrackersSharingASamplingSlotStayUnbiased) {
  auto a = std::make_unique<HotnessTracker>();
  for (int i = 0; i < 7; ++i) HotnessTracker{};  // ids are sequential: b's is a's + 8
  auto b = std::make_unique<HotnessTracker>();
  constexpr int kPages = 64, kAccesses = 4000;
  for (HotnessTracker* t : {a.get(), b.get()}) {
    t->track(kBase, kBase + kPages * kPageSize, false, false);
    t->set_sampling(4);
  }
  std::thread([&] {
    for (int i = 0; i < kAccesses; ++i) {
      a->record_access(P(kBase + (i % kPages) * kPageSize));
      b->record_access(P(kBase + (i % kPages) * kPageSize));
    }
  }).join();
  for (HotnessTracker* t : {a.get(), b.get()}) {
    std::uint64_t sum = 0;
    for (int p = 0; p < kPages; ++p) sum += Heat(*t, kBase + p * kPageSize);
    // About 1,000 samples of weight 4: mean 4,000, standard deviation ~110.
    EXPECT_GT(sum, 3000u);
    EXPECT_LT(sum, 5000u);
  }
}

TEST(HotnessTracker, HugeUnitsCountEveryPageInTheFirstWord) {
  HotnessTracker t;
  t.track(kBase, kBase + 2 * kHugePageSize, true, false);
  t.record_access(P(kBase));
  t.record_access(P(kBase + 100 * kPageSize));
  t.record_access(P(kBase + kHugePageSize - 1));
  t.record_access(P(kBase + kHugePageSize + 7 * kPageSize));
  EXPECT_EQ(Heat(t, kBase), 3u);
  EXPECT_EQ(t.word(kBase + 100 * kPageSize), t.word(kBase));  // one word per 2 MiB unit
  EXPECT_EQ(Heat(t, kBase + kHugePageSize), 1u);
  int units = 0;
  t.sweep(
      kBase, kBase + 2 * kHugePageSize, [&](auto, auto, auto) { ++units; },
      [](auto h) { return h; });
  EXPECT_EQ(units, 2);
  EXPECT_EQ(t.outside_accesses(), 0u);
  // Re-tracking the chunk at 4 KiB granularity switches it back to per-page words.
  t.untrack(kBase, kBase + kHugePageSize);
  t.track(kBase, kBase + kHugePageSize, false, false);
  t.record_access(P(kBase + 100 * kPageSize));
  EXPECT_EQ(Heat(t, kBase + 100 * kPageSize), 1u);
  EXPECT_EQ(Heat(t, kBase), 0u);
}

TEST(HotnessTracker, AccessesOutsideTrackedRangesAreCounted) {
  HotnessTracker t;
  t.record_access(P(kBase));  // nothing tracked at all
  t.track(kBase, kBase + kPageSize, false, false);
  t.record_access(P(kBase + kPageSize));        // same chunk, untracked page
  t.record_access(P(kBase + kHugePageSize));    // same leaf, no chunk
  t.record_access(P(kBase + (1ull << 30)));     // no leaf
  t.record_access(nullptr);                     // null
  t.record_access(P(std::uintptr_t{1} << 47));  // beyond user space
  t.record_access(P(~std::uintptr_t{0}));
  EXPECT_EQ(t.outside_accesses(), 7u);
  EXPECT_EQ(Heat(t, kBase), 0u);
  // Ranges count per page outside, including one that wraps past the top.
  t.record_access(P(kBase + kPageSize), 3 * kPageSize);
  EXPECT_EQ(t.outside_accesses(), 10u);
  std::uint64_t before = t.outside_accesses();
  t.record_access(P(~std::uintptr_t{0} - 100), 1000);
  EXPECT_GT(t.outside_accesses(), before);
}

TEST(HotnessTracker, HugeRangeAccessesFinishQuickly) {
  // A bogus length must not walk 2^35 pages: untracked spans are skipped.
  HotnessTracker t;
  t.track(kBase, kBase + 2 * kPageSize, false, false);
  t.record_access(P(kBase), std::numeric_limits<std::size_t>::max(), 1);
  EXPECT_EQ(Heat(t, kBase), 1u);
  EXPECT_EQ(Heat(t, kBase + kPageSize), 1u);
  EXPECT_GT(t.outside_accesses(), 0u);
  t.record_access(P(4096), std::size_t{1} << 44, 1);  // 16 TiB, ends below kBase
  EXPECT_EQ(Heat(t, kBase), 1u);                      // below kBase: not reached
}

// track(), untrack() and sweep() take any range: the part at or past 2^47
// (no user address lives there) is not tracked. Before, track() created a
// chunk for it at dir_[2^17], one slot past the directory's end, and counted
// its pages; untrack() to the top of the address space walked 2^43 chunks.
TEST(HotnessTracker, RangesPastThe47BitSpaceAreClippedToIt) {
  HotnessTracker t;
  const std::uintptr_t top = std::uintptr_t{1} << HotnessTracker::kAddressBits;
  t.track(top - kHugePageSize, top + 2 * kHugePageSize, false, false);
  ASSERT_EQ(t.slow_pages(), HotnessTracker::kPagesPerChunk);  // the last 2 MiB below 2^47
  ASSERT_EQ(t.metadata_bytes(), HotnessTracker::metadata_bytes_for(top - kPageSize, top));
  t.record_access(P(top - kPageSize));
  EXPECT_EQ(Heat(t, top - kPageSize), 1u);
  int visited = 0;
  t.sweep(
      top - kHugePageSize, ~std::uintptr_t{0}, [&](auto, auto, auto) { ++visited; },
      HotnessTracker::kNoAging);
  EXPECT_EQ(visited, static_cast<int>(HotnessTracker::kPagesPerChunk));
  t.untrack(top - kHugePageSize, ~std::uintptr_t{0});  // finishes
  EXPECT_EQ(t.slow_pages(), 0u);
  EXPECT_EQ(W(t, top - kPageSize), 0u);
}

// metadata_bytes_for() agrees with track(): nothing for the part of a range
// at or past 2^47. Before, an end near 2^64 wrapped in align_up() and the
// bound came out as about 2^43 chunks for a range that allocates one.
TEST(HotnessTracker, MetadataBoundIgnoresThePartPastThe47BitSpace) {
  const std::uintptr_t top = std::uintptr_t{1} << HotnessTracker::kAddressBits;
  const std::uint64_t one_chunk = HotnessTracker::metadata_bytes_for(top - kHugePageSize, top);
  EXPECT_EQ(HotnessTracker::metadata_bytes_for(top - kHugePageSize, top + kHugePageSize),
            one_chunk);
  EXPECT_EQ(HotnessTracker::metadata_bytes_for(top - kHugePageSize, ~std::uintptr_t{0}), one_chunk);
  EXPECT_EQ(HotnessTracker::metadata_bytes_for(top, ~std::uintptr_t{0}), 0u);
  HotnessTracker t;
  t.track(top - kHugePageSize, ~std::uintptr_t{0}, false, false);
  EXPECT_EQ(t.metadata_bytes(), one_chunk);
}

TEST(HotnessTracker, UntrackMakesLaterAccessesNoOps) {
  HotnessTracker t;
  t.track(kBase, kBase + 4 * kPageSize, false, true);
  t.record_access(P(kBase + kPageSize));
  t.untrack(kBase, kBase + 2 * kPageSize);
  EXPECT_EQ(W(t, kBase + kPageSize), 0u);  // whole word cleared
  std::uint64_t before = t.outside_accesses();
  t.record_access(P(kBase + kPageSize));
  t.record_access(P(kBase));
  EXPECT_EQ(W(t, kBase + kPageSize), 0u);
  EXPECT_EQ(t.outside_accesses(), before + 2);
  t.set_fast(kBase, true);  // set_fast on an untracked page stays a no-op
  EXPECT_EQ(W(t, kBase), 0u);
  t.record_access(P(kBase + 2 * kPageSize));  // the rest is still tracked
  EXPECT_EQ(Heat(t, kBase + 2 * kPageSize), 1u);
  EXPECT_EQ(t.word(kBase + (1ull << 30)), nullptr);                   // never tracked: no word
  t.untrack(kBase + (1ull << 30), kBase + (1ull << 30) + kPageSize);  // never tracked: no-op
}

TEST(HotnessTracker, MetadataIsTwoBytesPerPage) {
  // One std::atomic<uint16_t> per page, lock-free (no hidden lock word), and
  // consecutive pages' words are adjacent: 512 pages of a 2 MiB chunk take
  // 1 KiB (+ one flag byte per chunk), i.e. 2 bytes per 4 KiB page = 0.05%.
  static_assert(sizeof(std::atomic<std::uint16_t>) == 2);
  static_assert(std::atomic<std::uint16_t>::is_always_lock_free);
  static_assert(HotnessTracker::kPagesPerChunk == 512);
  HotnessTracker t;
  t.track(kBase, kBase + kHugePageSize, false, false);
  auto* first = t.word(kBase);
  auto* last = t.word(kBase + kHugePageSize - kPageSize);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(reinterpret_cast<const char*>(last) - reinterpret_cast<const char*>(first),
            static_cast<std::ptrdiff_t>(2 * (HotnessTracker::kPagesPerChunk - 1)));
  EXPECT_EQ(t.word(kBase + kPageSize) - first, 1);
  // Re-tracking reuses the same block: metadata does not grow.
  t.untrack(kBase, kBase + kHugePageSize);
  t.track(kBase, kBase + kHugePageSize, false, false);
  EXPECT_EQ(t.word(kBase), first);
}

TEST(HotnessTracker, ConcurrentAccessesWhileTrackingAndUntracking) {
  HotnessTracker t;
  constexpr int kPages = 2048;  // 4 chunks
  const std::uintptr_t end = kBase + kPages * kPageSize;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> calls{0};
  std::atomic<int> started{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r)
    readers.emplace_back([&, r] {
      std::uint64_t n = 0;
      std::uint32_t x = 12345u + static_cast<std::uint32_t>(r);
      started.fetch_add(1);
      do {  // at least one access each, however the threads are scheduled
        x = x * 1664525u + 1013904223u;
        std::uintptr_t a = kBase + (x >> 8) % (kPages + 512) * kPageSize;  // some beyond the range
        if (x & 1)
          t.record_access(P(a));
        else
          t.record_access(P(a), 3 * kPageSize, 2);
        n += (x & 1) ? 1 : 3;
      } while (!done.load(std::memory_order_relaxed));
      calls.fetch_add(n);
    });
  while (started.load() < 3) std::this_thread::yield();
  for (int round = 0; round < 200; ++round) {
    bool huge = round % 3 == 0;
    t.track(kBase, end, huge, round % 2 == 0);
    t.sweep(
        kBase, end, [](auto, auto, auto) {}, [](std::uint32_t h) { return h / 2; });
    t.set_epoch(static_cast<std::uint32_t>(round));
    t.untrack(kBase + (round % 4) * kHugePageSize, end);
  }
  t.untrack(kBase, end);
  done = true;
  for (auto& th : readers) th.join();
  EXPECT_GT(calls.load(), 0u);
  for (std::uintptr_t a = kBase; a < end; a += kPageSize) ASSERT_EQ(W(t, a), 0u);
  // After the final untrack every access is outside.
  std::uint64_t before = t.outside_accesses();
  for (int i = 0; i < 10; ++i) t.record_access(P(kBase + i * kPageSize));
  EXPECT_EQ(t.outside_accesses(), before + 10);
}

// --- Epoch cost follows what changed (collect_warm, scan_fast_cold) -------

auto Aged(std::uint32_t h) { return (h * 215) >> 8; }  // decay 0.84: half-life 4

TEST(HotnessTracker, CollectWarmAgesExactlyLikeAFullSweep) {
  // Two trackers fed the same random accesses: one aged by a full sweep
  // every epoch (the old epoch), one by collect_warm. Every word agrees at
  // every epoch, including pages touched once and then left to cool.
  HotnessTracker full, warm;
  const std::uintptr_t end = kBase + 8 * kHugePageSize;
  full.track(kBase, end, false, false);
  warm.track(kBase, end, false, false);
  std::mt19937 rng(7);
  for (std::uint32_t epoch = 0; epoch < 80; ++epoch) {
    full.set_epoch(epoch);
    warm.set_epoch(epoch);
    int n = epoch < 40 ? 300 : (epoch % 10 == 0 ? 20 : 0);  // then mostly idle
    for (int k = 0; k < n; ++k) {
      std::uintptr_t a = kBase + (rng() % (8 * 512)) * kPageSize;
      std::uint32_t wgt = 1 + rng() % 40;
      full.record_access(P(a), 1, wgt);
      warm.record_access(P(a), 1, wgt);
    }
    full.sweep(
        kBase, end, [](auto, auto, auto) {}, Aged);
    warm.collect_warm([](auto, auto, auto) {}, Aged);
    for (std::uintptr_t a = kBase; a < end; a += kPageSize)
      ASSERT_EQ(W(full, a), W(warm, a)) << "epoch " << epoch << " page " << (a - kBase) / kPageSize;
  }
}

TEST(HotnessTracker, CollectWarmVisitsOnlyWhatWasTouchedAndLetsItCool) {
  HotnessTracker t;
  const std::uintptr_t end = kBase + (std::uintptr_t{4} << 30);  // 4 GiB tracked
  t.track(kBase, end, false, false);
  auto visits = [&] {
    std::size_t n = 0;
    t.collect_warm([&](auto, auto, auto) { ++n; }, Aged);
    return n;
  };
  EXPECT_EQ(visits(), 0u);  // nothing touched: nothing visited
  t.record_access(P(kBase + 3 * kPageSize));
  t.record_access(P(kBase + (std::uintptr_t{3} << 30)), 1, 511);
  EXPECT_EQ(visits(), 2 * HotnessTracker::kGroupPages);  // the two 8-page groups
  // Untouched, they stay warm until their heat decays to zero, then drop out.
  std::size_t epochs = 1;
  while (visits() != 0) ASSERT_LT(++epochs, 60u);
  EXPECT_GT(epochs, 25u);  // heat 511 (the most) takes ~30 epochs at half-life 4
  EXPECT_EQ(Heat(t, kBase + (std::uintptr_t{3} << 30)), 0u);
}

TEST(HotnessTracker, ScanFastColdOffersEachColdFastUnitOnceAndResumes) {
  HotnessTracker t;
  t.track(kBase, kBase + 2 * kHugePageSize, false, false);                     // slow
  t.track(kBase + 4 * kHugePageSize, kBase + 6 * kHugePageSize, false, true);  // fast
  t.track(kBase + 8 * kHugePageSize, kBase + 9 * kHugePageSize, true, true);   // one huge unit
  t.record_access(P(kBase + 4 * kHugePageSize));  // warm: offered by collect_warm instead
  t.collect_warm([](auto, auto, auto) {}, Aged);
  // 1024 fast 4 KiB units less the warm group of 8, plus the huge unit.
  const std::size_t expected = 1024 - HotnessTracker::kGroupPages + 1;
  std::vector<std::uintptr_t> order;
  std::size_t huge = 0;
  auto take = [&](std::uintptr_t a, std::uint16_t w, std::uint32_t pages) {
    EXPECT_TRUE(PageWord::fast(w));
    order.push_back(a);
    huge += pages == HotnessTracker::kPagesPerChunk;
    return order.size() % 100 != 0;  // stop every 100: the next call resumes
  };
  while (order.size() <= expected) t.scan_fast_cold(1 << 20, take);
  std::set<std::uintptr_t> lap(order.begin(), order.begin() + expected);
  EXPECT_EQ(lap.size(), expected) << "a unit offered twice in one lap";
  EXPECT_EQ(order[expected], order[0]) << "the next lap starts where the first did";
  EXPECT_GE(huge, 1u);
  for (std::uintptr_t a : lap) EXPECT_GE(a, kBase + 4 * kHugePageSize);
  // A budget bounds one call.
  std::size_t n = 0;
  t.scan_fast_cold(10, [&](auto, auto, auto) { return ++n, true; });
  EXPECT_LE(n, 10u);
}

// A chunk left with no fast page is dropped from the clock's list by
// moving the list's last chunk into its place. After the hand has wrapped,
// that last chunk was visited earlier in the same call: it must not be
// offered again (the engine then planned a page twice in one move_pages
// call and counted it moved twice; found by fuzz_engine_ops).
TEST(HotnessTracker, ScanFastColdOffersNoUnitTwiceWhenAChunkEmptiesBehindTheHand) {
  HotnessTracker t;
  const std::uintptr_t a = kBase, b = kBase + 2 * kHugePageSize, c = kBase + 4 * kHugePageSize,
                       d = kBase + 6 * kHugePageSize;
  for (std::uintptr_t base : {a, b, c, d}) t.track(base, base + kHugePageSize, false, false);
  // One fast page per chunk, past the first 16 pages; the chunks join the
  // clock's list in this order.
  for (std::uintptr_t base : {a, b, c, d}) t.set_fast(base + 20 * kPageSize, true);
  // Stop 10 pages into c: the next call starts its lap there.
  const std::uint64_t first_call = 2 * HotnessTracker::kPagesPerChunk + 10;
  std::vector<std::uintptr_t> taken;
  t.scan_fast_cold(first_call, [&](std::uintptr_t p, auto, auto) {
    taken.push_back(p);
    return true;
  });
  ASSERT_EQ(taken, (std::vector<std::uintptr_t>{a + 20 * kPageSize, b + 20 * kPageSize}));
  t.set_fast(a + 20 * kPageSize, false);  // a empties, behind the hand
  taken.clear();
  t.scan_fast_cold(1 << 20, [&](std::uintptr_t p, auto, auto) {
    taken.push_back(p);
    return true;
  });
  std::sort(taken.begin(), taken.end());
  EXPECT_EQ(taken, (std::vector<std::uintptr_t>{b + 20 * kPageSize, c + 20 * kPageSize,
                                                d + 20 * kPageSize}));
}

TEST(HotnessTracker, TierPageCountsFollowTrackMovesAndUntrack) {
  HotnessTracker t;
  t.track(kBase, kBase + 100 * kPageSize, false, true);
  t.track(kBase + kHugePageSize, kBase + 2 * kHugePageSize, true, false);
  EXPECT_EQ(t.fast_pages(), 100u);
  EXPECT_EQ(t.slow_pages(), 512u);
  t.set_fast(kBase, false);
  t.set_fast(kBase, false);  // no change counts once
  t.set_fast(kBase + kHugePageSize + 5 * kPageSize, true);
  EXPECT_EQ(t.fast_pages(), 99u + 512u);
  EXPECT_EQ(t.slow_pages(), 1u);
  t.untrack(kBase, kBase + 10 * kPageSize);
  EXPECT_EQ(t.fast_pages(), 90u + 512u);
  t.track(kBase + kHugePageSize, kBase + 2 * kHugePageSize, false, false);  // re-track as 4 KiB
  EXPECT_EQ(t.fast_pages(), 90u);
  EXPECT_EQ(t.slow_pages(), 512u);
}

// seen_pages(): tracked pages in the groups (8 pages, or a 2 MiB unit)
// accessed since they were tracked, counted at collect_warm().
TEST(HotnessTracker, SeenPagesCountGroupsAccessedSinceTracked) {
  HotnessTracker t;
  auto collect = [&] { t.collect_warm([](auto, auto, auto) {}, Aged); };
  t.track(kBase, kBase + 64 * kPageSize, false, false);
  t.track(kBase + kHugePageSize, kBase + 2 * kHugePageSize, true, false);
  EXPECT_EQ(t.seen_pages(), 0u);
  t.record_access(P(kBase + 9 * kPageSize));  // group 1: pages 8-15
  EXPECT_EQ(t.seen_pages(), 0u);              // counted at the collect
  collect();
  EXPECT_EQ(t.seen_pages(), 8u);
  for (int i = 0; i < 40; ++i) collect();  // cooled to nothing: still seen
  EXPECT_EQ(t.seen_pages(), 8u);
  t.record_access(P(kBase + kHugePageSize + 7 * kPageSize));  // the huge unit
  collect();
  EXPECT_EQ(t.seen_pages(), 8u + 512u);
  ASSERT_TRUE(t.split(kBase + kHugePageSize));  // 512 pages, 64 seen groups
  EXPECT_EQ(t.seen_pages(), 8u + 512u);
  t.untrack(kBase + kHugePageSize, kBase + kHugePageSize + 12 * kPageSize);
  EXPECT_EQ(t.seen_pages(), 8u + 500u);  // group 1 keeps its 4 tracked pages
  t.track(kBase + kHugePageSize, kBase + kHugePageSize + 8 * kPageSize, false, false);
  EXPECT_EQ(t.seen_pages(), 8u + 500u);  // group 0 emptied: unseen until accessed
  t.track(kBase + kHugePageSize + 8 * kPageSize, kBase + kHugePageSize + 12 * kPageSize, false,
          false);
  EXPECT_EQ(t.seen_pages(), 8u + 504u);  // back into seen group 1
  t.untrack(kBase, kBase + 64 * kPageSize);
  EXPECT_EQ(t.seen_pages(), 504u);
  // An access marked, then its group untracked before the collect: the
  // group stays unseen, and what is tracked there next is not counted.
  t.track(kBase, kBase + 8 * kPageSize, false, false);
  t.record_access(P(kBase));
  t.untrack(kBase, kBase + 8 * kPageSize);
  collect();
  t.track(kBase, kBase + 8 * kPageSize, false, false);
  EXPECT_EQ(t.seen_pages(), 504u);
}

TEST(HotnessTracker, MetadataStaysUnderTwoAndAQuarterBytesPerPage) {
  HotnessTracker t;
  const std::uint64_t pages = std::uint64_t{1} << 18;  // 1 GiB
  t.track(kBase, kBase + pages * kPageSize, false, false);
  for (std::uint64_t p = 0; p < pages; p += 3) t.record_access(P(kBase + p * kPageSize));
  t.collect_warm([](auto, auto, auto) {}, Aged);  // the warm list at its largest
  t.set_fast(kBase, true);
  double per_page = static_cast<double>(t.metadata_bytes()) / static_cast<double>(pages);
  EXPECT_GT(per_page, 2.0);
  EXPECT_LE(per_page, 2.25);
}

}  // namespace
}  // namespace tierkit
