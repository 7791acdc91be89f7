// tierkit/policy.hpp: the placement policies. A policy turns page heat into
// promotion and demotion decisions; it never makes syscalls, so every policy
// runs the same on the Linux backend, the simulated backend and in
// tierkit-sim. Layer 3: includes hotness.hpp only.
//
//   threshold  the user's promotion threshold (accesses per page per epoch),
//              a lower demotion threshold (hysteresis) and a minimum residency
//              after any move. Changeable at runtime from any thread.
//   kernel     a model of Linux 6.1-6.8 AutoNUMA memory tiering
//              (numa_balancing=2), with the seed's separate adjustment target.
//   automatic  capacity-aware: picks the threshold from the heat histogram so
//              the hot set fits the fast-tier budget with headroom.
//   static     never migrates (first-touch placement): the baseline.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
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
};

// Policy
//
// Turns page heat into promotion and demotion decisions, once per epoch, on
// the engine's epoch thread: begin_epoch() (thresholds from the last
// histogram), visit() per unit for visiting policies, end_epoch(). No
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
  // The factor heat is multiplied by at the end of this epoch (after
  // begin_epoch); default: ctx.decay, from the half-life in epochs.
  virtual double aging(const EpochContext& ctx) const { return ctx.decay; }
  // Called for each unit the engine moved (the kernel model forgets its
  // scan stamp).
  virtual void on_moved(std::uintptr_t /*addr*/) {}
  // Epochs a page must stay after a move before it may move back.
  virtual std::uint32_t min_residency_epochs() const { return 0; }
  // A resident page gives way to a newcomer only if the newcomer's heat is at
  // least this many times the resident's (hysteresis on swaps).
  virtual double swap_ratio() const { return 1.0; }
  // Whether a slow page of heat `newcomer` may take the place of a fast page
  // of heat `resident` (swap_for_promotions policies). Default: the ratio.
  virtual bool should_swap(std::uint32_t newcomer, std::uint32_t resident) const {
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

// Options of ThresholdPolicy. Rates are accesses per page per epoch.
struct ThresholdOptions {
  double promotion_threshold = 4.0;
  double demotion_threshold = 1.0;  // must be below promotion_threshold
  std::uint32_t min_residency_epochs = 8;
};

// The user-set threshold with hysteresis. set_* are thread-safe and take
// effect at the next epoch.
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
    double d = demote_.load();
    if (d >= rate) d = rate / 2;
    if (absl::Status s = validate(rate, d); !s.ok()) return s;
    demote_.store(d);
    promote_.store(rate);
    return absl::OkStatus();
  }
  absl::Status set_demotion_threshold(double rate) override {
    if (absl::Status s = validate(promote_.load(), rate); !s.ok()) return s;
    demote_.store(rate);
    return absl::OkStatus();
  }
  void set_min_residency_epochs(std::uint32_t e) { residency_.store(e); }

  std::string name() const override { return "threshold"; }
  Thresholds begin_epoch(const EpochContext& ctx) override {
    return {heat_for_rate(promote_.load(), ctx.decay),
            static_cast<std::uint32_t>(std::floor(demote_.load() / (1.0 - ctx.decay)))};
  }
  std::uint32_t min_residency_epochs() const override { return residency_.load(); }
  double current_threshold() const override { return promote_.load(); }
  double demotion_threshold() const { return demote_.load(); }

 private:
  std::atomic<double> promote_, demote_;
  std::atomic<std::uint32_t> residency_;
};

// Options of AutomaticPolicy.
struct AutomaticOptions {
  double headroom = 0.0;    // fraction of the budget kept free for new hot pages
  double hysteresis = 2.0;  // a resident page is demoted for a newcomer only
                            // if the newcomer is this many times hotter
  double min_rate = 0.5;    // never promote pages below this many accesses/epoch
  std::uint32_t min_residency_epochs = 8;
  // A swap also needs the newcomer's heat to beat the resident's by this many
  // times sqrt(sum of both heats): heat is a decayed access count, so it
  // carries Poisson noise of about sqrt(heat), and without this margin a flat
  // workload swaps noise winners for noise losers forever. 4, not 3: with
  // volume cooling a dense workload cools every epoch, and at 3 sigma a
  // stationary skewed workload still swapped a few warm pages back and forth.
  double swap_confidence = 4.0;
  // Cooling by access volume, not by time (as Memtis cools by sample
  // count): heat halves at the end of an epoch once the total heat reaches
  // this many units per fast-budget page, or once a quarter of the budget's
  // worth of pages is past half the heat range. A sparse workload then keeps
  // a long history (heat is close to a plain access count, as LFU's), a
  // dense one a short one. 0 = age by half_life_epochs instead.
  double cool_heat_per_page = 32;
  // Never promote a page seen fewer than this many times since the last
  // cooling (TPP: promote only pages seen hot twice). Volume cooling only.
  std::uint32_t min_heat = 2;
  // ... and at least every this many epochs, so heat nobody refreshes does
  // not hold its place forever (young data going cold). 0 = never.
  std::uint32_t max_epochs_between_coolings = 8;
};

// Capacity-aware: each epoch it picks the lowest heat h such that the slow
// pages at least that hot fit in the room left plus the fast pages colder
// than h / hysteresis. Heat cools by access volume (see AutomaticOptions::
// cool_heat_per_page): on sparse real-program streams a time half-life
// forgot pages between their accesses and kept the fast tier as first touch
// left it. Demotion threshold = h / hysteresis, so a page must
// cool by that factor before it can lose its place: no ping-pong of warm
// pages on a stationary workload.
class AutomaticPolicy final : public Policy {
 public:
  explicit AutomaticPolicy(AutomaticOptions o = {}) : o_(o) {}
  std::string name() const override { return "automatic"; }

  Thresholds begin_epoch(const EpochContext& ctx) override {
    const bool by_volume = o_.cool_heat_per_page > 0;
    std::uint32_t floor_heat =
        by_volume ? std::max<std::uint32_t>(1, o_.min_heat)
                  : std::max<std::uint32_t>(1, heat_for_rate(o_.min_rate, ctx.decay));
    cool_ = false;
    // No histogram yet (first epoch): promote what was seen at least
    // min_heat times; swaps still need a clearly colder resident.
    if (ctx.last == nullptr) return by_volume ? Thresholds{floor_heat, 0} : Thresholds{};
    const HeatHistogram& h = *ctx.last;
    if (by_volume) {
      ++since_cooling_;
      cool_ = volume_says_cool(ctx, h) || (o_.max_epochs_between_coolings > 0 &&
                                           since_cooling_ >= o_.max_epochs_between_coolings);
      if (cool_) since_cooling_ = 0;
    }
    double cap = static_cast<double>(ctx.fast_budget_pages) * (1.0 - o_.headroom);
    double room = std::max(0.0, cap - static_cast<double>(ctx.fast_used_pages));
    // Suffix sums of slow pages (hot enough to promote) and prefix sums of
    // fast pages (cold enough to give way), walked from the top heat down.
    std::array<std::uint64_t, HeatHistogram::kBuckets + 1> fast_below{};
    for (std::size_t i = 0; i < HeatHistogram::kBuckets; ++i)
      fast_below[i + 1] = fast_below[i] + h.fast[i];
    std::uint64_t slow_at_least = 0;
    std::uint32_t chosen = PageWord::kMaxHeat + 1;
    for (std::int64_t t = PageWord::kMaxHeat; t >= static_cast<std::int64_t>(floor_heat); --t) {
      slow_at_least += h.slow[static_cast<std::size_t>(t)];
      auto give_way = static_cast<std::size_t>(std::floor(static_cast<double>(t) / o_.hysteresis));
      // fast pages with heat < t / hysteresis (strictly colder) may give way
      double swappable =
          static_cast<double>(fast_below[std::min(give_way, HeatHistogram::kBuckets)]);
      if (slow_at_least == 0) continue;  // no page this hot: nothing to decide
      if (static_cast<double>(slow_at_least) <= room + swappable) {
        chosen = static_cast<std::uint32_t>(t);
      } else {
        // The hottest slow pages alone overflow the room: still promote them
        // if any room or colder resident exists (the engine moves the
        // hottest first and never past the room it has), rather than
        // leaving a hot set that is larger than the fast tier all slow.
        if (chosen > PageWord::kMaxHeat && room + swappable >= 1)
          chosen = static_cast<std::uint32_t>(t);
        break;
      }
    }
    promote_heat_.store(chosen);
    std::uint32_t demote = chosen > PageWord::kMaxHeat
                               ? 0
                               : static_cast<std::uint32_t>(std::ceil(chosen / o_.hysteresis)) - 1;
    return {chosen, std::min(demote, chosen)};
  }
  PolicyTraits traits() const override {
    PolicyTraits t;
    t.fills_budget = true;
    return t;
  }
  double aging(const EpochContext& ctx) const override {
    if (o_.cool_heat_per_page <= 0) return ctx.decay;
    return cool_ ? 0.5 : 1.0;
  }
  std::uint32_t min_residency_epochs() const override { return o_.min_residency_epochs; }
  double swap_ratio() const override { return o_.hysteresis; }
  bool should_swap(std::uint32_t newcomer, std::uint32_t resident) const override {
    if (!Policy::should_swap(newcomer, resident)) return false;
    double diff = static_cast<double>(newcomer) - static_cast<double>(resident);
    return diff * diff >= o_.swap_confidence * o_.swap_confidence *
                              (static_cast<double>(newcomer) + static_cast<double>(resident));
  }
  double current_threshold() const override {
    std::uint32_t h = promote_heat_.load();
    return h > PageWord::kMaxHeat ? INFINITY : static_cast<double>(h);
  }
  const char* threshold_unit() const override { return "heat"; }

 private:
  // Whether the heat seen so far is enough history: its total reached the
  // volume budget, or too many pages crowd the top half of the heat range
  // (they could no longer be told apart).
  bool volume_says_cool(const EpochContext& ctx, const HeatHistogram& h) const {
    const double budget = static_cast<double>(std::max<std::uint64_t>(ctx.fast_budget_pages, 1));
    if (h.fast_heat + h.slow_heat >= o_.cool_heat_per_page * budget) return true;
    std::uint64_t high = 0;
    for (std::size_t i = HeatHistogram::kBuckets / 2; i < HeatHistogram::kBuckets; ++i)
      high += h.fast[i] + h.slow[i];
    return static_cast<double>(high) * 4 > budget;
  }

  AutomaticOptions o_;
  std::atomic<std::uint32_t> promote_heat_{PageWord::kMaxHeat + 1};
  bool cool_ = false;
  std::uint32_t since_cooling_ = 0;
};

// Knobs of the kernel model, named after the kernel's.
struct KernelModelOptions {
  // /sys/kernel/debug/sched/numa_balancing/hot_threshold_ms
  double hot_threshold_ms = 1000;
  // /proc/sys/kernel/numa_balancing_promote_rate_limit_MBps: the hard cap.
  double promote_rate_limit_mbps = 65536;
  // The seed's numa_balancing_promote_throughput_MBps: the adjustment target
  // only (0 = stock kernel: the target is the hard cap).
  double promote_throughput_mbps = 0;
  // numa_balancing_scan_period_max_ms: how often the threshold is adjusted.
  double scan_period_max_ms = 60000;
  // numa_balancing_scan_size_mb per numa_balancing_scan_period_min_ms: how
  // fast slow-tier pages are stamped (task_numa_work).
  double scan_size_mb = 256;
  double scan_period_ms = 1000;
  // pgdat_free_space_enough(): promote everything while the fast node has
  // this much above its promotion watermark (0 = max(1 GiB, node/16)).
  std::uint64_t enough_free_bytes = 0;
};

// A model of Linux 6.1-6.8 memory tiering (kernel.numa_balancing=2) at epoch
// granularity, driven by the recorded accesses instead of hint faults:
// - task_numa_work / change_prot_numa stamp slow-tier pages with the scan
//   time (xchg_page_access_time); fast-tier pages are not scanned.
// - The first access after a stamp is the NUMA hint fault; its latency is
//   now - stamp (numa_hint_fault_latency).
// - should_numa_migrate_memory: if pgdat_free_space_enough(), promote and
//   reset the threshold; else numa_promotion_adjust_threshold(), and the page
//   is a candidate when latency < threshold; numa_promotion_rate_limit()
//   counts candidates per 1 s window and refuses beyond the rate limit.
// - numa_promotion_adjust_threshold: every scan_period_max, compare the
//   window's candidates with rate_limit * period: above 110% lower the
//   threshold by 2*th/16, below 90% raise it, clamped to [th/8, 2*th].
// - Promotion fails when the fast node is at its watermark
//   (migrate_balanced_pgdat) and kswapd demotes in LRU order
//   (demote_folio_list); demotion is not rate limited.
class KernelModelPolicy final : public Policy {
 public:
  static constexpr int kAdjustSteps = 16;  // NUMA_MIGRATION_ADJUST_STEPS

  static absl::Status validate(const KernelModelOptions& o) {
    auto bad = [](const char* what, double v) {
      return absl::InvalidArgumentError(
          absl::StrCat("kernel model: ", what, " = ", v, " must be a finite number > 0"));
    };
    if (!std::isfinite(o.hot_threshold_ms) || o.hot_threshold_ms <= 0)
      return bad("hot_threshold_ms", o.hot_threshold_ms);
    if (!std::isfinite(o.promote_rate_limit_mbps) || o.promote_rate_limit_mbps <= 0)
      return bad("promote_rate_limit_MBps", o.promote_rate_limit_mbps);
    if (!std::isfinite(o.promote_throughput_mbps) || o.promote_throughput_mbps < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("kernel model: promote_throughput_MBps = ", o.promote_throughput_mbps,
                       " must be >= 0 (0 = stock kernel)"));
    if (!std::isfinite(o.scan_period_max_ms) || o.scan_period_max_ms <= 0)
      return bad("scan_period_max_ms", o.scan_period_max_ms);
    if (!std::isfinite(o.scan_size_mb) || o.scan_size_mb <= 0)
      return bad("scan_size_mb", o.scan_size_mb);
    if (!std::isfinite(o.scan_period_ms) || o.scan_period_ms <= 0)
      return bad("scan_period_ms", o.scan_period_ms);
    return absl::OkStatus();
  }

  explicit KernelModelPolicy(KernelModelOptions o = {}) : o_(o) {}

  std::string name() const override {
    if (o_.promote_throughput_mbps > 0)
      return absl::StrCat("kernel:target=", o_.promote_throughput_mbps);
    if (o_.promote_rate_limit_mbps != 65536)
      return absl::StrCat("kernel:rate=", o_.promote_rate_limit_mbps);
    return "kernel";
  }
  PolicyTraits traits() const override {
    PolicyTraits t;
    t.visits_pages = t.synchronous_promotion = t.reclaims_for_promotions = true;
    t.swap_for_promotions = t.uses_rate_limiter = false;
    return t;
  }
  double current_threshold() const override {
    return threshold_ms_.load() > 0 ? threshold_ms_.load() : o_.hot_threshold_ms;
  }
  const char* threshold_unit() const override { return "ms"; }
  // Candidates counted so far (PGPROMOTE_CANDIDATE).
  std::uint64_t candidates() const { return nr_cand_; }

  Thresholds begin_epoch(const EpochContext& ctx) override {
    // Pages task_numa_work stamps during this epoch.
    double pages_per_ms = o_.scan_size_mb * 256.0 / o_.scan_period_ms;
    scan_budget_ =
        static_cast<std::uint64_t>(pages_per_ms * static_cast<double>(ctx.epoch_ns) / 1e6);
    scanned_ = 0;
    wrapped_ = true;
    std::uint64_t enough =
        o_.enough_free_bytes
            ? o_.enough_free_bytes / kPageSize
            : std::max<std::uint64_t>((1ull << 30) / kPageSize, ctx.fast_budget_pages / 16);
    free_enough_ = ctx.fast_free_pages > enough;
    return {};
  }

  PageVerdict visit(std::uintptr_t addr, std::uint16_t word, const EpochContext& ctx) override {
    std::uint32_t age =
        (static_cast<std::uint32_t>(ctx.epoch) - PageWord::epoch(word)) % PageWord::kEpochModulo;
    bool accessed_now = PageWord::heat(word) > 0 && age == 0;
    if (PageWord::fast(word)) {
      // kswapd demotes in LRU order: least recently accessed first.
      std::uint32_t lru_age = PageWord::heat(word) == 0 ? PageWord::kEpochModulo : age;
      return {PageVerdict::kDemoteCandidate,
              lru_age * 2048 + (PageWord::kMaxHeat - PageWord::heat(word))};
    }
    PageVerdict v;
    auto it = stamp_.find(addr);
    if (it != stamp_.end() && accessed_now) {
      // Hint fault somewhere in this epoch: take its middle.
      std::int64_t fault_ns = ctx.now_ns - ctx.epoch_ns / 2;
      double latency_ms = std::max(0.0, static_cast<double>(fault_ns - it->second) / 1e6);
      stamp_.erase(it);
      it = stamp_.end();
      if (should_migrate(latency_ms, fault_ns)) v = {PageVerdict::kPromote, PageWord::heat(word)};
    }
    // task_numa_work: stamp pages in address order, round robin.
    if (it == stamp_.end() && addr >= cursor_ && scanned_ < scan_budget_) {
      stamp_[addr] = ctx.now_ns;
      ++scanned_;
      last_stamped_ = addr;
      if (scanned_ == scan_budget_) wrapped_ = false;
    }
    return v;
  }

  void end_epoch(const EpochContext&, const HeatHistogram&) override {
    cursor_ = wrapped_ ? 0 : last_stamped_ + kPageSize;
  }

  // Forgets a page's stamp (it moved or was unregistered).
  void forget(std::uintptr_t addr) { stamp_.erase(addr); }
  void on_moved(std::uintptr_t addr) override { forget(addr); }

 private:
  double target_mbps() const {
    return o_.promote_throughput_mbps > 0 ? o_.promote_throughput_mbps : o_.promote_rate_limit_mbps;
  }

  // should_numa_migrate_memory() for a slow-tier page.
  bool should_migrate(double latency_ms, std::int64_t now_ns) {
    if (free_enough_) {
      threshold_ms_.store(0);  // "workload changed, reset hot threshold"
      return true;
    }
    adjust_threshold(now_ns);
    double th = threshold_ms_.load() > 0 ? threshold_ms_.load() : o_.hot_threshold_ms;
    if (latency_ms >= th) return false;
    return !rate_limited(now_ns);
  }

  // numa_promotion_adjust_threshold()
  void adjust_threshold(std::int64_t now_ns) {
    double period_ns = o_.scan_period_max_ms * 1e6;
    if (static_cast<double>(now_ns - th_start_ns_) <= period_ns) return;
    th_start_ns_ = now_ns;
    double ref_cand = target_mbps() * 256.0 * o_.scan_period_max_ms / 1000.0;
    double diff = static_cast<double>(nr_cand_ - th_nr_cand_);
    double ref_th = o_.hot_threshold_ms;
    double unit = ref_th * 2 / kAdjustSteps;
    double th = threshold_ms_.load() > 0 ? threshold_ms_.load() : ref_th;
    if (diff > ref_cand * 11 / 10)
      th = std::max(th - unit, unit);
    else if (diff < ref_cand * 9 / 10)
      th = std::min(th + unit, ref_th * 2);
    th_nr_cand_ = nr_cand_;
    threshold_ms_.store(th);
  }

  // numa_promotion_rate_limit(): counts the candidate, true = over the limit.
  bool rate_limited(std::int64_t now_ns) {
    ++nr_cand_;
    if (now_ns - rl_start_ns_ > kNsPerSec) {
      rl_start_ns_ = now_ns;
      rl_nr_cand_ = nr_cand_ - 1;
    }
    return static_cast<double>(nr_cand_ - rl_nr_cand_) >= o_.promote_rate_limit_mbps * 256.0;
  }

  KernelModelOptions o_;
  absl::flat_hash_map<std::uintptr_t, std::int64_t> stamp_;
  std::uintptr_t cursor_ = 0, last_stamped_ = 0;
  std::uint64_t scan_budget_ = 0, scanned_ = 0;
  bool wrapped_ = true, free_enough_ = false;
  std::atomic<double> threshold_ms_{0};  // nbp_threshold (0 = default)
  std::int64_t th_start_ns_ = 0, rl_start_ns_ = 0;
  std::uint64_t nr_cand_ = 0, th_nr_cand_ = 0, rl_nr_cand_ = 0;
};

}  // namespace tierkit
