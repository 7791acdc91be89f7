// tierkit/policy/automatic.hpp: the default policy. Capacity-aware: it picks the promotion
// threshold from the heat histogram so the hot set fits the fast tier, and
// cools heat by access volume. Choose it when you do not know a threshold.
// Layer 4: includes policy.hpp only.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tierkit/policy.hpp"

namespace tierkit {

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
  // stationary skewed workload still swapped a few warm pages back and forth
  // (the extremes of a few hundred equally warm pages are 4 sigma apart).
  double swap_confidence = 4.0;
  // ... and this many when the resident was not accessed last epoch: its
  // heat is history, not a rate being sampled now, so the extremes-of-noise
  // argument above does not hold for it. 3: at 2, uniform and zipf swapped
  // noise (50% and 27% of their moves ping-ponged).
  double idle_swap_confidence = 3.0;
  // Cooling by access volume, not by time (as Memtis cools by sample
  // count): heat halves at the end of an epoch once the total heat reaches
  // this many units per fast-budget page, or once a quarter of the budget's
  // worth of pages is past half the heat range. A sparse workload then keeps
  // a long history (heat is close to a plain access count, as LFU's), a
  // dense one a short one. 8, not 32: with bursts discounted, the shorter
  // history follows real programs' phases (sqlite3 at --gap_ns=5000:
  // 37.9% vs 32.7%) and still holds stationary ones (zipf 81.4% vs 78.8%).
  // 0 = age by half_life_epochs instead.
  // NOTE: the window is never less than min_heat units per seen page
  // (EpochContext::seen_pages: tracked and accessed since). A window per
  // budget page alone shrinks with the fast tier: at 10% of the footprint,
  // redis at --gap_ns=5000 and 50 ms epochs cooled at nearly every
  // boundary, as reactive's counts do (15.7% against lfu's 20.9%; 19.5%
  // with the floor). At a fast tier of 25% or more of what is in use the
  // floor changes nothing; below, it lowers the issue-12 shortfall. Seen,
  // not tracked: memory registered but never accessed (a cold table, an
  // arena's slack) must not lengthen the window, and with tracked pages it
  // did, up to 46% more ping-pong (docs/performance.md, "Session 19").
  double cool_heat_per_page = 8;
  // Never promote a page seen fewer than this many times since the last
  // cooling (TPP: promote only pages seen hot twice). Volume cooling only,
  // which also waits for this many units of heat per seen page.
  std::uint32_t min_heat = 2;
  // ... and at least every this many epochs, so heat nobody refreshes does
  // not hold its place forever (young data going cold). 0 = never.
  std::uint32_t max_epochs_between_coolings = 8;
  // Bursts (2Q's and TPP's point: one epoch is not evidence of reuse). A
  // page's heat from its first epoch of activity (not seasoned: it held no
  // heat before) counts in full up to this, and above it only in the share
  // of bursts of its size (octave of heat: 8-15, 16-31, ..., 256-511) that
  // the engine measures to be touched again the next epoch
  // (Policy::observe_bursts, learned as it runs, starting from 0; a size
  // seen seldom lately is pulled toward the share over all sizes). Real
  // programs write and scan whole pages once (an interpreter building its
  // objects, a database warming its cache, a compressor zeroing its
  // tables): 32-64 line misses in one epoch and never again, which heat
  // took for the hottest pages there are. Per size, because whether a
  // larger burst is reused more or less depends on the program: on gcc a
  // page swept whole (64 misses) is never read again and a partly written
  // one (16-31) is, and one share for both ranked the sweeps first; over
  // the real traces at ten epoch lengths, per-size credits cut the rule's
  // shortfall by 7% and its ping-pong by 8% (docs/performance.md, "Session
  // 26"). Only bursts above burst_heat are measured
  // (PolicyTraits::burst_heat): the many small first touches around a
  // scan are reused at another rate (session 25). Young data that stays
  // hot (the churn workload) measures ~1 and keeps its heat. 0 = off.
  std::uint32_t burst_heat = 8;
  // Idle residents (lazy cooling, as HeMem's): a page idle for k epochs is
  // judged at most idle_evidence * span / k, the highest rate (times the
  // span heat covers, 2 cooling intervals) at which k silent epochs are
  // still plausible, so a page that went cold gives way before a volume
  // cooling notices. 0 = off.
  double idle_evidence = 1.0;
  // Swap only while the heats differ by more than noise: over the fast
  // pages and the slow ones with heat, var / mean (at most 1 for Poisson
  // counts, and for heat, a sum of halved counts) must exceed 1 by this
  // many of its standard errors under that null, sqrt(2 / (n - 1)). With
  // no hot set there is nothing to rank, and at 4 sigma per pair the
  // extremes of tens of thousands of equally warm pages still pass: uniform
  // swapped 5,986 pages for nothing (4,927 at 64 MiB, 4.3% of them
  // ping-pong). Moves into free room and the first epoch are not affected.
  // 0 = off.
  double spread_confidence = 4.0;
  // Moves must pay (ARMS's point: a move is worth it only if the page's
  // use in its new tier repays it). Each epoch the engine reports the hits
  // that the last few epochs' promotions won and their demotions lost, and
  // the moves that undid one made within the ping-pong window, each a loss
  // of one (Policy::observe_moves: the earlier move did not pay, and its
  // reversal costs a second copy). When the net falls below 0 (the moves
  // lost more hits than they won), swaps stop for 2 epochs, after the next
  // loss 4, then 8, ... up to this many, each retry measured again
  // (exponential backoff); a win resets the wait. The net is halved each
  // epoch that has recent moves to report and holds while none are, so a
  // retry starts from the losses that stopped the swaps (halving it every
  // epoch changed nothing measurable: docs/performance.md, "Session 34").
  // A real program whose hot data moves faster than heat follows (GNU
  // sort's passes over its buffer, --gap_ns=800) fell from first touch's
  // 25.4% to 15.5% without it (24.6% with it). Moves into free room are not
  // affected, nor sampled evidence's swaps (Engine::swap_allowed).
  // Reversals count since session 21: once the engine reported only the
  // epochs a moved page was really accessed in (PageWord::touched; before,
  // a page idle a multiple of 16 epochs read as accessed, so demoted idle
  // pages often counted as losses), the rule let through 45% more
  // ping-pong over ten epoch lengths; counting reversals takes it to 23%
  // below the old level (docs/performance.md, "Session 21"). 0 = off.
  std::uint32_t payoff_backoff_epochs = 32;
  // At the first epoch boundary (no histogram yet) the fast tier holds what
  // first touch put there, placed in allocation order, not chosen on
  // evidence. Hysteresis and swap_confidence keep a chosen placement from
  // being undone by noise; there is none to protect yet. So at the first
  // boundary a resident gives way to a newcomer whose heat beats its own by
  // this many times sqrt(sum of both heats), with no hysteresis, while the
  // first epoch's own histogram passes the spread test (spread_confidence).
  // A resident with no heat at all keeps the usual margins: it was placed
  // and not yet used, which is not evidence that it is cold (the churn
  // workload's pages that the allocation front reaches later; with this
  // rule for them too, churn ping-ponged 2.1% of its moves against 1.7%).
  // Over the real traces at 25% fast and five epoch lengths (10-200 ms),
  // 0.5 passes 68 issue-12 cells against the usual margins' 65, with 11%
  // less summed shortfall and 1.5% more ping-pong; it passes more cells at
  // 10% and 50% fast and at four other epoch lengths too. 1 passes 65, 2
  // 63, 3 60; 0 (any hotter newcomer) 65 with 26% more shortfall: a page
  // one access hotter swaps (docs/performance.md, "Session 45"). Heat counts only
  // (EpochContext::heat_is_counts): a source's heat is not a count, and
  // sampled runs keep the usual margins. Below 0 = the usual margins.
  double first_swap_confidence = 0.5;
  // ... and a resident whose heat is above burst_heat gives way only to a
  // newcomer this many times hotter: both heats are bursts whose reuse
  // nobody has measured. Without it (0) such residents are not offered and
  // hold their place whatever comes: a structure that grows (reallocated
  // late, so born slow, then read on every request: redis's dict at
  // --gap_ns=0) stayed slow. Session 11 set 4, under the usual margins;
  // under first_swap_confidence no extra bar (1) passes the most cells (68
  // of the 180 above; 2 passes 62, 4 passes 67 with 7% more shortfall:
  // docs/performance.md, "Session 45"). Heat counts only.
  double first_swap_ratio = 1.0;
  // 1: the threshold comes from this epoch's histogram
  // (Policy::refine_thresholds), not the last one's. With the last one,
  // each phase change costs an epoch: on sqlite3-lookups-long at gap 800
  // the boundary after the hot set moved had 2,289 slow pages at heat 8 or
  // more, but a threshold of 115 from the epoch before, and promoted 5
  // pages (38.7% overall; 41.6% with 1). 0 (the default) = the last
  // epoch's: over the real traces at ten epoch lengths (10-300 ms), 1
  // passes 121 of 300 issue-12 cells against 119, with the same summed
  // shortfall and 2.3% more ping-pong, cells flipping on timing
  // (docs/performance.md, "Session 17").
  std::uint32_t current_histogram = 0;
  // Free room in the fast tier for pages the kernel places at their first
  // touch (births), so they start fast instead of waiting slow for a swap.
  //   2 (the default): room for about an epoch's births while pages are born
  //     (at least 1% of the budget an epoch) and births were last
  //     seen to take free fast memory; made of idle residents only (heat 0,
  //     Policy::kept_room), at most 1 - low watermark of the budget. Where
  //     pages are placed before use, or bound elsewhere, births take no free
  //     memory and no room is made: the budget is filled as with 0.
  //   1: the engine's watermarks, as kswapd (demote the coldest down to the
  //     low one whatever their heat; TPP's headroom).
  //   0: none: fill the budget, swapping one for one.
  // In tierkit-sim with --place_at_access, over the real traces at ten epoch
  // lengths, 2 passes 148 issue-12 cells against 0's 110, with 1.4% less
  // ping-pong and 0.6% less simulated time; 1 passes 144 with 2.2x the
  // ping-pong. With every page placed before the run (the simulator's
  // default) 2 runs exactly as 0 (docs/performance.md, "Session 30").
  // NOTE: births are seen_pages' growth, in 8-page groups, and what they
  // took is the fast node's free memory going down between epochs, so
  // another process allocating there at the same time counts as births.
  std::uint32_t keep_room = 2;
  // Below 1: at most this share of the pages moved so far may undo a move
  // made within the ping-pong window (EngineConfig::pingpong_window_epochs),
  // a bound on wasted copies whatever the workload; past it, such pages stay
  // where they are and other candidates move (Policy::max_reversal_share).
  // 1 (the default) = no bound. NOTE: it also holds back corrections: a
  // page promoted on a burst and never used again stays fast until the
  // window has passed. Over the real traces at ten epoch lengths, 0.04 cut
  // ping-pong by 79% and lost 0.28 points of mean hit ratio, the simulated
  // time the same within 0.03% (docs/performance.md, "Session 24").
  double reversal_share = 1;
  // A swap whose resident was promoted within the ping-pong window is
  // judged with the newcomer's heat divided by this
  // (Policy::reversal_margin): demoting the resident undoes a move, wasting
  // its copy and paying a second one, so the swap must be this much more
  // convincing (ARMS's point that a move must repay its cost, per swap).
  // Mostly it holds a recent promotion that went idle: at heat 0 the swap's
  // margins are set by the newcomer's heat alone. Over the real traces at
  // ten epoch lengths, 1.5 passes 141 issue-12 cells against 138, with 32%
  // less ping-pong, 1% more summed shortfall and 0.02% less simulated time
  // (docs/performance.md, "Session 33"). 1 = off.
  double reversal_margin = 1.5;
};

// Capacity-aware: each epoch it picks the lowest heat h such that the slow
// pages at least that hot fit in the room left plus the fast pages colder
// than h / hysteresis. Heat cools by access volume (see AutomaticOptions::
// cool_heat_per_page): on sparse real-program streams a time half-life
// forgot pages between their accesses and kept the fast tier as first touch
// left it. Demotion threshold = h / hysteresis, so a page must
// cool by that factor before it can lose its place: no ping-pong of warm
// pages on a stationary workload. Pages are judged by judged_heat(): a
// first-epoch burst counts only as much as bursts have been seen to be
// reused, and a resident's heat is capped by how long it has been idle
// (AutomaticOptions::burst_heat, idle_evidence).
class AutomaticPolicy final : public Policy {
 public:
  explicit AutomaticPolicy(AutomaticOptions o = {}) : o_(o) {}
  std::string name() const override { return "automatic"; }

  Thresholds begin_epoch(const EpochContext& ctx) override {
    const bool by_volume = o_.cool_heat_per_page > 0;
    const std::uint32_t floor_heat = lowest_threshold(ctx);
    cool_ = false;
    decay_ = ctx.decay;
    epochs_ = ctx.epoch + 1;
    // No histogram yet (first epoch): promote what was seen at least
    // min_heat times, in place of a clearly colder resident (should_swap
    // judges each pair) whose heat is all credible: at most burst_heat,
    // the part of a burst that counts in full. Above it, every page's heat
    // is a burst whose reuse nobody has measured yet. (No resident at all,
    // as before, left a run with one epoch boundary as first touch filled
    // it; any resident at the usual margins, tried, gained on mawk-groupby
    // and lost on python3-dict, gcc-O2 and xz-3 with shorter epochs:
    // docs/performance.md.) Residents above burst_heat are offered too where
    // heat counts accesses, and give way only to a newcomer first_swap_ratio
    // times hotter (should_swap); first_swap_confidence, when set, replaces
    // the usual margins.
    if (ctx.last == nullptr) {
      const std::uint32_t credible =
          o_.burst_heat > 0 && !first_swaps(ctx) ? o_.burst_heat : PageWord::kMaxHeat;
      first_ratio_ = first_swaps(ctx) ? o_.first_swap_ratio : 0;
      first_counts_ = ctx.heat_is_counts;
      return by_volume ? Thresholds{floor_heat, credible} : Thresholds{};
    }
    const HeatHistogram& h = *ctx.last;
    spread_ = spread_exceeds_noise(h);
    paying_ = blocked_epochs_ == 0;
    if (blocked_epochs_ > 0) --blocked_epochs_;
    if (by_volume) {
      ++since_cooling_;
      cool_ = volume_says_cool(ctx, h) || (o_.max_epochs_between_coolings > 0 &&
                                           since_cooling_ >= o_.max_epochs_between_coolings);
      if (cool_) {
        cool_interval_ = coolings_++ == 0
                             ? since_cooling_
                             : cool_interval_ + 0.25 * (since_cooling_ - cool_interval_);
        since_cooling_ = 0;
      }
    }
    return choose(h, ctx.fast_budget_pages, ctx.fast_used_pages, floor_heat);
  }
  bool refines_thresholds() const override { return o_.current_histogram != 0 || first_spread(); }
  void end_epoch(const EpochContext& ctx, const HeatHistogram&) override {
    if (o_.keep_room == 2) judge_room(ctx);
  }
  std::optional<double> kept_room() const override {
    if (o_.keep_room == 1) return std::nullopt;
    return room_share_;
  }
  Thresholds refine_thresholds(const EpochContext& ctx, const HeatHistogram& hist,
                               Thresholds begun) override {
    if (ctx.last == nullptr) {  // the first epoch has its own rule
      if (first_spread()) spread_ = spread_exceeds_noise(hist);
      return begun;
    }
    return choose(hist, ctx.fast_budget_pages, hist.fast_pages, lowest_threshold(ctx));
  }
  PolicyTraits traits() const override {
    PolicyTraits t;
    t.fills_budget = o_.keep_room != 1;
    t.burst_heat = o_.burst_heat;  // the credit applies above it
    t.reads_half_life = o_.cool_heat_per_page <= 0;
    return t;
  }
  double aging(const EpochContext& ctx) const override {
    if (o_.cool_heat_per_page <= 0) return ctx.decay;
    return cool_ ? 0.5 : 1.0;
  }
  std::uint32_t judged_heat(std::uint32_t heat, bool seasoned, std::uint32_t idle) const override {
    // In the first epoch every page is new: nothing to tell a burst from.
    if (epochs_ <= 1) return heat;
    if (!seasoned && o_.burst_heat > 0 && heat > o_.burst_heat)
      heat =
          o_.burst_heat + static_cast<std::uint32_t>(burst_credit(heat) * (heat - o_.burst_heat));
    if (o_.idle_evidence <= 0 || idle == 0) return heat;
    const double span = o_.cool_heat_per_page <= 0 ? 1 / (1 - decay_)
                        : coolings_ > 0            ? 2 * cool_interval_
                                                   : static_cast<double>(epochs_);
    const double cap = o_.idle_evidence * span / idle;
    return heat <= cap ? heat : static_cast<std::uint32_t>(std::ceil(cap));
  }
  void observe_bursts(std::span<const BurstOutcome> bursts) override {
    if (bursts.empty()) return;
    std::array<double, kBurstClasses> seen{}, again{};
    for (const BurstOutcome& b : bursts) {
      seen[burst_class(b.heat)] += 1;
      again[burst_class(b.heat)] += b.touched_again ? 1 : 0;
    }
    double all_again = 0;
    for (double a : again) all_again += a;
    burst_credit_ += 0.25 * (all_again / static_cast<double>(bursts.size()) - burst_credit_);
    for (std::size_t c = 0; c < kBurstClasses; ++c) {
      if (seen[c] > 0) class_credit_[c] += 0.25 * (again[c] / seen[c] - class_credit_[c]);
      class_seen_[c] = 0.75 * class_seen_[c] + seen[c];
    }
  }
  void observe_moves(std::uint64_t promoted, std::uint64_t promoted_used, std::uint64_t demoted,
                     std::uint64_t demoted_used, std::uint64_t reversed) override {
    if (o_.payoff_backoff_epochs == 0 || promoted + demoted + reversed == 0) return;
    payoff_ = 0.5 * payoff_ + static_cast<double>(promoted_used) -
              static_cast<double>(demoted_used) - static_cast<double>(reversed);
    if (payoff_ > 0) {
      backoff_ = 2;
    } else if (payoff_ < 0 && blocked_epochs_ == 0) {
      blocked_epochs_ = std::min(backoff_, o_.payoff_backoff_epochs);
      backoff_ = 2 * blocked_epochs_;
    }
  }
  // Whether swaps are allowed this epoch by the payoff rule
  // (AutomaticOptions::payoff_backoff_epochs).
  bool moves_paying() const { return paying_; }
  // burst_credit()
  //
  // The share of a burst's heat above burst_heat that counts, learned over
  // all bursts (no argument) or for bursts of `heat`'s size: its octave's
  // share, weighed against the overall one as if the overall share were
  // kBurstPrior bursts of that size (AutomaticOptions::burst_heat).
  double burst_credit() const { return burst_credit_; }
  double burst_credit(std::uint32_t heat) const {
    const std::size_t c = burst_class(heat);
    return (class_seen_[c] * class_credit_[c] + kBurstPrior * burst_credit_) /
           (class_seen_[c] + kBurstPrior);
  }
  std::uint32_t min_residency_epochs() const override { return o_.min_residency_epochs; }
  double max_reversal_share() const override { return o_.reversal_share; }
  double reversal_margin() const override { return o_.reversal_margin; }
  double swap_ratio() const override { return o_.hysteresis; }
  bool should_swap(std::uint32_t newcomer, std::uint32_t resident,
                   std::uint32_t resident_idle) const override {
    const bool first = epochs_ <= 1 && first_counts_;  // first_swap_confidence applies
    if (first && first_ratio_ > 0 && resident > o_.burst_heat &&
        static_cast<double>(newcomer) < first_ratio_ * static_cast<double>(resident))
      return false;
    if (first && o_.first_swap_confidence >= 0 && resident > 0)
      return spread_ && newcomer > resident &&
             beyond_noise(newcomer, resident, o_.first_swap_confidence);
    if (!spread_ || !paying_ || !Policy::should_swap(newcomer, resident)) return false;
    return beyond_noise(newcomer, resident,
                        resident_idle > 0 ? o_.idle_swap_confidence : o_.swap_confidence);
  }
  double current_threshold() const override {
    std::uint32_t h = promote_heat_.load();
    return h > PageWord::kMaxHeat ? INFINITY : static_cast<double>(h);
  }
  const char* threshold_unit() const override { return "heat"; }

 private:
  // The promotion threshold: the lowest heat h such that the slow pages at
  // least that hot fit in the room plus the fast pages colder than
  // h / hysteresis (see the class comment); demotion at h / hysteresis.
  Thresholds choose(const HeatHistogram& h, std::uint64_t budget_pages, std::uint64_t used_pages,
                    std::uint32_t floor_heat) {
    double cap = static_cast<double>(budget_pages) * (1.0 - o_.headroom);
    double room = std::max(0.0, cap - static_cast<double>(used_pages));
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
    std::uint32_t demote = chosen > PageWord::kMaxHeat
                               ? 0
                               : static_cast<std::uint32_t>(std::ceil(chosen / o_.hysteresis)) - 1;
    promote_heat_.store(chosen);
    return {chosen, std::min(demote, chosen)};
  }

  // Whether the first boundary's swaps wait for the spread test on its own
  // histogram (there is no earlier one).
  bool first_spread() const {
    return epochs_ <= 1 && first_counts_ && o_.first_swap_confidence >= 0 &&
           o_.spread_confidence > 0;
  }
  // Whether `newcomer`'s heat beats `resident`'s by z times sqrt(sum of
  // both), the Poisson noise of their difference (swap_confidence).
  static bool beyond_noise(std::uint32_t newcomer, std::uint32_t resident, double z) {
    const double diff = static_cast<double>(newcomer) - static_cast<double>(resident);
    return diff * diff >= z * z * (static_cast<double>(newcomer) + static_cast<double>(resident));
  }

  // The lowest promotion threshold: min_heat under volume cooling, else the
  // heat of a page accessed min_rate times per epoch.
  std::uint32_t lowest_threshold(const EpochContext& ctx) const {
    return o_.cool_heat_per_page > 0
               ? std::max<std::uint32_t>(1, o_.min_heat)
               : std::max<std::uint32_t>(1, heat_for_rate(o_.min_rate, ctx.decay));
  }

  // Burst sizes: octaves of heat, 0-15 (below 8 only if burst_heat is
  // set lower), 16-31, 32-63, 64-127, 128-255, 256-511.
  static constexpr std::size_t kBurstClasses = 6;
  static std::size_t burst_class(std::uint32_t heat) {
    const int octave = std::bit_width(heat) - 1;  // floor(log2 heat), -1 for 0
    return static_cast<std::size_t>(std::clamp(octave - 3, 0, static_cast<int>(kBurstClasses) - 1));
  }
  // How many recent bursts of one size weigh as much as the overall share:
  // a size seen seldom lately keeps close to it.
  static constexpr double kBurstPrior = 16;

  // Whether the first boundary may swap residents above burst_heat
  // (AutomaticOptions::first_swap_ratio).
  bool first_swaps(const EpochContext& ctx) const {
    return o_.first_swap_ratio > 0 && o_.burst_heat > 0 && ctx.heat_is_counts;
  }

  // Whether the heat seen so far is enough history: its total reached the
  // volume window (cool_heat_per_page per budget page, at least min_heat
  // per seen page), or too many pages crowd the top half of the heat
  // range (they could no longer be told apart).
  bool volume_says_cool(const EpochContext& ctx, const HeatHistogram& h) const {
    const double budget = static_cast<double>(std::max<std::uint64_t>(ctx.fast_budget_pages, 1));
    const double seen = static_cast<double>(ctx.seen_pages);
    const double window =
        std::max(o_.cool_heat_per_page * budget, static_cast<double>(o_.min_heat) * seen);
    if (h.fast_heat + h.slow_heat >= window) return true;
    std::uint64_t high = 0;
    for (std::size_t i = HeatHistogram::kBuckets / 2; i < HeatHistogram::kBuckets; ++i)
      high += h.fast[i] + h.slow[i];
    return static_cast<double>(high) * 4 > budget;
  }

  // AutomaticOptions::spread_confidence's test on the heats of `h`'s pages
  // that can take part in a swap: every fast page, and the slow pages with
  // heat (a slow page at 0 is never a candidate; an idle resident is the
  // first to give way). Fewer than two, or no heat: the verdict stands.
  bool spread_exceeds_noise(const HeatHistogram& h) const {
    if (o_.spread_confidence <= 0) return true;
    double n = 0, sum = 0, sum2 = 0;
    for (std::size_t i = 0; i < HeatHistogram::kBuckets; ++i) {
      const double c = static_cast<double>(h.fast[i] + (i > 0 ? h.slow[i] : 0));
      const double x = static_cast<double>(i);
      n += c, sum += c * x, sum2 += c * x * x;
    }
    if (n < 2 || sum <= 0) return spread_;
    const double mean = sum / n, var = (sum2 - n * mean * mean) / (n - 1);
    return var / mean > 1 + o_.spread_confidence * std::sqrt(2 / (n - 1));
  }

  // keep_room=2: room for an epoch's births (seen_pages' growth, a moving
  // average) while they are at least kRoomBirths of the budget an epoch and
  // the kernel was last seen to place births in free room: of the room
  // births could have taken (born and offered), half taken, over the last
  // few epochs (a kernel folds its free-page count in batches: Linux 6.12
  // under QEMU showed 2,000 pages taken every fourth epoch, 0 between).
  // With no such evidence (a fast tier full from the start) no room is made
  // to find out.
  void judge_room(const EpochContext& ctx) {
    const double born = static_cast<double>(ctx.born_pages);
    const double budget = static_cast<double>(std::max<std::uint64_t>(ctx.fast_budget_pages, 1));
    born_window_ = kRoomWindow * born_window_ + born;
    taken_window_ = kRoomWindow * taken_window_ + static_cast<double>(ctx.taken_fast_pages);
    const double could = std::min(born_window_, static_cast<double>(ctx.offered_room_pages));
    if (could >= std::max(1.0, 0.5 * kRoomBirths * budget))
      room_used_ = taken_window_ >= 0.5 * could;
    births_ = 0.5 * births_ + 0.5 * born;
    room_share_ = room_used_ && born >= kRoomBirths * budget ? births_ / budget : 0;
  }
  static constexpr double kRoomBirths = 0.01;
  static constexpr double kRoomWindow = 0.75;  // weight of the epochs before

  AutomaticOptions o_;
  bool room_used_ = false;  // births were last seen to take free room (judge_room)
  double born_window_ = 0, taken_window_ = 0;  // born and taken, recent epochs
  double births_ = 0;                          // pages born an epoch, a moving average
  double room_share_ = 0;                      // keep_room=2's room (kept_room)
  bool spread_ = true;
  std::atomic<std::uint32_t> promote_heat_{PageWord::kMaxHeat + 1};
  bool cool_ = false;
  std::uint32_t since_cooling_ = 0;
  double cool_interval_ = 1;  // epochs between coolings (moving average)
  std::uint64_t coolings_ = 0, epochs_ = 1;
  double decay_ = 0.5;
  double burst_credit_ = 0;                           // over all sizes
  std::array<double, kBurstClasses> class_credit_{};  // per size (burst_class)
  std::array<double, kBurstClasses> class_seen_{};    // its bursts seen, 0.75 per epoch
  double first_ratio_ = 0;     // first_swap_ratio while it applies (first_swaps)
  bool first_counts_ = false;  // the first boundary's heat counts accesses
  double payoff_ = 0;          // hits won minus lost by recent moves (observe_moves)
  bool paying_ = true;
  std::uint32_t blocked_epochs_ = 0, backoff_ = 2;
};

}  // namespace tierkit
