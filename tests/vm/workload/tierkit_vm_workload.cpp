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
// A sampler thread queries where every page is (move_pages) every
// --sample_ms and prints "@@wl sample ..." lines; at the end one
// "@@wl result name=... key=value ..." line carries the /proc/vmstat deltas,
// tierkit's stats, the hot set residency and the completed operations.
#include <numa.h>
#include <numaif.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
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
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tierkit/backend/linux.hpp"
#include "tierkit/engine.hpp"
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
ABSL_FLAG(bool, epoch_log, false, "print one \"@@wl epoch\" line per tierkit epoch");

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
  if (numa_available() < 0 || numa_max_node() < 1) {
    std::fprintf(stderr, "needs NUMA nodes 0 and 1 (run it in tests/vm/run kernel-baseline)\n");
    return 2;
  }
  if (2 * hot >= ws || seconds <= 0 || hot_share < 0 || hot_share > 1) {
    std::fprintf(stderr, "bad flags: need 2 * hot_mib < ws_mib, seconds > 0, hot_share in [0,1]\n");
    return 2;
  }
  const std::size_t pages = ws / kPageSize, hot_pages = hot / kPageSize;
  const std::size_t cold_begin = 2 * hot_pages;

  // ---- placement
  auto* mem = static_cast<char*>(mmap(nullptr, ws, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (mem == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  madvise(mem, ws, MADV_NOHUGEPAGE);
  long long node0_free = 0;
  const long long node0_total = numa_node_size64(0, &node0_free);
  const long long keep_free = absl::GetFlag(FLAGS_free_mib) >= 0
                                  ? static_cast<long long>(absl::GetFlag(FLAGS_free_mib)) * kMiB
                                  : node0_total / 20 + 32 * static_cast<long long>(kMiB);
  const std::size_t cold_bytes = ws - 2 * hot;
  const std::size_t cold_fast = std::min<std::size_t>(
      cold_bytes,
      static_cast<std::size_t>(std::max(0ll, node0_free - keep_free)) / kPageSize * kPageSize);
  char* cold = mem + 2 * hot;
  if (mbind_range(mem, 2 * hot, MPOL_BIND, 1) != 0 ||
      (cold_fast > 0 && mbind_range(cold, cold_fast, MPOL_BIND, 0) != 0) ||
      (cold_fast < cold_bytes &&
       mbind_range(cold + cold_fast, cold_bytes - cold_fast, MPOL_BIND, 1))) {
    std::perror("mbind");
    return 1;
  }
  for (std::size_t p = 0; p < pages; ++p)
    reinterpret_cast<std::uint64_t*>(mem + p * kPageSize)[0] = p;
  if (mbind_range(mem, ws, MPOL_DEFAULT, -1) != 0) {
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
  query();
  last = node;
  long long free_after = 0;
  numa_node_size64(0, &free_after);
  std::printf(
      "@@wl setup name=%s ws_mib=%zu hot_mib=%zu node0_total_mib=%lld node0_free_mib=%lld "
      "cold_on_node0_mib=%zu node0_free_after_mib=%lld hotA_fast=%.3f hotB_fast=%.3f "
      "cold_fast=%.3f\n",
      name.c_str(), ws / kMiB, hot / kMiB, node0_total / (1 << 20), node0_free / (1 << 20),
      cold_fast / kMiB, free_after / (1 << 20), share_on0(0, hot_pages),
      share_on0(hot_pages, hot_pages), share_on0(cold_begin, pages - cold_begin));
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
    auto h = engine->register_region(mem, ws, tierkit::RegionOptions().with_name("ws"));
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
      double a = share_on0(0, hot_pages), b = share_on0(hot_pages, hot_pages);
      if (ph == 0) hotA_at_shift = a;
      sum_cur += ph == 0 ? a : b;
      ++samples;
      std::printf("@@wl sample name=%s t=%.1f phase=%s ops=%" PRIu64
                  " hot_fast=%.3f hotA_fast=%.3f hotB_fast=%.3f cold_fast=%.3f\n",
                  name.c_str(), now_s() - t0, ph == 0 ? "A" : "B", ops.load(), ph == 0 ? a : b, a,
                  b, share_on0(cold_begin, pages - cold_begin));
      std::fflush(stdout);
    }
  });

  Xorshift rng{0x9e3779b97f4a7c15ull};
  const auto hot_cut = static_cast<std::uint64_t>(hot_share * 4294967296.0);
  std::uint64_t n = 0, ops_a = 0, sink = 0;
  for (;;) {
    if ((n & 4095) == 0) {
      ops.store(n, std::memory_order_relaxed);
      double t = now_s() - t0;
      if (t >= seconds) break;
      if (t >= seconds / 2 && phase.load() == 0) {
        ops_a = n;
        phase.store(1);
      }
    }
    std::uint64_t r = rng.next();
    std::size_t page =
        (r & 0xffffffffu) < hot_cut
            ? static_cast<std::size_t>(phase.load(std::memory_order_relaxed)) * hot_pages +
                  static_cast<std::size_t>((r >> 32) % hot_pages)
            : static_cast<std::size_t>((r >> 32) % pages);
    auto* w = reinterpret_cast<std::uint64_t*>(mem + page * kPageSize) + (r >> 20) % kWordsPerPage;
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
  std::size_t pingpong = 0;
  for (std::size_t p = 0; p < pages; ++p) {
    if (node[p] >= 0 && last[p] >= 0 && node[p] != last[p] && changes[p] < 255) ++changes[p];
    pingpong += changes[p] > 1;
  }
  std::string out = absl::StrFormat(
      "@@wl result name=%s engine=%s cold_on_node0_mib=%d node0_free_at_start_mib=%d seconds=%.1f "
      "ops=%d ops_A=%d ops_B=%d Mops_per_s=%.2f",
      name, spec, cold_fast / kMiB, free_after / (1 << 20), elapsed, n, ops_a, n - ops_a,
      static_cast<double>(n) / elapsed / 1e6);
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
  absl::StrAppendFormat(&out,
                        " hotA_fast_at_shift=%.3f hotB_fast_end=%.3f hot_fast_mean=%.3f "
                        "cold_fast_end=%.3f pages_moved_back_and_forth=%d samples=%d sink=%d",
                        hotA_at_shift, share_on0(hot_pages, hot_pages),
                        samples ? sum_cur / samples : 0.0,
                        share_on0(cold_begin, pages - cold_begin), pingpong, samples, sink & 1);
  std::printf("%s\n", out.c_str());
  std::fflush(stdout);
  region.reset();
  engine.reset();
  munmap(mem, ws);
  return 0;
}
