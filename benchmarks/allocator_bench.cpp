// tiered_allocator against std::allocator, same containers, same run (target:
// within 1.3x). tiered_allocator<T>(Tier::fast) is the process-wide pooled
// resource of the fast tier (over LinuxBackend); benchmarks skip if it cannot
// be created.
//
//   tierkit-bench --benchmark_filter='Alloc'
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "benchmark/benchmark.h"
#include "tierkit/allocator.hpp"

namespace {

template <class T>
using Tiered = tierkit::tiered_allocator<T>;

// Whether the fast tier's resource works here; the reason if not.
bool tier_ok(benchmark::State& state) {
  try {
    Tiered<int> a(tierkit::Tier::fast);
    a.deallocate(a.allocate(1), 1);
    return true;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return false;
  }
}

template <template <class> class A>
void BM_AllocVectorPushBack(benchmark::State& state) {
  if (!tier_ok(state)) return;
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    std::vector<std::uint64_t, A<std::uint64_t>> v;
    for (std::size_t i = 0; i < n; ++i) v.push_back(i);
    benchmark::DoNotOptimize(v.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_AllocVectorPushBack<std::allocator>)->Arg(1 << 16);
BENCHMARK(BM_AllocVectorPushBack<Tiered>)->Arg(1 << 16);

template <template <class> class A>
void BM_AllocMapInsertErase(benchmark::State& state) {
  if (!tier_ok(state)) return;
  const auto n = static_cast<std::size_t>(state.range(0));
  std::mt19937 rng(4);
  std::vector<std::uint64_t> keys(n);
  for (auto& k : keys) k = rng();
  using Map = std::map<std::uint64_t, std::uint64_t, std::less<>,
                       A<std::pair<const std::uint64_t, std::uint64_t>>>;
  for (auto _ : state) {
    Map m;
    for (auto k : keys) m.emplace(k, k);
    for (auto k : keys) m.erase(k);
    benchmark::DoNotOptimize(m.size());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n * 2));
}
BENCHMARK(BM_AllocMapInsertErase<std::allocator>)->Arg(1 << 12);
BENCHMARK(BM_AllocMapInsertErase<Tiered>)->Arg(1 << 12);

template <template <class> class A>
void BM_AllocUnorderedMapInsertFind(benchmark::State& state) {
  if (!tier_ok(state)) return;
  const auto n = static_cast<std::size_t>(state.range(0));
  using Map = std::unordered_map<std::uint64_t, std::uint64_t, std::hash<std::uint64_t>,
                                 std::equal_to<>, A<std::pair<const std::uint64_t, std::uint64_t>>>;
  for (auto _ : state) {
    Map m;
    for (std::uint64_t k = 0; k < n; ++k) m.emplace(k * 7919, k);
    std::uint64_t sum = 0;
    for (std::uint64_t k = 0; k < n; ++k) sum += m.find(k * 7919)->second;
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n * 2));
}
BENCHMARK(BM_AllocUnorderedMapInsertFind<std::allocator>)->Arg(1 << 12);
BENCHMARK(BM_AllocUnorderedMapInsertFind<Tiered>)->Arg(1 << 12);
// Two threads, a map each, one tier resource between them: what its lock costs.
BENCHMARK(BM_AllocUnorderedMapInsertFind<std::allocator>)->Arg(1 << 12)->Threads(2)->UseRealTime();
BENCHMARK(BM_AllocUnorderedMapInsertFind<Tiered>)->Arg(1 << 12)->Threads(2)->UseRealTime();

template <template <class> class A>
void BM_AllocStringAppend(benchmark::State& state) {
  if (!tier_ok(state)) return;
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    std::basic_string<char, std::char_traits<char>, A<char>> s;
    for (std::size_t i = 0; i < n; ++i) s.append("tierkit ");
    benchmark::DoNotOptimize(s.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_AllocStringAppend<std::allocator>)->Arg(1 << 14);
BENCHMARK(BM_AllocStringAppend<Tiered>)->Arg(1 << 14);

template <template <class> class A>
void BM_AllocFlatHashMapInsert(benchmark::State& state) {
  if (!tier_ok(state)) return;
  const auto n = static_cast<std::size_t>(state.range(0));
  using Map = absl::flat_hash_map<std::uint64_t, std::uint64_t, absl::Hash<std::uint64_t>,
                                  std::equal_to<std::uint64_t>,
                                  A<std::pair<const std::uint64_t, std::uint64_t>>>;
  for (auto _ : state) {
    Map m;
    for (std::uint64_t k = 0; k < n; ++k) m.emplace(k * 7919, k);
    benchmark::DoNotOptimize(m.size());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_AllocFlatHashMapInsert<std::allocator>)->Arg(1 << 14);
BENCHMARK(BM_AllocFlatHashMapInsert<Tiered>)->Arg(1 << 14);

}  // namespace
