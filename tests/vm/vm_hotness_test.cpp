// In-VM: the sampled hotness sources (source/*.hpp) on Debian's kernels.
// Soft-dirty must be available there (CONFIG_MEM_SOFT_DIRTY, unlike the
// development host); each available source finds the pages other threads
// wrote (and, for fault sampling, read) and not the ones left alone, with the
// data intact; uffd and births see pages born after they watch, at no
// extra fault; and the engine, fed by the "sampled" source alone, moves a
// moving hot set of a program that never calls record_access into the fast
// node (checked with move_pages queries).
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tierkit/backend/linux.hpp"
#include "tierkit/engine.hpp"
#include "tierkit/source/sampled.hpp"
#include "vm_support.hpp"

namespace tierkit::vm {
namespace {

using source::make_source;

struct Pages {
  explicit Pages(std::size_t n) : n(n) {
    p = static_cast<unsigned char*>(
        mmap(nullptr, n * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    EXPECT_NE(p, MAP_FAILED);
    madvise(p, n * kPageSize, MADV_NOHUGEPAGE);
    for (std::size_t i = 0; i < n * kPageSize; ++i) p[i] = pattern(i);
  }
  ~Pages() { munmap(p, n * kPageSize); }
  static unsigned char pattern(std::size_t i) { return static_cast<unsigned char>(i * 13 + 1); }
  std::uintptr_t page(std::size_t i) const {
    return reinterpret_cast<std::uintptr_t>(p) + i * kPageSize;
  }
  unsigned char* p;
  std::size_t n;
};

SourceBudget no_time_limit() {
  SourceBudget b;
  b.max_ns = 0;
  b.max_pages = 0;
  return b;
}

// Writers on pages [0, 16), readers on [16, 32), the rest left alone; returns
// the pages the source reported after that.
std::set<std::uintptr_t> run_round(HotnessSource& src, Pages& m) {
  std::vector<TrackedRange> ranges{{m.page(0), m.page(m.n), kPageSize}};
  std::set<std::uintptr_t> found;
  auto sink = make_sink([&](std::uintptr_t p, std::uint32_t, bool) { found.insert(p); });
  EXPECT_TRUE(src.collect(ranges, sink, no_time_limit()).ok()) << src.stats().last_error;
  found.clear();
  std::thread w([&] {
    for (std::size_t i = 0; i < 16 * kPageSize; i += 256) m.p[i] = Pages::pattern(i) ^ 0x5a;
  });
  std::thread r([&] {
    for (std::size_t i = 16 * kPageSize; i < 32 * kPageSize; i += 256)
      EXPECT_EQ(m.p[i], Pages::pattern(i));
  });
  w.join();
  r.join();
  EXPECT_TRUE(src.collect(ranges, sink, no_time_limit()).ok()) << src.stats().last_error;
  src.disarm();
  for (std::size_t i = 0; i < m.n * kPageSize; ++i) {
    unsigned char want = Pages::pattern(i);
    if (i < 16 * kPageSize && i % 256 == 0) want ^= 0x5a;
    EXPECT_EQ(m.p[i], want) << "byte " << i;
    if (m.p[i] != want) break;
  }
  return found;
}

// One collect() with no time limit: the pages the source reported.
std::set<std::uintptr_t> collect_found(HotnessSource& src, const std::vector<TrackedRange>& r) {
  std::set<std::uintptr_t> found;
  auto sink = make_sink([&](std::uintptr_t q, std::uint32_t, bool) { found.insert(q); });
  EXPECT_TRUE(src.collect(r, sink, no_time_limit()).ok()) << src.stats().last_error;
  return found;
}

// Pages [i, j) of the mapping at `base`.
std::set<std::uintptr_t> pages_from(std::uintptr_t base, std::size_t i, std::size_t j) {
  std::set<std::uintptr_t> s;
  for (; i < j; ++i) s.insert(base + i * kPageSize);
  return s;
}

std::set<std::uintptr_t> pages_in(const Pages& m, std::size_t a, std::size_t b) {
  std::set<std::uintptr_t> s;
  for (std::size_t i = a; i < b; ++i) s.insert(m.page(i));
  return s;
}

TEST(VmHotness, SoftDirtyFindsWrittenPages) {
  source::SoftDirtySource src;
  absl::Status s = src.probe();
  if (!s.ok()) {
    if (in_vm()) FAIL() << "Debian's kernels have soft-dirty: " << s;
    GTEST_SKIP() << s;
  }
  Pages m(64);
  EXPECT_EQ(run_round(src, m), pages_in(m, 0, 16));
}

TEST(VmHotness, FaultSamplingFindsReadAndWrittenPages) {
  auto o = source::FaultSourceOptions::fixed(64);
  source::FaultSamplingSource src(o);
  ASSERT_TRUE(src.probe().ok());
  Pages m(64);
  EXPECT_EQ(run_round(src, m), pages_in(m, 0, 32));
}

TEST(VmHotness, UffdWpWhereTheKernelHasIt) {
  source::UffdCapabilities c = source::probe_uffd();
  std::printf("tierkit-vm: uffd %s\n", c.summary.c_str());
  // Every written page protected again at each scan: exactly what was written.
  source::UffdWpSource src(source::UffdWpOptions{.weight = 16, .reprotect = 1, .fault_ns = 0});
  absl::Status s = src.probe();
  if (!s.ok()) {
    // 6.1: no WP_ASYNC / PAGEMAP_SCAN. The unavailable path is what runs
    // there (a skip counts as a failure in the VM): it must say why.
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_NE(std::string(s.message()).find("PAGEMAP_SCAN (6.7+) no"), std::string::npos) << s;
    Pages m(4);
    std::vector<TrackedRange> ranges{{m.page(0), m.page(m.n), kPageSize}};
    auto sink = make_sink([](std::uintptr_t, std::uint32_t, bool) {});
    EXPECT_FALSE(src.collect(ranges, sink, no_time_limit()).ok());
    return;
  }
  Pages m(64);
  EXPECT_EQ(run_round(src, m), pages_in(m, 0, 16));
  // A system call writing into a protected page succeeds (async
  // write-protect is resolved in the kernel's fault path, kernel mode too).
  std::vector<TrackedRange> ranges{{m.page(0), m.page(m.n), kPageSize}};
  auto none = make_sink([](std::uintptr_t, std::uint32_t, bool) {});
  ASSERT_TRUE(src.collect(ranges, none, no_time_limit()).ok());
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const char msg[] = "written by the kernel";
  ASSERT_EQ(write(fds[1], msg, sizeof msg), static_cast<ssize_t>(sizeof msg));
  EXPECT_EQ(read(fds[0], m.p + 40 * kPageSize + 9, sizeof msg), static_cast<ssize_t>(sizeof msg));
  close(fds[0]);
  close(fds[1]);
  EXPECT_EQ(std::memcmp(m.p + 40 * kPageSize + 9, msg, sizeof msg), 0);
  std::set<std::uintptr_t> found;
  auto sink = make_sink([&](std::uintptr_t q, std::uint32_t, bool) { found.insert(q); });
  ASSERT_TRUE(src.collect(ranges, sink, no_time_limit()).ok());
  EXPECT_EQ(found, std::set<std::uintptr_t>{m.page(40)});
  src.disarm();
}

// The default uffd source watches a range before its pages exist: a page
// born by a write is reported, and costs the writer no fault beyond the
// allocation's own (no WP_UNPOPULATED marker); a page only read maps the
// zero page and is not reported. Both claims are what the simulator's
// model of "sampled" assumes (sim/hotness_model.hpp, UffdModel).
TEST(VmHotness, UffdSeesBirthsForFree) {
  source::UffdWpSource src;
  if (absl::Status s = src.probe(); !s.ok()) {
    std::printf("tierkit-vm: uffd births not tested here: %s\n", std::string(s.message()).c_str());
    return;  // 6.1: the unavailable path is UffdWpWhereTheKernelHasIt's
  }
  constexpr std::size_t kPages = 256;
  auto* p = static_cast<unsigned char*>(mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  madvise(p, kPages * kPageSize, MADV_NOHUGEPAGE);
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::vector<TrackedRange> ranges{{a, a + kPages * kPageSize, kPageSize}};
  src.watch(ranges);
  ASSERT_EQ(src.stats().errors, 0u) << src.stats().last_error;
  rusage r0{}, r1{};
  getrusage(RUSAGE_THREAD, &r0);
  for (std::size_t i = 0; i < 128; ++i) p[i * kPageSize] = static_cast<unsigned char>(i + 1);
  getrusage(RUSAGE_THREAD, &r1);
  const long faults = r1.ru_minflt - r0.ru_minflt;
  report("uffd_birth_faults_per_page_x100", static_cast<std::uint64_t>(faults * 100 / 128));
  EXPECT_LT(faults, 128 + 32) << "a birth cost more than its own fault";
  std::thread reader([&] {
    for (std::size_t i = 128; i < 192; ++i) EXPECT_EQ(p[i * kPageSize], 0);
  });
  reader.join();
  EXPECT_EQ(collect_found(src, ranges), pages_from(a, 0, 128));
  src.disarm();
  for (std::size_t i = 0; i < 128; ++i)
    ASSERT_EQ(p[i * kPageSize], static_cast<unsigned char>(i + 1));
  munmap(p, kPages * kPageSize);
}

// births, on both kernels: a page born by a write is reported, a page only
// read (the zero page: never "exclusively mapped") is not, nor one that
// existed before watch(), nor a rewrite.
TEST(VmHotness, BirthsFromPagemap) {
  source::BirthSource src;
  ASSERT_TRUE(src.probe().ok()) << src.probe();
  constexpr std::size_t kPages = 256;
  auto* p = static_cast<unsigned char*>(mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(p, MAP_FAILED);
  madvise(p, kPages * kPageSize, MADV_NOHUGEPAGE);
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  for (std::size_t i = 200; i < 210; ++i) p[i * kPageSize] = 1;  // before watch()
  std::vector<TrackedRange> ranges{{a, a + kPages * kPageSize, kPageSize}};
  src.watch(ranges);
  std::thread writer([&] {
    for (std::size_t i = 0; i < 128; ++i) p[i * kPageSize] = static_cast<unsigned char>(i + 1);
  });
  std::thread reader([&] {
    for (std::size_t i = 128; i < 192; ++i) EXPECT_EQ(p[i * kPageSize], 0);
  });
  writer.join();
  reader.join();
  EXPECT_EQ(collect_found(src, ranges), pages_from(a, 0, 128));
  for (std::size_t i = 0; i < 128; ++i) p[i * kPageSize] += 1;
  std::set<std::uintptr_t> again = collect_found(src, ranges);
  EXPECT_TRUE(again.empty()) << again.size() << " rewrites reported as births";
  for (std::size_t i = 0; i < 128; ++i)
    ASSERT_EQ(p[i * kPageSize], static_cast<unsigned char>(i + 2));
  munmap(p, kPages * kPageSize);
}

// 16 MiB on the slow node, a 2 MiB hot set moving every 8 epochs, a 4 MiB
// fast budget, the "sampled" source alone (births+fault:512; the data is
// written before the region is registered, so births report nothing, and
// the fault part samples each page with probability 1/8 per epoch: about
// 1 - (7/8)^8 = 66% of a hot set is seen within its 8 epochs): at the end
// of each phase at least 40% of the current hot set is on the fast node
// (measured: 55-66% on 6.1 and 6.12).
TEST(VmHotness, EngineFedBySampledSourceMovesAMovingHotSet) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  LinuxBackend be;
  constexpr std::size_t kBytes = 16 * kMiB, kHot = 512;  // pages
  auto mem = be.map(kBytes);
  ASSERT_TRUE(mem.ok()) << mem.status();
  auto* p = static_cast<unsigned char*>(*mem);
  madvise(p, kBytes, MADV_NOHUGEPAGE);
  ASSERT_TRUE(be.bind(p, kBytes, NodeSet{kSlowNode}, BindMode::kPreferred, false).ok());
  touch(p, kBytes);
  EngineConfig c;
  c.fast_nodes = NodeSet{kFastNode};
  c.slow_nodes = NodeSet{kSlowNode};
  c.policy = "automatic";
  c.fast_budget_bytes = 4 * kMiB;
  auto engine = Engine::create(c, &be);
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto picked = make_source("sampled:512");
  ASSERT_TRUE(picked.ok()) << picked.status();
  std::printf("tierkit-vm: hotness source %s\n", picked->explanation.c_str());
  ASSERT_TRUE((*engine)->add_hotness_source(std::move(picked->source), no_time_limit()).ok());
  {
    auto region = (*engine)->register_region(p, kBytes, RegionOptions().with_base_pages(),
                                             /*initially_fast=*/false);
    ASSERT_TRUE(region.ok()) << region.status();
    const std::size_t pages = kBytes / kPageSize;
    for (std::size_t phase = 0; phase < 3; ++phase) {
      std::size_t first = phase * 2 * kHot;
      for (int e = 0; e < 8; ++e) {
        for (int rep = 0; rep < 16; ++rep)
          for (std::size_t i = first; i < first + kHot; ++i) p[i * kPageSize + 8 + rep] += 1;
        ASSERT_TRUE((*engine)->step().ok());
      }
      std::vector<void*> hot;
      for (std::size_t i = first; i < first + kHot && i < pages; ++i)
        hot.push_back(p + i * kPageSize);
      std::vector<int> status(hot.size());
      ASSERT_TRUE(be.query(hot, absl::MakeSpan(status)).ok());
      std::size_t fast = 0;
      for (int s : status) fast += s == kFastNode;
      report(absl::StrCat("sampled_hot_fast_pct_phase", phase), fast * 100 / hot.size());
      EXPECT_GE(fast * 5, hot.size() * 2) << "phase " << phase << ": " << fast << " of "
                                          << hot.size() << " hot pages on the fast node";
    }
    EngineStats st = (*engine)->stats();
    ASSERT_EQ(st.hotness_sources.size(), 1u);
    report("sampled_cpu_us_per_epoch", st.hotness_sources[0].cpu_ns / 1000 / st.epochs);
    std::printf("%s", st.to_table().c_str());
  }
  engine->reset();
  ASSERT_TRUE(be.unmap(p, kBytes).ok());
}

}  // namespace
}  // namespace tierkit::vm
