#include "tierkit/memory_resource.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <list>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tierkit/allocator.hpp"
#include "tierkit/backend/linux.hpp"
#include "tierkit/backend/simulated.hpp"

namespace tierkit {
namespace {

using ::testing::HasSubstr;

constexpr std::size_t kArena = kHugePageSize;  // 2 MiB arenas keep tests small
constexpr std::uint64_t kGiB = 1ull << 30;

std::unique_ptr<TierMemoryResource> make(Backend* backend, NodeSet nodes, std::uint64_t limit = 0,
                                         ArenaObserver* observer = nullptr) {
  TierResourceOptions o;
  o.nodes = nodes;
  o.arena_bytes = kArena;
  o.backend = backend;
  o.limit_bytes = limit;
  o.observer = observer;
  auto r = TierMemoryResource::create(o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : nullptr;
}

std::uintptr_t page_of(const void* p) {
  return align_down(reinterpret_cast<std::uintptr_t>(p), kPageSize);
}

struct Event {
  bool mapped;
  void* base;
  std::size_t bytes;
  NodeSet nodes;
};

class RecordingObserver : public ArenaObserver {
 public:
  void on_arena_mapped(void* base, std::size_t bytes, const NodeSet& nodes) override {
    events.push_back({true, base, bytes, nodes});
  }
  void on_arena_unmapped(void* base, std::size_t bytes) override {
    events.push_back({false, base, bytes, {}});
  }
  std::vector<Event> events;
};

class MemoryResourceTest : public ::testing::Test {
 protected:
  SimulatedBackend sim_{{{0, 4 * kGiB}, {1, 4 * kGiB}}};
};

TEST_F(MemoryResourceTest, CreateRejectsBadOptionsWithClearErrors) {
  TierResourceOptions o;
  o.backend = &sim_;
  auto r = TierMemoryResource::create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("nodes is empty"));

  o.nodes = {1};
  o.arena_bytes = 1 << 20;
  r = TierMemoryResource::create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("arena_bytes is 1048576"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("multiple of 2 MiB"));

  o.arena_bytes = 0;
  EXPECT_EQ(TierMemoryResource::create(o).status().code(), absl::StatusCode::kInvalidArgument);

  o.arena_bytes = kArena;
  o.limit_bytes = 100;
  r = TierMemoryResource::create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("limit_bytes is 100"));

  o.limit_bytes = 0;
  o.nodes = {1, 5};
  r = TierMemoryResource::create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("node 5"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("simulated"));

  o.nodes = {1};
  EXPECT_TRUE(TierMemoryResource::create(o).ok());
}

TEST_F(MemoryResourceTest, NothingIsMappedUntilFirstAllocation) {
  auto r = make(&sim_, {1});
  EXPECT_EQ(r->arena_count(), 0u);
  EXPECT_EQ(r->reserved_bytes(), 0u);
  EXPECT_EQ(r->nodes(), NodeSet({1}));
  EXPECT_EQ(r->backend(), &sim_);
  EXPECT_TRUE(r->last_error().ok());
}

TEST_F(MemoryResourceTest, HonoursAlignment) {
  auto r = make(&sim_, {1});
  for (std::size_t align : {1ul, 8ul, 64ul, 4096ul, 8192ul, 65536ul, 262144ul}) {
    for (std::size_t bytes : {1ul, 100ul, 5000ul}) {
      void* p = r->allocate(bytes, align);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u) << bytes << " @ " << align;
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % kPageSize, 0u);
      EXPECT_TRUE(r->owns(p));
      std::memset(p, 0xab, bytes);
      r->deallocate(p, bytes, align);
    }
  }
  EXPECT_EQ(r->used_bytes(), 0u);
  // A dedicated arena honours a large alignment too.
  void* big = r->allocate(3 << 20, 1 << 21);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(big) % (1 << 21), 0u);
  r->deallocate(big, 3 << 20, 1 << 21);
  auto bad = r->try_allocate(64, 3);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("power of two"));
}

TEST_F(MemoryResourceTest, ReusesFreedChunksAndCoalesces) {
  auto r = make(&sim_, {1});
  void* a = r->allocate(kPageSize);
  void* b = r->allocate(kPageSize);
  void* c = r->allocate(kPageSize);
  EXPECT_NE(a, b);
  r->deallocate(b, kPageSize);
  void* b2 = r->allocate(100);  // fits the freed page
  EXPECT_EQ(b2, b);
  r->deallocate(a, kPageSize);
  r->deallocate(b2, 100);
  r->deallocate(c, kPageSize);
  // All three pages merged back: a three-page chunk starts where `a` was.
  void* abc = r->allocate(3 * kPageSize);
  EXPECT_EQ(abc, a);
  r->deallocate(abc, 3 * kPageSize);
  EXPECT_EQ(r->arena_count(), 1u);
  EXPECT_EQ(r->used_bytes(), 0u);
}

TEST_F(MemoryResourceTest, CountersTrackArenasAndChunks) {
  auto r = make(&sim_, {1});
  void* p = r->allocate(5000);
  EXPECT_EQ(r->arena_count(), 1u);
  EXPECT_EQ(r->reserved_bytes(), kArena);
  EXPECT_EQ(r->used_bytes(), 2 * kPageSize);  // page-rounded
  // Larger than half an arena: a dedicated arena of the rounded-up size.
  const std::size_t big = kArena + 123;
  void* q = r->allocate(big);
  EXPECT_EQ(r->arena_count(), 2u);
  EXPECT_EQ(r->reserved_bytes(), kArena + align_up(big, kPageSize));
  EXPECT_EQ(r->used_bytes(), 2 * kPageSize + align_up(big, kPageSize));
  auto spans = r->arenas();
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].dedicated + spans[1].dedicated, 1);
  r->deallocate(q, big);  // dedicated arenas go back at once
  EXPECT_EQ(r->arena_count(), 1u);
  EXPECT_EQ(r->reserved_bytes(), kArena);
  r->deallocate(p, 5000);
  EXPECT_EQ(r->used_bytes(), 0u);
  EXPECT_EQ(r->reserved_bytes(), kArena);  // regular arenas are kept...
  EXPECT_EQ(r->release_unused(), kArena);  // ...until released
  EXPECT_EQ(r->arena_count(), 0u);
  EXPECT_EQ(r->reserved_bytes(), 0u);
  EXPECT_EQ(sim_.used_bytes(1), 0u);
}

TEST_F(MemoryResourceTest, LimitThrowsBadAllocAndExplainsWhy) {
  auto r = make(&sim_, {1}, /*limit=*/kArena);
  void* p = r->allocate(kArena / 2);
  EXPECT_THROW((void)r->allocate(kArena), std::bad_alloc);
  auto s = r->try_allocate(kArena);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("over limit_bytes 2097152"));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("nodes 1"));
  EXPECT_EQ(r->last_error(), s.status());
  try {
    (void)r->allocate(kArena);
    ADD_FAILURE() << "no exception";
  } catch (const TierAllocError& e) {
    EXPECT_EQ(e.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(std::string(e.what()), HasSubstr("limit_bytes"));
  }
  EXPECT_EQ(r->reserved_bytes(), kArena);
  r->deallocate(p, kArena / 2);
}

TEST_F(MemoryResourceTest, LimitShrinksTheLastArenaToFit) {
  auto r = make(&sim_, {1}, /*limit=*/kArena + kArena / 2);
  void* a = r->allocate(kArena / 2);
  void* b = r->allocate(kArena / 2);  // fills the first arena
  void* c = r->allocate(kArena / 4);  // a second, 1 MiB arena
  EXPECT_EQ(r->arena_count(), 2u);
  EXPECT_EQ(r->reserved_bytes(), kArena + kArena / 2);
  EXPECT_FALSE(r->try_allocate(kArena / 2).ok());
  void* d = r->allocate(kArena / 4);  // the rest of the second arena
  r->deallocate(a, kArena / 2);
  r->deallocate(b, kArena / 2);
  r->deallocate(c, kArena / 4);
  r->deallocate(d, kArena / 4);
}

TEST_F(MemoryResourceTest, ObserverSeesMapUnmapAndSetObserver) {
  RecordingObserver first;
  auto r = make(&sim_, {1}, 0, &first);
  void* p = r->allocate(64);
  ASSERT_EQ(first.events.size(), 1u);
  EXPECT_TRUE(first.events[0].mapped);
  EXPECT_EQ(first.events[0].bytes, kArena);
  EXPECT_EQ(first.events[0].nodes, NodeSet({1}));
  EXPECT_EQ(first.events[0].base, r->arenas()[0].base);
  void* q = r->allocate(3 << 20);  // dedicated
  ASSERT_EQ(first.events.size(), 2u);
  EXPECT_TRUE(first.events[1].mapped);
  EXPECT_EQ(first.events[1].base, q);
  EXPECT_EQ(first.events[1].bytes, std::size_t{3} << 20);
  r->deallocate(q, 3 << 20);
  ASSERT_EQ(first.events.size(), 3u);
  EXPECT_FALSE(first.events[2].mapped);
  EXPECT_EQ(first.events[2].base, q);

  RecordingObserver second;
  r->set_observer(&second);
  EXPECT_EQ(r->observer(), &second);
  ASSERT_EQ(first.events.size(), 4u);  // the remaining arena, as unmapped
  EXPECT_FALSE(first.events[3].mapped);
  EXPECT_EQ(first.events[3].base, first.events[0].base);
  ASSERT_EQ(second.events.size(), 1u);  // and as mapped to the newcomer
  EXPECT_TRUE(second.events[0].mapped);
  EXPECT_EQ(second.events[0].base, first.events[0].base);
  EXPECT_EQ(second.events[0].nodes, NodeSet({1}));

  r->deallocate(p, 64);
  r.reset();  // destruction unmaps the arena
  EXPECT_EQ(first.events.size(), 4u);
  ASSERT_EQ(second.events.size(), 2u);
  EXPECT_FALSE(second.events[1].mapped);
  EXPECT_EQ(second.events[1].base, second.events[0].base);
}

// An observer that allocates from the resource inside its callback (as an
// engine that keeps its region table on the tier might): no deadlock, and the
// nested event is delivered.
class AllocatingObserver : public ArenaObserver {
 public:
  void on_arena_mapped(void*, std::size_t bytes, const NodeSet&) override {
    sizes.push_back(bytes);
    if (resource != nullptr && !busy) {
      busy = true;
      nested = resource->allocate(kArena * 2);
    }
  }
  void on_arena_unmapped(void*, std::size_t) override { ++unmapped; }
  TierMemoryResource* resource = nullptr;
  void* nested = nullptr;
  bool busy = false;
  std::vector<std::size_t> sizes;
  int unmapped = 0;
};

TEST_F(MemoryResourceTest, ObserverMayAllocateFromTheResource) {
  AllocatingObserver obs;
  auto r = make(&sim_, {1}, 0, &obs);
  obs.resource = r.get();
  void* p = r->allocate(64);
  EXPECT_THAT(obs.sizes, ::testing::ElementsAre(kArena, kArena * 2));
  ASSERT_NE(obs.nested, nullptr);
  r->deallocate(obs.nested, kArena * 2);
  EXPECT_EQ(obs.unmapped, 1);
  r->deallocate(p, 64);
}

// Throws from on_arena_mapped `mapped_throws` times and
// from on_arena_unmapped while `unmapped_throws` is set; records the rest.
class ThrowingObserver : public RecordingObserver {
 public:
  void on_arena_mapped(void* base, std::size_t bytes, const NodeSet& nodes) override {
    if (mapped_throws > 0) {
      --mapped_throws;
      throw std::runtime_error("observer table full");
    }
    RecordingObserver::on_arena_mapped(base, bytes, nodes);
  }
  void on_arena_unmapped(void* base, std::size_t bytes) override {
    if (unmapped_throws) throw std::runtime_error("observer lost its table");
    RecordingObserver::on_arena_unmapped(base, bytes);
  }
  int mapped_throws = 0;
  bool unmapped_throws = false;
};

TEST_F(MemoryResourceTest, ThrowingOnArenaMappedUndoesTheArena) {
  ThrowingObserver obs;
  auto r = make(&sim_, {1}, 0, &obs);
  for (std::size_t bytes : {std::size_t{100}, std::size_t{3} << 20}) {  // regular, dedicated
    obs.mapped_throws = 1;
    EXPECT_THROW((void)r->allocate(bytes), std::runtime_error) << bytes;
    EXPECT_EQ(r->used_bytes(), 0u) << bytes;
    EXPECT_EQ(r->arena_count(), 0u) << bytes;
    EXPECT_EQ(r->reserved_bytes(), 0u) << bytes;
    EXPECT_EQ(sim_.used_bytes(1), 0u) << bytes;  // unmapped
    EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("on_arena_mapped threw"));
    EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("observer table full"));
  }
  EXPECT_TRUE(obs.events.empty());
  void* p = r->allocate(100);  // the observer works again: so does the resource
  ASSERT_EQ(obs.events.size(), 1u);
  r->deallocate(p, 100);
  EXPECT_EQ(r->release_unused(), kArena);
}

TEST_F(MemoryResourceTest, ThrowingOnArenaUnmappedIsRecordedNotFatal) {
  ThrowingObserver obs;
  auto r = make(&sim_, {1}, 0, &obs);
  void* big = r->allocate(3 << 20);
  void* small = r->allocate(100);
  obs.unmapped_throws = true;
  r->deallocate(big, 3 << 20);  // noexcept: must not terminate
  EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("on_arena_unmapped threw"));
  EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("observer lost its table"));
  EXPECT_EQ(r->arena_count(), 1u);
  r->deallocate(small, 100);
  EXPECT_EQ(r->release_unused(), kArena);
  EXPECT_EQ(r->arena_count(), 0u);
  EXPECT_EQ(sim_.used_bytes(1), 0u);  // both unmapped all the same
  void* again = r->allocate(100);
  r.reset();  // the destructor reports the arena: the throw is swallowed there too
  (void)again;
  EXPECT_EQ(sim_.used_bytes(1), 0u);
}

TEST_F(MemoryResourceTest, SetObserverThatThrowsLeavesNoObserver) {
  RecordingObserver first;
  auto r = make(&sim_, {1}, 0, &first);
  void* a = r->allocate(100);
  void* b = r->allocate(3 << 20);  // two arenas
  struct SecondThrows : RecordingObserver {
    void on_arena_mapped(void* base, std::size_t bytes, const NodeSet& nodes) override {
      if (!events.empty()) throw std::runtime_error("second arena refused");
      RecordingObserver::on_arena_mapped(base, bytes, nodes);
    }
  } next;
  EXPECT_THROW(r->set_observer(&next), std::runtime_error);
  EXPECT_EQ(r->observer(), nullptr);
  ASSERT_EQ(next.events.size(), 2u);  // told about the first arena, then it was withdrawn
  EXPECT_TRUE(next.events[0].mapped);
  EXPECT_FALSE(next.events[1].mapped);
  EXPECT_EQ(next.events[1].base, next.events[0].base);
  EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("no observer is set"));
  r->deallocate(b, 3 << 20);
  EXPECT_EQ(next.events.size(), 2u);  // no more events
  r->deallocate(a, 100);
}

TEST_F(MemoryResourceTest, SimulatedBindingPlacesArenaPagesOnNodeOne) {
  auto r = make(&sim_, {1});
  auto* p = static_cast<char*>(r->allocate(10 * kPageSize));
  EXPECT_EQ(sim_.node_of(page_of(p)), 1);
  EXPECT_EQ(sim_.node_of(page_of(p + 9 * kPageSize)), 1);
  EXPECT_EQ(sim_.used_bytes(1), kArena);  // the whole arena, bound once
  EXPECT_EQ(sim_.used_bytes(0), 0u);
  std::vector<void*> pages;
  for (std::size_t i = 0; i < 10; ++i) pages.push_back(p + i * kPageSize);
  std::vector<int> status(pages.size(), -1);
  ASSERT_TRUE(sim_.query(pages, absl::MakeSpan(status)).ok());
  for (int s : status) EXPECT_EQ(s, 1);
  EXPECT_EQ(sim_.moves(), 0u);  // bound, not moved
  r->deallocate(p, 10 * kPageSize);
}

TEST_F(MemoryResourceTest, BindFailureIsReportedAndNothingLeaks) {
  SimulatedBackend small({{0, 4 * kGiB}, {1, kArena / 2}});  // node 1 smaller than an arena
  auto r = make(&small, {1});
  EXPECT_THROW((void)r->allocate(64), std::bad_alloc);
  EXPECT_EQ(r->last_error().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("binding a 2097152-byte arena"));
  EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("are full"));
  auto s = r->try_allocate(64);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(r->arena_count(), 0u);
  EXPECT_EQ(r->reserved_bytes(), 0u);
  EXPECT_EQ(small.used_bytes(1), 0u);  // the failed arena was unmapped (forgotten)
}

TEST_F(MemoryResourceTest, DeallocatingAForeignPointerIsRecordedNotFatal) {
  auto r = make(&sim_, {1});
  int x = 0;
  r->deallocate(&x, sizeof(x));
  EXPECT_EQ(r->last_error().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("not in any arena"));
}

TEST_F(MemoryResourceTest, DoubleDeallocateIsRefusedNotHandedOutTwice) {
  auto r = make(&sim_, {1});
  void* a = r->allocate(kPageSize);
  void* b = r->allocate(kPageSize);
  r->deallocate(a, kPageSize);
  r->deallocate(b, kPageSize);  // a and b merge into one free block
  ASSERT_TRUE(r->last_error().ok()) << r->last_error();
  r->deallocate(b, kPageSize);  // again: inside that free block
  EXPECT_EQ(r->last_error().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("not the start of a live chunk"));
  r->deallocate(a, kPageSize);  // again: at the start of it
  EXPECT_EQ(r->last_error().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r->used_bytes(), 0u);
  auto* x = static_cast<char*>(r->allocate(2 * kPageSize));
  auto* y = static_cast<char*>(r->allocate(kPageSize));
  EXPECT_TRUE(y >= x + 2 * kPageSize || y + kPageSize <= x) << "overlapping chunks";
  r->deallocate(x, 2 * kPageSize);
  r->deallocate(y, kPageSize);
  EXPECT_EQ(r->used_bytes(), 0u);
}

TEST_F(MemoryResourceTest, WrongSizeDeallocateIsRefusedAndKeepsLiveData) {
  auto r = make(&sim_, {1});
  void* a = r->allocate(kPageSize);
  auto* b = static_cast<char*>(r->allocate(kPageSize));
  void* c = r->allocate(3 * kPageSize);
  void* d = r->allocate(kPageSize);  // the last chunk; the rest of the arena is free
  std::memset(b, 'B', kPageSize);
  struct Case {
    void* p;
    std::size_t bytes;
    const char* why;
  };
  const Case cases[] = {
      {a, 2 * kPageSize, "covers the live chunk"},    // would free b too
      {c, kPageSize, "smaller than its chunk"},       // would leave a hole
      {d, 2 * kPageSize, "overlaps the free block"},  // into free space
      {d, kArena, "runs past the end of its arena"},  // past the arena
      {b + 64, 64, "not the start of a live chunk"},  // an interior pointer
      {static_cast<char*>(c) + kPageSize, kPageSize, "not the start of a live"},  // inside c
      {a, std::numeric_limits<std::size_t>::max(), "runs past the end"},
  };
  for (const Case& k : cases) {
    r->deallocate(k.p, k.bytes);
    EXPECT_EQ(r->last_error().code(), absl::StatusCode::kInvalidArgument) << k.why;
    EXPECT_THAT(std::string(r->last_error().message()), HasSubstr(k.why));
    EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("ignored"));
    EXPECT_EQ(r->used_bytes(), 6 * kPageSize) << k.why;
  }
  EXPECT_EQ(r->release_unused(), 0u);  // the arena holds live chunks
  EXPECT_EQ(b[kPageSize - 1], 'B');
  r->deallocate(a, kPageSize);
  r->deallocate(b, kPageSize);
  r->deallocate(c, 3 * kPageSize);
  r->deallocate(d, kPageSize);
  EXPECT_EQ(r->used_bytes(), 0u);
  EXPECT_EQ(r->release_unused(), kArena);
}

TEST_F(MemoryResourceTest, WrongDeallocateOfADedicatedArenaIsRefused) {
  auto r = make(&sim_, {1});
  auto* big = static_cast<char*>(r->allocate(3 << 20));
  r->deallocate(big, 1 << 20);  // wrong size
  EXPECT_EQ(r->last_error().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("dedicated arena holds one"));
  r->deallocate(big + kPageSize, (3 << 20) - kPageSize);  // inside it
  EXPECT_EQ(r->last_error().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r->arena_count(), 1u);
  big[0] = 1;  // still mapped
  r->deallocate(big, 3 << 20);
  EXPECT_EQ(r->arena_count(), 0u);
  EXPECT_EQ(r->used_bytes(), 0u);
}

#ifdef ABSL_HAVE_ADDRESS_SANITIZER
TEST_F(MemoryResourceTest, UseAfterFreeIsCaughtUnderAsan) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto r = make(&sim_, {1});
  auto* p = static_cast<char*>(r->allocate(64));
  p[0] = 1;
  r->deallocate(p, 64);
  EXPECT_DEATH(static_cast<volatile char*>(p)[0] = 2, "use-after-poison");
  void* again = r->allocate(64);  // reuse unpoisons
  EXPECT_EQ(again, p);
  static_cast<volatile char*>(again)[0] = 3;
  r->deallocate(again, 64);
}
#endif

TEST_F(MemoryResourceTest, IsEqualIsIdentity) {
  auto a = make(&sim_, {1});
  auto b = make(&sim_, {1});
  EXPECT_TRUE(a->is_equal(*a));
  EXPECT_FALSE(a->is_equal(*b));
}

TEST_F(MemoryResourceTest, ManyThreadsAllocateAndFreeConcurrently) {
  RecordingObserver obs;  // events are serialised, so a plain vector is fine
  auto r = make(&sim_, {1}, 0, &obs);
  constexpr int kThreads = 8;
  constexpr int kIters = 1000;
  std::vector<std::thread> threads;
  std::atomic<int> corrupt{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      std::vector<std::pair<unsigned char*, std::size_t>> live;
      for (int i = 0; i < kIters; ++i) {
        if (live.size() < 16 && (live.empty() || rng() % 2 == 0)) {
          std::size_t bytes = rng() % 16 == 0 ? (std::size_t{1} << 20) + rng() % 100000
                                              : 1 + rng() % (5 * kPageSize);
          auto* p = static_cast<unsigned char*>(r->allocate(bytes));
          std::memset(p, t + 1, bytes);
          live.emplace_back(p, bytes);
        } else {
          auto [p, bytes] = live.back();
          live.pop_back();
          for (std::size_t k = 0; k < bytes; k += 512)
            if (p[k] != static_cast<unsigned char>(t + 1)) ++corrupt;
          r->deallocate(p, bytes);
        }
      }
      for (auto [p, bytes] : live) r->deallocate(p, bytes);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(corrupt.load(), 0);
  EXPECT_EQ(r->used_bytes(), 0u);
  EXPECT_TRUE(r->last_error().ok()) << r->last_error();
  // Only regular arenas remain, and mapped/unmapped events balance.
  for (const auto& s : r->arenas()) EXPECT_FALSE(s.dedicated);
  std::size_t mapped = 0, unmapped = 0;
  for (const Event& e : obs.events) (e.mapped ? mapped : unmapped)++;
  EXPECT_EQ(mapped - unmapped, r->arena_count());
}

TEST_F(MemoryResourceTest, PoolRefusesAnAlignmentThatIsNotAPowerOfTwo) {
  auto r = make(&sim_, {1});
  TierPoolResource pool(r.get());
  for (std::size_t align : {std::size_t{0}, std::size_t{3}, std::size_t{24}}) {
    for (std::size_t bytes : {std::size_t{8}, std::size_t{100000}}) {  // pooled and not
      try {
        void* p = pool.allocate(bytes, align);
        ADD_FAILURE() << "allocate(" << bytes << ", " << align << ") returned " << p;
      } catch (const TierAllocError& e) {
        EXPECT_EQ(e.code(), absl::StatusCode::kInvalidArgument);
        EXPECT_THAT(std::string(e.what()), HasSubstr("not a power of two"));
      }
    }
  }
  EXPECT_EQ(r->last_error().code(), absl::StatusCode::kInvalidArgument);
}

// Every block the pool hands out honours the requested alignment, for
// sizes and alignments up to `max_align`.
void ExpectPoolAligns(TierPoolResource& pool, std::size_t max_align) {
  for (std::size_t align = 1; align <= max_align; align *= 2) {
    for (std::size_t bytes = 1; bytes <= TierPoolResource::kMaxPooledBytes;
         bytes += bytes < 1024 ? 1 : 509) {
      void* p[4];
      int misaligned = 0;
      for (void*& q : p) {
        q = pool.allocate(bytes, align);
        misaligned += reinterpret_cast<std::uintptr_t>(q) % align != 0;
      }
      EXPECT_EQ(misaligned, 0) << bytes << " bytes aligned to " << align;
      for (void* q : p) pool.deallocate(q, bytes, align);
      if (misaligned != 0) return;  // one report per alignment is enough
    }
  }
}

TEST_F(MemoryResourceTest, PoolBlocksAreAlignedAsRequested) {
  auto r = make(&sim_, {1});
  TierPoolResource pool(r.get());
  ExpectPoolAligns(pool, alignof(std::max_align_t));
  EXPECT_TRUE(r->last_error().ok()) << r->last_error();
}

TEST_F(MemoryResourceTest, PoolTakesSmallOverAlignedRequests) {
  auto r = make(&sim_, {1});
  TierPoolResource pool(r.get());
  std::vector<void*> small;
  for (int i = 0; i < 100; ++i) small.push_back(pool.allocate(48, 32));
  EXPECT_LT(r->used_bytes(), 10 * kPageSize);  // pooled: not one page each
  for (void* p : small) EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 32, 0u);
  for (void* p : small) pool.deallocate(p, 48, 32);
  ExpectPoolAligns(pool, kPageSize);  // TierPoolResource::kMaxPooledAlignment
  // Beyond the bound, straight from the arena: exactly its pages.
  const std::uint64_t used = r->used_bytes();
  void* big = pool.allocate(100, 2 * kPageSize);
  EXPECT_EQ(r->used_bytes(), used + kPageSize);
  pool.deallocate(big, 100, 2 * kPageSize);
  EXPECT_EQ(r->used_bytes(), used);
  EXPECT_TRUE(r->last_error().ok()) << r->last_error();
}

TEST_F(MemoryResourceTest, PoolRefusesDeallocateThatWouldGoToTheWrongSide) {
  auto r = make(&sim_, {1});
  TierPoolResource pool(r.get());
  auto* over = static_cast<char*>(pool.allocate(100, 2 * kPageSize));  // from the arena
  auto* big = static_cast<char*>(pool.allocate(100000));               // from the arena
  void* small = pool.allocate(48);                                     // pooled
  const std::uint64_t used = r->used_bytes();
  struct Case {
    void* p;
    std::size_t bytes, align;
    const char* why;
  };
  const Case cases[] = {
      {over, 100, 8, "allocated from the arena as 100 bytes aligned to 8192"},  // to the pool
      {big, 100, 8, "allocated from the arena as 100000 bytes"},                // to the pool
      {big, 200000, 8, "allocated from the arena as 100000 bytes"},             // wrong size
      {small, 100000, 8, "the pool handed out no arena chunk there"},           // to the arena
  };
  for (const Case& k : cases) {
    pool.deallocate(k.p, k.bytes, k.align);
    EXPECT_EQ(r->last_error().code(), absl::StatusCode::kInvalidArgument) << k.why;
    EXPECT_THAT(std::string(r->last_error().message()), HasSubstr(k.why));
    EXPECT_EQ(r->used_bytes(), used) << k.why;
  }
  over[99] = big[99999] = 1;  // still allocated
  pool.deallocate(over, 100, 2 * kPageSize);
  pool.deallocate(big, 100000);
  pool.deallocate(small, 48);
  EXPECT_EQ(r->used_bytes(), used - kPageSize - align_up(100000, kPageSize));
  pool.deallocate(big, 100000);  // twice
  EXPECT_THAT(std::string(r->last_error().message()), HasSubstr("no arena chunk there"));
}

TEST(MemoryResourceLinux, BindsToNodeZeroAndPagesLandThere) {
  TierResourceOptions o;
  o.nodes = {0};
  o.arena_bytes = kArena;
  o.huge_pages = HugePages::kOn;  // advising is best effort
  auto r = TierMemoryResource::create(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->backend(), &LinuxBackend::instance());
  auto* p = static_cast<char*>((*r)->allocate(16 * kPageSize));
  std::memset(p, 1, 16 * kPageSize);
  std::vector<void*> pages;
  for (std::size_t i = 0; i < 16; ++i) pages.push_back(p + i * kPageSize);
  std::vector<int> status(pages.size(), -1);
  ASSERT_TRUE(LinuxBackend::instance().query(pages, absl::MakeSpan(status)).ok());
  for (int s : status) EXPECT_EQ(s, 0);
  (*r)->deallocate(p, 16 * kPageSize);
}

TEST(MemoryResourceLinux, MissingNodeIsRejectedAtCreate) {
  TierResourceOptions o;
  o.nodes = {NodeSet::kMaxNodes - 1};
  auto r = TierMemoryResource::create(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("node 1023"));
}

TEST(TierResources, OutOfRangeTiersAreErrors) {
  auto bad = static_cast<Tier>(kMaxTierResources);
  EXPECT_EQ(tier_resource(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tier_nodes_for(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tier_nodes_for(static_cast<Tier>(-1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tier_arena(bad), nullptr);
}

TEST(TierResources, NodesDefaultToNodeZeroAndCanBeSetBeforeFirstUse) {
  const Tier t = static_cast<Tier>(5);
  EXPECT_EQ(*tier_nodes_for(t), NodeSet({0}));
  set_tier_nodes(t, {NodeSet::kMaxNodes - 1});
  EXPECT_EQ(*tier_nodes_for(t), NodeSet({NodeSet::kMaxNodes - 1}));
  auto r = tier_resource(t);  // the node does not exist: a clear error
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("tier 5"));
  set_tier_nodes(t, {});  // back to the default
  EXPECT_EQ(*tier_nodes_for(t), NodeSet({0}));
}

TEST(TierResources, SmallRequestsArePooledLargeOnesGoToTheArena) {
  const Tier t = static_cast<Tier>(6);
  set_tier_nodes(t, {0});
  auto r = tier_resource(t);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*tier_resource(t), *r);  // one per process
  TierMemoryResource* arena = tier_arena(t);
  ASSERT_NE(arena, nullptr);
  EXPECT_EQ(arena->nodes(), NodeSet({0}));
  set_tier_nodes(t, {1});  // too late: fixed at creation
  EXPECT_EQ(*tier_nodes_for(t), NodeSet({0}));

  std::vector<void*> small;
  for (int i = 0; i < 100; ++i) small.push_back((*r)->allocate(48));
  EXPECT_TRUE(arena->owns(small.front()));
  EXPECT_TRUE(arena->owns(small.back()));
  const std::uint64_t used = arena->used_bytes();
  EXPECT_LT(used, 100 * kPageSize);  // pooled: not one page each

  void* big = (*r)->allocate(1 << 20);
  EXPECT_EQ(arena->used_bytes(), used + (1 << 20));  // exactly, straight from the arena
  EXPECT_TRUE(arena->owns(big));
  (*r)->deallocate(big, 1 << 20);
  EXPECT_EQ(arena->used_bytes(), used);
  for (void* p : small) (*r)->deallocate(p, 48);
}

// The process-wide pool of tier `t` (node 0) and its arena.
std::pair<std::pmr::memory_resource*, TierMemoryResource*> TierPool(Tier t) {
  set_tier_nodes(t, {0});
  absl::StatusOr<std::pmr::memory_resource*> r = tier_resource(t);
  EXPECT_TRUE(r.ok()) << r.status();
  return {r.ok() ? *r : nullptr, tier_arena(t)};
}

// Small blocks of the process-wide pools come from per-thread lists
// (detail::SmallBlocks): every size and alignment still gets its own bytes,
// aligned, sizes and alignments the lists do not serve included.
TEST(TierSmallBlocks, EverySizeAndAlignmentGetsItsOwnAlignedBytes) {
  auto [pool, arena] = TierPool(static_cast<Tier>(7));
  ASSERT_NE(pool, nullptr);
  struct Block {
    unsigned char* p;
    std::size_t bytes, alignment;
  };
  std::vector<Block> blocks;
  for (std::size_t bytes = 1; bytes <= 300; bytes += bytes < 40 ? 1 : 7)
    for (std::size_t alignment : {1, 2, 4, 8, 16, 32})
      for (int k = 0; k < 8; ++k) {
        auto* p = static_cast<unsigned char*>(pool->allocate(bytes, alignment));
        EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % alignment, 0u) << bytes << "/" << alignment;
        EXPECT_TRUE(arena->owns(p));
        std::memset(p, static_cast<int>(blocks.size() % 251), bytes);
        blocks.push_back({p, bytes, alignment});
      }
  for (std::size_t i = 0; i < blocks.size(); ++i)
    for (std::size_t j = 0; j < blocks[i].bytes; ++j)
      ASSERT_EQ(blocks[i].p[j], i % 251)
          << "block " << i << " (" << blocks[i].bytes << " bytes) overwritten at byte " << j;
  for (const Block& b : blocks) pool->deallocate(b.p, b.bytes, b.alignment);
}

// A thread's free blocks go to the depot when it exits, and the next
// threads take them from there: forty threads one after another, each
// allocating and freeing a thousand 248-byte blocks, need no more of the
// arena than the first. (Left in the exited threads' lists, each thread
// would take 250 KB more.)
TEST(TierSmallBlocks, AnExitedThreadsBlocksServeTheNextThreads) {
  auto [pool, arena] = TierPool(static_cast<Tier>(4));
  ASSERT_NE(pool, nullptr);
  auto run = [pool = pool] {
    std::vector<void*> v;
    for (int i = 0; i < 1000; ++i) v.push_back(pool->allocate(248, 8));
    for (void* p : v) pool->deallocate(p, 248, 8);
  };
  std::thread(run).join();
  const std::uint64_t after_first = arena->used_bytes();
  for (int t = 1; t < 40; ++t) std::thread(run).join();
  EXPECT_LT(arena->used_bytes() - after_first, std::uint64_t{1} << 20)
      << "after the first thread: " << after_first << " bytes";
}

// Blocks one thread allocated and another freed serve the second one's
// next allocations: a list built by a worker and destroyed by this thread,
// then built again here, takes no more of the arena.
TEST(TierSmallBlocks, BlocksFreedByAnotherThreadAreReusedByIt) {
  const Tier t = static_cast<Tier>(3);
  auto [pool, arena] = TierPool(t);
  ASSERT_NE(pool, nullptr);
  using List = std::list<int, tiered_allocator<int>>;
  auto l = std::make_unique<List>(tiered_allocator<int>(pool));
  std::thread([&] {
    for (int i = 0; i < 4000; ++i) l->push_back(i);
  }).join();
  long sum = 0;
  for (int x : *l) sum += x;
  EXPECT_EQ(sum, 4000L * 3999 / 2);
  l.reset();
  const std::uint64_t used = arena->used_bytes();
  List again(pool);
  for (int i = 0; i < 4000; ++i) again.push_back(i);
  EXPECT_EQ(arena->used_bytes(), used);
}

// A small block freed twice is refused, and handed out once: the next two
// allocations are distinct. (Pushed twice, it would be handed out twice, to
// two owners.)
TEST(TierSmallBlocks, AFreeTwiceIsRefusedNotHandedOutTwice) {
  auto [pool, arena] = TierPool(static_cast<Tier>(2));
  ASSERT_NE(pool, nullptr);
  for (std::size_t bytes : {1, 16, 24, 100, 256}) {
    SCOPED_TRACE(bytes);
    void* p = pool->allocate(bytes, 8);
    pool->deallocate(p, bytes, 8);
    pool->deallocate(p, bytes, 8);
    EXPECT_THAT(std::string(arena->last_error().message()), HasSubstr("freed twice"));
    void* a = pool->allocate(bytes, 8);
    void* b = pool->allocate(bytes, 8);
    EXPECT_NE(a, b);
    pool->deallocate(a, bytes, 8);
    pool->deallocate(b, bytes, 8);
  }
}

#ifdef ABSL_HAVE_ADDRESS_SANITIZER
// A free block in a thread's list is poisoned but for the moment its link
// is read or written.
TEST(TierSmallBlocks, UseAfterFreeIsCaughtUnderAsan) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto [pool, arena] = TierPool(static_cast<Tier>(2));
  ASSERT_NE(pool, nullptr);
  auto* p = static_cast<char*>(pool->allocate(64, 8));
  p[63] = 1;
  pool->deallocate(p, 64, 8);
  EXPECT_DEATH(static_cast<volatile char*>(p)[63] = 2, "use-after-poison");
  EXPECT_DEATH(static_cast<volatile char*>(p)[0] = 2, "use-after-poison");
  void* again = pool->allocate(64, 8);  // the list's head: unpoisoned
  EXPECT_EQ(again, p);
  static_cast<volatile char*>(again)[63] = 3;
  pool->deallocate(again, 64, 8);
}
#endif

// A thread_local destroyed after the thread's lists may still allocate and
// free: its blocks come from and go to the depot, where the lists went.
// (Through the destroyed lists, they would stay there: the depot empty.)
TEST(TierSmallBlocks, AThreadLocalsDestructorMayStillAllocate) {
  const Tier t = static_cast<Tier>(2);
  auto [pool, arena] = TierPool(t);
  ASSERT_NE(pool, nullptr);
  const std::size_t depot = detail::SmallBlocks::depot_blocks(tier_index(t), 24);
  static std::atomic<long> sum_at_exit{0};
  struct AtExit {
    std::pmr::memory_resource* pool;
    ~AtExit() {
      std::list<int, tiered_allocator<int>> l(pool);
      for (int i = 0; i < 100; ++i) l.push_back(i);
      long sum = 0;
      for (int x : l) sum += x;
      sum_at_exit = sum;
    }
  };
  std::thread([pool = pool] {
    thread_local AtExit at_exit{nullptr};
    at_exit.pool = pool;  // constructed before the lists, so destroyed after them
    pool->deallocate(pool->allocate(24, 8), 24, 8);
  }).join();
  EXPECT_EQ(sum_at_exit.load(), 4950);
  EXPECT_EQ(detail::SmallBlocks::depot_blocks(tier_index(t), 24),
            depot + detail::SmallBlocks::kSlabBytes / 24)
      << "the thread's slab, back in the depot with what its thread_local took";
}

}  // namespace
}  // namespace tierkit
