// The cost of the sampled hotness sources (source/*.hpp), measured:
//  - BM_FaultArm: collect() arming `k` pages of a 1 GiB populated region
//    (disarming the previous k first): CPU per armed page on the engine's
//    thread, and BM_FaultArmAndTouch: the same plus the application touching
//    every armed page (fault + handler + mprotect back), per page.
//  - BM_PagemapRead: reading /proc/self/pagemap for 1 GiB (what soft-dirty
//    reads per pass), in 32 KiB preads.
//  - BM_UffdScan: uffd-wp collect() over 1 GiB with k pages written per
//    epoch (PAGEMAP_SCAN + re-protect), and the writer's cost per page.
//  - BM_UffdWriteProtect: one UFFDIO_WRITEPROTECT of a run of k written
//    pages (what the budgeted uffd source pays per re-protected run).
//  - BM_ClearRefs: writing 4 to /proc/self/clear_refs with 1 GiB populated
//    (a no-op walk on kernels without soft-dirty).
//  - BM_RawMprotectPair: the bare mprotect(PROT_NONE) + mprotect back per
//    page, the floor under BM_FaultArm; BM_RawFaultTouch: a bare handler's
//    fault + mprotect back per page, the floor under touch_us_per_page.
//  - BM_ProcMapsRead: one /proc/self/maps snapshot (done once per epoch by
//    the fault source).
//  - BM_AccessedBitsSmaps: the one unprivileged read signal without a fault
//    per page, measured and not built as a source: clear the accessed bits
//    (clear_refs = 1), touch every 64th page of 1 GiB split into k mappings,
//    read /proc/self/smaps back ("Referenced:" per mapping). The per-page
//    resolution it gives is one mapping per page, so its cost per mapping
//    is the price of watching one page for one interval.
//
//   tierkit-bench --benchmark_filter='Fault|Mprotect|Uffd|Pagemap|ClearRefs|ProcMaps|Smaps'
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "tierkit/source/fault.hpp"
#include "tierkit/source/proc_maps.hpp"
#include "tierkit/source/uffd.hpp"

namespace {

using tierkit::kPageSize;
constexpr std::size_t kGiB = std::size_t{1} << 30;

// 1 GiB, populated.
struct Region {
  Region() {
    p = static_cast<char*>(
        mmap(nullptr, kGiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) {
      p = nullptr;
      return;
    }
    madvise(p, kGiB, MADV_NOHUGEPAGE);
    for (std::size_t i = 0; i < kGiB; i += kPageSize) p[i] = 1;
  }
  ~Region() {
    if (p) munmap(p, kGiB);
  }
  tierkit::TrackedRange range() const {
    auto b = reinterpret_cast<std::uintptr_t>(p);
    return {b, b + kGiB, kPageSize};
  }
  char* p = nullptr;
};

void fault_bench(benchmark::State& state, bool touch, std::uint32_t group_pages = 1) {
  Region r;
  if (!r.p) {
    state.SkipWithError("mmap 1 GiB failed");
    return;
  }
  tierkit::source::FaultSourceOptions o;
  o.pages_per_epoch = static_cast<std::uint32_t>(state.range(0));
  o.group_pages = group_pages;
  o.max_armed = 4096;
  tierkit::source::FaultSamplingSource src(o);
  auto sink = tierkit::make_sink([](std::uintptr_t, std::uint32_t, bool) {});
  tierkit::SourceBudget b;
  b.max_pages = 0;
  b.max_ns = 0;
  std::vector<tierkit::TrackedRange> ranges{r.range()};
  std::uint64_t armed = 0, touched = 0;
  std::int64_t touch_ns = 0;
  for (auto _ : state) {
    if (!src.collect(ranges, sink, b).ok()) {
      state.SkipWithError("collect failed");
      break;
    }
    armed += src.armed();
    if (touch) {
      auto t0 = std::chrono::steady_clock::now();
      for (std::uintptr_t p : src.armed_pages()) {
        auto* c = reinterpret_cast<volatile char*>(p);
        *c = static_cast<char>(*c + 1);
      }
      touch_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
      touched += src.armed();
    }
  }
  src.disarm();
  auto st = src.stats();
  // collect(): CPU of the engine's thread per armed page (includes
  // disarming the previous epoch's unfired pages and one maps read).
  state.counters["collect_cpu_us_per_page"] =
      armed ? static_cast<double>(st.cpu_ns - st.handler_ns) / 1e3 / static_cast<double>(armed) : 0;
  // The application's side: wall time per touched armed page (fault,
  // handler, mprotect back, retry), and the handler's share.
  state.counters["touch_us_per_page"] =
      touched ? static_cast<double>(touch_ns) / 1e3 / static_cast<double>(touched) : 0;
  state.counters["handler_us_per_fault"] =
      st.pages_found
          ? static_cast<double>(st.handler_ns) / 1e3 / static_cast<double>(st.pages_found)
          : 0;
}

void BM_FaultArm(benchmark::State& state) { fault_bench(state, false); }
void BM_FaultArmAndTouch(benchmark::State& state) { fault_bench(state, true); }
BENCHMARK(BM_FaultArm)->Arg(64)->Arg(512)->Arg(4096)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_FaultArmAndTouch)
    ->Arg(64)
    ->Arg(512)
    ->Arg(4096)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
// The same with each sample a group of 16 pages armed as one (the source's
// default): what one sample costs when it covers 16 pages (per page here
// means per sample; touching writes the group's first page).
void BM_FaultArmGroup16(benchmark::State& state) { fault_bench(state, false, 16); }
void BM_FaultArmAndTouchGroup16(benchmark::State& state) { fault_bench(state, true, 16); }
BENCHMARK(BM_FaultArmGroup16)->Arg(64)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_FaultArmAndTouchGroup16)->Arg(64)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Baseline for the two above: bare mprotect(PROT_NONE) then back, of one
// page in `k` spread over the same 1 GiB region, per page.
void BM_RawMprotectPair(benchmark::State& state) {
  Region r;
  if (!r.p) {
    state.SkipWithError("mmap 1 GiB failed");
    return;
  }
  const std::size_t stride = kGiB / static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    for (std::size_t off = 0; off < kGiB; off += stride) mprotect(r.p + off, kPageSize, PROT_NONE);
    for (std::size_t off = 0; off < kGiB; off += stride)
      mprotect(r.p + off, kPageSize, PROT_READ | PROT_WRITE);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_RawMprotectPair)->Arg(64)->Arg(512)->Unit(benchmark::kMicrosecond);

// The floor under BM_FaultArmAndTouch's touch_us_per_page: a bare SIGSEGV
// handler that only mprotects the faulting page back (no table, no
// accounting, no chaining). What any fault-paid read observation costs on
// this machine, whoever implements it (docs/performance.md, "Session 11").
void raw_fault_handler(int, siginfo_t* si, void*) {
  auto page = reinterpret_cast<std::uintptr_t>(si->si_addr) & ~(std::uintptr_t{kPageSize} - 1);
  mprotect(reinterpret_cast<void*>(page), kPageSize, PROT_READ | PROT_WRITE);
}
void BM_RawFaultTouch(benchmark::State& state) {
  Region r;
  if (!r.p) {
    state.SkipWithError("mmap 1 GiB failed");
    return;
  }
  struct sigaction sa = {}, old = {};
  sa.sa_sigaction = raw_fault_handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &old);
  const std::size_t stride = kGiB / static_cast<std::size_t>(state.range(0));
  std::int64_t touch_ns = 0;
  for (auto _ : state) {
    for (std::size_t off = 0; off < kGiB; off += stride) mprotect(r.p + off, kPageSize, PROT_NONE);
    auto t0 = std::chrono::steady_clock::now();
    for (std::size_t off = 0; off < kGiB; off += stride) {
      auto* c = reinterpret_cast<volatile char*>(r.p + off);
      *c = static_cast<char>(*c + 1);
    }
    touch_ns +=
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
            .count();
  }
  sigaction(SIGSEGV, &old, nullptr);
  const double touched =
      static_cast<double>(state.iterations()) * static_cast<double>(state.range(0));
  state.counters["touch_us_per_page"] = touched ? static_cast<double>(touch_ns) / 1e3 / touched : 0;
}
BENCHMARK(BM_RawFaultTouch)->Arg(64)->Arg(512)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_PagemapRead(benchmark::State& state) {
  Region r;
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (!r.p || fd < 0) {
    state.SkipWithError("no region or no /proc/self/pagemap");
    return;
  }
  std::vector<std::uint64_t> buf(4096);
  std::uint64_t dirty = 0;
  for (auto _ : state) {
    for (std::size_t off = 0; off < kGiB; off += buf.size() * kPageSize) {
      auto pos = static_cast<off_t>((reinterpret_cast<std::uintptr_t>(r.p) + off) / kPageSize * 8);
      if (pread(fd, buf.data(), buf.size() * 8, pos) < 0) state.SkipWithError("pread failed");
      for (std::uint64_t e : buf) dirty += (e >> 55) & 1;
    }
  }
  benchmark::DoNotOptimize(dirty);
  close(fd);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(kGiB));
}
BENCHMARK(BM_PagemapRead)->Unit(benchmark::kMillisecond)->UseRealTime();

// uffd-wp: collect() over 1 GiB registered write-protected, with `k` pages
// written per epoch (one byte each, by this thread: each write is one minor
// fault resolved by the kernel). Reports the collect CPU per epoch (one
// PAGEMAP_SCAN of 1 GiB that re-protects the written pages) and the
// application's time per written page.
void BM_UffdScan(benchmark::State& state) {
  Region r;
  // Every written page protected again at each scan (not the budgeted
  // default): the cost of watching every write.
  tierkit::source::UffdWpSource src({.weight = 16, .reprotect = 1, .fault_ns = 0});
  if (absl::Status s = src.probe(); !r.p || !s.ok()) {
    state.SkipWithError(r.p ? std::string(s.message()).c_str() : "mmap 1 GiB failed");
    return;
  }
  auto sink = tierkit::make_sink([](std::uintptr_t, std::uint32_t, bool) {});
  tierkit::SourceBudget b;
  b.max_pages = 0;
  b.max_ns = 0;
  std::vector<tierkit::TrackedRange> ranges{r.range()};
  (void)src.collect(ranges, sink, b);  // registers, write-protects
  const std::size_t stride = kGiB / static_cast<std::size_t>(state.range(0));
  std::int64_t write_ns = 0;
  std::uint64_t writes = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    for (std::size_t off = 0; off < kGiB; off += stride) r.p[off] = static_cast<char>(off);
    write_ns +=
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    writes += static_cast<std::uint64_t>(state.range(0));
    (void)src.collect(ranges, sink, b);
  }
  auto st = src.stats();
  state.counters["collect_cpu_us_per_epoch"] =
      static_cast<double>(st.cpu_ns) / 1e3 / static_cast<double>(st.collects);
  state.counters["write_us_per_page"] =
      writes ? static_cast<double>(write_ns) / 1e3 / static_cast<double>(writes) : 0;
  state.counters["found_per_epoch"] =
      static_cast<double>(st.pages_found) / static_cast<double>(st.collects - 1);
  src.disarm();
}
BENCHMARK(BM_UffdScan)->Arg(64)->Arg(4096)->Unit(benchmark::kMicrosecond)->UseRealTime();

// One UFFDIO_WRITEPROTECT of `k` consecutive written pages of a 1 GiB region
// registered for async write-protect, at a stride (the pages are written
// again after each round, so every ioctl protects k writable pages).
// Reports the CPU per ioctl.
void BM_UffdWriteProtect(benchmark::State& state) {
  Region r;
  tierkit::source::UffdWpSource probe;
  if (absl::Status s = probe.probe(); !r.p || !s.ok()) {
    state.SkipWithError(r.p ? std::string(s.message()).c_str() : "mmap 1 GiB failed");
    return;
  }
  long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /*USER_MODE_ONLY*/);
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = tierkit::source::uffd_detail::kFeatureWpAsync;
  uffdio_register reg{};
  reg.range = {reinterpret_cast<std::uintptr_t>(r.p), kGiB};
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (fd < 0 || ioctl(static_cast<int>(fd), UFFDIO_API, &api) != 0 ||
      ioctl(static_cast<int>(fd), UFFDIO_REGISTER, &reg) != 0) {
    state.SkipWithError("userfaultfd registration failed");
    if (fd >= 0) close(static_cast<int>(fd));
    return;
  }
  const std::size_t k = static_cast<std::size_t>(state.range(0)), stride = 64 * kPageSize;
  std::int64_t cpu = 0;
  std::uint64_t calls = 0;
  std::size_t off = 0;
  for (auto _ : state) {
    for (std::size_t i = 0; i < k; ++i) r.p[off + i * kPageSize] = 2;  // writable again
    const std::int64_t t0 = tierkit::detail::thread_cpu_ns();
    uffdio_writeprotect wp{};
    wp.range = {reinterpret_cast<std::uintptr_t>(r.p + off), k * kPageSize};
    wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    if (ioctl(static_cast<int>(fd), UFFDIO_WRITEPROTECT, &wp) != 0) {
      state.SkipWithError("UFFDIO_WRITEPROTECT failed");
      break;
    }
    cpu += tierkit::detail::thread_cpu_ns() - t0;
    ++calls;
    off = (off + stride) % (kGiB - k * kPageSize);
  }
  state.counters["cpu_us_per_ioctl"] =
      calls ? static_cast<double>(cpu) / 1e3 / static_cast<double>(calls) : 0;
  close(static_cast<int>(fd));
}
BENCHMARK(BM_UffdWriteProtect)->Arg(1)->Arg(4)->Arg(16)->Unit(benchmark::kMicrosecond);

void BM_ClearRefs(benchmark::State& state) {
  Region r;
  for (auto _ : state) {
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "4", 1) != 1) state.SkipWithError("clear_refs write failed");
    if (fd >= 0) close(fd);
  }
}
BENCHMARK(BM_ClearRefs)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ProcMapsRead(benchmark::State& state) {
  tierkit::source::ProcMaps maps;
  for (auto _ : state)
    if (!maps.read().ok()) state.SkipWithError("read /proc/self/maps failed");
  state.counters["mappings"] = static_cast<double>(maps.size());
}
BENCHMARK(BM_ProcMapsRead)->Unit(benchmark::kMicrosecond);

// Accessed bits read back through /proc/self/smaps, one cycle per
// iteration: clear_refs = 1 (every accessed bit of the process cleared), a
// touch of every 64th page (the same pages each cycle, or with fresh = 1
// the next ones, whose translations are not cached), one full read of
// smaps. The region is split into k mappings by MADV_DONTDUMP on every
// other chunk (anonymous VMAs with different flags never merge), so
// "Referenced:" comes per chunk.
// Counters: the cycle's two parts in us, and referenced_share, the share of
// the touched pages that smaps reports referenced. Two things keep it
// below 1:
//  - By design: clear_refs = 1 clears the accessed bits without flushing
//    the TLB (Debian's 6.1 fs/proc/task_mmu.c, clear_refs_write flushes only
//    for CLEAR_REFS_SOFT_DIRTY; x86's ptep_test_and_clear_young never does),
//    so a page whose translation stays cached is not marked again until its
//    TLB entry is evicted: the hottest pages are the likeliest to be missed.
//    fresh = 1 touches pages whose translations are not cached.
//  - NOTE: on the development host (nested virtualisation) it is 0 even with
//    fresh = 1: plain accesses set no accessed bit that smaps sees; only the
//    kernel's fault paths do (a copy-on-write fault after a fork marks the
//    page young). Where the CPU sets accessed bits on a page walk, as on
//    bare metal, fresh = 1 should read 1: not measured here.
void BM_AccessedBitsSmaps(benchmark::State& state) {
  Region r;
  const auto chunks = static_cast<std::size_t>(state.range(0));
  const std::size_t chunk = kGiB / chunks;
  if (!r.p) {
    state.SkipWithError("mmap 1 GiB failed");
    return;
  }
  for (std::size_t c = 1; c < chunks; c += 2) madvise(r.p + c * chunk, chunk, MADV_DONTDUMP);
  const auto lo = reinterpret_cast<std::uintptr_t>(r.p), hi = lo + kGiB;
  std::string text(std::size_t{64} << 20, '\0');
  double clear_us = 0, smaps_us = 0, referenced_kb = 0, touched = 0;
  std::size_t cycle = 1;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "1", 1) != 1) state.SkipWithError("clear_refs write failed");
    if (fd >= 0) close(fd);
    auto t1 = std::chrono::steady_clock::now();
    const std::size_t first = state.range(1) != 0 ? (cycle++ % 64) * kPageSize : 0;
    for (std::size_t off = first; off < kGiB; off += 64 * kPageSize) r.p[off] = 2;
    touched += static_cast<double>(kGiB / (64 * kPageSize));
    auto t2 = std::chrono::steady_clock::now();
    std::size_t n = 0;
    fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
    for (ssize_t k = 1; fd >= 0 && k > 0 && n < text.size(); n += static_cast<std::size_t>(k))
      k = read(fd, text.data() + n, text.size() - n);
    if (fd >= 0) close(fd);
    auto t3 = std::chrono::steady_clock::now();
    bool ours = false;
    for (std::size_t at = 0; at < n;) {
      std::size_t eol = text.find('\n', at);
      if (eol == std::string::npos || eol > n) eol = n;
      const char* line = text.data() + at;
      if (std::isxdigit(static_cast<unsigned char>(line[0])) && text.find('-', at) < eol) {
        std::uintptr_t start = std::strtoull(line, nullptr, 16);
        ours = start >= lo && start < hi;
      } else if (ours && text.compare(at, 11, "Referenced:") == 0) {
        referenced_kb += std::strtod(line + 11, nullptr);
      }
      at = eol + 1;
    }
    clear_us += std::chrono::duration<double, std::micro>(t1 - t0).count();
    smaps_us += std::chrono::duration<double, std::micro>(t3 - t2).count();
  }
  const auto it = static_cast<double>(state.iterations());
  state.counters["clear_us"] = clear_us / it;
  state.counters["smaps_us"] = smaps_us / it;
  state.counters["referenced_share"] = touched > 0 ? referenced_kb / 4 / touched : 0;
}
BENCHMARK(BM_AccessedBitsSmaps)
    ->ArgNames({"mappings", "fresh"})
    ->Args({1, 0})
    ->Args({1, 1})
    ->Args({1024, 0})
    ->Args({16384, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
