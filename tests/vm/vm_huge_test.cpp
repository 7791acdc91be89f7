// In-VM: transparent huge pages. A region registered with default options is
// tracked and moved in 2 MiB units; its huge pages stay huge through
// promotion and demotion (AnonHugePages in /proc/self/smaps), every byte
// intact; memory that is not one huge page falls back to 4 KiB units and
// still moves whole; under THP "always", 4 KiB units the engine chose get
// no huge page, so a 4 KiB move moves one page; a huge page formed before
// registration, which a 4 KiB move carries, is found and becomes one 2 MiB
// unit, and so is a hugetlbfs page under THP "never"; a source watches a
// chunk that fell back page by page; and a batch sweep of move_pages in
// 2 MiB units against 4 KiB units, and of placement queries against moves
// (pages per second, ratios within one run: TCG time is not real time, only
// ratios mean something).
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "tierkit/backend/linux.hpp"
#include "tierkit/engine.hpp"
#include "tierkit/source/softdirty.hpp"
#include "vm_support.hpp"

namespace tierkit::vm {
namespace {

constexpr std::size_t kChunks = 8;
constexpr std::size_t kBytes = kChunks * kHugePageSize;
constexpr std::size_t kChunkPages = kHugePageSize / kPageSize;

// Bytes of [p, p + bytes) mapped by huge pages: AnonHugePages of the
// mappings inside it, from /proc/self/smaps.
std::uint64_t anon_huge_bytes(const void* p, std::size_t bytes) {
  const auto lo = reinterpret_cast<std::uintptr_t>(p), hi = lo + bytes;
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;
  std::uint64_t total = 0;
  while (std::getline(in, line)) {
    unsigned long b = 0, e = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &b, &e) == 2 && line.find(' ') > line.find('-')) {
      inside = b >= lo && e <= hi;
      continue;
    }
    unsigned long long kb = 0;
    if (inside && std::sscanf(line.c_str(), "AnonHugePages: %llu kB", &kb) == 1) total += kb * 1024;
  }
  return total;
}

std::uint64_t pattern(std::size_t word) { return word * 0x9E3779B97F4A7C15ull + 17; }

// The tests' engine: node 0 fast, node 1 slow, threshold policy, no rate
// limit to speak of.
EngineConfig HugeTestConfig() {
  EngineConfig c;
  c.fast_nodes = NodeSet{kFastNode};
  c.slow_nodes = NodeSet{kSlowNode};
  c.policy = "threshold:2";
  c.rate_limit_mbps = 1e6;
  c.burst_bytes = 1ull << 40;
  c.environment = EngineConfig::Environment::kIgnore;
  return c;
}

// Registers [p, p + bytes) with default options as `name`, its pages
// believed slow, into `handle`.
::testing::AssertionResult RegisterSlow(Engine& engine, void* p, std::size_t bytes,
                                        const char* name, RegionHandle& handle) {
  auto h = engine.register_region(p, bytes, RegionOptions().with_name(name),
                                  /*initially_fast=*/false);
  if (!h.ok()) return ::testing::AssertionFailure() << h.status();
  handle = std::move(*h);
  return ::testing::AssertionSuccess();
}

// An engine over the Linux backend (threshold policy, no rate limit) and a
// 16 MiB mapping bound to the slow node.
struct Rig {
  Rig() {
    auto m = be.map(kBytes);
    if (!m.ok()) {
      ADD_FAILURE() << m.status();
      return;
    }
    p = static_cast<std::uint64_t*>(*m);
    EXPECT_TRUE(be.bind(p, kBytes, NodeSet{kSlowNode}, BindMode::kBind, false).ok());
    auto e = Engine::create(HugeTestConfig(), &be);
    EXPECT_TRUE(e.ok()) << e.status();
    engine = std::move(*e);
  }
  ~Rig() {
    handle.reset();
    engine.reset();
    if (p != nullptr) {
      EXPECT_TRUE(be.unmap(p, kBytes).ok());
    }
  }
  void fill() {
    for (std::size_t i = 0; i < kBytes / 8; ++i) p[i] = pattern(i);
  }
  ::testing::AssertionResult intact() const {
    for (std::size_t i = 0; i < kBytes / 8; ++i)
      if (p[i] != pattern(i))
        return ::testing::AssertionFailure()
               << "word " << i << " lost (page " << i * 8 / kPageSize << ")";
    return ::testing::AssertionSuccess();
  }
  char* chunk(std::size_t c) const { return reinterpret_cast<char*>(p) + c * kHugePageSize; }
  // Makes chunk `c` hot: accesses to a few of its pages.
  void heat(std::size_t c) {
    for (int k = 0; k < 8; ++k)
      for (std::size_t i = 0; i < 4; ++i) engine->record_access(chunk(c) + i * 97 * kPageSize);
  }

  LinuxBackend be;
  std::uint64_t* p = nullptr;
  std::unique_ptr<Engine> engine;
  RegionHandle handle;
};

TEST(HugePages, RegionStaysHugeThroughPromotionAndDemotion) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  Rig rig;
  ASSERT_NE(rig.p, nullptr);
  if (rig.be.thp_mode() == ThpMode::kNever) FAIL() << "THP is disabled in the guest";
  ASSERT_TRUE(RegisterSlow(*rig.engine, rig.p, kBytes, "huge", rig.handle));
  rig.fill();  // faults after the engine's MADV_HUGEPAGE: huge pages on node 1
  const std::uint64_t huge0 = anon_huge_bytes(rig.p, kBytes);
  report("huge_bytes_after_fill", huge0);
  ASSERT_EQ(huge0, kBytes) << "the guest did not back the region with huge pages";
  ASSERT_TRUE(all_on(rig.be, rig.p, kBytes, kSlowNode));
  EXPECT_EQ(rig.engine->tracker().unit_bytes(reinterpret_cast<std::uintptr_t>(rig.chunk(3))),
            kHugePageSize);

  for (int e = 0; e < 3; ++e) {
    rig.heat(2);
    rig.heat(5);
    ASSERT_TRUE(rig.engine->step().ok());
  }
  EngineStats s = rig.engine->stats();
  std::printf("after promotion:\n%s", s.to_table().c_str());
  EXPECT_TRUE(all_on(rig.be, rig.chunk(2), kHugePageSize, kFastNode));
  EXPECT_TRUE(all_on(rig.be, rig.chunk(5), kHugePageSize, kFastNode));
  EXPECT_TRUE(all_on(rig.be, rig.chunk(0), 2 * kHugePageSize, kSlowNode));
  EXPECT_EQ(s.huge_units_moved, 2u);
  EXPECT_EQ(s.huge_units_split, 0u);
  EXPECT_EQ(s.promoted_pages, 2 * kChunkPages);
  EXPECT_EQ(anon_huge_bytes(rig.p, kBytes), kBytes) << "a promoted huge page was split";
  EXPECT_TRUE(rig.intact());

  // Cold tag: everything back to the slow tier, still huge.
  ASSERT_TRUE(rig.engine->regions().set_tag(rig.handle.id(), RegionTag::cold).ok());
  ASSERT_TRUE(rig.engine->step().ok());
  s = rig.engine->stats();
  EXPECT_TRUE(all_on(rig.be, rig.p, kBytes, kSlowNode));
  EXPECT_EQ(s.demoted_pages, 2 * kChunkPages);
  EXPECT_EQ(s.huge_units_moved, 4u);
  EXPECT_EQ(s.huge_units_split, 0u);
  const std::uint64_t huge1 = anon_huge_bytes(rig.p, kBytes);
  report("huge_bytes_after_demotion", huge1);
  EXPECT_EQ(huge1, kBytes) << "a demoted huge page was split";
  EXPECT_TRUE(rig.intact());
}

TEST(HugePages, MemoryThatIsNotOneHugePageFallsBackTo4KiBUnits) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  Rig rig;
  ASSERT_NE(rig.p, nullptr);
  rig.fill();  // faulted under LinuxBackend::map's MADV_NOHUGEPAGE: base pages
  const std::uint64_t huge_before = anon_huge_bytes(rig.p, kBytes);
  ASSERT_TRUE(RegisterSlow(*rig.engine, rig.p, kBytes, "base", rig.handle));
  for (int e = 0; e < 3; ++e) {
    rig.heat(6);
    ASSERT_TRUE(rig.engine->step().ok());
  }
  EngineStats s = rig.engine->stats();
  std::printf("huge bytes before: %llu\n%s", static_cast<unsigned long long>(huge_before),
              s.to_table().c_str());
  // khugepaged may collapse the chunk between the fill and the move; either
  // way the whole chunk arrives and nothing is lost.
  EXPECT_TRUE(all_on(rig.be, rig.chunk(6), kHugePageSize, kFastNode));
  EXPECT_EQ(s.promoted_pages, kChunkPages);
  EXPECT_EQ(s.huge_units_split + s.huge_units_moved, 1u);
  if (huge_before == 0) {
    EXPECT_EQ(s.huge_units_split, 1u);
    EXPECT_EQ(rig.engine->tracker().unit_bytes(reinterpret_cast<std::uintptr_t>(rig.chunk(6))),
              kPageSize);
  }
  EXPECT_EQ(s.failed_pages + s.dropped_pages, 0u);
  EXPECT_TRUE(rig.intact());
}

// A chunk that fell back to 4 KiB units is watched page by page from then
// on: soft-dirty finds a write to one of its pages and heats that page.
// (Watched as one 2 MiB unit, as it was registered, the write heated the
// chunk's first page.)
TEST(HugePages, ASourceWatchesAChunkThatFellBackPageByPage) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  Rig rig;
  ASSERT_NE(rig.p, nullptr);
  rig.fill();  // base pages, as above
  auto src = std::make_unique<source::SoftDirtySource>();
  ASSERT_TRUE(src->probe().ok()) << "Debian's kernels have soft-dirty: " << src->probe();
  ASSERT_TRUE(rig.engine->add_hotness_source(std::move(src)).ok());
  ASSERT_TRUE(RegisterSlow(*rig.engine, rig.p, kBytes, "watched", rig.handle));
  for (int e = 0; e < 3; ++e) {
    rig.heat(6);
    ASSERT_TRUE(rig.engine->step().ok());
  }
  if (rig.engine->stats().huge_units_split != 1)
    GTEST_SKIP() << "khugepaged made the chunk one huge page before it moved";
  auto* written = reinterpret_cast<volatile std::uint64_t*>(rig.chunk(6) + 300 * kPageSize);
  for (int e = 0; e < 4; ++e) {
    *written = *written;  // a write, the data unchanged
    ASSERT_TRUE(rig.engine->step().ok());
  }
  auto heat = [&](std::size_t page) {
    const auto a = reinterpret_cast<std::uintptr_t>(rig.chunk(6) + page * kPageSize);
    return PageWord::heat(rig.engine->tracker().word(a)->load());
  };
  std::printf("heat of the written page %u, of the next %u, of the chunk's first %u\n", heat(300),
              heat(301), heat(0));
  EXPECT_GT(heat(300), heat(301));
  EXPECT_GT(rig.engine->stats().hotness_sources.at(0).pages_found, 0u);
  EXPECT_TRUE(rig.intact());
}

// Moves `units` units (2 MiB each when `huge`, else 4 KiB) there and back,
// `batch` entries per move_pages call, three times; returns the best pages
// per second (the host is shared and TCG time is not real: best of three).
double move_rate(void* p, std::size_t units, bool huge, std::size_t batch) {
  LinuxBackendOptions o;
  o.batch_pages = batch;
  LinuxBackend be(o);
  const std::size_t unit = huge ? kHugePageSize : kPageSize;
  std::vector<void*> addrs(units);
  for (std::size_t i = 0; i < units; ++i) addrs[i] = static_cast<char*>(p) + i * unit;
  std::vector<int> status(units);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::uint64_t pages = 0;
    const std::int64_t t0 = SteadyClock::instance().now_ns();
    for (NodeId to : {kFastNode, kSlowNode}) {
      std::vector<NodeId> nodes(units, to);
      EXPECT_TRUE(be.move(addrs, nodes, absl::MakeSpan(status)).ok());
      for (int st : status) {
        EXPECT_EQ(st, to);
        pages += st == to ? unit / kPageSize : 0;
      }
    }
    best = std::max(best, static_cast<double>(pages) / seconds_since(t0));
  }
  return best;
}

// 8 MiB of anonymous memory mapped here, not by LinuxBackend::map (which
// advises base pages itself), 2 MiB aligned and bound to the slow node; and
// an engine whose 4 MiB fast budget is under huge_min_budget_bytes, so a
// default region gets 4 KiB units.
struct SmallBudgetRig {
  static constexpr std::size_t kRegion = 4 * kHugePageSize;
  SmallBudgetRig() {
    raw = ::mmap(nullptr, kRegion + kHugePageSize, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) {
      ADD_FAILURE() << "mmap failed";
      return;
    }
    p = reinterpret_cast<char*>(align_up(reinterpret_cast<std::uintptr_t>(raw), kHugePageSize));
    EXPECT_TRUE(be.bind(p, kRegion, NodeSet{kSlowNode}, BindMode::kBind, false).ok());
    EngineConfig c = HugeTestConfig();
    c.fast_budget_bytes = 4 << 20;
    auto e = Engine::create(c, &be);
    EXPECT_TRUE(e.ok()) << e.status();
    if (e.ok()) engine = std::move(*e);
  }
  ~SmallBudgetRig() {
    handle.reset();
    engine.reset();
    if (p != nullptr) ::munmap(raw, kRegion + kHugePageSize);
  }
  std::uint64_t* words() const { return reinterpret_cast<std::uint64_t*>(p); }
  void fill() const {
    for (std::size_t i = 0; i < kRegion / 8; ++i) words()[i] = pattern(i);
  }
  ::testing::AssertionResult intact() const {
    for (std::size_t i = 0; i < kRegion / 8; ++i)
      if (words()[i] != pattern(i)) return ::testing::AssertionFailure() << "word " << i << " lost";
    return ::testing::AssertionSuccess();
  }
  // Three epochs with the first 4 pages of `chunk` hot.
  ::testing::AssertionResult heat_four_pages(char* chunk) {
    for (int epoch = 0; epoch < 3; ++epoch) {
      for (int k = 0; k < 8; ++k)
        for (std::size_t i = 0; i < 4; ++i) engine->record_access(chunk + i * kPageSize);
      if (absl::Status s = engine->step(); !s.ok()) return ::testing::AssertionFailure() << s;
    }
    return ::testing::AssertionSuccess();
  }

  LinuxBackend be;
  void* raw = nullptr;
  char* p = nullptr;
  std::unique_ptr<Engine> engine;
  RegionHandle handle;
};

// Under THP "always" the kernel backs any anonymous memory with huge pages,
// and move_pages of one 4 KiB page inside one moves all 512 pages (measured
// here on 6.1 and 6.12). A default region that the engine tracks in 4 KiB
// units (a fast budget under huge_min_budget_bytes) is advised
// MADV_NOHUGEPAGE at registration, so memory registered before its first use
// gets no huge page, and promoting a few hot pages moves only those.
TEST(HugePages, FourKiBUnitsTheEngineChoseGetNoHugePagesUnderThpAlways) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  SmallBudgetRig rig;
  ASSERT_NE(rig.engine, nullptr);
  if (rig.be.thp_mode() != ThpMode::kAlways) GTEST_SKIP() << "THP is not \"always\" here";
  ASSERT_TRUE(RegisterSlow(*rig.engine, rig.p, rig.kRegion, "auto", rig.handle));
  ASSERT_EQ(rig.engine->tracker().unit_bytes(reinterpret_cast<std::uintptr_t>(rig.p)), kPageSize);
  rig.fill();
  const std::uint64_t huge = anon_huge_bytes(rig.p, rig.kRegion);
  char* chunk = rig.p + kHugePageSize;
  ASSERT_TRUE(rig.heat_four_pages(chunk));
  std::vector<void*> pages(kChunkPages);
  std::vector<int> status(kChunkPages, -1);
  for (std::size_t i = 0; i < kChunkPages; ++i) pages[i] = chunk + i * kPageSize;
  ASSERT_TRUE(rig.be.query(pages, absl::MakeSpan(status)).ok());
  const auto fast = static_cast<std::size_t>(std::count(status.begin(), status.end(), kFastNode));
  const EngineStats s = rig.engine->stats();
  std::printf("huge bytes after the fill: %llu; pages of the hot chunk on node 0: %zu\n%s",
              static_cast<unsigned long long>(huge), fast, s.to_table().c_str());
  EXPECT_EQ(huge, 0u) << "the engine did not advise its 4 KiB units base pages";
  EXPECT_EQ(s.promoted_pages, 4u);
  EXPECT_EQ(fast, 4u) << "a 4 KiB move carried a huge page";
  EXPECT_EQ(s.fast_pages, fast);
  EXPECT_TRUE(rig.intact());
}

// Huge pages that formed before registration stay (MADV_NOHUGEPAGE does not
// split them), and a 4 KiB move inside one moves all 512 pages with a status
// that says nothing of it. The engine finds the carry (a page beside the
// moved one moved too), accounts and believes all 512 pages where they are,
// and tracks the chunk as the 2 MiB unit it is, which later moves whole.
TEST(HugePages, AHugePageFormedBeforeRegistrationIsFoundCarriedAndBecomesOneUnit) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  SmallBudgetRig rig;
  ASSERT_NE(rig.engine, nullptr);
  if (rig.be.thp_mode() == ThpMode::kNever) GTEST_SKIP() << "THP is disabled in the guest";
  ASSERT_EQ(::madvise(rig.p, rig.kRegion, MADV_HUGEPAGE), 0);
  rig.fill();
  const std::uint64_t huge = anon_huge_bytes(rig.p, rig.kRegion);
  report("huge_bytes_before_registration", huge);
  ASSERT_EQ(huge, rig.kRegion) << "the guest did not back the memory with huge pages";
  ASSERT_TRUE(RegisterSlow(*rig.engine, rig.p, rig.kRegion, "formed", rig.handle));
  char* chunk = rig.p + kHugePageSize;
  const auto chunk_addr = reinterpret_cast<std::uintptr_t>(chunk);
  ASSERT_EQ(rig.engine->tracker().unit_bytes(chunk_addr), kPageSize);
  ASSERT_TRUE(rig.heat_four_pages(chunk));
  EngineStats s = rig.engine->stats();
  std::printf("after promotion:\n%s", s.to_table().c_str());
  EXPECT_TRUE(all_on(rig.be, chunk, kHugePageSize, kFastNode));
  EXPECT_EQ(s.huge_pages_carried, 1u);
  EXPECT_EQ(s.huge_units_merged, 1u);
  EXPECT_EQ(s.promoted_pages, kChunkPages);
  EXPECT_EQ(s.fast_pages, kChunkPages) << "the engine's beliefs differ from the machine";
  EXPECT_EQ(rig.engine->tracker().unit_bytes(chunk_addr), kHugePageSize);
  report("pages_promoted_by_four_hot_pages", s.promoted_pages);

  ASSERT_TRUE(rig.engine->regions().set_tag(rig.handle.id(), RegionTag::cold).ok());
  ASSERT_TRUE(rig.engine->step().ok());
  s = rig.engine->stats();
  std::printf("after demotion:\n%s", s.to_table().c_str());
  EXPECT_TRUE(all_on(rig.be, rig.p, rig.kRegion, kSlowNode));
  EXPECT_EQ(s.demoted_pages, kChunkPages);
  EXPECT_EQ(s.huge_units_moved, 1u);  // the merged unit, moved as one
  EXPECT_EQ(s.fast_pages, 0u);
  EXPECT_EQ(anon_huge_bytes(rig.p, rig.kRegion), rig.kRegion);
  EXPECT_TRUE(rig.intact());
}

// The Linux backend as the engine sees it on a machine with THP "never":
// hugetlbfs memory is huge all the same. (LinuxBackend reads the mode once
// per process, so the test does not switch the guest's.)
class ThpNeverBackend final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  ThpMode thp_mode() const override { return ThpMode::kNever; }
};

// hugetlbfs memory (MAP_HUGETLB: a database's buffer pool, often run with
// THP "never") is huge whatever the THP mode, and under "never" the engine
// tracks a default region in 4 KiB units. Promoting 4 hot pages moves the
// 512 of their huge page; the engine finds that (a page beside the moved
// one moved too), counts and believes the 512, and the chunk goes back
// whole as one 2 MiB unit. (Before the check ran under THP "never" too,
// the engine counted and believed 4.)
TEST(HugePages, AHugetlbPageUnderThpNeverIsFoundCarriedAndBecomesOneUnit) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  constexpr std::size_t kRegion = 2 * kHugePageSize;
  Knobs pools;  // each node's 2 MiB hugetlb pool 4 pages larger, then put back
  for (NodeId n : {kFastNode, kSlowNode}) {
    const std::string path = absl::StrCat("/sys/devices/system/node/node", n,
                                          "/hugepages/hugepages-2048kB/nr_hugepages");
    long pages = 0;
    ASSERT_TRUE(absl::SimpleAtoi(read_line(path), &pages)) << path;
    pools.set(path, std::to_string(pages + 4));
    ASSERT_EQ(read_line(path), std::to_string(pages + 4))
        << "cannot reserve hugetlb pages: " << path;
  }
  void* raw = ::mmap(nullptr, kRegion, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  ASSERT_NE(raw, MAP_FAILED) << "mmap(MAP_HUGETLB) failed";
  auto* words = static_cast<std::uint64_t*>(raw);
  LinuxBackend linux_be;
  ThpNeverBackend be(linux_be);
  ASSERT_TRUE(be.bind(raw, kRegion, NodeSet{kSlowNode}, BindMode::kBind, false).ok());
  for (std::size_t i = 0; i < kRegion / 8; ++i) words[i] = pattern(i);
  char* chunk = static_cast<char*>(raw) + kHugePageSize;
  ASSERT_TRUE(all_on(be, raw, kRegion, kSlowNode));
  {
    auto e = Engine::create(HugeTestConfig(), &be);
    ASSERT_TRUE(e.ok()) << e.status();
    std::unique_ptr<Engine> engine = std::move(*e);
    RegionHandle handle;
    ASSERT_TRUE(RegisterSlow(*engine, raw, kRegion, "hugetlb", handle));
    const auto chunk_addr = reinterpret_cast<std::uintptr_t>(chunk);
    ASSERT_EQ(engine->tracker().unit_bytes(chunk_addr), kPageSize);
    for (int epoch = 0; epoch < 3; ++epoch) {
      for (int k = 0; k < 8; ++k)
        for (std::size_t i = 0; i < 4; ++i) engine->record_access(chunk + i * kPageSize);
      ASSERT_TRUE(engine->step().ok());
    }
    EngineStats s = engine->stats();
    std::printf("after promotion:\n%s", s.to_table().c_str());
    EXPECT_TRUE(all_on(be, chunk, kHugePageSize, kFastNode));
    EXPECT_EQ(s.huge_pages_carried, 1u);
    EXPECT_EQ(s.huge_units_merged, 1u);
    EXPECT_EQ(s.promoted_pages, kChunkPages);
    EXPECT_EQ(s.fast_pages, kChunkPages) << "the engine's beliefs differ from the machine";
    EXPECT_EQ(engine->tracker().unit_bytes(chunk_addr), kHugePageSize);
    report("hugetlb_pages_promoted_by_four_hot_pages", s.promoted_pages);

    ASSERT_TRUE(engine->regions().set_tag(handle.id(), RegionTag::cold).ok());
    ASSERT_TRUE(engine->step().ok());
    s = engine->stats();
    std::printf("after demotion:\n%s", s.to_table().c_str());
    EXPECT_TRUE(all_on(be, raw, kRegion, kSlowNode));
    EXPECT_EQ(s.demoted_pages, kChunkPages);
    EXPECT_EQ(s.huge_units_moved, 1u);
    EXPECT_EQ(s.fast_pages, 0u);
  }
  for (std::size_t i = 0; i < kRegion / 8; ++i)
    ASSERT_EQ(words[i], pattern(i)) << "word " << i << " lost";
  EXPECT_EQ(::munmap(raw, kRegion), 0);
}

// Asks where `units` 4 KiB pages are, `batch` entries per move_pages call,
// three times; returns the best pages per second. The carry check
// (Engine::account_carried) asks about one page per chunk before and after
// each 4 KiB move: what that costs, against moving a page.
double query_rate(void* p, std::size_t units, std::size_t batch) {
  LinuxBackendOptions o;
  o.batch_pages = batch;
  LinuxBackend be(o);
  std::vector<void*> addrs(units);
  for (std::size_t i = 0; i < units; ++i) addrs[i] = static_cast<char*>(p) + i * kPageSize;
  std::vector<int> status(units);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const std::int64_t t0 = SteadyClock::instance().now_ns();
    EXPECT_TRUE(be.query(addrs, absl::MakeSpan(status)).ok());
    best = std::max(best, static_cast<double>(units) / seconds_since(t0));
  }
  return best;
}

TEST(HugePages, MoveRateIn2MiBUnitsAgainst4KiBUnits) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  constexpr std::size_t kSweep = 32 * kMiB;
  LinuxBackend be;
  auto m = be.map(kSweep);
  ASSERT_TRUE(m.ok()) << m.status();
  char* huge = static_cast<char*>(*m);
  ASSERT_TRUE(be.advise_huge(huge, kSweep).ok());
  ASSERT_TRUE(be.bind(huge, kSweep, NodeSet{kSlowNode}, BindMode::kBind, false).ok());
  auto m2 = be.map(kSweep);
  ASSERT_TRUE(m2.ok()) << m2.status();
  char* base = static_cast<char*>(*m2);
  ASSERT_TRUE(be.bind(base, kSweep, NodeSet{kSlowNode}, BindMode::kBind, false).ok());
  touch(huge, kSweep);
  touch(base, kSweep);
  ASSERT_EQ(anon_huge_bytes(huge, kSweep), kSweep);
  ASSERT_EQ(anon_huge_bytes(base, kSweep), 0u);
  // At most 128 calls per direction (a move_pages call costs milliseconds
  // on 6.12 under TCG): the small batches move a prefix.
  std::printf(
      "tierkit-vm: move sweep: entries per call, pages/s in 4 KiB units, in 2 MiB units; "
      "the time to ask where a 4 KiB page is over the time to move it\n");
  for (std::size_t batch : {1, 8, 64, 512}) {
    const std::size_t pages = std::min(kSweep / kPageSize, 128 * batch);
    double r4 = move_rate(base, pages, false, batch);
    double r2 = move_rate(huge, std::min(kSweep / kHugePageSize, 128 * batch), true, batch);
    double rq = query_rate(base, pages, batch);
    std::printf(
        "tierkit-vm: move batch=%zu 4k_pages_per_s=%.0f 2m_pages_per_s=%.0f ratio=%.2f "
        "query_per_move=%.3f\n",
        batch, r4, r2, r2 / r4, r4 / rq);
    report(absl::StrCat("move_ratio_x100_batch", batch), static_cast<std::uint64_t>(100 * r2 / r4));
    report(absl::StrCat("query_per_move_x1000_batch", batch),
           static_cast<std::uint64_t>(1000 * r4 / rq));
  }
  EXPECT_EQ(anon_huge_bytes(huge, kSweep), kSweep) << "moves split the huge pages";
  EXPECT_TRUE(be.unmap(huge, kSweep).ok());
  EXPECT_TRUE(be.unmap(base, kSweep).ok());
}

}  // namespace
}  // namespace tierkit::vm
