// tierkit/sim/reference.hpp: simple reference placement policies the
// simulator runs beside tierkit's, to judge them (they are yardsticks, not
// tierkit policies). Layer 0 of the simulator: the standard library only.
//
// - lfu: full-history access counts; at every epoch the fast set becomes the
//   top pages by count (moves are not rate-limited).
// - reactive: the same with every count halved at each epoch.
// - best-static: the best fixed placement in hindsight: the top pages by
//   total count over the whole run, placed before it starts; no migration.
//   An upper bound for every policy that never migrates.
// - topk:KNOBS (not in --policy=all): exact counts with the margins an
//   online policy holds ping-pong down with (TopKMargins), to ask what
//   exact counts could reach under the issue-12 rule.
// Ties keep the current placement (no move for nothing), then the lower page.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tierkit::sim {

inline bool is_topk(const std::string& p) { return p == "topk" || p.rfind("topk:", 0) == 0; }
inline bool is_reference_policy(const std::string& p) {
  return p == "lfu" || p == "reactive" || p == "best-static" || is_topk(p);
}

// topk's knobs. Counts are multiplied by `decay` at each epoch (1 = lfu's
// full history, 0.5 = reactive's). At each epoch the hottest slow page
// replaces the coldest fast page, pair after pair, while its count exceeds
// `margin` x the resident's + `add`; `back` multiplies that bar when either
// page moved within the ping-pong window; a promoted page stays fast at
// least `residency` epochs. The defaults are lfu's rule, ties included, and
// decay 0.5 alone is reactive's (RealTrace.ReferencePoliciesAreSane).
struct TopKMargins {
  double decay = 1, margin = 1, add = 0, back = 1;
  std::uint32_t residency = 0;
};

// The per-epoch top-k selector behind lfu and reactive, with the move and
// ping-pong bookkeeping the engine keeps (a page moved back the other way
// within `pingpong_window` epochs of its last move is a ping-pong).
class TopKPlacement {
 public:
  TopKPlacement(std::uint64_t pages, std::uint64_t cap, bool halve_each_epoch,
                std::uint32_t pingpong_window = 32)
      : cap_(std::min(cap, pages)),
        halve_(halve_each_epoch),
        window_(pingpong_window),
        count_(pages, 0),
        fast_(pages, 0),
        last_move_(pages, kNever) {}
  // topk:KNOBS: counts decayed and pages swapped as `m` says.
  TopKPlacement(std::uint64_t pages, std::uint64_t cap, const TopKMargins& m,
                std::uint32_t pingpong_window = 32)
      : TopKPlacement(pages, cap, false, pingpong_window) {
    margins_ = m;
  }

  // Initial placement (before any access): `fast` pages start fast.
  void place(std::uint32_t page, bool fast) { fast_[page] = fast ? 1 : 0; }
  bool fast(std::uint32_t page) const { return fast_[page] != 0; }
  void access(std::uint32_t page) { count_[page] += 1; }

  struct Moves {
    std::uint64_t promoted = 0, demoted = 0;
  };
  // Epoch end: the fast set becomes the top `cap` pages by count (with
  // margins: see TopKMargins). O(pages), with margins O(pages log pages).
  Moves end_epoch() {
    if (margins_) return end_epoch_with_margins(*margins_);
    const auto n = static_cast<std::uint32_t>(count_.size());
    order_.resize(n);
    for (std::uint32_t i = 0; i < n; ++i) order_[i] = i;
    auto better = [&](std::uint32_t a, std::uint32_t b) {
      if (count_[a] != count_[b]) return count_[a] > count_[b];
      if (fast_[a] != fast_[b]) return fast_[a] > fast_[b];
      return a < b;
    };
    if (cap_ < n)
      std::nth_element(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(cap_),
                       order_.end(), better);
    want_.assign(n, 0);
    for (std::uint64_t i = 0; i < cap_; ++i) want_[order_[i]] = 1;
    Moves m;
    for (std::uint32_t p = 0; p < n; ++p) {
      if (want_[p] != fast_[p]) move(p, want_[p] != 0, m);
      if (halve_) count_[p] *= 0.5;
    }
    ++epoch_;
    return m;
  }
  std::uint64_t promoted() const { return promoted_; }
  std::uint64_t demoted() const { return demoted_; }
  std::uint64_t pingpong() const { return pingpong_; }

 private:
  static constexpr std::uint64_t kNever = ~std::uint64_t{0};
  bool moved_lately(std::uint32_t p) const {
    return last_move_[p] != kNever && epoch_ - (last_move_[p] >> 1) <= window_;
  }
  bool held(std::uint32_t p, std::uint32_t residency) const {
    return last_move_[p] != kNever && (last_move_[p] & 1) != 0 &&
           epoch_ - (last_move_[p] >> 1) < residency;
  }
  Moves end_epoch_with_margins(const TopKMargins& k) {
    const auto n = static_cast<std::uint32_t>(count_.size());
    std::vector<std::uint32_t> slow, fast;
    std::uint64_t fast_pages = 0;
    for (std::uint32_t p = 0; p < n; ++p) {
      if (fast_[p] != 0) {
        ++fast_pages;
        if (!held(p, k.residency)) fast.push_back(p);
      } else if (count_[p] > 0) {
        slow.push_back(p);
      }
    }
    auto hotter = [&](std::uint32_t a, std::uint32_t b) {
      return count_[a] != count_[b] ? count_[a] > count_[b] : a < b;
    };
    std::sort(slow.begin(), slow.end(), hotter);
    std::sort(fast.begin(), fast.end(), [&](auto a, auto b) { return hotter(b, a); });
    Moves m;
    std::size_t i = 0;
    for (; i < slow.size() && fast_pages < cap_; ++i, ++fast_pages) move(slow[i], true, m);
    for (std::size_t j = 0; i < slow.size() && j < fast.size(); ++i, ++j) {
      double bar = k.margin * count_[fast[j]] + k.add;
      if (moved_lately(slow[i]) || moved_lately(fast[j])) bar *= k.back;
      if (!(count_[slow[i]] > bar)) break;
      move(slow[i], true, m);
      move(fast[j], false, m);
    }
    for (double& c : count_) c *= k.decay;
    ++epoch_;
    return m;
  }
  void move(std::uint32_t p, bool to_fast, Moves& m) {
    // last_move_ holds epoch * 2 + direction (1 = to fast).
    if (last_move_[p] != kNever && (last_move_[p] & 1) != (to_fast ? 1u : 0u) &&
        epoch_ - (last_move_[p] >> 1) <= window_)
      ++pingpong_;
    last_move_[p] = epoch_ * 2 + (to_fast ? 1 : 0);
    fast_[p] = to_fast ? 1 : 0;
    (to_fast ? m.promoted : m.demoted) += 1;
    (to_fast ? promoted_ : demoted_) += 1;
  }

  std::uint64_t cap_;
  bool halve_;
  std::optional<TopKMargins> margins_;
  std::uint32_t window_;
  std::vector<double> count_;
  std::vector<std::uint8_t> fast_, want_;
  std::vector<std::uint64_t> last_move_;
  std::vector<std::uint32_t> order_;
  std::uint64_t epoch_ = 0, promoted_ = 0, demoted_ = 0, pingpong_ = 0;
};

// best-static's placement: 1 for the `cap` pages with the most accesses
// (ties: lower page), 0 for the rest.
inline std::vector<std::uint8_t> best_static_placement(const std::vector<std::uint32_t>& accesses,
                                                       std::uint64_t pages, std::uint64_t cap) {
  std::vector<std::uint64_t> count(pages, 0);
  for (std::uint32_t p : accesses) ++count[p];
  std::vector<std::uint32_t> order(pages);
  for (std::uint32_t i = 0; i < pages; ++i) order[i] = i;
  cap = std::min(cap, pages);
  if (cap < pages)
    std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(cap), order.end(),
                     [&](std::uint32_t a, std::uint32_t b) {
                       return count[a] != count[b] ? count[a] > count[b] : a < b;
                     });
  std::vector<std::uint8_t> fast(pages, 0);
  for (std::uint64_t i = 0; i < cap; ++i) fast[order[i]] = 1;
  return fast;
}

}  // namespace tierkit::sim
