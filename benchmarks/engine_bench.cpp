// Engine epoch cost (aging + policy decision + moves) per GiB tracked, on the
// SimulatedBackend, and RateLimiter::acquire_up_to.
//
//   tierkit-bench --benchmark_filter='EpochCost|RateLimiter'
//
// BM_EpochCost reports ms_per_GiB (target <= 1 ms per GiB tracked). Each
// epoch sees a skewed access pattern (5% of pages hot, a random 1% warm) so
// the policy has decisions to make; accesses are recorded outside the timer.
#include <time.h>

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/engine.hpp"
#include "tierkit/rate_limiter.hpp"

namespace {

using tierkit::kPageSize;

constexpr std::uintptr_t kBase = 0x300000000000;  // synthetic: never dereferenced

const char* const kPolicies[] = {"static", "threshold:4", "automatic", "kernel"};

// range(0): GiB tracked; range(1): policy index.
void BM_EpochCost(benchmark::State& state) {
  const auto gib = static_cast<std::size_t>(state.range(0));
  const std::string policy = kPolicies[state.range(1)];
  const std::size_t pages = gib * (std::size_t{1} << 30) / kPageSize;
  tierkit::SimulatedBackend be({{0, pages / 4 * kPageSize}, {1, pages * kPageSize}});
  tierkit::ManualClock clock(1);
  tierkit::EngineConfig c;
  c.policy = policy;
  c.slow_nodes = {1};
  auto e = tierkit::Engine::create(c, &be, &clock);
  if (!e.ok()) {
    state.SkipWithError(std::string(e.status().message()).c_str());
    return;
  }
  tierkit::Engine& engine = **e;
  for (std::size_t p = 0; p < pages; ++p) be.touch(kBase + p * kPageSize, p < pages / 4 ? 0 : 1);
  auto h = engine.register_region(reinterpret_cast<void*>(kBase), pages * kPageSize);
  if (!h.ok()) {
    state.SkipWithError(std::string(h.status().message()).c_str());
    return;
  }
  std::mt19937 rng(3);
  std::vector<std::uint32_t> hot(pages / 20);
  for (auto& p : hot) p = static_cast<std::uint32_t>(rng() % pages);
  auto touch = [&] {
    for (auto p : hot)
      for (int k = 0; k < 4; ++k)
        engine.record_access(reinterpret_cast<const void*>(kBase + std::uintptr_t{p} * kPageSize));
    for (std::size_t k = 0; k < pages / 100; ++k)
      engine.record_access(reinterpret_cast<const void*>(kBase + (rng() % pages) * kPageSize));
  };
  // Warm up past the first epochs' bulk moves: steady state is measured.
  for (int i = 0; i < 20; ++i) {
    touch();
    clock.advance_ns(c.epoch_ms * tierkit::kNsPerMs);
    (void)engine.step();
  }
  for (auto _ : state) {
    state.PauseTiming();
    touch();
    clock.advance_ns(c.epoch_ms * tierkit::kNsPerMs);
    state.ResumeTiming();
    benchmark::DoNotOptimize(engine.step());
  }
  state.SetLabel(policy);
  state.counters["ms_per_GiB"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * static_cast<double>(gib) / 1e3,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["moved_pages"] =
      static_cast<double>(engine.stats().promoted_pages + engine.stats().demoted_pages);
  h->reset();
}
BENCHMARK(BM_EpochCost)
    ->ArgsProduct({{1, 4}, {0, 1, 2, 3}})
    ->ArgNames({"GiB", "policy"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

std::int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// The epoch at terabyte scale: range(0) GiB tracked (synthetic addresses,
// never dereferenced, all on the slow tier), of which the same range(1) MiB
// is touched (each page 4 times, 1 in 8 pages 32 times more) before every
// epoch. An epoch should cost what changed, not what is tracked: compare
// ms_per_epoch across tracked_gib in one run (target: 256 GiB <= 1.5x 1 GiB).
void BM_EpochSparse(benchmark::State& state) {
  const auto gib = static_cast<std::size_t>(state.range(0));
  const auto touched_mib = static_cast<std::size_t>(state.range(1));
  const std::size_t pages = gib << 18, touched = touched_mib << 8;
  tierkit::SimulatedBackend be({{0, std::uint64_t{1} << 30}, {1, std::uint64_t{gib} << 30}});
  tierkit::ManualClock clock(1);
  tierkit::EngineConfig c;
  c.environment = tierkit::EngineConfig::Environment::kIgnore;
  c.slow_nodes = {1};
  c.fast_budget_bytes = std::uint64_t{128} << 20;  // the touched set does not fit: swaps
  auto e = tierkit::Engine::create(c, &be, &clock);
  if (!e.ok()) {
    state.SkipWithError(std::string(e.status().message()).c_str());
    return;
  }
  tierkit::Engine& engine = **e;
  // The simulated machine holds only the pages that are ever touched.
  for (std::size_t p = 0; p < touched; ++p) be.touch(kBase + p * kPageSize, 1);
  auto h = engine.register_region(reinterpret_cast<void*>(kBase), pages * kPageSize, {},
                                  /*initially_fast=*/false);
  if (!h.ok()) {
    state.SkipWithError(std::string(h.status().message()).c_str());
    return;
  }
  // The touched pages spread over the first GiB's span so every size
  // touches the same addresses.
  auto touch = [&] {
    for (std::size_t p = 0; p < touched; ++p) {
      const void* a = reinterpret_cast<const void*>(kBase + p * kPageSize);
      engine.record_access(a, kPageSize, (p % 8 == 0) ? 128 : 4);
    }
  };
  for (int i = 0; i < 5; ++i) {
    touch();
    clock.advance_ns(c.epoch_ms * tierkit::kNsPerMs);
    (void)engine.step();
  }
  double cpu_ms = 0;
  for (auto _ : state) {
    state.PauseTiming();
    touch();
    clock.advance_ns(c.epoch_ms * tierkit::kNsPerMs);
    const std::int64_t t0 = thread_cpu_ns();
    state.ResumeTiming();
    benchmark::DoNotOptimize(engine.step());
    state.PauseTiming();
    cpu_ms += static_cast<double>(thread_cpu_ns() - t0) / 1e6;
    state.ResumeTiming();
  }
  // CPU time of the epoch thread: on a loaded machine wall time mostly
  // measures the other processes.
  state.counters["ms_per_epoch"] = cpu_ms / static_cast<double>(state.iterations());
  state.counters["tracker_bytes_per_page"] =
      static_cast<double>(engine.tracker().metadata_bytes()) / static_cast<double>(pages);
  state.counters["moved_pages"] =
      static_cast<double>(engine.stats().promoted_pages + engine.stats().demoted_pages);
  h->reset();
}
BENCHMARK(BM_EpochSparse)
    ->ArgsProduct({{1, 16, 256}, {256}})
    ->ArgNames({"tracked_gib", "touched_mib"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(20)
    ->UseRealTime();

tierkit::RateLimiter& shared_limiter() {
  // Effectively unlimited, so every call grants: the lock path is measured.
  static tierkit::RateLimiter limiter(1e9, std::uint64_t{1} << 50);
  return limiter;
}

void BM_RateLimiterAcquire(benchmark::State& state) {
  tierkit::RateLimiter& l = shared_limiter();
  for (auto _ : state) benchmark::DoNotOptimize(l.acquire_up_to(kPageSize, kPageSize));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_RateLimiterAcquire)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
