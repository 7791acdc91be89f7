// tierkit/policy.hpp: the Policy interface. A policy turns page heat into
// promotion and demotion decisions; it never makes syscalls, so every policy
// runs the same on the Linux backend, the simulated backend and in
// tierkit-sim. The policies themselves sit in policy/, one per header:
//
//   policy/automatic.hpp     capacity-aware default: the threshold from the
//                            heat histogram so the hot set fits the fast tier.
//   policy/threshold.hpp     the user's promotion threshold with hysteresis,
//                            changeable at runtime from any thread.
//   policy/kernel_model.hpp  a model of Linux AutoNUMA tiering
//                            (numa_balancing=2) with the seed's target.
//   policy/static.hpp        never migrates (first-touch placement).
//
// Layer 3: includes hotness.hpp only.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "tierkit/hotness.hpp"

namespace tierkit {

// Pages per heat value, split by believed tier, from one epoch's sweep.
// Heat is sampled before aging, so it includes the epoch's accesses.
struct HeatHistogram {
  static constexpr std::size_t kBuckets = PageWord::kMaxHeat + 1;
  std::array<std::uint64_t, kBuckets> fast{}, slow{};
  std::uint64_t fast_pages = 0, slow_pages = 0;  // set by finalize()
  double fast_heat = 0, slow_heat = 0;           // heat-weighted page sums

  // Counts `pages` at `heat`: one increment (the sweep's per-page cost);
  // call finalize() once after the last add().
  void add(std::uint32_t heat, bool is_fast, std::uint64_t pages) {
    (is_fast ? fast : slow)[heat] += pages;
  }
  // Puts the pages not added (heat 0: they were not visited) in bucket 0,
  // given the tier totals, then computes the totals. O(kBuckets).
  void finalize(std::uint64_t fast_total, std::uint64_t slow_total) {
    std::uint64_t f = 0, s = 0;
    for (std::size_t h = 1; h < kBuckets; ++h) f += fast[h], s += slow[h];
    fast[0] = fast_total > f ? fast_total - f : 0;
    slow[0] = slow_total > s ? slow_total - s : 0;
    finalize();
  }
  // Computes the totals from the buckets. O(kBuckets).
  void finalize() {
    fast_pages = slow_pages = 0;
    fast_heat = slow_heat = 0;
    for (std::size_t h = 0; h < kBuckets; ++h) {
      fast_pages += fast[h];
      slow_pages += slow[h];
      fast_heat += static_cast<double>(h) * static_cast<double>(fast[h]);
      slow_heat += static_cast<double>(h) * static_cast<double>(slow[h]);
    }
  }
  // Share of heat on fast pages: an estimate of the fast-tier hit ratio.
  double fast_heat_share() const {
    double t = fast_heat + slow_heat;
    return t > 0 ? fast_heat / t : 0;
  }
};

// What the engine tells a policy at the start of an epoch.
struct EpochContext {
  std::uint64_t epoch = 0;
  std::int64_t now_ns = 0;    // end of the epoch being swept
  std::int64_t epoch_ns = 0;  // epoch length
  std::uint64_t fast_budget_pages = 0;
  std::uint64_t fast_used_pages = 0;    // tracked pages believed fast
  std::uint64_t fast_free_pages = 0;    // free memory of the fast node(s)
  double decay = 0.5;                   // heat multiplier per epoch
  const HeatHistogram* last = nullptr;  // previous epoch's histogram
  // Tracked pages accessed since they were tracked, in 8-page groups
  // (HotnessTracker::seen_pages): what is in use, not all that is registered.
  std::uint64_t seen_pages = 0;
  // Heat counts accesses (record_access alone). False once a hotness source
  // is attached: its heat is a weight or an estimated rate, not a count.
  bool heat_is_counts = true;
  // Set after the sweep, for end_epoch(), all over the last epoch: pages
  // seen for the first time (seen_pages' growth: births), the fast node(s)'
  // memory taken between the engine's moves (by pages the kernel placed
  // there at their first touch, or by others), and the room the engine had
  // left free after its moves. 0 in the first epoch.
  std::uint64_t born_pages = 0;
  std::uint64_t taken_fast_pages = 0;
  std::uint64_t offered_room_pages = 0;
};

// A policy's per-page verdict (policies that visit pages).
struct PageVerdict {
  enum Action : std::uint8_t { kNone, kPromote, kDemoteCandidate } action = kNone;
  std::uint32_t priority = 0;  // higher goes first (hottest / coldest first)
};

// Thresholds in heat units for policies that do not visit pages.
struct Thresholds {
  std::uint32_t promote_heat = PageWord::kMaxHeat + 1;  // > max: never
  std::uint32_t demote_heat = 0;                        // demote if heat <= this
};

// Converts a rate (accesses per page per epoch) to steady-state heat for a
// decay factor d: heat = rate / (1 - d), rounded up, at least 1.
inline std::uint32_t heat_for_rate(double rate, double decay) {
  double h = std::ceil(rate / (1.0 - decay) - 1e-9);
  if (!(h >= 1)) return rate <= 0 ? 0 : 1;
  return h > PageWord::kMaxHeat ? PageWord::kMaxHeat : static_cast<std::uint32_t>(h);
}
inline double rate_for_heat(std::uint32_t heat, double decay) { return heat * (1.0 - decay); }

// What a policy is, as the engine sees it: one struct instead of a virtual
// per question.
struct PolicyTraits {
  // False when the policy never moves untagged pages, not even at the
  // watermarks (static); region tags still apply.
  bool moves_untagged_pages = true;
  // True when the policy needs visit() for every tracked unit each epoch
  // (the kernel model's scanner); the epoch then costs O(tracked).
  bool visits_pages = false;
  // Whether pages colder than the demotion threshold may be demoted to make
  // room for promotions (tierkit policies), or demotion only follows the
  // watermarks like kswapd (kernel model).
  bool swap_for_promotions = true;
  // Whether promotions beyond the room demote the next demotion candidates
  // (coldest / least recently used first) without a heat comparison: the
  // kernel's kswapd, woken when a promotion finds the fast node at its
  // watermark.
  bool reclaims_for_promotions = false;
  // Whether the engine's token bucket limits this policy's migrations; the
  // kernel model has its own candidate rate limit instead.
  bool uses_rate_limiter = true;
  // Whether promotions happen in the faulting task (charged to the
  // application by the simulator) rather than in the background.
  bool synchronous_promotion = false;
  // Whether the policy fills the whole fast-tier budget (it swaps a colder
  // resident out for each newcomer) instead of keeping it below the high
  // watermark. The node-level reserve applies either way.
  bool fills_budget = false;
  // The bursts whose reuse observe_bursts() reports: units whose heat, all
  // from one epoch, is above this. A policy that discounts only the part of
  // a burst above some heat learns its credit from bursts that large; the
  // many small first touches of a real program are reused at another rate.
  std::uint32_t burst_heat = 0;
  // Whether heat ages by EngineConfig::half_life_epochs (aging() returns
  // ctx.decay). False for automatic, which cools by access volume: the knob
  // then only converts a region's own promotion threshold (a rate) to heat,
  // and EngineConfig::describe() says so.
  bool reads_half_life = true;
};

// Policy
//
// Turns page heat into promotion and demotion decisions, once per epoch, on
// the engine's epoch thread: begin_epoch() (thresholds from the last
// histogram), visit() per unit for visiting policies, end_epoch(), then
// refine_thresholds() where the policy refines_thresholds(). No
// syscalls, so every policy runs the same on the Linux backend, the
// simulated backend and in tierkit-sim. Cost: begin_epoch O(heat buckets);
// visit O(1). Thread safety: the engine serialises every call except the
// runtime setters, which subclasses make atomic.
//
// Example (a policy that promotes anything touched twice in an epoch):
//   class TwiceTouched final : public Policy {
//     std::string name() const override { return "twice"; }
//     Thresholds begin_epoch(const EpochContext&) override { return {2, 0}; }
//     double current_threshold() const override { return 2; }
//     const char* threshold_unit() const override { return "heat"; }
//   };
//   engine->set_policy(std::make_unique<TwiceTouched>());
class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string name() const = 0;
  virtual PolicyTraits traits() const { return {}; }
  // Called before the sweep; returns heat thresholds (ignored when the policy
  // visits pages).
  virtual Thresholds begin_epoch(const EpochContext& ctx) = 0;
  // Per-unit verdict; `word` is the page word before aging.
  virtual PageVerdict visit(std::uintptr_t /*addr*/, std::uint16_t /*word*/,
                            const EpochContext& /*ctx*/) {
    return {};
  }
  // Called after the sweep with this epoch's histogram.
  virtual void end_epoch(const EpochContext& /*ctx*/, const HeatHistogram& /*hist*/) {}
  // kept_room()
  //
  // The free room this epoch's plan keeps in the fast-tier budget for pages
  // first touched later, asked after end_epoch(): nullopt, the engine's
  // watermarks (demote above the high one down to the low one, as kswapd
  // does); 0, none (the budget is filled); else that share of the budget
  // (demote above 1 - share down to 1 - 2 x share, at most the watermarks'
  // band). Default: PolicyTraits::fills_budget, fixed.
  virtual std::optional<double> kept_room() const {
    return traits().fills_budget ? std::optional<double>(0.0) : std::nullopt;
  }
  // Whether refine_thresholds() sets this epoch's thresholds after the sweep.
  // The engine then gathers every untagged unit with heat as a candidate,
  // and keeps those the refined thresholds pass. Costs O(units touched).
  virtual bool refines_thresholds() const { return false; }
  // The thresholds this epoch's moves use, from the histogram just built
  // (`hist`) rather than ctx.last, a whole epoch old: at a phase change the
  // old one still shows the previous hot set and holds the new one back.
  // `begun` is what begin_epoch() returned.
  virtual Thresholds refine_thresholds(const EpochContext& /*ctx*/, const HeatHistogram& /*hist*/,
                                       Thresholds begun) {
    return begun;
  }
  // The factor heat is multiplied by at the end of this epoch (after
  // begin_epoch); default: ctx.decay, from the half-life in epochs.
  virtual double aging(const EpochContext& ctx) const { return ctx.decay; }
  // Called for each unit the engine moved (the kernel model forgets its
  // scan stamp).
  virtual void on_moved(std::uintptr_t /*addr*/) {}
  // forget_pages()
  //
  // Drops what the policy keeps per page for every page `gone` is true of:
  // pages of regions unregistered since the last epoch, so their state
  // neither leaks nor meets a region registered later at the same address.
  // Called on the epoch thread before begin_epoch(), only after a region was
  // unregistered. Default: nothing is kept per page.
  virtual void forget_pages(absl::FunctionRef<bool(std::uintptr_t)> /*gone*/) {}
  // judged_heat()
  //
  // The heat a unit is judged by (histogram, promotion and demotion
  // candidates, should_swap) and aged from, given its heat, whether it is
  // seasoned (it held heat after the last aging; if not, all its heat is
  // from the epoch just ended: a burst) and the whole epochs since its last
  // access (0..15: words stamp the epoch modulo 16, so an older access
  // looks more recent, never less). Default: the heat as counted. O(1), on
  // the epoch thread after begin_epoch().
  virtual std::uint32_t judged_heat(std::uint32_t heat, bool /*seasoned*/,
                                    std::uint32_t /*idle_epochs*/) const {
    return heat;
  }
  // observe_bursts()
  //
  // What became of last epoch's bursts: a sample (at most 256) of the units
  // whose heat was all from that epoch (not seasoned) and above
  // traits().burst_heat, each with that heat and whether it was accessed
  // again this epoch. The engine calls it once per epoch, before
  // collecting, when it sampled any. Lets a policy learn how much a burst
  // (an initialising write, a scan, young data) predicts further use, and
  // how that depends on the burst's size.
  struct BurstOutcome {
    std::uint32_t heat = 0;      // the unit's heat at the end of its burst epoch
    bool touched_again = false;  // accessed in the epoch after it
  };
  virtual void observe_bursts(std::span<const BurstOutcome> /*bursts*/) {}
  // observe_moves()
  //
  // What the moves of the last few epochs won and lost: of the `promoted`
  // units the engine moved up (and that are still fast), `promoted_used`
  // were accessed in the epoch just ended, hits the moves won; of the
  // `demoted` units (still slow), `demoted_used` were, hits they lost.
  // `reversed` units moved in the epoch just ended undid a move made within
  // the ping-pong window (EngineConfig::pingpong_window_epochs): the
  // earlier move did not pay. The engine calls it once per epoch, before
  // begin_epoch(). Lets a policy check that its moves pay.
  virtual void observe_moves(std::uint64_t /*promoted*/, std::uint64_t /*promoted_used*/,
                             std::uint64_t /*demoted*/, std::uint64_t /*demoted_used*/,
                             std::uint64_t /*reversed*/) {}
  // Epochs a page must stay after a move before it may move back.
  virtual std::uint32_t min_residency_epochs() const { return 0; }
  // At most this share of the pages the engine has moved may move back
  // within the ping-pong window (EngineConfig::pingpong_window_epochs); the
  // engine keeps other untagged pages where they are once the share is used.
  // 1 = no bound.
  virtual double max_reversal_share() const { return 1; }
  // reversal_margin()
  //
  // How many times as convincing a swap must be when its resident was
  // promoted within the ping-pong window: demoting it undoes that move,
  // whose copy is then wasted, and pays a second one. The engine judges such
  // a swap (should_swap) with the newcomer's heat divided by this.
  // 1 = judged as any other swap.
  virtual double reversal_margin() const { return 1; }
  // A resident page gives way to a newcomer only if the newcomer's heat is at
  // least this many times the resident's (hysteresis on swaps).
  virtual double swap_ratio() const { return 1.0; }
  // Whether a slow page of heat `newcomer` may take the place of a fast page
  // of heat `resident`, idle (not accessed) for `resident_idle` epochs
  // (swap_for_promotions policies). Default: the ratio.
  virtual bool should_swap(std::uint32_t newcomer, std::uint32_t resident,
                           std::uint32_t /*resident_idle*/ = 0) const {
    return newcomer > resident &&
           static_cast<double>(newcomer) >= swap_ratio() * static_cast<double>(resident);
  }
  // The promotion threshold in force, in the policy's own unit (see unit()).
  virtual double current_threshold() const = 0;
  virtual const char* threshold_unit() const { return "accesses/epoch"; }
  // Runtime threshold setters (accesses per page per epoch); a policy
  // without such a threshold says so.
  virtual absl::Status set_promotion_threshold(double /*rate*/) {
    return absl::FailedPreconditionError(absl::StrCat(
        "set_promotion_threshold: the active policy is '", name(),
        "', which has no user-set threshold; switch with set_policy(\"threshold:V\")"));
  }
  virtual absl::Status set_demotion_threshold(double /*rate*/) {
    return absl::FailedPreconditionError(
        absl::StrCat("set_demotion_threshold: the active policy is '", name(), "', not threshold"));
  }

  // The traits, one at a time.
  bool moves_untagged_pages() const { return traits().moves_untagged_pages; }
  bool visits_pages() const { return traits().visits_pages; }
  bool swap_for_promotions() const { return traits().swap_for_promotions; }
  bool reclaims_for_promotions() const { return traits().reclaims_for_promotions; }
  bool uses_rate_limiter() const { return traits().uses_rate_limiter; }
  bool synchronous_promotion() const { return traits().synchronous_promotion; }
};

}  // namespace tierkit
