// tierkit/policy/static.hpp: the policy that never migrates (first-touch placement), the
// baseline every other policy is measured against. Choose it to measure what
// tiering buys, or to pin a program's placement at allocation time.
// Layer 4: includes policy.hpp only.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tierkit/policy.hpp"

namespace tierkit {

// Never migrates.
class StaticPolicy final : public Policy {
 public:
  std::string name() const override { return "static"; }
  PolicyTraits traits() const override {
    PolicyTraits t;
    t.moves_untagged_pages = t.swap_for_promotions = false;
    return t;
  }
  Thresholds begin_epoch(const EpochContext&) override { return {}; }
  double current_threshold() const override { return INFINITY; }
};

}  // namespace tierkit
