// Engine epoch cost (aging + policy decision + moves) per GiB tracked, on the
// SimulatedBackend, and RateLimiter::acquire_up_to.
//
//   tierkit-bench --benchmark_filter='EpochCost|RateLimiter'
//
// BM_EpochCost reports ms_per_GiB (target <= 1 ms per GiB tracked). Each
// epoch sees a skewed access pattern (5% of pages hot, a random 1% warm) so
// the policy has decisions to make; accesses are recorded outside the timer.
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
