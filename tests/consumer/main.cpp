// A program built against tierkit the way users build it (find_package,
// add_subdirectory): puts a vector on the fast tier and checks that its
// memory came from that tier's arenas. Prints "tierkit consumer OK" on success.
#include <cstdio>
#include <numeric>
#include <vector>

#include "tierkit/allocator.hpp"

int main() {
  std::vector<long, tierkit::tiered_allocator<long>> v(tierkit::Tier::fast);
  for (long i = 1; i <= 1000; ++i) v.push_back(i);
  const long sum = std::accumulate(v.begin(), v.end(), 0L);
  tierkit::TierMemoryResource* arena = tierkit::tier_arena(tierkit::Tier::fast);
  if (arena == nullptr || !arena->owns(v.data()) || sum != 500500) {
    std::printf("tierkit consumer FAILED: sum %ld, arena %p\n", sum, static_cast<void*>(arena));
    return 1;
  }
  std::printf("tierkit consumer OK: sum %ld, fast tier on nodes %s, %zu arena(s)\n", sum,
              arena->nodes().to_string().c_str(), arena->arena_count());
  return 0;
}
