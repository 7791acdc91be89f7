// RegionRegistry and RegionHandle unit tests (synthetic addresses).
#include "tierkit/region.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

// Allocation failure on demand: with g_allocations_left = n >= 0, this
// thread's (n+1)-th operator new from now throws std::bad_alloc, once. A
// seam for out-of-memory paths (RLIMIT_AS would fail the sanitizers' own
// reservations too).
namespace {
thread_local long g_allocations_left = -1;
}  // namespace

void* operator new(std::size_t n) {
  if (g_allocations_left >= 0 && g_allocations_left-- == 0) throw std::bad_alloc();
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(n);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
// GCC, seeing these pair with its own operator new once inlined, warns:
// here they pair with the malloc above.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace tierkit {
namespace {

using ::testing::HasSubstr;

constexpr std::uintptr_t kBase = 0x300000000000;  // 1 GiB aligned, < 2^47

const void* P(std::uintptr_t a) { return reinterpret_cast<const void*>(a); }
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

struct RegistryTest : ::testing::Test {
  HotnessTracker tracker;
  RegionRegistry reg{tracker};
  bool tracked(std::uintptr_t a) {
    auto* w = tracker.word(a);
    return w != nullptr && PageWord::tracked(w->load());
  }
};

TEST_F(RegistryTest, OverlapIsAnErrorNamingTheOtherRegion) {
  auto a = reg.add(P(kBase), 4 * kPageSize, RegionOptions().with_name("index"));
  ASSERT_TRUE(a.ok()) << a.status();
  for (std::uintptr_t start : {kBase - kPageSize, kBase, kBase + 3 * kPageSize + 100}) {
    auto b = reg.add(P(start), 2 * kPageSize, RegionOptions().with_name("cache"));
    ASSERT_FALSE(b.ok()) << std::hex << start;
    EXPECT_EQ(b.status().code(), absl::StatusCode::kAlreadyExists);
    EXPECT_THAT(Msg(b.status()), HasSubstr("'index'"));
    EXPECT_THAT(Msg(b.status()), HasSubstr("'cache'"));
    EXPECT_THAT(Msg(b.status()), HasSubstr("overlaps"));
  }
  // A range covering the whole region overlaps too.
  EXPECT_FALSE(reg.add(P(kBase - kPageSize), 10 * kPageSize, {}).ok());
  // Adjacent on either side is fine.
  auto after = reg.add(P(kBase + 4 * kPageSize), kPageSize, {});
  auto before = reg.add(P(kBase - kPageSize), kPageSize, {});
  EXPECT_TRUE(after.ok() && before.ok());
  EXPECT_EQ(reg.size(), 3u);
  // The failed attempts left no trace.
  EXPECT_EQ(reg.tracked_bytes(), 6 * kPageSize);
}

TEST_F(RegistryTest, OverlapWithAnEarlierRegionIsFound) {
  // Several regions; the new range starts inside the first of them.
  // (A StatusOr<RegionHandle> temporary unregisters at once: keep the handles.)
  auto a = reg.add(P(kBase), 10 * kPageSize, RegionOptions().with_name("a"));
  auto b = reg.add(P(kBase + 20 * kPageSize), kPageSize, RegionOptions().with_name("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = reg.add(P(kBase + 9 * kPageSize), 2 * kPageSize, {});
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(Msg(c.status()), HasSubstr("'a'"));
  auto d = reg.add(P(kBase + 5 * kPageSize), 20 * kPageSize, {});
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(Msg(d.status()), HasSubstr("'b'"));  // the nearest one below the end
}

TEST_F(RegistryTest, BadRangesAreClearErrors) {
  auto null = reg.add(nullptr, kPageSize, {});
  EXPECT_EQ(null.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(null.status()), HasSubstr("null pointer"));
  auto empty = reg.add(P(kBase), 0, {});
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(empty.status()), HasSubstr("empty range"));
  auto huge = reg.add(P(kBase), std::numeric_limits<std::size_t>::max(), {});
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(huge.status()), HasSubstr("47-bit"));
  auto beyond = reg.add(P(std::uintptr_t{1} << 47), kPageSize, {});
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(beyond.status()), HasSubstr("47-bit"));
  auto straddle = reg.add(P((std::uintptr_t{1} << 47) - kPageSize), 2 * kPageSize, {});
  EXPECT_THAT(Msg(straddle.status()), HasSubstr("47-bit"));
  RegionOptions odd;
  odd.granularity = 8192;
  auto gran = reg.add(P(kBase), kPageSize, odd);
  EXPECT_EQ(gran.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(gran.status()), HasSubstr("granularity 8192"));
  EXPECT_EQ(reg.size(), 0u);
  EXPECT_EQ(reg.tracked_bytes(), 0u);
  // The last page of user space is fine.
  EXPECT_TRUE(reg.add(P((std::uintptr_t{1} << 47) - kPageSize), kPageSize, {}).ok());
}

TEST_F(RegistryTest, UnalignedRangesAreWidenedToWholePages) {
  auto h = reg.add(P(kBase + 4000), 200, {});  // straddles pages 0 and 1
  ASSERT_TRUE(h.ok());
  auto r = reg.find(h->id());
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->begin, kBase);
  EXPECT_EQ(r->end, kBase + 2 * kPageSize);
  EXPECT_EQ(r->units(), 2u);
  EXPECT_TRUE(tracked(kBase));
  EXPECT_TRUE(tracked(kBase + kPageSize));
  EXPECT_FALSE(tracked(kBase + 2 * kPageSize));
  // A second one-byte region in page 1 overlaps after widening.
  EXPECT_FALSE(reg.add(P(kBase + kPageSize + 10), 1, {}).ok());
}

TEST_F(RegistryTest, HugePageRegionsAreWidenedTo2MiB) {
  auto h = reg.add(P(kBase + kHugePageSize + 3 * kPageSize), kPageSize,
                   RegionOptions().with_huge_pages());
  ASSERT_TRUE(h.ok());
  auto r = reg.find(h->id());
  EXPECT_EQ(r->begin, kBase + kHugePageSize);
  EXPECT_EQ(r->end, kBase + 2 * kHugePageSize);
  EXPECT_EQ(r->units(), 1u);
  EXPECT_EQ(reg.tracked_bytes(), kHugePageSize);
  // Every page of the unit shares one word.
  EXPECT_EQ(tracker.word(kBase + kHugePageSize + 100 * kPageSize),
            tracker.word(kBase + kHugePageSize));
  // A 4 KiB region anywhere in that 2 MiB overlaps it.
  EXPECT_FALSE(reg.add(P(kBase + 2 * kHugePageSize - kPageSize), kPageSize, {}).ok());
  auto next = reg.add(P(kBase + 2 * kHugePageSize), kPageSize, {});
  EXPECT_TRUE(next.ok());
}

TEST_F(RegistryTest, HandleUnregistersOnDestruction) {
  {
    auto h = reg.add(P(kBase), 3 * kPageSize, {});
    ASSERT_TRUE(h.ok());
    EXPECT_TRUE(h->valid());
    EXPECT_EQ(reg.size(), 1u);
    EXPECT_TRUE(tracked(kBase + 2 * kPageSize));
  }
  EXPECT_EQ(reg.size(), 0u);
  EXPECT_EQ(reg.tracked_bytes(), 0u);
  EXPECT_FALSE(tracked(kBase + 2 * kPageSize));
  // The range is free again.
  EXPECT_TRUE(reg.add(P(kBase), 3 * kPageSize, {}).ok());
}

TEST_F(RegistryTest, HandleUnregistersOnMoveAssignAndReset) {
  auto a = reg.add(P(kBase), kPageSize, RegionOptions().with_name("a"));
  auto b = reg.add(P(kBase + kHugePageSize), kPageSize, RegionOptions().with_name("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  RegionId a_id = a->id(), b_id = b->id();
  RegionHandle h = std::move(*a);
  EXPECT_FALSE(a->valid());  // moved-from handle owns nothing
  EXPECT_EQ(reg.size(), 2u);
  h = std::move(*b);  // drops region a
  EXPECT_EQ(reg.find(a_id), nullptr);
  EXPECT_NE(reg.find(b_id), nullptr);
  EXPECT_FALSE(tracked(kBase));
  EXPECT_TRUE(tracked(kBase + kHugePageSize));
  h = std::move(h);  // self-move keeps it
  EXPECT_NE(reg.find(b_id), nullptr);
  h.reset();
  EXPECT_EQ(reg.size(), 0u);
  h.reset();  // second reset: no-op
  // release() keeps the registration; remove() by id ends it; twice is NotFound.
  auto c = reg.add(P(kBase), kPageSize, {});
  RegionId c_id = c->release();
  c = RegionHandle();
  EXPECT_EQ(reg.size(), 1u);
  EXPECT_TRUE(reg.remove(c_id).ok());
  absl::Status again = reg.remove(c_id);
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(again), HasSubstr(std::to_string(c_id)));
}

TEST_F(RegistryTest, LookupFindAndSnapshot) {
  auto a = reg.add(P(kBase + 10 * kPageSize), 2 * kPageSize, RegionOptions().with_name("a"));
  auto b = reg.add(P(kBase), 2 * kPageSize, RegionOptions().with_name("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(reg.lookup(P(kBase + 11 * kPageSize + 5))->options.name, "a");
  EXPECT_EQ(reg.lookup(P(kBase))->options.name, "b");
  EXPECT_EQ(reg.lookup(P(kBase + 2 * kPageSize)), nullptr);   // gap
  EXPECT_EQ(reg.lookup(P(kBase - 1)), nullptr);               // below all
  EXPECT_EQ(reg.lookup(P(kBase + 12 * kPageSize)), nullptr);  // past the end
  EXPECT_EQ(reg.lookup(nullptr), nullptr);
  EXPECT_EQ(reg.find(a->id())->options.name, "a");
  EXPECT_EQ(reg.find(9999), nullptr);
  auto snap = reg.snapshot();
  ASSERT_EQ(snap.size(), 2u);
  EXPECT_EQ(snap[0]->options.name, "b");  // address order
  EXPECT_EQ(snap[1]->options.name, "a");
  // A snapshot keeps its regions alive after they are unregistered.
  a->reset();
  EXPECT_EQ(snap[1]->options.name, "a");
  EXPECT_EQ(reg.snapshot().size(), 1u);
}

TEST_F(RegistryTest, SetTagAndThresholdOverride) {
  auto h = reg.add(P(kBase), kPageSize,
                   RegionOptions().with_tag(RegionTag::hot).with_promotion_threshold(2.5));
  ASSERT_TRUE(h.ok());
  auto r = reg.find(h->id());
  EXPECT_EQ(r->tag.load(), RegionTag::hot);
  EXPECT_EQ(r->threshold_override.load(), 2.5);
  ASSERT_TRUE(reg.set_tag(h->id(), RegionTag::pinned).ok());
  EXPECT_EQ(r->tag.load(), RegionTag::pinned);
  absl::Status s = reg.set_tag(12345, RegionTag::cold);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(s), HasSubstr("12345"));
  EXPECT_STREQ(tag_name(RegionTag::cold), "cold");
  EXPECT_STREQ(tag_name(static_cast<RegionTag>(99)), "?");
  auto plain = reg.add(P(kBase + kPageSize), kPageSize, {});
  EXPECT_LT(reg.find(plain->id())->threshold_override.load(), 0);  // no override
}

// Out of memory for the tracker's metadata, add() threw std::bad_alloc and
// left the pages it had tracked so far tracked, counted, in no region.
// Every allocation of add() fails in turn here: across two 1 GiB leaves, in
// 4 KiB and 2 MiB units, believed fast (the fast clock's list too).
TEST_F(RegistryTest, OutOfMemoryIsAnErrorAndLeavesNothingTracked) {
  const std::uintptr_t a = kBase + (std::uintptr_t{1} << 30) - 2 * kHugePageSize;
  const std::size_t bytes = 4 * kHugePageSize;
  const std::string needed =
      absl::StrCat("(up to ", HotnessTracker::metadata_bytes_for(a, a + bytes), " bytes for ",
                   bytes / kPageSize, " pages)");
  EXPECT_GE(HotnessTracker::metadata_bytes_for(a, a + bytes), 2 * bytes / kPageSize);
  for (const RegionOptions& o : {RegionOptions().with_name("big").with_base_pages(),
                                 RegionOptions().with_name("big").with_huge_pages()}) {
    int failures = 0;
    absl::StatusOr<RegionHandle> h;
    for (long n = 0;; ++n) {
      ASSERT_LT(n, 1000) << "add() never succeeded";
      g_allocations_left = n;
      h = reg.add(P(a), bytes, o, /*fast=*/true);
      g_allocations_left = -1;
      if (h.ok()) break;
      ++failures;
      EXPECT_EQ(h.status().code(), absl::StatusCode::kResourceExhausted) << h.status();
      EXPECT_THAT(Msg(h.status()), HasSubstr("register region 'big'"));
      EXPECT_THAT(Msg(h.status()), HasSubstr("out of memory for its tracker metadata " + needed));
      EXPECT_EQ(reg.size(), 0u);
      EXPECT_EQ(reg.tracked_bytes(), 0u);
      EXPECT_EQ(tracker.fast_pages() + tracker.slow_pages(), 0u) << "allocation " << n;
      EXPECT_EQ(tracker.fast_units(), 0u);
      EXPECT_FALSE(tracked(a));
      EXPECT_FALSE(tracked(a + bytes - kPageSize));
    }
    EXPECT_GE(failures, 3);                              // the leaf, the chunks, the maps at least
    EXPECT_EQ(tracker.fast_pages(), bytes / kPageSize);  // and it registers fine after
    EXPECT_EQ(reg.size(), 1u);
    h->reset();
    EXPECT_EQ(tracker.fast_pages(), 0u);
  }
}

// Past kMaxRemovedRanges removals between two take_removed() calls the
// closest ranges merge: every removed page stays listed, and a mapping far
// from the others is not joined to them.
TEST_F(RegistryTest, ManyRemovalsMergeAcrossTheSmallestGapsAndDropNone) {
  const std::uintptr_t far = kBase + (std::uintptr_t{1} << 40);
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> removed;
  auto add_and_remove = [&](std::uintptr_t a) {
    auto h = reg.add(P(a), kPageSize, {});
    ASSERT_TRUE(h.ok()) << h.status();
    h->reset();
    removed.emplace_back(a, a + kPageSize);
  };
  add_and_remove(far);
  for (std::size_t i = 0; i < 3 * RegionRegistry::kMaxRemovedRanges; ++i)
    add_and_remove(kBase + 2 * i * kPageSize);
  const RegionRegistry::Removed gone = reg.take_removed();
  EXPECT_FALSE(gone.overflowed);
  EXPECT_LE(gone.ranges.size(), RegionRegistry::kMaxRemovedRanges);
  auto listed = [&](std::uintptr_t a) {
    return std::any_of(gone.ranges.begin(), gone.ranges.end(),
                       [&](const auto& r) { return r.first <= a && a < r.second; });
  };
  std::size_t missing = 0;
  for (const auto& [begin, end] : removed) missing += !listed(begin) || !listed(end - 1);
  EXPECT_EQ(missing, 0u) << "of " << removed.size() << " removed ranges";
  EXPECT_FALSE(listed(kBase + (std::uintptr_t{1} << 39))) << "the far range was merged";
  EXPECT_TRUE(reg.take_removed().ranges.empty());
}

TEST_F(RegistryTest, InitialPlacementBeliefIsRecorded) {
  auto slow = reg.add(P(kBase), kPageSize, {}, /*fast=*/false);
  auto fast = reg.add(P(kBase + kPageSize), kPageSize, {}, /*fast=*/true);
  EXPECT_FALSE(PageWord::fast(tracker.word(kBase)->load()));
  EXPECT_TRUE(PageWord::fast(tracker.word(kBase + kPageSize)->load()));
}

}  // namespace
}  // namespace tierkit
