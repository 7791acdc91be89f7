// record_access against its baseline (a relaxed atomic increment into a
// plain array of the same size), 1 and 2 threads, sequential and random
// pages, sampled mode; RegionRegistry::lookup.
//
//   tierkit-bench --benchmark_filter='RecordAccess|AtomicIncrement|RegionLookup'
//
// Ratios to read: BM_RecordAccess / BM_AtomicIncrementBaseline for the same
// pattern and thread count (target <= 2x), and items_per_second of /threads:2
// over /threads:1 (target >= 1.8x; each thread works on its own half of the
// pages).
#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/engine.hpp"

namespace {

using tierkit::kPageSize;

constexpr std::uintptr_t kBase = 0x200000000000;  // synthetic: never dereferenced
constexpr std::size_t kPages = 262144;            // 1 GiB tracked
constexpr std::size_t kIndexMask = (1u << 16) - 1;

// One engine tracking 1 GiB, shared by every benchmark in this file.
struct Tracked {
  tierkit::SimulatedBackend backend{{{0, kPages* kPageSize}, {1, kPages* kPageSize}}};
  tierkit::ManualClock clock{1};
  std::unique_ptr<tierkit::Engine> engine;
  tierkit::RegionHandle region;
  // Page indices: random ones per thread half, precomputed so the RNG is not
  // measured (the baseline walks the same indices).
  std::vector<std::uint32_t> random_idx[2];

  Tracked() {
    tierkit::EngineConfig c;
    c.policy = "static";
    c.slow_nodes = {1};
    engine = std::move(*tierkit::Engine::create(c, &backend, &clock));
    region = std::move(*engine->register_region(reinterpret_cast<void*>(kBase), kPages * kPageSize,
                                                tierkit::RegionOptions().with_name("bench")));
    std::mt19937 rng(1);
    for (int half = 0; half < 2; ++half) {
      random_idx[half].resize(kIndexMask + 1);
      for (auto& i : random_idx[half])
        i = static_cast<std::uint32_t>(half * (kPages / 2) + rng() % (kPages / 2));
    }
  }
  static Tracked& get() {
    static Tracked t;
    return t;
  }
};

// A plain array of 16-bit counters, the size of the tracker's page words.
std::atomic<std::uint16_t>* baseline_array() {
  static auto* a = new std::atomic<std::uint16_t>[kPages]();
  return a;
}

// Heat saturates at 511 (PageWord::kMaxHeat), after which record_access skips its compare-
// exchange; real pages decay every epoch. Every 2^20 accesses (outside the
// timer) the thread's pages are re-tracked at heat 0 so the measured path is
// the one with the write. The baselines pause at the same points.
constexpr std::size_t kResetEvery = 1u << 20;
void reset_heat(benchmark::State& state, std::size_t first, std::size_t span, bool tracker) {
  state.PauseTiming();
  if (tracker)
    Tracked::get().engine->tracker().track(kBase + first * kPageSize,
                                           kBase + (first + span) * kPageSize, false, true);
  state.ResumeTiming();
}

// Thread t of n works on its own half of the pages (different pages).
std::size_t first_page(const benchmark::State& s) {
  return s.threads() == 1 ? 0 : static_cast<std::size_t>(s.thread_index()) * (kPages / 2);
}
std::size_t page_span(const benchmark::State& s) { return s.threads() == 1 ? kPages : kPages / 2; }
const std::vector<std::uint32_t>& random_indices(const benchmark::State& s) {
  return Tracked::get().random_idx[s.threads() == 1 ? 0 : s.thread_index() % 2];
}

void BM_RecordAccessSequential(benchmark::State& state) {
  tierkit::Engine& e = *Tracked::get().engine;
  const std::size_t first = first_page(state), span = page_span(state);
  std::size_t i = 0, n = 0;
  for (auto _ : state) {
    e.record_access(reinterpret_cast<const void*>(kBase + (first + i) * kPageSize));
    if (++i == span) i = 0;
    if ((++n & (kResetEvery - 1)) == 0) reset_heat(state, first, span, true);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_AtomicIncrementBaselineSequential(benchmark::State& state) {
  std::atomic<std::uint16_t>* a = baseline_array();
  const std::size_t first = first_page(state), span = page_span(state);
  std::size_t i = 0, n = 0;
  for (auto _ : state) {
    a[first + i].fetch_add(1, std::memory_order_relaxed);
    if (++i == span) i = 0;
    if ((++n & (kResetEvery - 1)) == 0) reset_heat(state, first, span, false);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_RecordAccessRandom(benchmark::State& state) {
  Tracked& t = Tracked::get();
  const std::uint32_t* idx = random_indices(state).data();
  const std::uint32_t every = static_cast<std::uint32_t>(state.range(0));
  t.engine->tracker().set_sampling(every);
  std::size_t i = 0;
  for (auto _ : state) {
    t.engine->record_access(reinterpret_cast<const void*>(kBase + idx[i & kIndexMask] * kPageSize));
    if ((++i & (kResetEvery - 1)) == 0)
      reset_heat(state, first_page(state), page_span(state), true);
  }
  if (state.thread_index() == 0) t.engine->tracker().set_sampling(1);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_AtomicIncrementBaselineRandom(benchmark::State& state) {
  std::atomic<std::uint16_t>* a = baseline_array();
  const std::uint32_t* idx = random_indices(state).data();
  std::size_t i = 0;
  for (auto _ : state) {
    a[idx[i & kIndexMask]].fetch_add(1, std::memory_order_relaxed);
    if ((++i & (kResetEvery - 1)) == 0)
      reset_heat(state, first_page(state), page_span(state), false);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

BENCHMARK(BM_RecordAccessSequential)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_AtomicIncrementBaselineSequential)->Threads(1)->Threads(2)->UseRealTime();
// Arg: sampling (record 1 in N); 1 = every access.
BENCHMARK(BM_RecordAccessRandom)->Arg(1)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_RecordAccessRandom)->Arg(16)->Arg(64)->Threads(1)->UseRealTime();
BENCHMARK(BM_AtomicIncrementBaselineRandom)->Threads(1)->Threads(2)->UseRealTime();

// RegionRegistry::lookup with range(0) regions of 1 MiB each, random hits.
void BM_RegionLookup(benchmark::State& state) {
  tierkit::HotnessTracker tracker;
  tierkit::RegionRegistry reg(tracker);
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<tierkit::RegionHandle> handles;
  for (std::size_t r = 0; r < n; ++r) {
    auto h = reg.add(reinterpret_cast<void*>(kBase + r * (2u << 20)), 1u << 20,
                     tierkit::RegionOptions());
    if (!h.ok()) {
      state.SkipWithError("region registration failed");
      return;
    }
    handles.push_back(std::move(*h));
  }
  std::mt19937 rng(2);
  std::vector<const void*> addrs(4096);
  for (auto& a : addrs)
    a = reinterpret_cast<const void*>(kBase + (rng() % n) * (2u << 20) + rng() % (1u << 20));
  std::size_t i = 0;
  for (auto _ : state) {
    auto r = reg.lookup(addrs[i++ & 4095]);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_RegionLookup)->Arg(1)->Arg(64)->Arg(4096);

}  // namespace
