// LinuxBackend: the move_pages(2) placement query per page, and cross-node
// moves per batch size. The moves need two NUMA nodes and skip otherwise
// (run them in the emulated two-tier machine).
//
//   tierkit-bench --benchmark_filter='LinuxQuery|LinuxMove'
#include <numa.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "tierkit/backend/linux.hpp"

namespace {

using tierkit::kPageSize;

// A mapped, touched buffer of `pages` pages and the backend over it, with
// `batch` pages per move_pages(2) call.
struct Buffer {
  Buffer(std::size_t batch, std::size_t n) : backend(options(batch)), pages(n) {
    auto m = backend.map(n * kPageSize);
    if (!m.ok()) return;
    base = static_cast<char*>(*m);
    for (std::size_t i = 0; i < n; ++i) base[i * kPageSize] = 1;
    for (std::size_t i = 0; i < n; ++i) addrs.push_back(base + i * kPageSize);
  }
  ~Buffer() {
    if (base) (void)backend.unmap(base, pages * kPageSize);
  }
  static tierkit::LinuxBackendOptions options(std::size_t batch) {
    tierkit::LinuxBackendOptions o;
    o.batch_pages = batch;
    return o;
  }
  tierkit::LinuxBackend backend;
  std::size_t pages;
  char* base = nullptr;
  std::vector<void*> addrs;
};

// range(0): pages per query call. Reports ns per page via items.
void BM_LinuxQuery(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  Buffer buf(batch, 4096);
  tierkit::LinuxBackend& be = buf.backend;
  if (buf.base == nullptr) {
    state.SkipWithError("map failed");
    return;
  }
  std::vector<int> status(batch);
  std::size_t off = 0;
  for (auto _ : state) {
    absl::Status s =
        be.query(absl::MakeConstSpan(buf.addrs.data() + off, batch), absl::MakeSpan(status));
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      break;
    }
    off = (off + batch) % (buf.pages - batch + 1);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_LinuxQuery)->Arg(1)->Arg(64)->Arg(1024);

// range(0): pages per move_pages(2) call. Moves 4096 pages back and forth
// between the first two nodes; items = pages moved.
void BM_LinuxMove(benchmark::State& state) {
  if (numa_available() < 0 || numa_num_configured_nodes() < 2) {
    state.SkipWithError("needs 2 NUMA nodes (run in the emulated two-tier machine)");
    return;
  }
  const auto batch = static_cast<std::size_t>(state.range(0));
  Buffer buf(batch, 4096);
  tierkit::LinuxBackend& be = buf.backend;
  if (buf.base == nullptr) {
    state.SkipWithError("map failed");
    return;
  }
  std::vector<int> status(buf.pages);
  int target = 1;
  std::uint64_t moved = 0;
  for (auto _ : state) {
    std::vector<tierkit::NodeId> nodes(buf.pages, target);
    absl::Status s = be.move(buf.addrs, nodes, absl::MakeSpan(status));
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      break;
    }
    for (int st : status) moved += st == target;
    target = 1 - target;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * buf.pages));
  state.counters["moved_pages"] = static_cast<double>(moved);
}
BENCHMARK(BM_LinuxMove)
    ->Arg(1)
    ->Arg(16)
    ->Arg(256)
    ->Arg(1024)
    ->Arg(4096)
    ->Unit(benchmark::kMillisecond);

}  // namespace
