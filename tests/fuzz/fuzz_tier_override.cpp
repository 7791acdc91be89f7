// Fuzzes the tier override syntax (Topology::parse_override, also TIERKIT_TIERS).
// Invariants: accepted specs give non-empty, disjoint tiers of valid nodes and
// round-trip through their canonical form; rejections are InvalidArgument
// naming the override.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "fuzz_check.hpp"
#include "tierkit/topology.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  std::string spec(reinterpret_cast<const char*>(data), size);
  auto r = tierkit::Topology::parse_override(spec);
  if (!r.ok()) {
    FUZZ_CHECK(r.status().code() == absl::StatusCode::kInvalidArgument, "'%s'", spec.c_str());
    FUZZ_CHECK(absl::StrContains(r.status().message(), "tier override"), "'%s'", spec.c_str());
    return 0;
  }
  FUZZ_CHECK(!r->empty(), "'%s'", spec.c_str());
  tierkit::NodeSet seen;
  std::vector<std::string> tiers;
  for (const auto& t : *r) {
    FUZZ_CHECK(!t.empty(), "'%s' has an empty tier", spec.c_str());
    for (int n : t.to_vector()) {
      FUZZ_CHECK(n >= 0 && n < tierkit::NodeSet::kMaxNodes, "'%s'", spec.c_str());
      FUZZ_CHECK(!seen.contains(n), "'%s': node %d twice", spec.c_str(), n);
      seen.insert(n);
    }
    tiers.push_back(t.to_string());
  }
  std::string canon = absl::StrJoin(tiers, "/");
  auto again = tierkit::Topology::parse_override(canon);
  FUZZ_CHECK(again.ok() && *again == *r, "'%s' -> '%s' does not round-trip", spec.c_str(),
             canon.c_str());
  return 0;
}
