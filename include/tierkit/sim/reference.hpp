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
// Ties keep the current placement (no move for nothing), then the lower page.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tierkit::sim {

inline bool is_reference_policy(const std::string& p) {
  return p == "lfu" || p == "reactive" || p == "best-static";
}

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

  // Initial placement (before any access): `fast` pages start fast.
  void place(std::uint32_t page, bool fast) { fast_[page] = fast ? 1 : 0; }
  bool fast(std::uint32_t page) const { return fast_[page] != 0; }
  void access(std::uint32_t page) { count_[page] += 1; }

  struct Moves {
    std::uint64_t promoted = 0, demoted = 0;
  };
  // Epoch end: the fast set becomes the top `cap` pages by count. O(pages).
  Moves end_epoch() {
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
