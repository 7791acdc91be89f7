// quickstart: the smallest complete tierkit program. It discovers the memory
// tiers, puts a std::vector on the slow tier, registers it with the tiering
// engine, records accesses (an eighth of the data is hot), runs the engine and
// prints its stats. On a one-tier machine Machine::pick (example_support.hpp)
// runs it on a simulated two-tier machine and says so.
#include <cstdio>
#include <vector>

#include "example_support.hpp"

int main() {
  const std::size_t n = 4 << 20;                    // 4 Mi ints: 16 MiB
  auto machine = examples::Machine::pick(4 << 20);  // 4 MiB fast-tier budget
  auto fail = [](const absl::Status& s) {
    return std::fprintf(stderr, "%s\n", s.ToString().c_str()), 1;
  };
  auto engine = tierkit::Engine::create(machine->config(), &machine->backend());
  if (!engine.ok()) return fail(engine.status());

  // A vector on the slow tier, from a resource bound to the slow nodes.
  tierkit::TierResourceOptions slow;
  slow.nodes = machine->config().slow_nodes;
  slow.backend = &machine->backend();
  auto resource = tierkit::TierMemoryResource::create(slow);
  if (!resource.ok()) return fail(resource.status());
  std::vector<int, tierkit::tiered_allocator<int>> v(n, 0, resource->get());

  // Track it: pages start on the slow tier; the engine promotes the hot ones.
  auto region = (*engine)->register_region(v.data(), n * sizeof(int),
                                           tierkit::RegionOptions().with_name("v"), false);
  if (!region.ok()) return fail(region.status());

  auto touch = [&](std::size_t i) {
    v[i] += 1;
    (*engine)->record_access(&v[i]);  // lock-free, no syscall
  };
  for (int epoch = 0; epoch < 20; ++epoch) {
    for (std::size_t i = 0; i < n; i += 64) touch(i);     // all of it, lightly
    for (std::size_t i = 0; i < n / 8; i += 8) touch(i);  // the first eighth, 8x as often
    if (absl::Status s = (*engine)->step(); !s.ok()) return fail(s);
  }
  std::printf("%s", (*engine)->stats().to_table().c_str());
  return 0;
}
