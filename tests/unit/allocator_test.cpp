#include "tierkit/allocator.hpp"

#include <cstdlib>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <memory_resource>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tierkit/backend/simulated.hpp"

namespace tierkit {
namespace {

using ::testing::HasSubstr;

// Allocator requirements, checked at compile time.
using IntAlloc = tiered_allocator<int>;
using Traits = std::allocator_traits<IntAlloc>;
static_assert(std::is_same_v<Traits::value_type, int>);
static_assert(std::is_same_v<Traits::rebind_alloc<double>, tiered_allocator<double>>);
static_assert(std::is_same_v<Traits::pointer, int*>);
static_assert(std::is_same_v<Traits::size_type, std::size_t>);
static_assert(Traits::propagate_on_container_copy_assignment::value);
static_assert(Traits::propagate_on_container_move_assignment::value);
static_assert(Traits::propagate_on_container_swap::value);
static_assert(!Traits::is_always_equal::value);
static_assert(std::is_nothrow_copy_constructible_v<IntAlloc>);
static_assert(std::is_nothrow_move_constructible_v<IntAlloc>);
static_assert(std::is_constructible_v<IntAlloc, const tiered_allocator<char>&>);
static_assert(std::is_convertible_v<Tier, IntAlloc>);
static_assert(std::is_convertible_v<std::pmr::memory_resource*, IntAlloc>);
static_assert(sizeof(IntAlloc) == sizeof(void*));

constexpr std::uint64_t kGiB = 1ull << 30;

// Memory on simulated node 1, through a TierMemoryResource with 2 MiB arenas.
class AllocatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TierResourceOptions o;
    o.nodes = {1};
    o.arena_bytes = kHugePageSize;
    o.backend = &sim_;
    auto r = TierMemoryResource::create(o);
    ASSERT_TRUE(r.ok()) << r.status();
    res_ = std::move(*r);
  }

  // The object at `p` lies in the resource's arenas, on simulated node 1.
  void ExpectOnTier(const void* p) {
    EXPECT_TRUE(res_->owns(p)) << p;
    EXPECT_EQ(sim_.node_of(align_down(reinterpret_cast<std::uintptr_t>(p), kPageSize)), 1) << p;
  }

  template <class T>
  tiered_allocator<T> alloc() {
    return tiered_allocator<T>(res_.get());
  }

  SimulatedBackend sim_{{{0, 4 * kGiB}, {1, 4 * kGiB}}};
  std::unique_ptr<TierMemoryResource> res_;
};

TEST_F(AllocatorTest, Vector) {
  std::vector<int, tiered_allocator<int>> v(alloc<int>());
  for (int i = 0; i < 10000; ++i) v.push_back(i);
  EXPECT_GE(res_->used_bytes(), 10000 * sizeof(int));
  ExpectOnTier(v.data());
  ExpectOnTier(&v.back());
  EXPECT_EQ(v.get_allocator().resource(), res_.get());
  v.clear();
  v.shrink_to_fit();
  EXPECT_EQ(res_->used_bytes(), 0u);
}

TEST_F(AllocatorTest, Deque) {
  std::deque<double, tiered_allocator<double>> d(alloc<double>());
  for (int i = 0; i < 5000; ++i) d.push_front(i);
  for (const double& x : d) ExpectOnTier(&x);
  EXPECT_GT(res_->used_bytes(), 0u);
}

TEST_F(AllocatorTest, List) {
  std::list<int, tiered_allocator<int>> l(alloc<int>());
  for (int i = 0; i < 100; ++i) l.push_back(i);
  for (const int& x : l) ExpectOnTier(&x);
  EXPECT_GE(res_->used_bytes(), 100 * kPageSize);  // a page per node: no pool here
}

TEST_F(AllocatorTest, MapAndUnorderedMap) {
  using Pair = std::pair<const int, std::string>;
  std::map<int, std::string, std::less<int>, tiered_allocator<Pair>> m(alloc<Pair>());
  std::unordered_map<int, std::string, std::hash<int>, std::equal_to<int>, tiered_allocator<Pair>>
      u(alloc<Pair>());
  for (int i = 0; i < 50; ++i) {
    m.try_emplace(i, "x");  // not m[i] = "x": GCC 12 -Wrestrict false positive (PR 105651)
    u.try_emplace(i, "y");
  }
  for (const auto& kv : m) ExpectOnTier(&kv);
  for (const auto& kv : u) ExpectOnTier(&kv);
  EXPECT_EQ(m.size(), 50u);
  EXPECT_EQ(u.at(7), "y");
}

TEST_F(AllocatorTest, BasicString) {
  using String = std::basic_string<char, std::char_traits<char>, tiered_allocator<char>>;
  String s(alloc<char>());
  s.assign(1000, 'z');  // beyond the small-string buffer
  ExpectOnTier(s.data());
  String t = s + "!";
  EXPECT_EQ(t.get_allocator(), s.get_allocator());
  ExpectOnTier(t.data());
  EXPECT_EQ(t.size(), 1001u);
}

TEST_F(AllocatorTest, AbseilContainers) {
  using Pair = std::pair<const int, int>;
  absl::flat_hash_map<int, int, absl::Hash<int>, std::equal_to<int>, tiered_allocator<Pair>> f(
      0, absl::Hash<int>(), std::equal_to<int>(), alloc<Pair>());
  absl::btree_map<int, int, std::less<int>, tiered_allocator<Pair>> b(alloc<Pair>());
  for (int i = 0; i < 1000; ++i) {
    f[i] = i;
    b[i] = i;
  }
  for (const auto& kv : f) ExpectOnTier(&kv);
  for (const auto& kv : b) ExpectOnTier(&kv);
  EXPECT_EQ(f.at(999), 999);
  EXPECT_EQ(b.rbegin()->first, 999);
}

TEST_F(AllocatorTest, ThroughAPoolOverTheTierResource) {
  std::pmr::synchronized_pool_resource pool(res_.get());
  std::list<int, tiered_allocator<int>> l{tiered_allocator<int>(&pool)};
  for (int i = 0; i < 1000; ++i) l.push_back(i);
  for (const int& x : l) ExpectOnTier(&x);
  EXPECT_LT(res_->used_bytes(), 1000 * kPageSize);  // pooled, not a page per node
}

TEST_F(AllocatorTest, OverAlignedNodesArePooledToo) {
  struct alignas(32) V {
    float f[8];
  };
  struct alignas(64) W {
    char c;
  };
  TierPoolResource pool(res_.get());
  std::list<V, tiered_allocator<V>> v{tiered_allocator<V>(&pool)};
  std::list<W, tiered_allocator<W>> w{tiered_allocator<W>(&pool)};
  for (int i = 0; i < 1000; ++i) {
    v.emplace_back();
    w.emplace_back();
  }
  for (const V& x : v) EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&x) % alignof(V), 0u);
  for (const W& x : w) EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&x) % alignof(W), 0u);
  ExpectOnTier(&v.back());
  // 2000 nodes of 64 and 128 bytes (about 48 pages), pooled in growing
  // chunks: not a 4 KiB page per node.
  EXPECT_LT(res_->used_bytes(), 250 * kPageSize);
}

TEST_F(AllocatorTest, RebindAndEquality) {
  tiered_allocator<int> a = alloc<int>();
  tiered_allocator<double> b(a);
  tiered_allocator<int> c(b);
  EXPECT_EQ(b.resource(), res_.get());
  EXPECT_TRUE(a == b);
  EXPECT_TRUE(a == c);
  EXPECT_FALSE(a != b);
  std::pmr::monotonic_buffer_resource other;
  tiered_allocator<int> d(&other);
  EXPECT_FALSE(a == d);
  EXPECT_TRUE(a != d);
  // Memory from one is freed through an equal one of another type.
  using Traits = std::allocator_traits<tiered_allocator<double>>;
  Traits::rebind_alloc<long> e(b);
  long* p = e.allocate(10);
  tiered_allocator<long>(a).deallocate(p, 10);
  EXPECT_EQ(res_->used_bytes(), 0u);
}

TEST_F(AllocatorTest, AllocatorPropagatesOnAssignmentSwapAndCopy) {
  std::pmr::synchronized_pool_resource other;
  using Vec = std::vector<int, tiered_allocator<int>>;
  Vec on_tier({1, 2, 3}, alloc<int>());
  Vec elsewhere({4, 5}, tiered_allocator<int>(&other));

  Vec copy(on_tier);  // select_on_container_copy_construction keeps the tier
  EXPECT_EQ(copy.get_allocator().resource(), res_.get());
  ExpectOnTier(copy.data());

  Vec a{tiered_allocator<int>(&other)};
  a = on_tier;  // copy assignment propagates
  EXPECT_EQ(a.get_allocator().resource(), res_.get());
  ExpectOnTier(a.data());

  Vec b{tiered_allocator<int>(&other)};
  b = std::move(copy);  // move assignment propagates
  EXPECT_EQ(b.get_allocator().resource(), res_.get());

  on_tier.swap(elsewhere);  // swap propagates
  EXPECT_EQ(on_tier.get_allocator().resource(), &other);
  EXPECT_EQ(elsewhere.get_allocator().resource(), res_.get());
  EXPECT_THAT(elsewhere, ::testing::ElementsAre(1, 2, 3));
  ExpectOnTier(elsewhere.data());
}

TEST_F(AllocatorTest, ThrowsBadAllocOnExhaustionAndOverflow) {
  TierResourceOptions o;
  o.nodes = {1};
  o.arena_bytes = kHugePageSize;
  o.backend = &sim_;
  o.limit_bytes = kHugePageSize;
  auto limited = TierMemoryResource::create(o);
  ASSERT_TRUE(limited.ok());
  std::vector<int, tiered_allocator<int>> v(tiered_allocator<int>(limited->get()));
  EXPECT_THROW(v.reserve(1 << 20), std::bad_alloc);  // 4 MiB > the 2 MiB limit
  try {
    v.reserve(1 << 20);
  } catch (const std::bad_alloc& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("limit_bytes"));
  }
  EXPECT_EQ((*limited)->last_error().code(), absl::StatusCode::kResourceExhausted);
  v.reserve(1000);  // still usable within the limit
  EXPECT_TRUE((*limited)->owns(v.data()));

  tiered_allocator<std::uint64_t> a = alloc<std::uint64_t>();
  EXPECT_EQ(a.max_size(), static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max()) / 8);
  EXPECT_THROW((void)a.allocate(a.max_size() + 1), std::bad_array_new_length);
  EXPECT_THROW((void)a.allocate(a.max_size()), std::bad_alloc);  // too large for any arena
}

TEST_F(AllocatorTest, ThreadsUseOneAllocatorConcurrently) {
  std::pmr::synchronized_pool_resource pool(res_.get());
  tiered_allocator<int> shared(&pool);
  std::vector<std::thread> threads;
  std::atomic<int> misplaced{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int round = 0; round < 50; ++round) {
        std::list<int, tiered_allocator<int>> l(shared);
        for (int i = 0; i < 100; ++i) l.push_back(i);
        for (const int& x : l)
          if (!res_->owns(&x)) ++misplaced;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(misplaced.load(), 0);
}

TEST(TieredAllocatorTiers, ConstructedFromATierUsesThatTiersResource) {
  tiered_allocator<int> fast(Tier::fast);
  auto r = tier_resource(Tier::fast);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(fast.resource(), *r);
  EXPECT_EQ(tiered_allocator<int>().resource(), *tier_resource(default_tier()));

  TierMemoryResource* arena = tier_arena(Tier::fast);
  ASSERT_NE(arena, nullptr);
  const std::uint64_t before = arena->used_bytes();
  {
    std::vector<char, tiered_allocator<char>> big(Tier::fast);
    big.resize(4 << 20);  // large: straight from the arena
    EXPECT_TRUE(arena->owns(big.data()));
    EXPECT_GE(arena->used_bytes(), before + (4 << 20));
  }
  EXPECT_EQ(arena->used_bytes(), before);
  std::vector<int, tiered_allocator<int>> small(Tier::fast);
  small.assign(10, 7);  // small: from the pool, whose chunks are in the arena
  EXPECT_TRUE(arena->owns(small.data()));
}

TEST(TieredAllocatorTiers, NullResourceMeansTheDefaultTiersResource) {
  static_assert(std::is_nothrow_constructible_v<IntAlloc, std::pmr::memory_resource*>);
  tiered_allocator<int> a(static_cast<std::pmr::memory_resource*>(nullptr));
  ASSERT_NE(a.resource(), nullptr);
  EXPECT_EQ(a.resource(), *tier_resource(default_tier()));
  EXPECT_TRUE(a == tiered_allocator<int>());
  std::vector<int, tiered_allocator<int>> v(a);
  v.assign(100, 7);
  EXPECT_TRUE(tier_arena(default_tier())->owns(v.data()));
}

TEST(TieredAllocatorTiers, OutOfRangeTierThrows) {
  EXPECT_THROW(tiered_allocator<int>(static_cast<Tier>(kMaxTierResources)), std::bad_alloc);
}

TEST(TieredAllocatorTiers, ParseTierSpec) {
  EXPECT_EQ(*parse_tier_spec("fast"), Tier::fast);
  EXPECT_EQ(*parse_tier_spec(" SLOW "), Tier::slow);
  EXPECT_EQ(*parse_tier_spec("3"), static_cast<Tier>(3));
  auto bad = parse_tier_spec("medium");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("'medium' is not a tier"));
  EXPECT_FALSE(parse_tier_spec("8").ok());
  EXPECT_FALSE(parse_tier_spec("-1").ok());
}

// TIERKIT_DEFAULT_TIER is read once per process, so each case runs in a fresh
// process (threadsafe death tests re-execute the binary).
class DefaultTierEnv : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(DefaultTierEnv, SlowSelectsTheSlowTier) {
  EXPECT_EXIT(
      {
        setenv("TIERKIT_DEFAULT_TIER", "slow", 1);
        bool ok = default_tier() == Tier::slow && default_tier_status().ok() &&
                  tiered_allocator<int>().resource() == *tier_resource(Tier::slow);
        std::exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(DefaultTierEnv, InvalidValueFallsBackToFastVisibly) {
  EXPECT_EXIT(
      {
        setenv("TIERKIT_DEFAULT_TIER", "bogus", 1);
        absl::Status s = default_tier_status();
        bool ok = default_tier() == Tier::fast && !s.ok() &&
                  absl::StrContains(s.message(), "TIERKIT_DEFAULT_TIER") &&
                  absl::StrContains(s.message(), "bogus");
        std::exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(TieredAllocatorTiers, UnsetDefaultIsFast) {
  if (std::getenv("TIERKIT_DEFAULT_TIER") != nullptr) GTEST_SKIP() << "TIERKIT_DEFAULT_TIER set";
  EXPECT_EQ(default_tier(), Tier::fast);
  EXPECT_TRUE(default_tier_status().ok());
}

}  // namespace
}  // namespace tierkit
