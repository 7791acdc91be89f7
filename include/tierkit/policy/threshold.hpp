// tierkit/policy/threshold.hpp: the user's promotion threshold with hysteresis. Choose it
// when you know the access rate that earns a page its place in the fast tier
// (accesses per page per epoch) and want to set it, and change it, yourself.
// Layer 4: includes policy.hpp and detail/mutex.hpp only.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tierkit/detail/mutex.hpp"
#include "tierkit/policy.hpp"

namespace tierkit {

// Options of ThresholdPolicy. Rates are accesses per page per epoch.
struct ThresholdOptions {
  double promotion_threshold = 4.0;
  double demotion_threshold = 1.0;  // must be below promotion_threshold
  std::uint32_t min_residency_epochs = 8;
};

// The user-set threshold with hysteresis. set_* are thread-safe (the pair
// changes as one: demotion stays below promotion however calls interleave)
// and take effect at the next epoch.
class ThresholdPolicy final : public Policy {
 public:
  static absl::Status validate(double promote, double demote) {
    if (!std::isfinite(promote) || promote <= 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "promotion threshold ", promote, " must be a finite number of accesses/epoch > 0"));
    if (!std::isfinite(demote) || demote < 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "demotion threshold ", demote, " must be a finite number of accesses/epoch >= 0"));
    if (demote >= promote)
      return absl::InvalidArgumentError(absl::StrCat("demotion threshold ", demote,
                                                     " must be below the promotion threshold ",
                                                     promote, " (hysteresis against ping-pong)"));
    return absl::OkStatus();
  }

  explicit ThresholdPolicy(ThresholdOptions o = {})
      : promote_(o.promotion_threshold),
        demote_(o.demotion_threshold),
        residency_(o.min_residency_epochs) {}

  // Sets the promotion threshold; the demotion threshold is kept below it
  // (lowered to half the new value when it would not be).
  absl::Status set_promotion_threshold(double rate) override {
    detail::MutexLock lock(&mu_);
    double d = demote_.load();
    if (d >= rate) d = rate / 2;
    if (absl::Status s = validate(rate, d); !s.ok()) return s;
    demote_.store(d);
    promote_.store(rate);
    return absl::OkStatus();
  }
  absl::Status set_demotion_threshold(double rate) override {
    detail::MutexLock lock(&mu_);
    if (absl::Status s = validate(promote_.load(), rate); !s.ok()) return s;
    demote_.store(rate);
    return absl::OkStatus();
  }
  void set_min_residency_epochs(std::uint32_t e) { residency_.store(e); }

  std::string name() const override { return "threshold"; }
  Thresholds begin_epoch(const EpochContext& ctx) override {
    // Clamped before the cast: set_demotion_threshold() takes any finite
    // rate below the promotion threshold (the engine checks the knob's range).
    // And below the promotion heat, which saturates at kMaxHeat: a demotion
    // rate below the promotion rate can still be past the heat range, and a
    // page hot enough to promote was then a demotion candidate too.
    double promote_rate = 0, demote_rate = 0;
    {
      detail::MutexLock lock(&mu_);  // one pair, not halves of two
      promote_rate = promote_.load();
      demote_rate = demote_.load();
    }
    const std::uint32_t promote = heat_for_rate(promote_rate, ctx.decay);
    const double demote =
        std::min(std::floor(demote_rate / (1.0 - ctx.decay)), static_cast<double>(promote) - 1);
    return {promote, static_cast<std::uint32_t>(std::max(demote, 0.0))};
  }
  std::uint32_t min_residency_epochs() const override { return residency_.load(); }
  double current_threshold() const override { return promote_.load(); }
  double demotion_threshold() const { return demote_.load(); }

 private:
  // Written under mu_; read without it where one value is enough.
  mutable detail::Mutex mu_;
  std::atomic<double> promote_, demote_;
  std::atomic<std::uint32_t> residency_;
};

}  // namespace tierkit
