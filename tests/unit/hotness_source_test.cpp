// Tests of the HotnessSource seam and the Linux sources (source/*.hpp): the
// fault source finds exactly the pages other threads read or wrote, keeps
// their data, chains the application's SIGSEGV handler, survives pages the
// application unmapped or re-protected; unavailable sources say why; the
// engine feeds what a source reports into the tracker.
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tierkit/backend/linux.hpp"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/engine.hpp"
#include "tierkit/hotness_source.hpp"
#include "tierkit/source/births.hpp"
#include "tierkit/source/fault.hpp"
#include "tierkit/source/perf_mem.hpp"
#include "tierkit/source/sampled.hpp"
#include "tierkit/source/softdirty.hpp"
#include "tierkit/source/uffd.hpp"
#include "tierkit/source/watched.hpp"

namespace tierkit::source {
namespace {

using ::testing::HasSubstr;

constexpr std::size_t kPage = 4096;

// An anonymous mapping filled with a known pattern.
struct Mapping {
  // Filled with pattern() (every page present), or left unpopulated (base
  // pages only, so each page is born on its own).
  explicit Mapping(std::size_t pages, bool filled = true) : pages(pages) {
    p = static_cast<unsigned char*>(
        mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    EXPECT_NE(p, MAP_FAILED);
    if (!filled) {
      madvise(p, pages * kPage, MADV_NOHUGEPAGE);
      return;
    }
    for (std::size_t i = 0; i < pages * kPage; ++i) p[i] = pattern(i);
  }
  ~Mapping() { munmap(p, pages * kPage); }
  static unsigned char pattern(std::size_t i) { return static_cast<unsigned char>(i * 131 + 7); }
  std::uintptr_t page(std::size_t i) const {
    return reinterpret_cast<std::uintptr_t>(p) + i * kPage;
  }
  TrackedRange range() const { return {page(0), page(pages), kPage}; }
  unsigned char* p;
  std::size_t pages;
};

struct Recorded {
  std::set<std::uintptr_t> pages, written;
  std::uint64_t weight = 0;
};

// No time limit by default: the tests check exact page sets, and sanitizers
// (and a loaded machine) make syscalls slow.
SourceBudget unlimited_time() {
  SourceBudget b;
  b.max_ns = 0;
  return b;
}

absl::Status collect_into(HotnessSource& s, const std::vector<TrackedRange>& ranges, Recorded& out,
                          SourceBudget budget = unlimited_time()) {
  auto sink = make_sink([&](std::uintptr_t p, std::uint32_t w, bool wr) {
    out.pages.insert(p);
    if (wr) out.written.insert(p);
    out.weight += w;
  });
  return s.collect(ranges, sink, budget);
}

// A draw cut short every epoch (the max_ns cap) still takes turns over the
// whole population: the next draw starts after the strata visited.
TEST(DrawStratified, DrawsCutShortTakeTurnsOverThePopulation) {
  const std::vector<std::uint64_t> units = {1000, 3000};  // two ranges, 4000 units
  std::vector<int> hits(8, 0);                            // per eighth of the units
  double start = 0;
  std::uint64_t state = 1;
  auto below = [&](std::uint64_t n) { return (state = state * 6364136223846793005ULL + 1) % n; };
  for (int epoch = 0; epoch < 40; ++epoch) {
    int drawn = 0;
    start = source::draw_stratified(units, 64, start, below, [&](std::size_t r, std::uint64_t u) {
      ++hits[(r == 0 ? u : 1000 + u) / 500];
      return ++drawn < 16;  // a quarter of the strata, then the cap
    });
    EXPECT_GE(start, 0.0);
    EXPECT_LT(start, 1.0);
  }
  // 40 epochs x 16 draws = 640, 80 per eighth when the turns are fair.
  for (int h : hits) EXPECT_EQ(h, 80);
}

TEST(FaultSource, FindsExactlyThePagesOtherThreadsTouchedAndKeepsTheData) {
  Mapping m(256);
  auto o = FaultSourceOptions::fixed(256);  // arm every page: then "found" must be exact
  FaultSamplingSource src(o);
  ASSERT_TRUE(src.probe().ok()) << src.probe();
  Recorded first;
  ASSERT_TRUE(collect_into(src, {m.range()}, first).ok());
  EXPECT_TRUE(first.pages.empty());
  EXPECT_EQ(src.armed(), 256u);

  // Readers on pages 0-63 (two threads racing on the same pages), a writer
  // on 64-127; 128-255 left alone.
  std::atomic<std::uint64_t> bad{0};
  auto reader = [&] {
    for (std::size_t i = 0; i < 64 * kPage; i += 512)
      if (m.p[i] != Mapping::pattern(i)) bad.fetch_add(1);
  };
  auto writer = [&] {
    for (std::size_t i = 64 * kPage; i < 128 * kPage; i += 1024)
      m.p[i] = Mapping::pattern(i) ^ 0xff;
  };
  std::thread t1(reader), t2(reader), t3(writer);
  t1.join();
  t2.join();
  t3.join();
  EXPECT_EQ(bad.load(), 0u);

  Recorded second;
  ASSERT_TRUE(collect_into(src, {m.range()}, second).ok());
  std::set<std::uintptr_t> want;
  for (std::size_t i = 0; i < 128; ++i) want.insert(m.page(i));
  EXPECT_EQ(second.pages, want);
#if defined(__x86_64__)
  std::set<std::uintptr_t> want_written;
  for (std::size_t i = 64; i < 128; ++i) want_written.insert(m.page(i));
  EXPECT_EQ(second.written, want_written);
#endif
  EXPECT_EQ(second.weight, 128u * o.weight);
  src.disarm();
  // Every byte as written: reads kept the pattern, writes landed.
  for (std::size_t i = 0; i < 256 * kPage; ++i) {
    unsigned char want_byte = Mapping::pattern(i);
    if (i >= 64 * kPage && i < 128 * kPage && i % 1024 == 0) want_byte ^= 0xff;
    ASSERT_EQ(m.p[i], want_byte) << "byte " << i;
  }
  HotnessSourceStats st = src.stats();
  EXPECT_EQ(st.pages_sampled, 512u);
  EXPECT_EQ(st.pages_found, 128u);
  EXPECT_GT(st.cpu_ns, 0u);
  std::printf(
      "fault source: %llu us CPU for 2 collects arming 512 pages, 128 faults (%llu us in "
      "handlers)\n",
      static_cast<unsigned long long>(st.cpu_ns / 1000),
      static_cast<unsigned long long>(st.handler_ns / 1000));
}

TEST(FaultSource, Samples2MiBRangesByWholeUnits) {
  // 8 whole 2 MiB chunks (2 MiB aligned by LinuxBackend::map, advised huge
  // as the engine does): a unit is armed whole and reported by its base.
  LinuxBackend be;
  constexpr std::size_t kChunks = 8, kUnit = std::size_t{2} << 20;
  auto mem = be.map(kChunks * kUnit);
  ASSERT_TRUE(mem.ok()) << mem.status();
  auto* p = static_cast<unsigned char*>(*mem);
  (void)be.advise_huge(p, kChunks * kUnit);
  for (std::size_t i = 0; i < kChunks * kUnit; i += 64) p[i] = Mapping::pattern(i);
  const auto base = reinterpret_cast<std::uintptr_t>(p);
  auto o = FaultSourceOptions::fixed(kChunks);  // every unit
  FaultSamplingSource src(o);
  ASSERT_TRUE(src.probe().ok());
  Recorded first;
  ASSERT_TRUE(collect_into(src, {{base, base + kChunks * kUnit, kUnit}}, first).ok());
  ASSERT_EQ(src.armed(), kChunks);
  for (std::uintptr_t u : src.armed_pages()) EXPECT_EQ(u % kUnit, 0u);
  // A write in the middle of chunk 2, a read at the end of chunk 5.
  std::thread t([&] {
    // A plain store: a read-modify-write may fault as a read first.
    const std::size_t w = 2 * kUnit + 300 * kPage + 64;
    p[w] = static_cast<unsigned char>(Mapping::pattern(w) ^ 0xff);
    EXPECT_EQ(p[6 * kUnit - 64], Mapping::pattern(6 * kUnit - 64));
  });
  t.join();
  Recorded second;
  ASSERT_TRUE(collect_into(src, {{base, base + kChunks * kUnit, kUnit}}, second).ok());
  EXPECT_EQ(second.pages, (std::set<std::uintptr_t>{base + 2 * kUnit, base + 5 * kUnit}));
#if defined(__x86_64__)
  EXPECT_EQ(second.written, (std::set<std::uintptr_t>{base + 2 * kUnit}));
#endif
  src.disarm();
  for (std::size_t i = 0; i < kChunks * kUnit; i += 64) {
    unsigned char want = Mapping::pattern(i);
    if (i == 2 * kUnit + 300 * kPage + 64) want ^= 0xff;
    ASSERT_EQ(p[i], want) << "byte " << i;
  }
  EXPECT_TRUE(be.unmap(p, kChunks * kUnit).ok());
}

TEST(FaultSource, SamplesAFewPagesPerRangeSpreadOverIt) {
  Mapping m(1024);
  auto o = FaultSourceOptions::fixed(16);
  FaultSamplingSource src(o);
  Recorded r;
  ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());
  EXPECT_EQ(src.armed(), 16u);
  // Touch everything: one page per 64-page stratum fires.
  for (std::size_t i = 0; i < 1024 * kPage; i += kPage) m.p[i] = 1;
  ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());
  ASSERT_EQ(r.pages.size(), 16u);
  std::set<std::size_t> strata;
  for (auto p : r.pages) strata.insert((p - m.page(0)) / kPage / 64);
  EXPECT_EQ(strata.size(), 16u);
  // The budget caps the armed pages.
  src.disarm();
  SourceBudget b = unlimited_time();
  b.max_pages = 5;
  ASSERT_TRUE(collect_into(src, {m.range()}, r, b).ok());
  EXPECT_EQ(src.armed(), 5u);
}

// The application's handler, installed before the source.
std::atomic<int> g_app_faults{0};
void* g_app_guard = nullptr;
void app_handler(int, siginfo_t* info, void*) {
  g_app_faults.fetch_add(1);
  if (info->si_addr >= g_app_guard && info->si_addr < static_cast<char*>(g_app_guard) + kPage)
    mprotect(g_app_guard, kPage, PROT_READ | PROT_WRITE);
}
// Installs app_handler (counting from 0) for a test's scope, then restores
// what was there.
struct AppHandler {
  AppHandler() {
    struct sigaction app {};
    app.sa_sigaction = app_handler;
    app.sa_flags = SA_SIGINFO;
    sigemptyset(&app.sa_mask);
    installed = sigaction(SIGSEGV, &app, &old) == 0;
    g_app_faults = 0;
  }
  ~AppHandler() {
    g_app_guard = nullptr;
    sigaction(SIGSEGV, &old, nullptr);
  }
  struct sigaction old {};
  bool installed = false;
};

TEST(FaultSource, ApplicationHandlerStillGetsItsFaults) {
  AppHandler app;
  ASSERT_TRUE(app.installed);
  Mapping guard(1);
  g_app_guard = guard.p;
  {
    Mapping m(64);
    auto o = FaultSourceOptions::fixed(64);
    FaultSamplingSource src(o);
    Recorded r;
    ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());
    for (std::size_t i = 0; i < 64 * kPage; i += kPage) m.p[i] = 3;  // ours: not the app's
    EXPECT_EQ(g_app_faults.load(), 0);
    ASSERT_EQ(mprotect(guard.p, kPage, PROT_NONE), 0);
    std::uint64_t fwd = FaultSamplingSource::forwarded();
    guard.p[5] = 9;  // the application's own fault
    EXPECT_EQ(g_app_faults.load(), 1);
    EXPECT_EQ(guard.p[5], 9);
    EXPECT_EQ(FaultSamplingSource::forwarded(), fwd + 1);
    ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());
    EXPECT_EQ(r.pages.size(), 64u);
  }
  // The source is gone, its handler is not (a late fault on a page it
  // armed must still be retried): it still forwards the application's.
  ASSERT_EQ(mprotect(guard.p, kPage, PROT_NONE), 0);
  guard.p[6] = 8;
  EXPECT_EQ(g_app_faults.load(), 2);
  EXPECT_EQ(guard.p[6], 8);
}

// The handler skips its readability check for plain reads (a read that
// faulted proves the page unreadable), not for writes: a write to an armed
// page the application made read-only is the application's fault.
TEST(FaultSource, WriteToAnArmedPageTheApplicationMadeReadOnlyIsTheApplications) {
  AppHandler app;
  ASSERT_TRUE(app.installed);
  {
    Mapping m(64);
    FaultSamplingSource src(FaultSourceOptions::fixed(64));
    Recorded r;
    ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());
    ASSERT_EQ(src.armed(), 64u);
    g_app_guard = m.p + 7 * kPage;
    ASSERT_EQ(mprotect(g_app_guard, kPage, PROT_READ), 0);
    EXPECT_EQ(m.p[7 * kPage + 1], Mapping::pattern(7 * kPage + 1));  // readable: no fault
    m.p[7 * kPage + 1] = 42;                                         // the application's fault
    EXPECT_EQ(g_app_faults.load(), 1);
    EXPECT_EQ(m.p[8 * kPage + 1], Mapping::pattern(8 * kPage + 1));  // a plain read: ours
    EXPECT_EQ(g_app_faults.load(), 1);
    ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());
    EXPECT_EQ(r.pages, (std::set<std::uintptr_t>{m.page(8)}));
    src.disarm();
    for (std::size_t i = 0; i < 64 * kPage; i += 512)
      ASSERT_EQ(m.p[i + 1], i == 7 * kPage ? 42 : Mapping::pattern(i + 1)) << "byte " << i + 1;
  }
}

TEST(FaultSource, HandlerInstalledLaterIsDetectedAndEverythingDisarmed) {
  struct sigaction before {};
  sigaction(SIGSEGV, nullptr, &before);
  Mapping m(32);
  auto o = FaultSourceOptions::fixed(32);
  FaultSamplingSource src(o);
  Recorded r;
  ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());
  struct sigaction app {
  }, ours{};
  app.sa_sigaction = app_handler;
  app.sa_flags = SA_SIGINFO;
  sigemptyset(&app.sa_mask);
  ASSERT_EQ(sigaction(SIGSEGV, &app, &ours), 0);
  g_app_faults = 0;
  absl::Status s = collect_into(src, {m.range()}, r);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("another SIGSEGV handler"));
  EXPECT_EQ(src.armed(), 0u);
  for (std::size_t i = 0; i < 32 * kPage; i += kPage) ASSERT_EQ(m.p[i], Mapping::pattern(i));
  EXPECT_EQ(g_app_faults.load(), 0);  // all pages were restored
  EXPECT_THAT(src.stats().last_error, HasSubstr("another SIGSEGV handler"));
  sigaction(SIGSEGV, &before, nullptr);
}

TEST(FaultSource, PagesUnmappedOrReprotectedByTheApplicationAreLeftAlone) {
  Mapping m(64);
  auto o = FaultSourceOptions::fixed(64);
  FaultSamplingSource src(o);
  Recorded r;
  ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());
  ASSERT_EQ(munmap(m.p, 16 * kPage), 0);                            // pages 0-15 gone
  ASSERT_EQ(mprotect(m.p + 16 * kPage, 16 * kPage, PROT_READ), 0);  // 16-31 read-only
  for (std::size_t i = 16 * kPage; i < 32 * kPage; i += kPage)      // readable, no fault
    ASSERT_EQ(m.p[i], Mapping::pattern(i));
  ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());
  EXPECT_TRUE(r.pages.empty());  // re-protected pages did not fault: not "accessed"
  src.disarm();
  EXPECT_GE(src.stats().skipped, 32u);
  // The application's PROT_READ is still there.
  ProcMaps maps;
  ASSERT_TRUE(maps.read().ok());
  const Vma* v = maps.find(m.page(20));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->prot, PROT_READ);
  EXPECT_EQ(maps.find(m.page(3)), nullptr);
  mprotect(m.p + 16 * kPage, 48 * kPage, PROT_READ | PROT_WRITE);
  m.p += 16 * kPage;  // the destructor unmaps what is left
  m.pages -= 16;
}

TEST(FaultSource, OnlyOneActivePerProcess) {
  Mapping m(8);
  FaultSamplingSource a;
  Recorded r;
  ASSERT_TRUE(collect_into(a, {m.range()}, r).ok());
  FaultSamplingSource b;
  absl::Status s = b.probe();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("another FaultSamplingSource"));
}

// Delivers to this thread a SIGSEGV that looks like an access fault at
// `addr`: what a fault taken on a PROT_NONE page looks like when the signal
// arrives after the page was restored. The main thread only (the kernel
// lets a thread send itself a fault's si_code when its tid is the pid).
bool send_late_fault(const void* addr) {
  siginfo_t si{};
  si.si_signo = SIGSEGV;
  si.si_code = SEGV_ACCERR;
  si.si_addr = const_cast<void*>(addr);
  return syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), SIGSEGV, &si) == 0;
}

bool fault_handler_installed() {
  struct sigaction now {};
  return sigaction(SIGSEGV, nullptr, &now) == 0 && (now.sa_flags & SA_SIGINFO) != 0 &&
         now.sa_sigaction == &fault_detail::handler;
}

// Threads that each keep incrementing their own byte (one cache line per
// thread) of randomly chosen pages of `m`, counting what they wrote.
class Writers {
 public:
  Writers(Mapping& m, int n) : m_(m), counts_(n, std::vector<std::uint32_t>(m.pages)) {
    for (int t = 0; t < n; ++t) threads_.emplace_back([this, t] { run(t); });
  }
  ~Writers() { join(); }
  void join() {
    stop_.store(true);
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
  }
  // Every thread's bytes hold what it wrote (call after join()).
  bool intact() const {
    for (std::size_t t = 0; t < counts_.size(); ++t)
      for (std::size_t pg = 0; pg < m_.pages; ++pg) {
        const std::size_t i = pg * kPage + t * 64;
        if (m_.p[i] != static_cast<unsigned char>(Mapping::pattern(i) + counts_[t][pg]))
          return false;
      }
    return true;
  }

 private:
  void run(int t) {
    std::uint32_t x = 12345u + static_cast<std::uint32_t>(t);
    volatile unsigned char* p = m_.p;
    while (!stop_.load(std::memory_order_relaxed)) {
      x = x * 1103515245u + 12345u;
      const std::size_t pg = (x >> 8) % m_.pages;
      const std::size_t i = pg * kPage + static_cast<std::size_t>(t) * 64;
      p[i] = static_cast<unsigned char>(p[i] + 1);
      ++counts_[static_cast<std::size_t>(t)][pg];
    }
  }
  Mapping& m_;
  std::vector<std::vector<std::uint32_t>> counts_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// Each case runs in a fresh process (threadsafe death tests re-execute the
// binary): the old failure is the process killed by a SIGSEGV, and the
// SIGSEGV handler is per process.
class FaultSourceInAChild : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

// A fault taken on an armed page just before the source is destroyed can
// be delivered after: the handler stays installed and retries it.
TEST_F(FaultSourceInAChild, ALateFaultAfterTheSourceIsGoneIsRetried) {
  EXPECT_EXIT(
      {
        Mapping m(8);
        {
          FaultSamplingSource src(FaultSourceOptions::fixed(8));
          Recorded r;
          if (!collect_into(src, {m.range()}, r).ok() || src.armed() != 8) std::_Exit(2);
        }
        if (!send_late_fault(m.p + 3 * kPage + 5)) std::_Exit(3);
        std::_Exit(fault_handler_installed() && FaultSamplingSource::forwarded() == 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// A late fault on a page that fired is retried, also when this thread
// retried a fault at the same address before (the generation moved on).
TEST_F(FaultSourceInAChild, ALateFaultOnAFiredPageIsRetriedWhateverCameBefore) {
  auto child = [] {
    Mapping m(8), other(8);
    FaultSamplingSource src(FaultSourceOptions::fixed(8));
    Recorded r;
    if (!collect_into(src, {other.range()}, r).ok()) std::_Exit(2);  // installs
    unsigned char* x = m.p + 5 * kPage + 8;
    if (!send_late_fault(x)) std::_Exit(3);  // not armed: retried
    if (!collect_into(src, {m.range()}, r).ok() || src.armed() != 8) std::_Exit(2);
    // This read fires page 5.
    if (*static_cast<volatile unsigned char*>(x) != Mapping::pattern(5 * kPage + 8)) std::_Exit(4);
    if (!send_late_fault(x)) std::_Exit(3);  // as if it lost the race to that fault
    std::_Exit(fault_handler_installed() && FaultSamplingSource::forwarded() == 0 ? 0 : 1);
  };
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
}

// Runs `cycle` until `cycles` ran or `seconds` passed (a bound on the run
// time on a slow or busy machine, not a check).
template <class Cycle>
int run_for(int cycles, double seconds, Cycle&& cycle) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int i = 0;
  while (i < cycles && std::chrono::steady_clock::now() < end && cycle()) ++i;
  return i;
}

// Sources created, armed and destroyed while six threads write to the armed
// pages: no fault of theirs reaches the previous handler, no write is lost.
TEST_F(FaultSourceInAChild, DestroyingSourcesWhileThreadsFaultKeepsTheProcessAndItsData) {
  EXPECT_EXIT(
      {
        Mapping m(64);
        Writers w(m, 6);
        const TrackedRange range = m.range();
        run_for(1000000, 3.0, [&] {
          FaultSamplingSource src(FaultSourceOptions::fixed(32));
          auto sink = make_sink([](std::uintptr_t, std::uint32_t, bool) {});
          return src.collect({&range, 1}, sink, unlimited_time()).ok();
        });
        w.join();
        std::_Exit(w.intact() && FaultSamplingSource::forwarded() == 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// One source collecting back to back while six threads write to its armed
// pages: its own late faults never reach the previous handler, and no page
// is left PROT_NONE (the check below reads every page).
TEST_F(FaultSourceInAChild, ALongLivedSourceNeverForwardsItsOwnLateFaults) {
  EXPECT_EXIT(
      {
        Mapping m(64);
        Writers w(m, 6);
        FaultSamplingSource src(FaultSourceOptions::fixed(32));
        const TrackedRange range = m.range();
        auto sink = make_sink([](std::uintptr_t, std::uint32_t, bool) {});
        run_for(20000, 2.0, [&] { return src.collect({&range, 1}, sink, unlimited_time()).ok(); });
        src.disarm();
        w.join();
        std::_Exit(w.intact() && FaultSamplingSource::forwarded() == 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(SoftDirtySource, ProbeSaysWhyOrFindsWrittenPages) {
  SoftDirtySource src;
  absl::Status s = src.probe();
  if (!s.ok()) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(s.message()), HasSubstr("softdirty"));
    GTEST_SKIP() << "soft-dirty unavailable here: " << s;
  }
  Mapping m(64);
  Recorded r;
  ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());             // first call: clears
  for (std::size_t i = 0; i < 16 * kPage; i += kPage) m.p[i] = 5;  // written
  for (std::size_t i = 16 * kPage; i < 32 * kPage; i += kPage)
    (void)*(volatile unsigned char*)(m.p + i);  // read
  ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());
  std::set<std::uintptr_t> want;
  for (std::size_t i = 0; i < 16; ++i) want.insert(m.page(i));
  EXPECT_EQ(r.pages, want);
  EXPECT_EQ(src.passes(), 1u);
}

TEST(SoftDirtySource, BudgetSplitsAPassOverEpochs) {
  SoftDirtySource src;
  if (!src.probe().ok()) GTEST_SKIP() << "soft-dirty unavailable here";
  Mapping m(100);
  Recorded r;
  SourceBudget b = unlimited_time();
  b.max_pages = 40;
  ASSERT_TRUE(collect_into(src, {m.range()}, r, b).ok());
  for (std::size_t i = 0; i < 100 * kPage; i += kPage) m.p[i] = 5;
  ASSERT_TRUE(collect_into(src, {m.range()}, r, b).ok());
  EXPECT_EQ(r.pages.size(), 40u);
  EXPECT_EQ(src.passes(), 0u);
  ASSERT_TRUE(collect_into(src, {m.range()}, r, b).ok());
  ASSERT_TRUE(collect_into(src, {m.range()}, r, b).ok());
  EXPECT_EQ(r.pages.size(), 100u);
  EXPECT_EQ(src.passes(), 1u);
}

// Stand-ins for /proc/self/pagemap and /proc/self/clear_refs (memfds): a
// kernel with soft-dirty, whichever this one is. The test sets the entries
// of made-up addresses: the source only reads pagemap, never the memory.
class FakePagemap {
 public:
  static constexpr std::uint64_t kPresent = SoftDirtySource::kPresentBit;
  static constexpr std::uint64_t kDirty = SoftDirtySource::kSoftDirtyBit;
  static constexpr std::uintptr_t kBase = std::uintptr_t{1} << 30;  // 2 MiB aligned

  FakePagemap()
      : pagemap_(memfd_create("pagemap", MFD_CLOEXEC)),
        clear_refs_(memfd_create("clear_refs", MFD_CLOEXEC)),
        pagemap_path_("/proc/self/fd/" + std::to_string(pagemap_)),
        clear_refs_path_("/proc/self/fd/" + std::to_string(clear_refs_)) {
    EXPECT_GE(pagemap_, 0);
    EXPECT_GE(clear_refs_, 0);
  }
  ~FakePagemap() {
    close(pagemap_);
    close(clear_refs_);
  }
  void set(std::uintptr_t page, std::uint64_t entry) {
    ASSERT_EQ(pwrite(pagemap_, &entry, 8, static_cast<off_t>(page / kPage * 8)), 8);
  }
  SoftDirtyOptions options() const {
    SoftDirtyOptions o;
    o.pagemap_path = pagemap_path_.c_str();
    o.clear_refs_path = clear_refs_path_.c_str();
    return o;
  }

 private:
  int pagemap_, clear_refs_;
  std::string pagemap_path_, clear_refs_path_;
};

// Soft-dirty bits are per 4 KiB entry unless a unit is one huge page: a
// 2 MiB unit is reported (once) when any of its pages was written, and
// each of its entries read counts against max_pages.
TEST(SoftDirtySource, A2MiBUnitIsReportedWhenAnyOfItsPagesWasWritten) {
  FakePagemap fake;
  constexpr std::uintptr_t kBase = FakePagemap::kBase;
  constexpr std::size_t kUnits = 4, kPer = kHugePageSize / kPage;
  for (std::size_t i = 0; i < kUnits * kPer; ++i)
    fake.set(kBase + i * kPage, FakePagemap::kPresent);
  SoftDirtySource src(fake.options());
  const std::vector<TrackedRange> ranges = {{kBase, kBase + kUnits * kHugePageSize, kHugePageSize}};
  std::vector<std::uintptr_t> got;
  auto sink = make_sink([&](std::uintptr_t p, std::uint32_t, bool) { got.push_back(p); });
  SourceBudget b = unlimited_time();
  b.max_pages = 600;                               // slices that end inside units
  ASSERT_TRUE(src.collect(ranges, sink, b).ok());  // first call: clears
  // Written since: the 3rd page of units 0, 1 and 3, and the last of unit 1
  // (read by the slice after the one that reports unit 1).
  for (std::size_t u : {0, 1, 3})
    fake.set(kBase + u * kHugePageSize + 2 * kPage, FakePagemap::kPresent | FakePagemap::kDirty);
  fake.set(kBase + kHugePageSize + (kPer - 1) * kPage, FakePagemap::kPresent | FakePagemap::kDirty);
  for (int i = 0; i < 8 && src.passes() == 0; ++i) ASSERT_TRUE(src.collect(ranges, sink, b).ok());
  EXPECT_EQ(src.passes(), 1u);
  EXPECT_EQ(got,
            (std::vector<std::uintptr_t>{kBase, kBase + kHugePageSize, kBase + 3 * kHugePageSize}));
  EXPECT_EQ(src.stats().pages_sampled, kUnits * kPer);  // 4 slices of at most 600
}

// A range whose end is not page-aligned: its last, partial page is read
// too, and the pass completes (it used to read 0 entries there forever).
TEST(SoftDirtySource, ARangeEndingInsideAPageIsReadToItsEnd) {
  FakePagemap fake;
  constexpr std::uintptr_t kBase = FakePagemap::kBase;
  for (std::size_t i = 0; i < 4; ++i) fake.set(kBase + i * kPage, FakePagemap::kPresent);
  SoftDirtySource src(fake.options());
  const std::vector<TrackedRange> ranges = {{kBase, kBase + 3 * kPage + 100, kPage}};
  Recorded r;
  SourceBudget b = unlimited_time();
  b.max_ns = 50'000'000;                              // what the old code spun for (forever with 0)
  ASSERT_TRUE(collect_into(src, ranges, r, b).ok());  // first call: clears
  fake.set(kBase + kPage, FakePagemap::kPresent | FakePagemap::kDirty);
  fake.set(kBase + 3 * kPage, FakePagemap::kPresent | FakePagemap::kDirty);
  ASSERT_TRUE(collect_into(src, ranges, r, b).ok());
  EXPECT_EQ(src.passes(), 1u);
  EXPECT_EQ(r.pages, (std::set<std::uintptr_t>{kBase + kPage, kBase + 3 * kPage}));
}

// A system call that writes into a protected page (read(2) from a pipe)
// succeeds: async write-protect is resolved in the kernel's own fault path,
// also for faults taken in kernel mode (unlike the fault source's EFAULT),
// and the page is reported written.
TEST(UffdWpSource, SystemCallsWriteIntoProtectedPages) {
  UffdWpSource src(UffdWpOptions{.weight = 16, .reprotect = 1, .fault_ns = 0});
  if (absl::Status s = src.probe(); !s.ok()) GTEST_SKIP() << "uffd-wp unavailable here: " << s;
  Mapping m(8);
  Recorded r;
  ASSERT_TRUE(collect_into(src, {m.range()}, r).ok()) << src.stats().last_error;  // protects
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const char msg[] = "written by the kernel";
  ASSERT_EQ(write(fds[1], msg, sizeof msg), static_cast<ssize_t>(sizeof msg));
  ASSERT_EQ(read(fds[0], m.p + 3 * kPage + 5, sizeof msg), static_cast<ssize_t>(sizeof msg));
  close(fds[0]);
  close(fds[1]);
  EXPECT_EQ(std::memcmp(m.p + 3 * kPage + 5, msg, sizeof msg), 0);
  Recorded r2;
  ASSERT_TRUE(collect_into(src, {m.range()}, r2).ok());
  EXPECT_EQ(r2.pages, std::set<std::uintptr_t>{m.page(3)});
}

TEST(UffdWpSource, BadOptionsAreAnError) {
  for (UffdWpOptions o : {UffdWpOptions{.weight = 16, .reprotect = 1.5, .fault_ns = 0},
                          UffdWpOptions{.weight = 16, .reprotect = -0.1, .fault_ns = 0},
                          UffdWpOptions{.weight = 0, .reprotect = 0, .fault_ns = 0},
                          UffdWpOptions{.weight = 16, .reprotect = 0, .fault_ns = -1}}) {
    UffdWpSource src(o);
    Recorded r;
    absl::Status s = collect_into(src, {}, r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("UffdWpOptions"));
  }
}

// With every written page protected again at each scan (reprotect = 1):
// exactly the pages written since the last scan.
TEST(UffdWpSource, ProbeSaysWhyOrFindsWrittenPages) {
  UffdCapabilities c = probe_uffd();
  EXPECT_THAT(c.summary, HasSubstr("userfaultfd"));
  UffdWpSource src(UffdWpOptions{.weight = 16, .reprotect = 1, .fault_ns = 0});
  absl::Status s = src.probe();
  if (!s.ok()) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(s.message()), HasSubstr("uffd-wp"));
    GTEST_SKIP() << "uffd-wp unavailable here: " << s;
  }
  Mapping m(64);
  Recorded r;
  ASSERT_TRUE(collect_into(src, {m.range()}, r).ok()) << src.stats().last_error;
  EXPECT_TRUE(r.pages.empty());
  std::thread w([&] {
    for (std::size_t i = 0; i < 16 * kPage; i += kPage) m.p[i] = 7;
  });
  std::thread rd([&] {
    for (std::size_t i = 16 * kPage; i < 32 * kPage; i += kPage)
      EXPECT_EQ(m.p[i], Mapping::pattern(i));
  });
  w.join();
  rd.join();
  ASSERT_TRUE(collect_into(src, {m.range()}, r).ok());
  std::set<std::uintptr_t> want;
  for (std::size_t i = 0; i < 16; ++i) want.insert(m.page(i));
  EXPECT_EQ(r.pages, want);
  EXPECT_EQ(r.written, want);
  // Re-protected: only the next epoch's writes show up.
  Recorded r2;
  m.p[40 * kPage + 3] = 1;
  ASSERT_TRUE(collect_into(src, {m.range()}, r2).ok());
  EXPECT_EQ(r2.pages, std::set<std::uintptr_t>{m.page(40)});
  EXPECT_EQ(m.p[40 * kPage + 3], 1);
  EXPECT_EQ(m.p[0], 7);
  EXPECT_EQ(src.stats().errors, 0u) << src.stats().last_error;
  // A budget splits a pass; the rest is scanned next epoch, nothing lost.
  for (std::size_t i = 0; i < 64 * kPage; i += kPage) m.p[i] = 9;
  SourceBudget b = unlimited_time();
  b.max_pages = 40;
  Recorded r3;
  ASSERT_TRUE(collect_into(src, {m.range()}, r3, b).ok());
  EXPECT_EQ(r3.pages.size(), 40u);
  ASSERT_TRUE(collect_into(src, {m.range()}, r3, b).ok());
  EXPECT_EQ(r3.pages.size(), 64u);
  // No page limit (max_pages = 0).
  m.p[10 * kPage] = 1;
  b.max_pages = 0;
  Recorded r4;
  ASSERT_TRUE(collect_into(src, {m.range()}, r4, b).ok());
  EXPECT_EQ(r4.pages, std::set<std::uintptr_t>{m.page(10)});
}

// Whether a read fault maps the shared zero page here (PAGEMAP_SCAN says
// PAGE_IS_PFNZERO): Debian's kernels do; some kernels allocate a page.
bool reads_map_the_zero_page() {
  Mapping m(1, /*filled=*/false);
  volatile unsigned char x = m.p[0];
  (void)x;
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  uffd_detail::PmScanArg a{};
  uffd_detail::PageRegion r{};
  a.size = sizeof a;
  a.start = m.page(0);
  a.end = m.page(1);
  a.vec = reinterpret_cast<std::uint64_t>(&r);
  a.vec_len = 1;
  a.category_mask = a.return_mask = uffd_detail::kPageIsPfnZero;
  long n = ioctl(fd, uffd_detail::kPagemapScan, &a);
  close(fd);
  return n == 1;
}

// The default: pages born after watch() are reported for free (no fault
// beyond the program's own), pages only read are not (where reads map the
// zero page), and of the pages rewritten every epoch only a sample sized
// to the budget is protected again: at most one epoch's allowance of
// faults outstanding (1 ms / 20 us = 50 pages).
TEST(UffdWpSource, ReportsBirthsAndProtectsRewritesWithinTheBudget) {
  UffdWpSource src(UffdWpOptions{.weight = 16, .reprotect = 0, .fault_ns = 20000});
  if (absl::Status s = src.probe(); !s.ok()) GTEST_SKIP() << "uffd-wp unavailable here: " << s;
  constexpr std::size_t kPages = 2048;
  Mapping m(kPages, /*filled=*/false);
  src.watch(std::vector<TrackedRange>{m.range()});
  const bool zero = reads_map_the_zero_page();
  std::thread w([&] {
    for (std::size_t i = 0; i < 16; ++i) m.p[i * kPage] = 3;  // born by a write
  });
  std::thread rd([&] {
    for (std::size_t i = 16; i < 32; ++i) EXPECT_EQ(m.p[i * kPage], 0);  // born by a read
  });
  w.join();
  rd.join();
  SourceBudget b = unlimited_time();
  b.max_pages = 0;
  b.cpu_fraction = 0.01;
  b.epoch_ns = 100'000'000;
  Recorded r;
  ASSERT_TRUE(collect_into(src, {m.range()}, r, b).ok()) << src.stats().last_error;
  std::set<std::uintptr_t> born;
  for (std::size_t i = 0; i < 16; ++i) born.insert(m.page(i));
  if (zero) {
    EXPECT_EQ(r.pages, born);
  } else {
    for (std::uintptr_t p : born) EXPECT_TRUE(r.pages.count(p)) << "a page born by a write";
  }
  EXPECT_EQ(r.weight, 16 * r.pages.size());
  // Every page rewritten every epoch: what is reported is what was protected
  // and faulted, never more than the budget's 50 pages.
  std::uint64_t reported = 0;
  for (int e = 0; e < 8; ++e) {
    for (std::size_t i = 0; i < kPages; ++i) m.p[i * kPage + 1] = static_cast<unsigned char>(e);
    Recorded re;
    ASSERT_TRUE(collect_into(src, {m.range()}, re, b).ok()) << src.stats().last_error;
    if (e > 0) {
      EXPECT_LE(re.pages.size(), 50u) << "epoch " << e;
    }
    if (e > 1) reported += re.pages.size();
  }
  EXPECT_GT(reported, 0u) << "no rewrite was ever sampled";
  EXPECT_GT(src.stats().app_ns, 0u);
  EXPECT_GT(src.stats().planned_ns, 0u);
  EXPECT_EQ(src.stats().errors, 0u) << src.stats().last_error;
  for (std::size_t i = 0; i < 16; ++i) EXPECT_EQ(m.p[i * kPage], 3);
  EXPECT_EQ(m.p[100 * kPage + 1], 7);
}

// The engine cuts a region's range where a chunk's unit changed
// (Engine::tracked_ranges): a piece inside a range already watched keeps
// its bits and unit of its own; what no range covers any more is dropped
// before anything new is added, so a source that registers ranges
// (uffd-wp) never unregisters what a new range just registered.
TEST(SyncWatched, PiecesKeepTheirBitsAndWhatIsLeftIsDroppedFirst) {
  constexpr std::uintptr_t b = 0x7f0000000000;
  auto at = [](std::size_t page) { return b + page * kPage; };
  std::vector<source::WatchedRange> watched;
  std::vector<std::string> calls;
  auto sync = [&](std::vector<TrackedRange> ranges) {
    calls.clear();
    source::sync_watched(
        watched, ranges, 2,
        [&](source::WatchedRange& w) {
          calls.push_back(absl::StrCat("add ", (w.begin - b) / kPage, "-", (w.end - b) / kPage));
          return true;
        },
        [&](source::WatchedRange& w) {
          calls.push_back(absl::StrCat("drop ", (w.begin - b) / kPage, "-", (w.end - b) / kPage));
        });
  };
  sync({{at(0), at(200), kPage}});
  EXPECT_THAT(calls, ::testing::ElementsAre("add 0-200"));
  for (std::size_t p : {5, 63, 64, 130, 199}) watched[0].bits[1].put(p, true);
  // Cut in three, the middle piece a 2 MiB unit's worth at another size.
  sync({{at(0), at(64), kPage}, {at(64), at(128), 64 * kPage}, {at(128), at(200), kPage}});
  EXPECT_THAT(calls, ::testing::IsEmpty());
  ASSERT_EQ(watched.size(), 3u);
  EXPECT_EQ(watched[1].unit, 64 * kPage);
  std::vector<std::uintptr_t> set;
  for (const auto& w : watched)
    for (std::uintptr_t a = w.begin; a < w.end; a += kPage)
      if (w.bits[1].test(w.page(a))) set.push_back((a - b) / kPage);
  EXPECT_THAT(set, ::testing::ElementsAre(5, 63, 64, 130, 199));
  EXPECT_EQ(watched[2].bits[0].count(0, 72), 0u);
  // Pieces that stay keep their bits; the rest is dropped, then the new
  // range that spans pieces is added fresh.
  sync({{at(128), at(160), kPage}, {at(0), at(128), kPage}});
  EXPECT_THAT(calls,
              ::testing::ElementsAre("drop 0-64", "drop 64-128", "drop 160-200", "add 0-128"));
  ASSERT_EQ(watched.size(), 2u);
  EXPECT_EQ(watched[0].begin, at(0));
  EXPECT_EQ(watched[0].bits[1].count(0, 128), 0u);
  EXPECT_TRUE(watched[1].bits[1].test(2));
  EXPECT_EQ(watched[1].bits[1].count(0, 32), 1u);
  sync({});
  EXPECT_THAT(calls, ::testing::ElementsAre("drop 0-128", "drop 128-160"));
  EXPECT_TRUE(watched.empty());
  // Ranges that overlap (the engine gives none) are each watched.
  sync({{at(0), at(64), kPage}});
  sync({{at(0), at(64), kPage}, {at(0), at(64), kPage}, {at(8), at(16), kPage}});
  EXPECT_THAT(calls, ::testing::ElementsAre("add 0-64", "add 8-16"));
  ASSERT_EQ(watched.size(), 3u);
  for (const auto& w : watched) EXPECT_EQ(w.bits.size(), 2u);
}

// Random cuts at any page (bit offsets not a multiple of 64): each page's
// bits follow it into the piece that holds it, a range no old one holds is
// added, and exactly the pages no new range covers are dropped, once.
TEST(SyncWatched, RandomCutsKeepEveryPagesBitsAndDropExactlyWhatIsLeft) {
  constexpr std::uintptr_t b = 0x7f0000000000;
  constexpr std::size_t kSpan = 600;  // pages
  std::mt19937 rng(7);
  auto pick = [&](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  };
  // Non-overlapping ranges over [0, kSpan): cut points, each piece kept or not.
  auto random_ranges = [&] {
    std::vector<std::size_t> cuts = {0, kSpan};
    for (std::size_t k = pick(8); k-- > 0;) cuts.push_back(1 + pick(kSpan - 1));
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    std::vector<TrackedRange> out;
    for (std::size_t i = 0; i + 1 < cuts.size(); ++i)
      if (pick(4) != 0) out.push_back({b + cuts[i] * kPage, b + cuts[i + 1] * kPage, kPage});
    std::shuffle(out.begin(), out.end(), rng);
    return out;
  };
  for (int round = 0; round < 300; ++round) {
    std::vector<source::WatchedRange> watched;
    auto no_op_add = [](source::WatchedRange&) { return true; };
    source::sync_watched(watched, random_ranges(), 2, no_op_add, [](source::WatchedRange&) {});
    std::map<std::uintptr_t, std::pair<bool, bool>> bit;  // page -> its two bits
    for (auto& w : watched)
      for (std::uintptr_t a = w.begin; a < w.end; a += kPage) {
        const bool x = pick(2) != 0, y = pick(3) == 0;
        w.bits[0].put(w.page(a), x);
        w.bits[1].put(w.page(a), y);
        bit[a] = {x, y};
      }
    const std::vector<source::WatchedRange> old = watched;
    const std::vector<TrackedRange> now = random_ranges();
    std::set<std::uintptr_t> added, dropped;
    bool dropped_twice = false;
    source::sync_watched(
        watched, now, 2,
        [&](source::WatchedRange& w) {
          for (std::uintptr_t a = w.begin; a < w.end; a += kPage) added.insert(a);
          return true;
        },
        [&](source::WatchedRange& w) {
          for (std::uintptr_t a = w.begin; a < w.end; a += kPage)
            dropped_twice |= !dropped.insert(a).second;
        });
    auto holder = [&](const auto& set, std::uintptr_t a, std::uintptr_t e) {
      for (const auto& w : set)
        if (w.begin <= a && e <= w.end) return true;
      return false;
    };
    ASSERT_EQ(watched.size(), now.size()) << "round " << round;
    for (const auto& w : watched) {
      ASSERT_EQ(w.bits.size(), 2u);
      const bool kept = holder(old, w.begin, w.end);
      for (std::uintptr_t a = w.begin; a < w.end; a += kPage) {
        EXPECT_EQ(added.count(a), kept ? 0u : 1u) << "round " << round;
        const std::pair<bool, bool> want = kept ? bit.at(a) : std::pair<bool, bool>{false, false};
        EXPECT_EQ(w.bits[0].test(w.page(a)), want.first) << "round " << round;
        EXPECT_EQ(w.bits[1].test(w.page(a)), want.second) << "round " << round;
      }
      if (kept) {
        std::uint64_t set = 0;
        for (const auto& [a, x] : bit) set += a >= w.begin && a < w.end && x.first;
        EXPECT_EQ(w.bits[0].count(0, (w.end - w.begin) / kPage), set) << "round " << round;
      }
    }
    // Dropped: the old pages no kept piece covers.
    std::set<std::uintptr_t> want_dropped;
    for (const auto& o : old)
      for (std::uintptr_t a = o.begin; a < o.end; a += kPage) {
        bool covered = false;
        for (const auto& w : watched)
          covered |= w.begin <= a && a < w.end && o.begin <= w.begin && w.end <= o.end;
        if (!covered) want_dropped.insert(a);
      }
    EXPECT_EQ(dropped, want_dropped) << "round " << round;
    EXPECT_FALSE(dropped_twice) << "round " << round;
  }
}

// uffd-wp keeps watching a range the engine cut in pieces: its
// registration and protections stay, so writes after the cut are found.
TEST(UffdWpSource, ARangeCutInPiecesStaysWatched) {
  UffdWpSource src(UffdWpOptions{.weight = 16, .reprotect = 1, .fault_ns = 0});
  if (absl::Status s = src.probe(); !s.ok()) GTEST_SKIP() << "uffd-wp unavailable here: " << s;
  Mapping m(64);
  Recorded r0;
  ASSERT_TRUE(collect_into(src, {m.range()}, r0).ok()) << src.stats().last_error;
  const std::vector<TrackedRange> cut = {{m.page(0), m.page(20), kPage},
                                         {m.page(20), m.page(44), kPage},
                                         {m.page(44), m.page(64), kPage}};
  for (std::size_t i = 0; i < 16; ++i) m.p[i * kPage] = 7;
  Recorded r1;
  ASSERT_TRUE(collect_into(src, cut, r1).ok()) << src.stats().last_error;
  std::set<std::uintptr_t> want;
  for (std::size_t i = 0; i < 16; ++i) want.insert(m.page(i));
  EXPECT_EQ(r1.pages, want);
  m.p[30 * kPage] = 1;
  m.p[50 * kPage] = 1;
  Recorded r2;
  ASSERT_TRUE(collect_into(src, cut, r2).ok()) << src.stats().last_error;
  EXPECT_EQ(r2.pages, (std::set<std::uintptr_t>{m.page(30), m.page(50)}));
  // Whole again: registered afresh, and the next write is found.
  Recorded r3;
  ASSERT_TRUE(collect_into(src, {m.range()}, r3).ok()) << src.stats().last_error;
  m.p[5 * kPage] = 2;
  Recorded r4;
  ASSERT_TRUE(collect_into(src, {m.range()}, r4).ok()) << src.stats().last_error;
  EXPECT_EQ(r4.pages, std::set<std::uintptr_t>{m.page(5)});
  EXPECT_EQ(src.stats().errors, 0u) << src.stats().last_error;
  EXPECT_EQ(m.p[0], 7);
  EXPECT_EQ(m.p[30 * kPage], 1);
}

// births: pages present before watch() are not reported; pages born after
// are, once; pages only read are not (where reads map the zero page); a
// rewrite is not a birth. The data is untouched.
TEST(BirthSource, ReportsPagesBornOnce) {
  BirthSource src;
  ASSERT_TRUE(src.probe().ok()) << src.probe();
  constexpr std::size_t kPages = 64;
  Mapping m(kPages, /*filled=*/false);
  for (std::size_t i = 0; i < 4; ++i) m.p[i * kPage] = 9;  // before: not births
  src.watch(std::vector<TrackedRange>{m.range()});
  const bool zero = reads_map_the_zero_page();
  std::thread w([&] {
    for (std::size_t i = 8; i < 24; ++i) m.p[i * kPage] = static_cast<unsigned char>(i);
  });
  std::thread rd([&] {
    for (std::size_t i = 32; i < 40; ++i) EXPECT_EQ(m.p[i * kPage], 0);
  });
  w.join();
  rd.join();
  Recorded r;
  ASSERT_TRUE(collect_into(src, {m.range()}, r).ok()) << src.stats().last_error;
  std::set<std::uintptr_t> born;
  for (std::size_t i = 8; i < 24; ++i) born.insert(m.page(i));
  if (zero) {
    EXPECT_EQ(r.pages, born);
  } else {
    for (std::uintptr_t p : born) EXPECT_TRUE(r.pages.count(p));
    for (std::size_t i = 0; i < 4; ++i) EXPECT_FALSE(r.pages.count(m.page(i)));
  }
  EXPECT_EQ(r.weight, 16 * r.pages.size());
  for (std::size_t i = 8; i < 24; ++i) m.p[i * kPage] += 1;  // rewrites
  Recorded r2;
  ASSERT_TRUE(collect_into(src, {m.range()}, r2).ok());
  EXPECT_TRUE(r2.pages.empty());
  for (std::size_t i = 8; i < 24; ++i) EXPECT_EQ(m.p[i * kPage], i + 1);
  EXPECT_EQ(src.stats().errors, 0u) << src.stats().last_error;
  EXPECT_GT(src.stats().pages_sampled, 0u);
}

// Runs its parts into one sink and shares the CPU budget: the first part
// gets half, the last what is left.
TEST(CombinedSource, RunsEveryPartAndSharesTheBudget) {
  struct Part final : HotnessSource {
    explicit Part(std::string n, std::uint64_t cost) : n(std::move(n)), cost(cost) {}
    std::string_view name() const override { return n; }
    absl::Status probe() override { return absl::OkStatus(); }
    void watch(absl::Span<const TrackedRange> r) override { watched = r.size(); }
    absl::Status collect(absl::Span<const TrackedRange>, HotnessSink& sink,
                         const SourceBudget& b) override {
      fractions.push_back(b.cpu_fraction);
      sink.record(0x1000 * (1 + n.size()), 1, false);
      st.cpu_ns += cost;
      return n == "bad" ? absl::InternalError("bad part") : absl::OkStatus();
    }
    HotnessSourceStats stats() const override {
      HotnessSourceStats s = st;
      s.name = n;
      return s;
    }
    std::string n;
    std::uint64_t cost;
    std::size_t watched = 0;
    std::vector<double> fractions;
    HotnessSourceStats st;
  };
  auto a = std::make_unique<Part>("a", 400'000), bad = std::make_unique<Part>("bad", 0);
  Part *pa = a.get(), *pb = bad.get();
  std::vector<std::unique_ptr<HotnessSource>> parts;
  parts.push_back(std::move(a));
  parts.push_back(std::move(bad));
  CombinedSource c(std::move(parts));
  EXPECT_EQ(c.name(), "a+bad");
  c.watch(std::vector<TrackedRange>{{0x1000, 0x3000, kPage}});
  EXPECT_EQ(pa->watched, 1u);
  EXPECT_EQ(pb->watched, 1u);
  SourceBudget b;
  b.cpu_fraction = 0.01;
  b.epoch_ns = 100'000'000;  // 1 ms allowance; part a spends 0.4 ms per epoch
  Recorded r;
  absl::Status s = collect_into(c, {}, r, b);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r.pages.size(), 2u);  // both parts ran
  ASSERT_EQ(pa->fractions.size(), 1u);
  EXPECT_DOUBLE_EQ(pa->fractions[0], 0.005);
  EXPECT_DOUBLE_EQ(pb->fractions[0], 0.006);
  EXPECT_EQ(c.stats().cpu_ns, 400'000u);
  EXPECT_THAT(c.stats().name, HasSubstr("+"));
}

TEST(UnavailableSources, SayWhy) {
  PerfMemSource p;
  absl::Status sp = p.probe();
  EXPECT_FALSE(sp.ok());
  EXPECT_THAT(std::string(sp.message()), HasSubstr("perf-mem"));
  Recorded r;
  EXPECT_FALSE(collect_into(p, {}, r).ok());

  auto bad = make_source("bogus");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("known: sampled"));
  EXPECT_EQ(make_source("fault:0").status().code(), absl::StatusCode::kInvalidArgument);
  auto sampled = make_source("sampled");
  ASSERT_TRUE(sampled.ok()) << sampled.status();
  EXPECT_THAT(sampled->explanation, HasSubstr("best available"));
  EXPECT_THAT(sampled->explanation, HasSubstr("perf-mem"));  // why perf was not taken
}

// An engine over a simulated fast node 0 and slow node 1.
absl::StatusOr<std::unique_ptr<Engine>> two_node_engine(SimulatedBackend& backend) {
  EngineConfig cfg;
  cfg.fast_nodes = {0};
  cfg.slow_nodes = {1};
  return Engine::create(cfg, &backend);
}

TEST(EngineHotnessSource, FeedsTheTrackerWithoutRecordAccess) {
  SimulatedBackend backend({{0, 64 << 20}, {1, 1 << 30}});
  auto engine = two_node_engine(backend);
  ASSERT_TRUE(engine.ok()) << engine.status();
  Mapping m(128);
  auto h = (*engine)->register_region(m.p, 128 * kPage, {}, /*initially_fast=*/false);
  ASSERT_TRUE(h.ok()) << h.status();
  auto o = FaultSourceOptions::fixed(128);
  ASSERT_TRUE((*engine)
                  ->add_hotness_source(std::make_unique<FaultSamplingSource>(o), unlimited_time())
                  .ok());
  ASSERT_TRUE((*engine)->step().ok());  // arms
  std::thread t([&] {
    for (std::size_t i = 0; i < 32 * kPage; i += kPage) m.p[i] += 1;
  });
  t.join();
  // Heat the application recorded on a page the source then watches idle
  // is history: the engine's estimator takes it (SourceEstimator::kRate).
  (*engine)->record_access(m.p + 100 * kPage, 1, 50);
  std::vector<std::uint32_t> heat;
  // The next epoch collects (before aging): touched pages have heat.
  ASSERT_TRUE((*engine)->step().ok());
  EngineStats st = (*engine)->stats();
  ASSERT_EQ(st.hotness_sources.size(), 1u);
  EXPECT_EQ(st.hotness_sources[0].name, "fault");
  EXPECT_EQ(st.hotness_sources[0].pages_found, 32u);
  EXPECT_GT(st.tracking_cpu_ns, 0u);
  EXPECT_THAT(st.to_table(), HasSubstr("source fault"));
  EXPECT_THAT(st.hotness_sources_json(), HasSubstr("\"pages_found\":32"));
  for (std::size_t i = 0; i < 128; ++i) {
    auto* w = (*engine)->tracker().word(m.page(i));
    ASSERT_NE(w, nullptr);
    if (i < 32)
      EXPECT_GT(PageWord::heat(w->load()), 0u) << i;
    else
      EXPECT_EQ(PageWord::heat(w->load()), 0u) << i;
  }
  h->reset();
  engine->reset();  // disarms the source before the mapping goes
}

// A source added before the regions exist is told of each as it is
// registered (HotnessSource::watch), so a write-protect source sees the
// pages born before the first epoch ends.
TEST(EngineHotnessSource, WatchSeesRegionsRegisteredAfterTheSource) {
  struct Watcher final : HotnessSource {
    std::string_view name() const override { return "watcher"; }
    absl::Status probe() override { return absl::OkStatus(); }
    void watch(absl::Span<const TrackedRange> r) override {
      calls.push_back(std::vector<TrackedRange>(r.begin(), r.end()));
    }
    absl::Status collect(absl::Span<const TrackedRange>, HotnessSink&,
                         const SourceBudget&) override {
      return absl::OkStatus();
    }
    HotnessSourceStats stats() const override { return {}; }
    std::vector<std::vector<TrackedRange>> calls;
  };
  SimulatedBackend backend({{0, 64 << 20}, {1, 1 << 30}});
  auto engine = two_node_engine(backend);
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto owned = std::make_unique<Watcher>();
  Watcher* w = owned.get();
  ASSERT_TRUE((*engine)->add_hotness_source(std::move(owned)).ok());
  ASSERT_EQ(w->calls.size(), 1u);  // on add: no ranges yet
  EXPECT_TRUE(w->calls[0].empty());
  Mapping m(16);
  auto h = (*engine)->register_region(m.p, 16 * kPage, RegionOptions().with_base_pages());
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_EQ(w->calls.size(), 2u);
  ASSERT_EQ(w->calls[1].size(), 1u);
  EXPECT_EQ(w->calls[1][0].begin, m.page(0));
  EXPECT_EQ(w->calls[1][0].end, m.page(16));
  h->reset();

  // The real uffd source: pages born before the first epoch get heat.
  UffdWpSource probe;
  if (!probe.probe().ok()) GTEST_SKIP() << "uffd-wp unavailable here";
  auto engine2 = two_node_engine(backend);
  ASSERT_TRUE(engine2.ok());
  ASSERT_TRUE((*engine2)->add_hotness_source(std::make_unique<UffdWpSource>()).ok());
  auto* fresh = static_cast<unsigned char*>(
      mmap(nullptr, 64 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(fresh, MAP_FAILED);
  madvise(fresh, 64 * kPage, MADV_NOHUGEPAGE);
  auto h2 = (*engine2)->register_region(fresh, 64 * kPage, RegionOptions().with_base_pages());
  ASSERT_TRUE(h2.ok()) << h2.status();
  for (std::size_t i = 0; i < 8; ++i) fresh[i * kPage] = 1;
  ASSERT_TRUE((*engine2)->step().ok());
  for (std::size_t i = 0; i < 16; ++i) {
    auto* word = (*engine2)->tracker().word(reinterpret_cast<std::uintptr_t>(fresh + i * kPage));
    ASSERT_NE(word, nullptr);
    if (i < 8) {
      EXPECT_GT(PageWord::heat(word->load()), 0u) << i;
    }
  }
  EXPECT_EQ((*engine2)->stats().hotness_sources.at(0).pages_found, 8u);
  h2->reset();
  engine2->reset();
  munmap(fresh, 64 * kPage);
}

TEST(EngineHotnessSource, RejectsANullSourceAndABudgetOutOfRange) {
  SimulatedBackend backend({{0, 64 << 20}, {1, 1 << 30}});
  auto engine = two_node_engine(backend);
  ASSERT_TRUE(engine.ok()) << engine.status();
  absl::Status s = (*engine)->add_hotness_source(nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("null source"));
  SourceBudget b;
  b.cpu_fraction = 1.5;
  s = (*engine)->add_hotness_source(std::make_unique<PerfMemSource>(), b);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("cpu_fraction"));
  b = SourceBudget{};
  b.max_ns = -1;
  EXPECT_FALSE((*engine)->add_hotness_source(std::make_unique<PerfMemSource>(), b).ok());
  EXPECT_TRUE((*engine)->stats().hotness_sources.empty());
}

// The budgeted fault source (the default: FaultSourceOptions{}) arms groups
// of pages within its CPU budget, and reports every page of each: the
// page whose access fired the group with the time to the fault, the others
// as watched until then; the stats say what it allowed itself.
TEST(FaultSource, BudgetedGroupsReportTheFirstAccessedPageAndTheirLatency) {
  Mapping m(1024);
  FaultSamplingSource src;  // budgeted, groups
  const std::size_t k = fault_group_pages(FaultSourceOptions{}.group_pages);
  ASSERT_GT(k, 1u);
  // Whole groups only (a group the range holds in part is armed as a page).
  const std::uintptr_t gb = k * kPage;
  const TrackedRange range{(m.page(0) + gb - 1) & ~(gb - 1), m.page(1024) & ~(gb - 1), kPage};
  const double units = static_cast<double>((range.end - range.begin) / kPage);
  SourceBudget b = unlimited_time();
  b.epoch_ns = 100'000'000;  // as the engine sets it
  // Half the epoch, not the default 1%: under a sanitizer or on a loaded
  // machine one measured sample can cost more than 1 ms, and the budget
  // then (rightly) arms nothing this epoch.
  b.cpu_fraction = 0.5;
  struct Obs final : HotnessSink {
    std::vector<SourceObservation> all;
    void record(std::uintptr_t, std::uint32_t, bool) override {}
    void observe(const SourceObservation& o) override { all.push_back(o); }
  } obs;
  ASSERT_TRUE(src.collect({range}, obs, b).ok());
  EXPECT_TRUE(obs.all.empty());
  const std::vector<std::uintptr_t> groups = src.armed_pages();
  ASSERT_GE(groups.size(), 1u);
  for (std::uintptr_t g : groups) EXPECT_EQ(g % (k * kPage), 0u) << "groups are aligned";
  HotnessSourceStats st = src.stats();
  EXPECT_EQ(st.budget_ns, 50'000'000u);  // half of 100 ms
  EXPECT_GT(st.ns_per_sample, 0u);
  EXPECT_EQ(st.last_sampled, groups.size());
  EXPECT_GT(src.costs().fire_ns, 0);  // calibrated at install
  // Touch the last page of every group (and nothing else).
  for (std::uintptr_t g : groups) {
    auto* c = reinterpret_cast<volatile unsigned char*>(g + (k - 1) * kPage);
    *c = static_cast<unsigned char>(*c + 1);
  }
  ASSERT_TRUE(src.collect({range}, obs, b).ok());
  ASSERT_EQ(obs.all.size(), k * groups.size());
  std::size_t accessed = 0;
  for (const SourceObservation& o : obs.all) {
    const std::uintptr_t g = o.page & ~std::uintptr_t{k * kPage - 1};
    ASSERT_NE(std::find(groups.begin(), groups.end(), g), groups.end());
    EXPECT_DOUBLE_EQ(o.inclusion, std::min(1.0, static_cast<double>(k * groups.size()) / units));
    if (o.accessed) {
      ++accessed;
      EXPECT_EQ(o.page, g + (k - 1) * kPage);
      EXPECT_GE(o.latency_ns, 0);
      EXPECT_LE(o.latency_ns, o.watched_ns);
    } else {
      EXPECT_TRUE(o.watch_cut);
    }
  }
  EXPECT_EQ(accessed, groups.size());
  src.disarm();
  for (std::size_t i = 0; i < 1024 * kPage; ++i) {
    unsigned char want = Mapping::pattern(i);
    if (i % (k * kPage) == (k - 1) * kPage &&
        std::find(groups.begin(), groups.end(), m.page(0) + i - (k - 1) * kPage) != groups.end())
      want = static_cast<unsigned char>(want + 1);
    ASSERT_EQ(m.p[i], want) << "byte " << i;
  }
}

// A source reporting scripted observations, for the engine's estimator.
class ScriptedSource final : public HotnessSource {
 public:
  std::vector<SourceObservation> next;
  std::string_view name() const override { return "scripted"; }
  absl::Status probe() override { return absl::OkStatus(); }
  absl::Status collect(absl::Span<const TrackedRange>, HotnessSink& sink,
                       const SourceBudget&) override {
    for (const auto& o : next) sink.observe(o);
    next.clear();
    return absl::OkStatus();
  }
  HotnessSourceStats stats() const override { return {}; }
};

// 16 pages, 0-3 on the fast node (the budget: 4 pages), 4-15 slow, under
// automatic, fed only by a ScriptedSource: each step() reports `script`.
struct ScriptedEngine {
  static constexpr std::uintptr_t kAt = 0x200000000000;
  static constexpr std::int64_t kWatch = 100'000'000;
  static std::uintptr_t page(int i) { return kAt + static_cast<std::uintptr_t>(i) * kPage; }
  // Page i watched for an epoch, first accessed `latency` ns in (its rate:
  // kWatch / latency accesses per watch).
  static SourceObservation fired(int i, std::int64_t latency) {
    SourceObservation o = idle(i);
    o.accessed = true;
    o.latency_ns = latency;
    return o;
  }
  // Page i watched for an epoch and not accessed.
  static SourceObservation idle(int i) {
    SourceObservation o;
    o.page = page(i);
    o.watched_ns = kWatch;
    return o;
  }
  // Page i born since the source's last look (source/births.hpp).
  static SourceObservation born(int i) {
    SourceObservation o;
    o.page = page(i);
    o.accessed = o.written = o.birth = true;
    o.weight = BirthSourceOptions{}.weight;
    return o;
  }

  ScriptedEngine() : backend({{0, 64 * kPage}, {1, 1 << 30}}) {
    for (int i = 0; i < 16; ++i) backend.touch(page(i), i < 4 ? 0 : 1);
    EngineConfig cfg;
    cfg.fast_nodes = {0};
    cfg.slow_nodes = {1};
    cfg.fast_budget_bytes = 4 * kPage;
    cfg.policy = "automatic";
    auto e = Engine::create(cfg, &backend);
    EXPECT_TRUE(e.ok()) << e.status();
    engine = *std::move(e);
    auto h = engine->register_region(reinterpret_cast<void*>(kAt), 16 * kPage,
                                     RegionOptions().with_base_pages(), false);
    EXPECT_TRUE(h.ok()) << h.status();
    region = *std::move(h);
    auto src = std::make_unique<ScriptedSource>();
    source = src.get();
    EXPECT_TRUE(engine->add_hotness_source(std::move(src)).ok());
    EXPECT_TRUE(engine->step().ok());
  }
  // One epoch in which the source reports `script`.
  void step(std::vector<SourceObservation> script) {
    source->next = std::move(script);
    ASSERT_TRUE(engine->step().ok());
  }
  bool fast(int i) { return backend.node_of(page(i)) == 0; }

  SimulatedBackend backend;
  std::unique_ptr<Engine> engine;
  std::optional<RegionHandle> region;  // released before the engine
  ScriptedSource* source = nullptr;
};

// A chunk the engine made one 2 MiB unit after a 4 KiB move carried its
// huge page (Engine::merge_carried), while a source watches its region in
// 4 KiB pages: a page of it seen idle stands for the unit, and says little
// of the other 511. It clears none of the unit's heat and makes no demotion
// candidate of a page inside the unit.
TEST(EngineHotnessSource, AnIdlePageOfAMergedChunkLeavesItsUnitAlone) {
  constexpr std::uintptr_t kAt = 0x300000000000;  // 2 MiB aligned
  constexpr std::size_t kChunkPages = kHugePageSize / kPage;
  SimulatedBackend backend({{0, 4 * kHugePageSize}, {1, 1ull << 30}});
  backend.set_thp_mode(ThpMode::kAlways);
  for (std::size_t i = 0; i < 2 * kChunkPages; ++i) backend.touch(kAt + i * kPage, 1);
  EngineConfig cfg;
  cfg.fast_nodes = {0};
  cfg.slow_nodes = {1};
  cfg.policy = "threshold:2";
  cfg.environment = EngineConfig::Environment::kIgnore;
  auto e = Engine::create(cfg, &backend);
  ASSERT_TRUE(e.ok()) << e.status();
  std::unique_ptr<Engine> engine = *std::move(e);
  {
    auto h = engine->register_region(reinterpret_cast<void*>(kAt), 2 * kHugePageSize, {}, false);
    ASSERT_TRUE(h.ok()) << h.status();
    ASSERT_EQ(engine->tracker().unit_bytes(kAt), kPage);  // an 8 MiB budget: 4 KiB units
    ASSERT_TRUE(backend.advise_huge(reinterpret_cast<void*>(kAt), kHugePageSize).ok());
    auto src = std::make_unique<ScriptedSource>();
    ScriptedSource* source = src.get();
    ASSERT_TRUE(engine->add_hotness_source(std::move(src)).ok());
    auto hot = [&] {
      for (std::size_t i = 0; i < 4; ++i)
        for (int t = 0; t < 8; ++t) engine->record_access(reinterpret_cast<void*>(kAt + i * kPage));
    };
    for (int epoch = 0; epoch < 3; ++epoch) {
      hot();
      ASSERT_TRUE(engine->step().ok());
    }
    ASSERT_EQ(engine->stats().huge_units_merged, 1u);
    ASSERT_EQ(engine->tracker().unit_bytes(kAt), kHugePageSize);
    for (int epoch = 0; epoch < 3; ++epoch) {
      SourceObservation idle;
      idle.page = kAt + 7 * kPage;
      idle.watched_ns = 100'000'000;
      source->next = {idle};
      hot();
      ASSERT_TRUE(engine->step().ok());
      EXPECT_GT(PageWord::heat(engine->tracker().word(kAt)->load()), 0u) << "epoch " << epoch;
    }
    const EngineStats s = engine->stats();
    EXPECT_EQ(s.demoted_pages, 0u) << s.to_table();
    EXPECT_EQ(backend.node_of(kAt + 100 * kPage), 0);
    EXPECT_EQ(engine->tracker().fast_pages(), kChunkPages);
  }
}

// Sampled evidence in the engine (SourceEstimator::kRate): a slow page that
// faulted early in its watch is promoted in place of a fast page the source
// saw idle; against residents nobody watched, valued at the fast tier's
// mean sampled rate, the same newcomer needs 16 times that mean.
TEST(EngineHotnessSource, SampledEvidencePromotesAgainstSeenColdNotAgainstTheMean) {
  using E = ScriptedEngine;
  {
    // Page 8 faulted 1% into its watch (rate 100, capped at 64); fast pages
    // 0 and 1 were watched idle, page 2 faulted half way (rate 2, counted as
    // the fixed weight 4: a found page never counts less).
    E e;
    e.step({E::fired(8, E::kWatch / 100), E::idle(0), E::idle(1), E::fired(2, E::kWatch / 2)});
    e.step({});  // decides: no slow heat was known the epoch before
    EXPECT_TRUE(e.fast(8)) << "the sampled hot page was not promoted";
    EXPECT_FALSE(e.fast(0)) << "the page seen idle did not give way";
    EXPECT_NEAR(e.engine->stats().sampled_fast_rate, 4.0 / 3, 1e-9);
  }
  {
    // Fast pages 0 and 1 faulted at rate 16, 2 and 3 unwatched (valued at
    // the mean, 16): 64 < 16 x 16, so page 8 stays where it is.
    E e;
    e.step(
        {E::fired(8, E::kWatch / 100), E::fired(0, E::kWatch / 16), E::fired(1, E::kWatch / 16)});
    e.step({});
    EXPECT_FALSE(e.fast(8)) << "one observation beat a resident valued at the fast tier's mean";
    EXPECT_TRUE(e.fast(0));
    EXPECT_NEAR(e.engine->stats().sampled_fast_rate, 16, 1e-9);
  }
}

// With sampled evidence, the evidence rule alone judges a swap: a newcomer
// found at rate 8 takes the place of a resident seen idle, although the
// policy's count-based margin (8 against 0 is under 3 sigma) would refuse
// it.
TEST(EngineHotnessSource, SampledSwapIsJudgedByTheEvidenceRuleAlone) {
  using E = ScriptedEngine;
  E e;
  e.step({E::fired(8, E::kWatch / 8), E::idle(0), E::fired(1, E::kWatch / 64),
          E::fired(2, E::kWatch / 64), E::fired(3, E::kWatch / 64)});
  e.step({});
  EXPECT_TRUE(e.fast(8));
  EXPECT_FALSE(e.fast(0));
}

// A page promoted on its birth alone is not held by residency: seen idle
// the next epoch, it gives way to a page found hot. Promoted on a fault
// (evidence of use), the same page stays for min_residency_epochs.
TEST(EngineHotnessSource, PagePromotedOnItsBirthAloneIsNotHeldByResidency) {
  using E = ScriptedEngine;
  for (bool birth : {true, false}) {
    SCOPED_TRACE(birth ? "promoted on a birth" : "promoted on a fault");
    E e;
    // Residents 1-3 in use, 0 idle: page 8 takes page 0's place.
    e.step({birth ? E::born(8) : E::fired(8, E::kWatch / 64), E::idle(0),
            E::fired(1, E::kWatch / 64), E::fired(2, E::kWatch / 64), E::fired(3, E::kWatch / 64)});
    e.step({});
    ASSERT_TRUE(e.fast(8));
    // Page 8 idle now, page 9 hot.
    e.step({E::idle(8), E::fired(9, E::kWatch / 64), E::fired(1, E::kWatch / 64),
            E::fired(2, E::kWatch / 64), E::fired(3, E::kWatch / 64)});
    e.step({});
    EXPECT_EQ(e.fast(9), birth);
    EXPECT_EQ(e.fast(8), !birth);
  }
}

}  // namespace
}  // namespace tierkit::source
