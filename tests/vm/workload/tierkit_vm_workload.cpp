// tierkit-vm-workload: the kernel-baseline workload (tests/vm/run
// kernel-baseline). One program for every configuration, so the kernel's
// tiering and tierkit's policies see exactly the same access stream.
//
// Working set (--ws_mib, base pages, THP off) = [hot A | hot B | cold]. Before
// the measured run hot A and hot B are put on the slow node 1 and the cold
// part fills node 0 down to --free_mib of free memory (the rest of it spills
// to node 1); then the memory policy is reset to the default, so the kernel
// and tierkit are free to move every page. The run is --seconds long: skewed
// random read-modify-writes, --hot_share of them uniform over the current hot
// set (hot A in the first half, hot B in the second: the hot set shifts once)
// and the rest uniform over the whole working set.
//
// --engine none: no tierkit (the kernel's NUMA balancing / demotion, as
// configured by the caller, does the tiering). --engine POLICY: a tierkit
// Engine with the Linux backend and that policy runs epochs on its background
// thread and the workload records every access.
//
// --trace FILE (a lackey trace, tests/traces/*.lackey.gz): the access stream
// of a real program instead of the two hot sets. Each of the trace's P
// distinct pages becomes a block of K = ws pages / P consecutive pages. The
// run walks through the trace once over --seconds: at time t it draws each
// access from the --trace_window accesses that follow position t/seconds of
// the trace, to a random page of that access's block. So the program's hot
// set, and how it moves, is kept, scaled to the working set. "Hot A" and
// "hot B" are then the pages the first and the second half of the trace
// access, weighted by their accesses there; "hot" at a sample, the current
// window's accesses. DRAM starts with the trace's least accessed pages.
//
// --emit N: writes the first N accesses of the same stream (position = access
// index / N instead of time) to stdout as lackey records and exits, for
// tierkit-sim --trace=- (the kernel model on exactly the VM's stream).
//
// A sampler thread queries where every page is (move_pages) every
// --sample_ms and prints "@@wl sample ..." lines; at the end one
// "@@wl result name=... key=value ..." line carries the /proc/vmstat deltas,
// tierkit's stats, the hot set residency and the completed operations.
#include <numa.h>
#include <numaif.h>
#include <sys/mman.h>
#include <sys/utsname.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tierkit/backend/linux.hpp"
#include "tierkit/engine.hpp"
#include "tierkit/sim/trace_file.hpp"
#include "tierkit/topology.hpp"

ABSL_FLAG(std::string, name, "run", "configuration name printed in the output");
ABSL_FLAG(std::string, engine, "none",
          "none (no tierkit: the kernel tiers) or a tierkit policy spec (automatic, threshold:V)");
ABSL_FLAG(int, ws_mib, 512, "working set, MiB");
ABSL_FLAG(int, hot_mib, 128, "size of each of the two hot sets, MiB");
ABSL_FLAG(double, hot_share, 0.9, "share of accesses that go to the current hot set");
ABSL_FLAG(double, seconds, 60, "length of the measured run; the hot set shifts halfway");
ABSL_FLAG(int, sample_ms, 2000, "placement sampling period, ms");
ABSL_FLAG(int, free_mib, -1,
          "node 0 memory left free after placing the cold part; -1: 5% of node 0 + 32 MiB");
ABSL_FLAG(int, epoch_ms, 100, "tierkit epoch, ms");
ABSL_FLAG(bool, huge_units, false,
          "track the working set in 2 MiB units (the library's default where THP is on and the "
          "budget is large enough); off: 4 KiB units, as docs/kernel-baseline.md's rows were "
          "measured");
ABSL_FLAG(bool, epoch_log, false, "print one \"@@wl epoch\" line per tierkit epoch");
ABSL_FLAG(std::string, trace, "", "replay this lackey trace (tests/traces/*.lackey.gz) instead");
ABSL_FLAG(int, trace_window, 4096, "--trace: accesses drawn from at each point of the trace");
ABSL_FLAG(std::int64_t, emit, 0,
          "write the first N accesses as lackey records to stdout and exit (for tierkit-sim)");

namespace {

using tierkit::kPageSize;
constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kWordsPerPage = kPageSize / sizeof(std::uint64_t);

const char* kVmstatKeys[] = {"pgpromote_success", "pgpromote_candidate", "pgdemote_kswapd",
                             "pgdemote_direct",   "numa_hint_faults",    "numa_pages_migrated",
                             "pgmigrate_success", "pgmigrate_fail"};

std::map<std::string, long long> read_vmstat() {
  std::map<std::string, long long> m;
  std::ifstream f("/proc/vmstat");
  std::string k;
  long long v;
  while (f >> k >> v) m[k] = v;
  return m;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

long mbind_range(void* p, std::size_t bytes, int mode, int node) {
  unsigned long mask = node >= 0 ? 1ul << node : 0;
  return mbind(p, bytes, mode, node >= 0 ? &mask : nullptr, node >= 0 ? 8 * sizeof mask : 0, 0);
}

struct Xorshift {
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

// The access stream: which page the next access goes to, at position `frac`
// (0..1) of the run. Moving / uniform: the two hot sets (phase 0: A, 1: B).
// Trace: a window of the trace, scaled to blocks of `block` pages.
struct Stream {
  std::size_t pages = 0, hot_pages = 0;
  std::uint64_t hot_cut = 0;
  const std::vector<std::uint32_t>* trace = nullptr;
  std::size_t block = 1, window = 1;

  // First trace index of the window at `frac`.
  std::size_t window_start(double frac) const {
    std::size_t span = trace->size() - window;
    return std::min(span, static_cast<std::size_t>(frac * static_cast<double>(span)));
  }
  // Page index and word within it.
  std::pair<std::size_t, std::size_t> next(Xorshift& rng, double frac, int phase) const {
    std::uint64_t r = rng.next();
    if (trace != nullptr) {
      std::uint64_t r2 = rng.next();
      std::size_t i = window_start(frac) + static_cast<std::size_t>((r >> 32) % window);
      return {(*trace)[i] * block + static_cast<std::size_t>((r & 0xffffffffu) % block),
              static_cast<std::size_t>(r2 % kWordsPerPage)};
    }
    std::size_t page = (r & 0xffffffffu) < hot_cut
                           ? static_cast<std::size_t>(phase) * hot_pages +
                                 static_cast<std::size_t>((r >> 32) % hot_pages)
                           : static_cast<std::size_t>((r >> 32) % pages);
    return {page, static_cast<std::size_t>((r >> 20) % kWordsPerPage)};
  }
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("tierkit-vm-workload: the kernel-baseline workload");
  absl::ParseCommandLine(argc, argv);
  const std::string name = absl::GetFlag(FLAGS_name);
  const std::string spec = absl::GetFlag(FLAGS_engine);
  const std::size_t ws = static_cast<std::size_t>(absl::GetFlag(FLAGS_ws_mib)) * kMiB;
  const std::size_t hot = static_cast<std::size_t>(absl::GetFlag(FLAGS_hot_mib)) * kMiB;
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const double hot_share = absl::GetFlag(FLAGS_hot_share);
  const std::string trace_path = absl::GetFlag(FLAGS_trace);
  const std::int64_t emit = absl::GetFlag(FLAGS_emit);
  if (trace_path.empty() && (2 * hot >= ws || seconds <= 0 || hot_share < 0 || hot_share > 1)) {
    std::fprintf(stderr, "bad flags: need 2 * hot_mib < ws_mib, seconds > 0, hot_share in [0,1]\n");
    return 2;
  }
  Stream stream;
  tierkit::sim::Trace trace;
  std::size_t pages = ws / kPageSize, hot_pages = hot / kPageSize;
  stream.hot_cut = static_cast<std::uint64_t>(hot_share * 4294967296.0);
  if (!trace_path.empty()) {
    auto t = tierkit::sim::read_lackey_trace(trace_path);
    if (!t.ok()) {
      std::fprintf(stderr, "--trace: %s\n", std::string(t.status().message()).c_str());
      return 2;
    }
    trace = std::move(*t);
    stream.trace = &trace.accesses;
    stream.block = std::max<std::size_t>(1, pages / trace.pages);
    stream.window = static_cast<std::size_t>(absl::GetFlag(FLAGS_trace_window));
    if (stream.window < 1 || stream.window >= trace.accesses.size()) {
      std::fprintf(stderr, "--trace_window must be in [1, %zu)\n", trace.accesses.size());
      return 2;
    }
    pages = trace.pages * stream.block;
    hot_pages = 0;
  }
  stream.pages = pages;
  stream.hot_pages = hot_pages;
  if (emit > 0) {
    // Lackey records (" M addr,8": a read-modify-write) for tierkit-sim.
    Xorshift rng{0x9e3779b97f4a7c15ull};
    for (std::int64_t j = 0; j < emit; ++j) {
      double frac = static_cast<double>(j) / static_cast<double>(emit);
      auto [page, word] = stream.next(rng, frac, frac >= 0.5 ? 1 : 0);
      std::printf(" M %zx,8\n", std::size_t{0x10000000} + page * kPageSize + word * 8);
    }
    return std::fflush(stdout) == 0 ? 0 : 1;
  }
  if (numa_available() < 0 || numa_max_node() < 1) {
    std::fprintf(stderr, "needs NUMA nodes 0 and 1 (run it in tests/vm/run kernel-baseline)\n");
    return 2;
  }
  const std::size_t cold_begin = 2 * hot_pages;
  // Trace: accesses per block in each half of the trace ("hot A", "hot B").
  std::vector<std::uint32_t> weight_a, weight_b;
  double sum_a = 0, sum_b = 0;
  if (stream.trace != nullptr) {
    weight_a.assign(trace.pages, 0);
    weight_b.assign(trace.pages, 0);
    for (std::size_t i = 0; i < trace.accesses.size(); ++i)
      ++(2 * i < trace.accesses.size() ? weight_a : weight_b)[trace.accesses[i]];
    sum_a = static_cast<double>(trace.accesses.size() / 2 + trace.accesses.size() % 2);
    sum_b = static_cast<double>(trace.accesses.size() / 2);
  }

  // ---- placement
  auto* mem = static_cast<char*>(mmap(nullptr, pages * kPageSize, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (mem == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  // (trace: the working set is a whole number of blocks)
  const std::size_t ws_bytes = pages * kPageSize;
  madvise(mem, ws_bytes, MADV_NOHUGEPAGE);
  long long node0_free = 0;
  const long long node0_total = numa_node_size64(0, &node0_free);
  const long long keep_free = absl::GetFlag(FLAGS_free_mib) >= 0
                                  ? static_cast<long long>(absl::GetFlag(FLAGS_free_mib)) * kMiB
                                  : node0_total / 20 + 32 * static_cast<long long>(kMiB);
  const std::size_t cold_bytes = ws_bytes - 2 * hot_pages * kPageSize;
  std::size_t cold_fast = std::min<std::size_t>(
      cold_bytes,
      static_cast<std::size_t>(std::max(0ll, node0_free - keep_free)) / kPageSize * kPageSize);
  char* cold = mem + 2 * hot_pages * kPageSize;
  if (stream.trace != nullptr) {
    // The trace's least accessed blocks on node 0, the rest on node 1.
    std::vector<std::uint32_t> order(trace.pages);
    for (std::uint32_t b = 0; b < trace.pages; ++b) order[b] = b;
    std::stable_sort(order.begin(), order.end(), [&](std::uint32_t x, std::uint32_t y) {
      return weight_a[x] + weight_b[x] < weight_a[y] + weight_b[y];
    });
    const std::size_t block_bytes = stream.block * kPageSize;
    const std::size_t fast_blocks = cold_fast / block_bytes;
    cold_fast = fast_blocks * block_bytes;
    if (mbind_range(mem, ws_bytes, MPOL_BIND, 1) != 0) {
      std::perror("mbind");
      return 1;
    }
    for (std::size_t i = 0; i < fast_blocks; ++i)
      if (mbind_range(mem + order[i] * block_bytes, block_bytes, MPOL_BIND, 0) != 0) {
        std::perror("mbind");
        return 1;
      }
  } else if (mbind_range(mem, 2 * hot_pages * kPageSize, MPOL_BIND, 1) != 0 ||
             (cold_fast > 0 && mbind_range(cold, cold_fast, MPOL_BIND, 0) != 0) ||
             (cold_fast < cold_bytes &&
              mbind_range(cold + cold_fast, cold_bytes - cold_fast, MPOL_BIND, 1))) {
    std::perror("mbind");
    return 1;
  }
  for (std::size_t p = 0; p < pages; ++p)
    reinterpret_cast<std::uint64_t*>(mem + p * kPageSize)[0] = p;
  if (mbind_range(mem, ws_bytes, MPOL_DEFAULT, -1) != 0) {
    std::perror("mbind(MPOL_DEFAULT)");
    return 1;
  }

  tierkit::LinuxBackend backend;
  std::vector<void*> addrs(pages);
  for (std::size_t p = 0; p < pages; ++p) addrs[p] = mem + p * kPageSize;
  std::vector<int> node(pages, -1), last(pages, -1);
  std::vector<std::uint8_t> changes(pages, 0);
  auto query = [&] {
    std::fill(node.begin(), node.end(), -1);
    (void)backend.query(addrs, absl::MakeSpan(node));
  };
  auto share_on0 = [&](std::size_t begin, std::size_t n) {
    std::size_t on0 = 0;
    for (std::size_t p = begin; p < begin + n; ++p) on0 += node[p] == 0;
    return n ? static_cast<double>(on0) / static_cast<double>(n) : 0.0;
  };
  // Trace: share of block b's pages on node 0; the weighted share of a half.
  std::vector<double> block_on0;
  auto blocks_on0 = [&] {
    block_on0.assign(trace.pages, 0.0);
    for (std::size_t b = 0; b < trace.pages; ++b)
      block_on0[b] = share_on0(b * stream.block, stream.block);
  };
  auto weighted_on0 = [&](const std::vector<std::uint32_t>& w, double sum) {
    double s = 0;
    for (std::size_t b = 0; b < w.size(); ++b) s += w[b] * block_on0[b];
    return sum > 0 ? s / sum : 0.0;
  };
  // The three shares a sample reports: hot A, hot B (current: `frac`), cold.
  struct Shares {
    double a, b, cur, cold;
  };
  auto shares = [&](double frac, int ph) -> Shares {
    if (stream.trace == nullptr) {
      double a = share_on0(0, hot_pages), b = share_on0(hot_pages, hot_pages);
      return {a, b, ph == 0 ? a : b, share_on0(cold_begin, pages - cold_begin)};
    }
    blocks_on0();
    double cur = 0;
    std::size_t i0 = stream.window_start(frac);
    for (std::size_t i = i0; i < i0 + stream.window; ++i) cur += block_on0[trace.accesses[i]];
    return {weighted_on0(weight_a, sum_a), weighted_on0(weight_b, sum_b),
            cur / static_cast<double>(stream.window), share_on0(0, pages)};
  };
  query();
  last = node;
  long long free_after = 0;
  numa_node_size64(0, &free_after);
  const Shares at_start = shares(0, 0);
  std::printf(
      "@@wl setup name=%s ws_mib=%zu hot_mib=%zu node0_total_mib=%lld node0_free_mib=%lld "
      "cold_on_node0_mib=%zu node0_free_after_mib=%lld hotA_fast=%.3f hotB_fast=%.3f "
      "cold_fast=%.3f",
      name.c_str(), ws_bytes / kMiB, hot_pages * kPageSize / kMiB, node0_total / (1 << 20),
      node0_free / (1 << 20), cold_fast / kMiB, free_after / (1 << 20), at_start.a, at_start.b,
      at_start.cold);
  if (stream.trace != nullptr)
    std::printf(" trace=%s trace_pages=%" PRIu64 " trace_accesses=%zu block_pages=%zu window=%zu",
                trace.name.c_str(), trace.pages, trace.accesses.size(), stream.block,
                stream.window);
  std::printf("\n");
  std::fflush(stdout);

  // ---- tierkit
  std::unique_ptr<tierkit::Engine> engine;
  tierkit::RegionHandle region;
  if (spec != "none") {
    auto topo = tierkit::Topology::discover();
    if (!topo.ok() || topo->single_tier()) {
      std::fprintf(
          stderr, "tierkit needs two tiers here: %s\n",
          topo.ok() ? topo->summary().c_str() : std::string(topo.status().message()).c_str());
      return 1;
    }
    tierkit::EngineConfig c;
    c.use_topology(*topo);
    c.policy = spec;
    c.epoch_ms = absl::GetFlag(FLAGS_epoch_ms);
    // The DRAM the working set got, plus what is free above the 5% of the
    // node the engine keeps free anyway (high watermark).
    c.fast_budget_bytes =
        cold_fast + static_cast<std::uint64_t>(std::max(0ll, keep_free - node0_total / 20));
    auto e = tierkit::Engine::create(c, &backend);
    if (!e.ok()) {
      std::fprintf(stderr, "engine: %s\n", std::string(e.status().message()).c_str());
      return 1;
    }
    engine = std::move(*e);
    tierkit::RegionOptions ro = tierkit::RegionOptions().with_name("ws");
    if (!absl::GetFlag(FLAGS_huge_units)) ro.with_base_pages();
    auto h = engine->register_region(mem, ws_bytes, ro);
    if (!h.ok()) {
      std::fprintf(stderr, "register_region: %s\n", std::string(h.status().message()).c_str());
      return 1;
    }
    region = std::move(*h);
    std::printf("@@wl engine name=%s policy=%s budget_mib=%" PRIu64 " rate_limit_mbps=%g\n",
                name.c_str(), engine->policy_name().c_str(),
                engine->config().fast_budget_bytes / kMiB, engine->config().rate_limit_mbps);
    if (absl::GetFlag(FLAGS_epoch_log)) {
      engine->set_epoch_callback([&name](const tierkit::EngineStats& e) {
        std::printf("@@wl epoch name=%s epoch=%" PRIu64 " ms=%.1f promoted=%" PRIu64
                    " demoted=%" PRIu64 " deferred=%" PRIu64 " fast=%" PRIu64 " threshold=%g\n",
                    name.c_str(), e.epochs, static_cast<double>(e.last_epoch_ns) / 1e6,
                    e.epoch_promoted, e.epoch_demoted, e.epoch_deferred, e.fast_pages,
                    e.promotion_threshold);
      });
    }
    if (absl::Status s = engine->start(); !s.ok()) return 1;
  }

  // ---- run
  std::atomic<std::uint64_t> ops{0};
  std::atomic<bool> done{false};
  std::atomic<int> phase{0};
  const auto before = read_vmstat();
  const double t0 = now_s();
  double hotA_at_shift = -1, sum_cur = 0;
  int samples = 0;
  std::thread sampler([&] {
    const auto period = std::chrono::milliseconds(absl::GetFlag(FLAGS_sample_ms));
    auto next = std::chrono::steady_clock::now() + period;
    while (!done.load()) {
      std::this_thread::sleep_until(next);
      next += period;
      if (done.load()) break;
      query();
      for (std::size_t p = 0; p < pages; ++p)
        if (node[p] >= 0 && last[p] >= 0 && node[p] != last[p] && changes[p] < 255) ++changes[p];
      for (std::size_t p = 0; p < pages; ++p)
        if (node[p] >= 0) last[p] = node[p];
      int ph = phase.load();
      const double t = now_s() - t0;
      const Shares sh = shares(std::min(1.0, t / seconds), ph);
      if (ph == 0) hotA_at_shift = sh.a;
      sum_cur += sh.cur;
      ++samples;
      std::printf("@@wl sample name=%s t=%.1f phase=%s ops=%" PRIu64
                  " hot_fast=%.3f hotA_fast=%.3f hotB_fast=%.3f cold_fast=%.3f\n",
                  name.c_str(), t, ph == 0 ? "A" : "B", ops.load(), sh.cur, sh.a, sh.b, sh.cold);
      std::fflush(stdout);
    }
  });

  Xorshift rng{0x9e3779b97f4a7c15ull};
  std::uint64_t n = 0, ops_a = 0, sink = 0;
  double frac = 0;
  int ph = 0;
  for (;;) {
    if ((n & 4095) == 0) {
      ops.store(n, std::memory_order_relaxed);
      double t = now_s() - t0;
      if (t >= seconds) break;
      frac = t / seconds;
      if (t >= seconds / 2 && phase.load() == 0) {
        ops_a = n;
        phase.store(1);
        ph = 1;
      }
    }
    auto [page, word] = stream.next(rng, frac, ph);
    auto* w = reinterpret_cast<std::uint64_t*>(mem + page * kPageSize) + word;
    sink += ++*w;
    if (engine) engine->record_access(w);
    ++n;
  }
  const double elapsed = now_s() - t0;
  done.store(true);
  sampler.join();
  if (engine) engine->stop();
  const auto after = read_vmstat();

  // Final placement.
  query();
  const Shares at_end = shares(1, 1);
  std::size_t pingpong = 0;
  for (std::size_t p = 0; p < pages; ++p) {
    if (node[p] >= 0 && last[p] >= 0 && node[p] != last[p] && changes[p] < 255) ++changes[p];
    pingpong += changes[p] > 1;
  }
  struct utsname uts {};
  uname(&uts);
  std::string out = absl::StrFormat(
      "@@wl result name=%s kernel=%s engine=%s cold_on_node0_mib=%d node0_free_at_start_mib=%d "
      "seconds=%.1f "
      "ops=%d ops_A=%d ops_B=%d Mops_per_s=%.2f",
      name, uts.release, spec, cold_fast / kMiB, free_after / (1 << 20), elapsed, n, ops_a,
      n - ops_a, static_cast<double>(n) / elapsed / 1e6);
  for (const char* k : kVmstatKeys) {
    auto a = after.find(k), b = before.find(k);
    long long d = a == after.end() ? -1 : a->second - (b == before.end() ? 0 : b->second);
    absl::StrAppend(&out, " ", k, "=", d);
  }
  tierkit::EngineStats st;
  if (engine) st = engine->stats();
  absl::StrAppendFormat(
      &out,
      " tk_promoted=%d tk_demoted=%d tk_pingpong=%d tk_deferred=%d tk_failed=%d "
      "tk_epochs=%d tk_epoch_ms_mean=%.1f",
      st.promoted_pages, st.demoted_pages, st.pingpong_pages, st.deferred_pages, st.failed_pages,
      st.epochs,
      st.epochs ? static_cast<double>(st.total_epoch_ns) / 1e6 / static_cast<double>(st.epochs)
                : 0.0);
  // Full passes NUMA balancing's scanner (task_numa_work) made over this
  // process's address space (/proc/self/sched, CONFIG_SCHED_DEBUG; -1 if
  // not shown): with scan_size_mb 256 and a 1 s scan period, ~ws/256 MiB
  // passes would take one second.
  long long scan_seq = -1;
  {
    std::ifstream f("/proc/self/sched");
    std::string line;
    while (std::getline(f, line))
      if (absl::StartsWith(line, "mm->numa_scan_seq")) {
        auto colon = line.find(':');
        if (colon != std::string::npos) scan_seq = std::atoll(line.c_str() + colon + 1);
      }
  }
  absl::StrAppendFormat(&out, " numa_scan_seq=%d", scan_seq);
  absl::StrAppendFormat(&out,
                        " hotA_fast_at_shift=%.3f hotB_fast_end=%.3f hot_fast_mean=%.3f "
                        "cold_fast_end=%.3f pages_moved_back_and_forth=%d samples=%d sink=%d",
                        hotA_at_shift, at_end.b, samples ? sum_cur / samples : 0.0, at_end.cold,
                        pingpong, samples, sink & 1);
  std::printf("%s\n", out.c_str());
  std::fflush(stdout);
  region.reset();
  engine.reset();
  munmap(mem, ws_bytes);
  return 0;
}
