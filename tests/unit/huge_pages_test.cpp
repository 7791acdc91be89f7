// Transparent huge pages: regions tracked and moved as 2 MiB units where THP
// is enabled, and the fall back to 4 KiB units when a unit turns out not to
// be one huge page. On the simulated backend's THP model (deterministic);
// the emulated machine checks the same on real kernels (tests/vm).
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/engine.hpp"

namespace tierkit {
namespace {

constexpr std::uintptr_t kBase = 0x100000000000;  // 2 MiB aligned; never dereferenced
constexpr std::size_t kChunkPages = kHugePageSize / kPageSize;

struct Rig {
  // `chunks` 2 MiB chunks of data, all on the slow node; `fast_chunks` of
  // fast capacity. THP in `mode`; the region registered with `options`.
  Rig(std::size_t fast_chunks, std::size_t chunks, ThpMode mode, RegionOptions options = {},
      std::uint64_t min_budget = 0)
      : be({{0, fast_chunks * kHugePageSize}, {1, 1ull << 40}}), n(chunks * kChunkPages) {
    be.set_thp_mode(mode);
    EngineConfig cfg;
    cfg.policy = "threshold:2";
    cfg.rate_limit_mbps = 1e6;
    cfg.burst_bytes = 1ull << 40;
    cfg.fast_nodes = {0};
    cfg.slow_nodes = {1};
    cfg.environment = EngineConfig::Environment::kIgnore;
    cfg.huge_min_budget_bytes = min_budget;
    auto e = Engine::create(cfg, &be, &clock);
    EXPECT_TRUE(e.ok()) << e.status();
    engine = std::move(*e);
    for (std::size_t i = 0; i < n; ++i) be.touch(page(i), 1);
    auto h = engine->register_region(reinterpret_cast<void*>(kBase), n * kPageSize,
                                     options.with_name("data"), /*initially_fast=*/false);
    EXPECT_TRUE(h.ok()) << h.status();
    handle = std::move(*h);
  }
  static std::uintptr_t page(std::size_t i) { return kBase + i * kPageSize; }
  static std::uintptr_t chunk(std::size_t c) { return kBase + c * kHugePageSize; }
  // `times` accesses to each of the first `pages` pages of chunk `c`.
  void touch_chunk(std::size_t c, std::size_t pages, int times) {
    for (std::size_t i = 0; i < pages; ++i)
      for (int k = 0; k < times; ++k)
        engine->record_access(reinterpret_cast<void*>(chunk(c) + i * kPageSize));
  }
  void step() {
    clock.advance_ns(engine->config().epoch_ms * kNsPerMs);
    ASSERT_TRUE(engine->step().ok());
  }
  // Three epochs of touch_chunk(c, pages, times).
  void heat_chunk(std::size_t c, std::size_t pages, int times) {
    for (int e = 0; e < 3; ++e) {
      touch_chunk(c, pages, times);
      step();
    }
  }
  std::size_t fast_pages_of(std::size_t c) const {
    std::size_t k = 0;
    for (std::size_t i = 0; i < kChunkPages; ++i) k += be.node_of(chunk(c) + i * kPageSize) == 0;
    return k;
  }

  ManualClock clock{1};
  SimulatedBackend be;
  std::size_t n;
  std::unique_ptr<Engine> engine;
  RegionHandle handle;
};

TEST(HugePages, DefaultRegionsUse2MiBUnitsWhereThpIsEnabled) {
  Rig rig(2, 4, ThpMode::kMadvise);
  auto r = rig.engine->regions().lookup(reinterpret_cast<void*>(kBase));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->huge_begin, kBase);
  EXPECT_EQ(r->huge_end, kBase + 4 * kHugePageSize);
  EXPECT_EQ(r->units(), 4u);
  EXPECT_EQ(rig.engine->tracker().unit_bytes(Rig::chunk(1) + 7 * kPageSize), kHugePageSize);
  // The engine advised the chunks: the simulated kernel backs them with huge pages.
  EXPECT_TRUE(rig.be.is_huge(Rig::chunk(3)));
}

TEST(HugePages, DefaultRegionsUseBasePagesWithoutThp) {
  Rig rig(2, 4, ThpMode::kNever);
  auto r = rig.engine->regions().lookup(reinterpret_cast<void*>(kBase));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->huge_begin, r->huge_end);
  EXPECT_EQ(r->units(), 4 * kChunkPages);
  EXPECT_EQ(rig.engine->tracker().unit_bytes(Rig::chunk(1)), kPageSize);
  EXPECT_FALSE(rig.be.is_huge(Rig::chunk(1)));
}

TEST(HugePages, DefaultRegionsUseBasePagesWhenTheFastBudgetIsSmall) {
  // A 4 MiB budget holds two 2 MiB units: too coarse under the default
  // 128 MiB minimum.
  Rig rig(2, 4, ThpMode::kAlways, {}, EngineConfig().huge_min_budget_bytes);
  EXPECT_FALSE(rig.engine->prefers_huge_units());
  EXPECT_EQ(rig.engine->tracker().unit_bytes(Rig::chunk(1)), kPageSize);
}

TEST(HugePages, ArenasOfASmallBudgetAreAdvisedBackToBasePages) {
  SimulatedBackend be({{0, 4 * kHugePageSize}, {1, 1ull << 30}});
  be.set_thp_mode(ThpMode::kMadvise);
  EngineConfig cfg;
  cfg.fast_nodes = {0};
  cfg.slow_nodes = {1};
  cfg.environment = EngineConfig::Environment::kIgnore;
  auto engine = Engine::create(cfg, &be);
  ASSERT_TRUE(engine.ok());
  TierResourceOptions o;
  o.nodes = {1};
  o.backend = &be;
  o.arena_bytes = 4 * kHugePageSize;
  auto heap = TierMemoryResource::create(o);
  ASSERT_TRUE(heap.ok());
  ASSERT_TRUE((*heap)->huge_pages());
  {
    ArenaRegions tracked(**engine, **heap);
    void* p = (*heap)->allocate(kPageSize);
    auto a = reinterpret_cast<std::uintptr_t>(p);
    EXPECT_EQ((*engine)->tracker().unit_bytes(a), kPageSize);
    (*heap)->deallocate(p, kPageSize);
  }
}

// Records the ranges advised for base pages.
class AdviceRecorder final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  absl::Status advise_base_pages(void* addr, std::size_t bytes) override {
    const auto a = reinterpret_cast<std::uintptr_t>(addr);
    ranges.emplace_back(a, a + bytes);
    return ForwardingBackend::advise_base_pages(addr, bytes);
  }
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> ranges;
};

// What registering [begin, end) with `options` advises for base pages, on
// a simulated machine with THP `mode` and a fast budget of 4 MiB
// (`min_budget` decides whether default regions get 2 MiB units).
std::vector<std::pair<std::uintptr_t, std::uintptr_t>> BaseAdvice(ThpMode mode,
                                                                  RegionOptions options,
                                                                  std::uintptr_t begin,
                                                                  std::uintptr_t end,
                                                                  std::uint64_t min_budget) {
  SimulatedBackend sim({{0, 2 * kHugePageSize}, {1, 1ull << 40}});
  sim.set_thp_mode(mode);
  AdviceRecorder rec(sim);
  EngineConfig cfg;
  cfg.fast_nodes = {0};
  cfg.slow_nodes = {1};
  cfg.environment = EngineConfig::Environment::kIgnore;
  cfg.huge_min_budget_bytes = min_budget;
  auto e = Engine::create(cfg, &rec);
  EXPECT_TRUE(e.ok()) << e.status();
  auto h = (*e)->register_region(reinterpret_cast<void*>(begin), end - begin, options);
  EXPECT_TRUE(h.ok()) << h.status();
  return rec.ranges;
}

// Under THP "always" the kernel may back any memory with huge pages; where
// the engine chose 4 KiB units for a default region it advises them
// MADV_NOHUGEPAGE, or each 4 KiB move could carry a huge page (its other
// pages moving unseen). Not under "madvise" (only memory someone advised
// gets huge pages), not for an explicit with_base_pages(), and for a region
// with 2 MiB units only its ragged ends.
TEST(HugePages, UnitsOf4KiBTheEngineChoseAreAdvisedBasePagesUnderThpAlways) {
  using Ranges = std::vector<std::pair<std::uintptr_t, std::uintptr_t>>;
  const std::uintptr_t end = kBase + 4 * kHugePageSize;
  const std::uint64_t big = EngineConfig().huge_min_budget_bytes;  // 4 MiB is below it
  EXPECT_EQ(BaseAdvice(ThpMode::kAlways, {}, kBase, end, big), (Ranges{{kBase, end}}));
  EXPECT_EQ(BaseAdvice(ThpMode::kMadvise, {}, kBase, end, big), Ranges{});
  EXPECT_EQ(BaseAdvice(ThpMode::kAlways, RegionOptions().with_base_pages(), kBase, end, big),
            Ranges{});
  EXPECT_EQ(BaseAdvice(ThpMode::kAlways, {}, kBase, end, 0), Ranges{});  // 2 MiB units
  const std::uintptr_t b = kBase + 5 * kPageSize, e = end - 3 * kPageSize;
  EXPECT_EQ(BaseAdvice(ThpMode::kAlways, {}, b, e, 0),
            (Ranges{{b, kBase + kHugePageSize}, {end - kHugePageSize, e}}));
}

TEST(HugePages, BasePagesStayAvailablePerRegion) {
  Rig rig(2, 4, ThpMode::kAlways, RegionOptions().with_base_pages());
  EXPECT_EQ(rig.engine->tracker().unit_bytes(Rig::chunk(1)), kPageSize);
  EXPECT_FALSE(rig.be.is_huge(Rig::chunk(1)));
}

TEST(HugePages, AHotHugePageIsPromotedWholeByOneEntryAndStaysHuge) {
  Rig rig(2, 8, ThpMode::kMadvise);
  rig.heat_chunk(5, 3, 4);  // a few pages of chunk 5 make the whole unit hot
  EXPECT_EQ(rig.fast_pages_of(5), kChunkPages);
  EXPECT_TRUE(rig.be.is_huge(Rig::chunk(5)));
  EngineStats s = rig.engine->stats();
  EXPECT_EQ(s.promoted_pages, kChunkPages);
  EXPECT_EQ(s.huge_units_moved, 1u);
  EXPECT_EQ(s.huge_units_split, 0u);
  EXPECT_EQ(rig.engine->tracker().unit_bytes(Rig::chunk(5)), kHugePageSize);
  for (std::size_t c : {0, 1, 2, 3, 4, 6, 7}) EXPECT_EQ(rig.fast_pages_of(c), 0u) << c;
}

TEST(HugePages, AUnitThatIsNotOneHugePageFallsBackTo4KiBAndMovesWhole) {
  Rig rig(2, 8, ThpMode::kMadvise);
  rig.be.split_huge(Rig::chunk(2));  // as the kernel may, under memory pressure
  rig.heat_chunk(2, 3, 4);
  // Every page of the chunk reached the fast tier, 4 KiB at a time.
  EXPECT_EQ(rig.fast_pages_of(2), kChunkPages);
  EngineStats s = rig.engine->stats();
  EXPECT_EQ(s.huge_units_split, 1u);
  EXPECT_EQ(s.huge_units_moved, 0u);
  EXPECT_EQ(s.promoted_pages, kChunkPages);
  EXPECT_EQ(s.failed_pages + s.dropped_pages, 0u);
  // The chunk is now tracked per page, with the page counts unchanged.
  EXPECT_EQ(rig.engine->tracker().unit_bytes(Rig::chunk(2)), kPageSize);
  EXPECT_EQ(rig.engine->tracker().fast_pages(), kChunkPages);
  EXPECT_EQ(rig.engine->tracker().fast_pages() + rig.engine->tracker().slow_pages(), rig.n);
}

// A 2 MiB unit whose first page was never touched (-ENOENT) but whose last
// page is present is not one huge page: it falls back to 4 KiB units and
// its present pages move, the absent one is believed slow. Not the whole
// unit taken for absent, which would leave its pages in the fast tier
// believed slow.
TEST(HugePages, AUnitWithItsFirstPageAbsentFallsBackTo4KiB) {
  SimulatedBackend be({{0, 4 * kHugePageSize}, {1, 1ull << 40}});
  be.set_thp_mode(ThpMode::kMadvise);
  ManualClock clock{1};
  EngineConfig cfg;
  cfg.policy = "threshold:2";
  cfg.fast_nodes = {0};
  cfg.slow_nodes = {1};
  cfg.environment = EngineConfig::Environment::kIgnore;
  cfg.huge_min_budget_bytes = 0;
  auto e = Engine::create(cfg, &be, &clock);
  ASSERT_TRUE(e.ok()) << e.status();
  for (std::size_t i = 1; i < kChunkPages; ++i) be.touch(Rig::page(i), 0);
  auto h = (*e)->register_region(reinterpret_cast<void*>(kBase), kHugePageSize,
                                 RegionOptions().with_tag(RegionTag::cold));
  ASSERT_TRUE(h.ok()) << h.status();
  be.split_huge(kBase);  // its pages were touched before the advice: no huge page
  ASSERT_EQ((*e)->tracker().unit_bytes(kBase), kHugePageSize);
  for (int k = 0; k < 3; ++k) {
    clock.advance_ns(cfg.epoch_ms * kNsPerMs);
    ASSERT_TRUE((*e)->step().ok());
  }
  EXPECT_EQ(be.used_bytes(0), 0u);  // every present page left the fast tier
  EngineStats s = (*e)->stats();
  EXPECT_EQ(s.huge_units_split, 1u);
  EXPECT_EQ(s.absent_pages, 1u);
  EXPECT_EQ(s.demoted_pages, kChunkPages - 1);
  EXPECT_EQ((*e)->tracker().fast_pages(), 0u);
}

TEST(HugePages, SplitChunksAreJudgedPerPageAfterwards) {
  Rig rig(2, 4, ThpMode::kMadvise);
  rig.be.split_huge(Rig::chunk(1));
  rig.heat_chunk(1, 3, 4);
  ASSERT_EQ(rig.fast_pages_of(1), kChunkPages);
  // From now on only the three touched pages are hot; the other 509 are
  // cold and become demotion candidates one by one when room is needed.
  const EngineStats before = rig.engine->stats();
  for (int e = 0; e < 30; ++e) {
    rig.touch_chunk(1, 3, 4);
    rig.touch_chunk(3, kChunkPages, 4);  // a whole hot huge page wants in
    rig.step();
  }
  EXPECT_EQ(rig.fast_pages_of(3), kChunkPages) << rig.engine->stats().to_table();
  EXPECT_GE(rig.fast_pages_of(1), 3u);
  EXPECT_GT(rig.engine->stats().demoted_pages, before.demoted_pages);
  EXPECT_LT(rig.fast_pages_of(1), kChunkPages);
}

// A source that reports what it is told was accessed as the unit holding
// it in the ranges it was given, as a page-table source does, and keeps
// the last ranges.
class UnitSource final : public HotnessSource {
 public:
  std::vector<TrackedRange> ranges;
  std::vector<std::uintptr_t> accessed;  // reported every collect()
  std::string_view name() const override { return "unit"; }
  absl::Status probe() override { return absl::OkStatus(); }
  absl::Status collect(absl::Span<const TrackedRange> now, HotnessSink& sink,
                       const SourceBudget&) override {
    ranges.assign(now.begin(), now.end());
    for (std::uintptr_t a : accessed)
      for (const TrackedRange& r : ranges)
        if (r.begin <= a && a < r.end) sink.record(a - (a - r.begin) % r.granularity, 4, false);
    return absl::OkStatus();
  }
  HotnessSourceStats stats() const override { return {}; }
  // The ranges as "first-last+1 chunk/unit KiB" strings, for messages.
  std::vector<std::string> shown() const {
    std::vector<std::string> out;
    for (const TrackedRange& r : ranges)
      out.push_back(absl::StrCat((r.begin - kBase) / kHugePageSize, "-",
                                 (r.end - kBase) / kHugePageSize, "/", r.granularity / 1024));
    return out;
  }
};

// Sources watch each chunk in the unit the engine has for it now, not the
// one it registered: a chunk that fell back to 4 KiB units is watched page
// by page, so what a source finds on one of its pages heats that page (as
// one watched 2 MiB unit, it heated the chunk's first page); a chunk merged
// after a carried move is watched as one 2 MiB unit.
TEST(HugePages, SourcesWatchEachChunkInTheUnitItHasNow) {
  {
    Rig rig(2, 4, ThpMode::kMadvise);
    auto src = std::make_unique<UnitSource>();
    UnitSource* source = src.get();
    ASSERT_TRUE(rig.engine->add_hotness_source(std::move(src)).ok());
    rig.be.split_huge(Rig::chunk(1));
    for (int e = 0; e < 3; ++e) {
      rig.touch_chunk(1, 3, 4);
      rig.step();
    }
    ASSERT_EQ(rig.engine->stats().huge_units_split, 1u);
    const std::uintptr_t found = Rig::chunk(1) + 300 * kPageSize;
    source->accessed = {found};
    for (int e = 0; e < 8; ++e) rig.step();
    EXPECT_THAT(source->shown(), ::testing::ElementsAre("0-1/2048", "1-2/4", "2-4/2048"));
    auto heat = [&](std::uintptr_t a) {
      return PageWord::heat(rig.engine->tracker().word(a)->load());
    };
    EXPECT_GT(heat(found), heat(found + kPageSize));
    EXPECT_GT(heat(found), heat(Rig::chunk(1)));
  }
  {
    Rig rig(2, 4, ThpMode::kAlways, {}, EngineConfig().huge_min_budget_bytes);  // 4 KiB units
    auto src = std::make_unique<UnitSource>();
    UnitSource* source = src.get();
    ASSERT_TRUE(rig.engine->add_hotness_source(std::move(src)).ok());
    ASSERT_TRUE(rig.be.advise_huge(reinterpret_cast<void*>(Rig::chunk(1)), kHugePageSize).ok());
    for (int e = 0; e < 3; ++e) {
      rig.touch_chunk(1, 4, 8);
      rig.step();
    }
    ASSERT_EQ(rig.engine->stats().huge_units_merged, 1u);
    rig.step();
    EXPECT_THAT(source->shown(), ::testing::ElementsAre("0-1/4", "1-2/2048", "2-4/4"));
  }
}

TEST(HugePages, RaggedEndsOfADefaultRegionUseBasePages) {
  HotnessTracker tracker;
  RegionRegistry reg(tracker);
  reg.set_auto_huge(true);
  // 3 pages before the first whole chunk, two whole chunks, 5 pages after.
  const std::uintptr_t begin = kBase + kHugePageSize - 3 * kPageSize;
  const std::size_t bytes = 3 * kPageSize + 2 * kHugePageSize + 5 * kPageSize;
  auto h = reg.add(reinterpret_cast<void*>(begin), bytes, {});
  ASSERT_TRUE(h.ok()) << h.status();
  auto r = reg.find(h->id());
  EXPECT_EQ(r->begin, begin);
  EXPECT_EQ(r->huge_begin, kBase + kHugePageSize);
  EXPECT_EQ(r->huge_end, kBase + 3 * kHugePageSize);
  EXPECT_EQ(r->end, begin + bytes);
  EXPECT_EQ(r->units(), 3u + 2u + 5u);
  EXPECT_EQ(tracker.unit_bytes(begin), kPageSize);
  EXPECT_EQ(tracker.unit_bytes(kBase + kHugePageSize + 9 * kPageSize), kHugePageSize);
  EXPECT_EQ(tracker.unit_bytes(kBase + 3 * kHugePageSize), kPageSize);
  EXPECT_EQ(tracker.fast_pages(), 3u + 2 * kChunkPages + 5u);
  // A region smaller than one whole chunk is all base pages.
  auto small = reg.add(reinterpret_cast<void*>(kBase + 8 * kHugePageSize), kHugePageSize / 2, {});
  ASSERT_TRUE(small.ok());
  auto s = reg.find(small->id());
  EXPECT_EQ(s->huge_begin, s->huge_end);
}

TEST(HugePages, SplitKeepsHeatPlacementAndCounts) {
  HotnessTracker t;
  t.track(kBase, kBase + 2 * kHugePageSize, /*huge=*/true, /*fast=*/true);
  EXPECT_EQ(t.fast_units(), 2u);
  for (int k = 0; k < 10; ++k) t.record_access(reinterpret_cast<void*>(kBase + 77 * kPageSize));
  ASSERT_TRUE(t.split(kBase + 5 * kPageSize));
  EXPECT_FALSE(t.split(kBase));  // already split
  EXPECT_EQ(t.fast_pages(), 2 * kChunkPages);
  EXPECT_EQ(t.fast_units(), kChunkPages + 1);
  EXPECT_EQ(t.unit_bytes(kBase), kPageSize);
  EXPECT_EQ(t.unit_bytes(kBase + kHugePageSize), kHugePageSize);
  std::size_t units = 0, hot = 0;
  t.collect_warm(
      [&](std::uintptr_t, std::uint16_t w, std::uint32_t pages) {
        ++units;
        EXPECT_EQ(pages, 1u);
        hot += PageWord::heat(w) == 10;
        EXPECT_TRUE(PageWord::fast(w));
      },
      [](std::uint32_t h) { return h / 2; });
  EXPECT_EQ(units, kChunkPages);  // every page of the split chunk holds the unit's heat
  EXPECT_EQ(hot, kChunkPages);
}

TEST(HugePages, MergeSumsHeatAndKeepsCounts) {
  HotnessTracker t;
  t.track(kBase, kBase + 2 * kHugePageSize, /*huge=*/false, /*fast=*/false);
  for (int k = 0; k < 5; ++k) t.record_access(reinterpret_cast<void*>(kBase + 3 * kPageSize));
  for (int k = 0; k < 7; ++k) t.record_access(reinterpret_cast<void*>(kBase + 300 * kPageSize));
  ASSERT_TRUE(t.merge(kBase + 9 * kPageSize, /*fast=*/true));
  EXPECT_FALSE(t.merge(kBase, true));  // already one unit
  EXPECT_EQ(t.unit_bytes(kBase + 300 * kPageSize), kHugePageSize);
  EXPECT_EQ(t.unit_bytes(kBase + kHugePageSize), kPageSize);
  EXPECT_EQ(t.fast_pages(), kChunkPages);
  EXPECT_EQ(t.fast_units(), 1u);
  EXPECT_EQ(t.slow_pages(), kChunkPages);
  EXPECT_EQ(PageWord::heat(t.word(kBase + 77 * kPageSize)->load()), 12u);
  std::size_t units = 0;
  t.collect_warm(
      [&](std::uintptr_t a, std::uint16_t w, std::uint32_t pages) {
        ++units;
        EXPECT_EQ(a, kBase);
        EXPECT_EQ(pages, kChunkPages);
        EXPECT_EQ(PageWord::heat(w), 12u);
        EXPECT_TRUE(PageWord::fast(w));
      },
      [](std::uint32_t h) { return h / 2; });
  EXPECT_EQ(units, 1u);
  EXPECT_EQ(t.seen_pages(), kChunkPages);
  // A chunk with a page not tracked is not merged, and nothing changes.
  t.untrack(kBase + kHugePageSize + 4 * kPageSize, kBase + kHugePageSize + 5 * kPageSize);
  EXPECT_FALSE(t.merge(kBase + kHugePageSize, true));
  EXPECT_EQ(t.fast_pages(), kChunkPages);
  EXPECT_EQ(t.slow_pages(), kChunkPages - 1);
  // Split undoes merge: 512 units, each with the unit's heat, counts unchanged.
  ASSERT_TRUE(t.split(kBase));
  EXPECT_EQ(t.fast_units(), kChunkPages);
  EXPECT_EQ(t.fast_pages(), kChunkPages);
}

// Chunk `c`, the only one promoted, went to the fast tier whole for a few
// 4 KiB moves: one carry, its 512 pages counted as promoted and believed
// fast, the rate limiter charged for them (granted 4 pages, charged the
// other 508), and the chunk one 2 MiB unit if `merged`.
void ExpectChunkOnePromotedAndCarried(const Rig& rig, std::size_t c, bool merged) {
  EXPECT_EQ(rig.fast_pages_of(c), kChunkPages);
  const EngineStats s = rig.engine->stats();
  EXPECT_EQ(s.huge_pages_carried, 1u);
  EXPECT_EQ(s.huge_units_merged, merged ? 1u : 0u);
  EXPECT_EQ(s.promoted_pages, kChunkPages);
  EXPECT_EQ(rig.engine->rate_limiter().granted_bytes(), kChunkPages * kPageSize);
  EXPECT_EQ(rig.engine->tracker().fast_pages(), kChunkPages);
  EXPECT_EQ(rig.engine->tracker().unit_bytes(Rig::chunk(c)), merged ? kHugePageSize : kPageSize);
}

// A huge page that formed before registration, in memory tracked in 4 KiB
// units: the kernel moves it whole for a 4 KiB move (Backend::move). The
// engine finds that out (a page beside the moved one moved too), counts the
// 512 pages as promoted, believes them all fast, and tracks the chunk as
// the one 2 MiB unit it is from then on; an explicit with_base_pages()
// region keeps its 4 KiB units, its beliefs right all the same.
TEST(HugePages, AHugePageA4KiBMoveCarriedIsAccountedAndBecomesOneUnit) {
  for (bool base_pages : {false, true}) {
    SCOPED_TRACE(base_pages ? "with_base_pages" : "default granularity");
    Rig rig(2, 4, ThpMode::kAlways,
            base_pages ? RegionOptions().with_base_pages() : RegionOptions(),
            EngineConfig().huge_min_budget_bytes);  // a 4 MiB budget: 4 KiB units
    ASSERT_EQ(rig.engine->tracker().unit_bytes(Rig::chunk(1)), kPageSize);
    ASSERT_TRUE(rig.be.advise_huge(reinterpret_cast<void*>(Rig::chunk(1)), kHugePageSize).ok());
    ASSERT_TRUE(rig.be.is_huge(Rig::chunk(1)));
    for (int e = 0; e < 3; ++e) {
      rig.touch_chunk(1, 4, 8);
      rig.step();
    }
    ExpectChunkOnePromotedAndCarried(rig, 1, /*merged=*/!base_pages);
    for (std::size_t c : {0, 2, 3}) EXPECT_EQ(rig.fast_pages_of(c), 0u) << c;
  }
}

// Most of a huge page's pages promoted in one batch, pages 0-299 with the
// other half's first pages among them: the carry check finds a page beside
// them that is not moving (page 300), sees it moved too, and counts and
// believes the 512. (It looked at 8 pages from the other half only, all
// moving, and counted 300.)
TEST(HugePages, ACarryIsFoundWhenMostOfTheChunkMovesInOneBatch) {
  Rig rig(2, 4, ThpMode::kAlways, {}, EngineConfig().huge_min_budget_bytes);
  ASSERT_TRUE(rig.be.advise_huge(reinterpret_cast<void*>(Rig::chunk(1)), kHugePageSize).ok());
  rig.heat_chunk(1, 300, 8);
  ExpectChunkOnePromotedAndCarried(rig, 1, /*merged=*/true);
}

// Fails queries on demand: from the `first`-th after arm() (0-based),
// `count` of them; with `late_move`, a move() also fails after moving, as
// LinuxBackend's may when a later batch fails.
class FailingQueries final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  absl::Status query(absl::Span<void* const> pages, absl::Span<int> status) override {
    if (armed_ && seen_++ >= first_ && failed_ < count_) {
      ++failed_;
      return absl::InternalError("query failed (injected)");
    }
    return ForwardingBackend::query(pages, status);
  }
  absl::Status move(absl::Span<void* const> pages, absl::Span<const NodeId> nodes,
                    absl::Span<int> status) override {
    absl::Status moved = ForwardingBackend::move(pages, nodes, status);
    if (armed_ && late_move_) return absl::InternalError("move failed after moving (injected)");
    return moved;
  }
  void arm(int first, int count, bool late_move) {
    armed_ = true, first_ = first, count_ = count, seen_ = 0, late_move_ = late_move;
  }
  void disarm() { armed_ = false; }
  int failed() const { return failed_; }

 private:
  bool armed_ = false, late_move_ = false;
  int first_ = 0, count_ = 0, seen_ = 0, failed_ = 0;
};

// The carry check needs queries before and after the move; when one of
// them fails, or the move itself and its re-query do, the chunk is asked
// about at the next epoch instead, and the carry is found then: beliefs and
// counts end exact whichever query failed. The moving epoch asks three: a
// page beside the moved one before and after, then the chunk (or, after a
// failed move, where the moved unit is).
// Four hot pages in a huge page of memory tracked in 4 KiB units, their
// promotion carrying it, on a backend whose queries fail on demand.
struct CarryRig {
  CarryRig() : be(sim) {
    sim.set_thp_mode(ThpMode::kAlways);
    cfg.policy = "threshold:2";
    cfg.fast_nodes = {0};
    cfg.slow_nodes = {1};
    cfg.environment = EngineConfig::Environment::kIgnore;
    auto e = Engine::create(cfg, &be, &clock);
    EXPECT_TRUE(e.ok()) << e.status();
    engine = std::move(*e);
    for (std::size_t i = 0; i < kPages; ++i) sim.touch(Rig::page(i), 1);
    auto h = engine->register_region(reinterpret_cast<void*>(kBase), kPages * kPageSize);
    EXPECT_TRUE(h.ok()) << h.status();
    handle = std::move(*h);
    EXPECT_EQ(engine->tracker().unit_bytes(Rig::chunk(1)), kPageSize);
    EXPECT_TRUE(sim.advise_huge(reinterpret_cast<void*>(Rig::chunk(1)), kHugePageSize).ok());
  }
  void step() {
    for (std::size_t i = 0; i < 4; ++i)
      for (int t = 0; t < 8; ++t)
        engine->record_access(reinterpret_cast<void*>(Rig::chunk(1) + i * kPageSize));
    clock.advance_ns(cfg.epoch_ms * kNsPerMs);
    ASSERT_TRUE(engine->step().ok());
  }
  static constexpr std::size_t kPages = 4 * kChunkPages;
  SimulatedBackend sim{{{0, 2 * kHugePageSize}, {1, 1ull << 40}}};
  FailingQueries be;
  ManualClock clock{1};
  EngineConfig cfg;
  std::unique_ptr<Engine> engine;
  RegionHandle handle;
};

// The carry check needs queries before and after the move; when one of
// them fails, or the move itself and its re-query do, the chunk is asked
// about at the next epoch instead, and the carry is found then: beliefs and
// counts end exact whichever query failed. The moving epoch asks three: a
// page beside the moved one before and after, then the chunk (or, after a
// failed move, where the moved unit is).
TEST(HugePages, ACarryWhoseCheckFailedIsFoundAtALaterEpoch) {
  int moving = 0;  // the epoch that moves, without failures
  {
    CarryRig dry;
    while (dry.sim.moves() == 0 && moving < 8) {
      dry.step();
      ++moving;
    }
    ASSERT_EQ(dry.sim.moves(), kChunkPages);
    ASSERT_EQ(dry.engine->stats().huge_pages_carried, 1u);
  }
  struct Case {
    int first, count;
    bool late_move;
  };
  for (Case c : {Case{0, 1, false}, Case{1, 1, false}, Case{2, 1, false}, Case{1, 1, true},
                 Case{0, 2, true}}) {
    SCOPED_TRACE(testing::Message()
                 << "queries " << c.first << " to " << c.first + c.count - 1
                 << " of the moving epoch fail" << (c.late_move ? ", and its move" : ""));
    CarryRig rig;
    for (int epoch = 1; epoch <= moving + 3; ++epoch) {
      if (epoch == moving) rig.be.arm(c.first, c.count, c.late_move);
      rig.step();
      rig.be.disarm();
    }
    // A failed query ends the check; a failed move is asked about once.
    EXPECT_EQ(rig.be.failed(), c.late_move ? c.count : 1);
    EXPECT_EQ(rig.sim.moves(), kChunkPages);
    const EngineStats s = rig.engine->stats();
    EXPECT_EQ(s.promoted_pages, kChunkPages) << s.to_table();
    EXPECT_EQ(s.huge_pages_carried, 1u);
    EXPECT_EQ(rig.engine->tracker().fast_pages(), kChunkPages);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < CarryRig::kPages; ++i) {
      const std::uint16_t w = rig.engine->tracker().word(Rig::page(i))->load();
      wrong += PageWord::fast(w) != (rig.sim.node_of(Rig::page(i)) == 0);
    }
    EXPECT_EQ(wrong, 0u) << "pages believed on the other tier";
  }
}

// Memory from hugetlbfs (a database's MAP_HUGETLB buffer pool) is huge
// whatever the THP mode, and under THP "never" the engine tracks it in 4 KiB
// units: a 4 KiB move carries the huge page all the same. The engine finds
// it as under THP, so its counts, its beliefs and the rate limiter's charge
// are the 512 pages that moved, and the chunk moves back as one unit.
TEST(HugePages, AHugetlbPageUnderThpNeverIsFoundCarriedAndBecomesOneUnit) {
  Rig rig(2, 4, ThpMode::kNever);
  ASSERT_EQ(rig.engine->tracker().unit_bytes(Rig::chunk(1)), kPageSize);
  rig.be.back_with_hugetlb(reinterpret_cast<void*>(Rig::chunk(1)), kHugePageSize);
  rig.heat_chunk(1, 4, 8);
  ExpectChunkOnePromotedAndCarried(rig, 1, /*merged=*/true);

  ASSERT_TRUE(rig.engine->regions().set_tag(rig.handle.id(), RegionTag::cold).ok());
  rig.step();
  const EngineStats s = rig.engine->stats();
  EXPECT_EQ(rig.fast_pages_of(1), 0u);
  EXPECT_EQ(s.demoted_pages, kChunkPages);
  EXPECT_EQ(s.huge_units_moved, 1u);
  EXPECT_EQ(rig.engine->tracker().fast_pages(), 0u);
}

// Without a huge page nothing is carried: 4 KiB moves stay 4 KiB, and the
// check finds nothing.
TEST(HugePages, FourKiBMovesOutsideHugePagesCarryNothing) {
  Rig rig(2, 4, ThpMode::kAlways, {}, EngineConfig().huge_min_budget_bytes);
  rig.heat_chunk(1, 4, 8);
  EXPECT_EQ(rig.fast_pages_of(1), 4u);
  const EngineStats s = rig.engine->stats();
  EXPECT_EQ(s.huge_pages_carried, 0u);
  EXPECT_EQ(s.promoted_pages, 4u);
  EXPECT_EQ(rig.engine->tracker().fast_pages(), 4u);
}

// Huge pages forming at random in memory tracked in 4 KiB units (memory
// faulted before registration, or khugepaged), and split at random as under
// memory pressure, under random heat and now and then a cold tag (all
// demoted): after every epoch each tracked page is
// believed where it is, and the pages counted as moved are the pages that
// moved. Both policies, both granularities.
TEST(HugePages, BeliefsAndCountsStayExactWhileHugePagesFormUnder4KiBUnits) {
  constexpr std::size_t kChunks = 8;
  for (std::uint32_t seed = 1; seed <= 4; ++seed) {
    for (bool base_pages : {false, true}) {
      SCOPED_TRACE(testing::Message() << "seed " << seed << (base_pages ? ", base pages" : ""));
      Rig rig(6, kChunks, ThpMode::kAlways,
              base_pages ? RegionOptions().with_base_pages() : RegionOptions(),
              EngineConfig().huge_min_budget_bytes);
      ASSERT_TRUE(rig.engine->set_policy(seed % 2 ? "threshold:2" : "automatic").ok());
      std::mt19937 rng(seed);
      std::vector<std::pair<std::size_t, std::size_t>> spots(3, {0, 0});  // first page, pages
      for (int epoch = 0; epoch < 80; ++epoch) {
        // Now and then all of it cold for an epoch: merged units go back whole.
        const bool cold = rng() % 10 == 0;
        ASSERT_TRUE(rig.engine->regions()
                        .set_tag(rig.handle.id(), cold ? RegionTag::cold : RegionTag::automatic)
                        .ok());
        const std::size_t c = rng() % kChunks;
        const std::size_t on_fast = rig.fast_pages_of(c);
        if (rng() % 3 == 0 && (on_fast == 0 || on_fast == kChunkPages)) {
          ASSERT_TRUE(
              rig.be.advise_huge(reinterpret_cast<void*>(Rig::chunk(c)), kHugePageSize).ok());
        }
        if (rng() % 8 == 0) rig.be.split_huge(Rig::chunk(rng() % kChunks));
        // Hot spots of 1-8 pages that last some epochs (a one-epoch burst
        // is not promoted).
        for (auto& spot : spots) {
          if (rng() % 6 == 0) spot = {rng() % rig.n, 1 + rng() % 8};
          for (std::size_t i = 0; i < spot.second; ++i)
            for (int t = 0; t < 6; ++t)
              rig.engine->record_access(
                  reinterpret_cast<void*>(Rig::page((spot.first + i) % rig.n)));
        }
        rig.step();
        std::size_t wrong = 0;
        for (std::size_t i = 0; i < rig.n; ++i) {
          const std::uint16_t w = rig.engine->tracker().word(Rig::page(i))->load();
          wrong += PageWord::fast(w) != (rig.be.node_of(Rig::page(i)) == 0);
        }
        ASSERT_EQ(wrong, 0u) << "epoch " << epoch;
        const EngineStats s = rig.engine->stats();
        ASSERT_EQ(s.promoted_pages + s.demoted_pages, rig.be.moves()) << "epoch " << epoch;
      }
      const EngineStats s = rig.engine->stats();
      auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
      std::printf("seed %u%s: promoted %llu, carried %llu, merged %llu, moved %llu, split %llu\n",
                  seed, base_pages ? " base pages" : "", u(s.promoted_pages),
                  u(s.huge_pages_carried), u(s.huge_units_merged), u(s.huge_units_moved),
                  u(s.huge_units_split));
    }
  }
}

// After the kernel's own moves the engine asks about its idle fast units
// for one lap of the fast tier's clock, which counts units: with 2 MiB units
// a lap is 512 times shorter than the tier's pages. Sized by pages, the
// check went on asking about the same units for about 40 epochs here.
TEST(HugePages, TheCheckAfterTheKernelsMovesGoesOnceRoundTheUnits) {
  constexpr std::size_t kChunks = 640;  // 1.25 GiB: 327,680 pages, 640 units
  Rig rig(kChunks + 8, kChunks, ThpMode::kAlways, RegionOptions().with_huge_pages());
  for (int e = 0; e < 3; ++e) {
    for (std::size_t c = 0; c < kChunks; ++c) rig.touch_chunk(c, 1, 8);
    rig.step();
  }
  ASSERT_GE(rig.engine->stats().fast_pages, kChunks * kChunkPages * 9 / 10);  // the watermark
  for (int e = 0; e < 20; ++e) rig.step();  // idle: no unit is visited
  rig.be.touch(0x200000000000, 0);          // not ours: the kernel demotes it
  ASSERT_TRUE(rig.be.kernel_move(0x200000000000, 1));
  int checking = 0;
  for (int e = 0; e < 60; ++e) {
    const std::uint64_t before = rig.engine->stats().placement_verified;
    rig.step();
    checking += rig.engine->stats().placement_verified > before;
  }
  EXPECT_GE(checking, 1);
  EXPECT_LE(checking, 2);
}

TEST(HugePages, ResourceArenasFollowTheSystemsThpMode) {
  for (ThpMode mode : {ThpMode::kNever, ThpMode::kMadvise, ThpMode::kAlways}) {
    SimulatedBackend be({{0, 1ull << 30}});
    be.set_thp_mode(mode);
    TierResourceOptions o;
    o.nodes = {0};
    o.backend = &be;
    auto r = TierMemoryResource::create(o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->huge_pages(), mode != ThpMode::kNever) << thp_mode_name(mode);
    o.huge_pages = HugePages::kOff;
    auto off = TierMemoryResource::create(o);
    ASSERT_TRUE(off.ok());
    EXPECT_FALSE((*off)->huge_pages());
  }
}

TEST(HugePages, LinuxBackendAlignsWholeChunkMappings) {
  LinuxBackend be;
  auto m = be.map(3 * kHugePageSize);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(*m) % kHugePageSize, 0u);
  static_cast<char*>(*m)[3 * kHugePageSize - 1] = 1;  // the whole range is ours
  EXPECT_TRUE(be.unmap(*m, 3 * kHugePageSize).ok());
  EXPECT_EQ(LinuxBackend::read_thp_mode("/nonexistent/enabled"), ThpMode::kNever);
}

}  // namespace
}  // namespace tierkit
