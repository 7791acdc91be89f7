// tierkit/sim/bound.hpp: what foresight could do within the issue-12
// rule's limits: an upper bound on the fast-tier hits of every placement
// schedule that keeps them, and one such schedule found in hindsight. Use it
// to tell a cell that no policy can pass from one that only an online policy
// cannot (tierkit-sim --policy=rule-bound,rule-hindsight). Layer 0 of the
// simulator: the standard library only.
//
// The problem: moves happen at given epoch boundaries; epoch 0 runs on the
// initial placement; at most `cap` pages are fast in any epoch; at most
// `promotion_budget` promotions in all; ping-pong moves (a page moved within
// `window` epochs of its own last move, which is always the other way) at
// most `pingpong_fraction` of all moves; a page moves only once it has been
// accessed (before, it does not exist for a policy). Maximise the accesses
// that find their page fast. Neither rate limits nor residency rules apply:
// every schedule a policy can run on these boundaries is one of those
// counted, so the upper bound holds for all of them.
//
// Upper bound: Lagrangian relaxation. Pricing each epoch's capacity
// (lambda_t), each promotion (mu) and the ping-pong excess (nu) splits the
// problem into one dynamic programme per page (detail::PageSchedule). For
// any prices >= 0 the priced optimum is an upper bound (weak duality); a
// subgradient descent on the prices lowers it. Never below the true optimum,
// wherever the descent stops; above it by at most the relaxation's gap.
// Lower bound: the best of 42 greedy schedules (detail::greedy_schedule).
//
// Cost: O(400 * pages * epochs) time for the upper bound, O(42 * epochs *
// pages * log pages) for the schedule, O(pages * epochs) memory. The
// committed traces at 100 ms epochs: under a second each.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <vector>

namespace tierkit::sim {

struct RuleBoundProblem {
  std::uint32_t pages = 0;
  std::uint64_t cap = 0;  // fast pages
  // counts[t * pages + p]: accesses of page p in epoch t (epochs 0..T-1).
  std::vector<std::uint32_t> counts;
  std::uint32_t epochs = 0;
  // Fast from the start (as tierkit-sim places every page before the run).
  std::vector<std::uint8_t> initial;
  std::uint64_t promotion_budget = 0;
  double pingpong_fraction = 0.05;
  std::uint32_t window = 32;
  int iterations = 400;  // subgradient steps at most
  bool upper = true;     // false: only the greedy schedule (lower)
};

// A schedule's outcome.
struct ScheduleCounts {
  std::uint64_t hits = 0, promotions = 0, demotions = 0, pingpong = 0;
};

struct RuleBound {
  double upper = 0;               // no schedule within the limits has more hits
  std::uint64_t lower = 0;        // hits of a schedule found within the limits
  ScheduleCounts found;           // that schedule (found.hits == lower)
  std::uint64_t epoch0_hits = 0;  // part of both: epoch 0 runs on `initial`
  int iterations = 0;             // subgradient steps taken
};

namespace detail {

// One page's best schedule at the given prices: its priced value and what
// the schedule does (per-epoch tier, promotions, moves, ping-pong moves).
// O(epochs) per page: the states (tier, epochs since the last move) are kept
// as the page's moves, each valued lazily against the tier's running gain,
// with a monotonic queue for the best move still inside the window (a move
// from there is a ping-pong) and one value for the states past it.
class PageSchedule {
 public:
  PageSchedule(std::uint32_t epochs, std::uint32_t window) : epochs_(epochs), window_(window) {
    for (Tier& tier : tier_) tier.entries.resize(epochs);
  }

  double solve(const std::uint32_t* counts, std::uint32_t stride, bool initial,
               const std::vector<double>& lambda, double mu, double nu, double fraction) {
    for (int s = 0; s < 2; ++s) {
      Tier& tier = tier_[s];
      tier.gain = 0;
      tier.settled = s == static_cast<int>(initial) ? 0 : kNone;
      tier.settled_from = kInitial;
      tier.window.clear();
      tier.oldest = 1;
    }
    bool born = false;  // accessed before this boundary: it exists, it may move
    for (std::uint32_t t = 1; t < epochs_; ++t) {
      born = born || counts[std::size_t{t - 1} * stride] > 0;
      const double gain = counts[std::size_t{t} * stride] - lambda[t];
      Move into[2];
      for (int s = 0; s < 2 && born; ++s) into[1 - s] = best_move(s, t, mu * (1 - s), nu, fraction);
      for (int s = 0; s < 2; ++s) add_entry(s, t, into[s]);
      tier_[1].gain += gain;  // through epoch t (the slow tier gains nothing)
    }
    best_tier_ = 0, best_from_ = kInitial;
    double best = kNone;
    for (int s = 0; s < 2; ++s) {
      Tier& tier = tier_[s];
      for (std::uint32_t m = tier.oldest; m < epochs_; ++m) settle(tier, m);
      if (tier.settled != kNone && tier.settled + tier.gain > best)
        best = tier.settled + tier.gain, best_tier_ = s, best_from_ = tier.settled_from;
    }
    return best;
  }

  // Walks the last solve()'s schedule back: fast[t] per epoch (t >= 1) and
  // the counts of its promotions, moves and ping-pong moves.
  void trace(std::vector<std::uint8_t>& fast, std::uint64_t& promotions, std::uint64_t& moves,
             std::uint64_t& pingpong) const {
    int s = best_tier_;
    std::uint32_t end = epochs_, from = best_from_;
    while (from != kInitial) {  // the move at boundary `from` into tier s
      for (std::uint32_t t = from; t < end; ++t) fast[t] = static_cast<std::uint8_t>(s);
      const Entry& e = tier_[s].entries[from];
      ++moves;
      promotions += s;
      pingpong += e.pingpong;
      end = from, from = e.from, s = 1 - s;
    }
    for (std::uint32_t t = 1; t < end; ++t) fast[t] = static_cast<std::uint8_t>(s);
  }

 private:
  static constexpr double kNone = -std::numeric_limits<double>::infinity();
  static constexpr std::uint32_t kInitial = 0;  // "from the start": no move
  struct Entry {
    double key = kNone;  // the value before the move, less its cost and the tier's gain to then
    std::uint32_t from = kInitial;  // the move before it (into the other tier)
    bool pingpong = false;
  };
  struct Move {
    double value = kNone;
    std::uint32_t from = kInitial;
    bool pingpong = false;
  };
  struct Tier {
    std::vector<Entry> entries;        // by the boundary of the move into this tier
    std::deque<std::uint32_t> window;  // moves within the window, keys decreasing
    std::uint32_t oldest = 1;          // first move not yet settled
    double settled = kNone;            // best key past the window (or never moved)
    std::uint32_t settled_from = kInitial;
    double gain = 0;  // running gain of being in this tier
  };

  // The best way to leave tier s at boundary t: from a move within the
  // window (a ping-pong) or from one past it; its value before the move's
  // own epoch, less the cost of a move into the other tier.
  Move best_move(int s, std::uint32_t t, double cost, double nu, double fraction) {
    Tier& tier = tier_[s];
    while (tier.oldest < t && t - tier.oldest > window_) settle(tier, tier.oldest);
    while (!tier.window.empty() && t - tier.window.front() > window_) tier.window.pop_front();
    Move m;
    if (tier.settled != kNone)
      m = {tier.settled + tier.gain - cost + fraction * nu, tier.settled_from, false};
    if (!tier.window.empty()) {
      const std::uint32_t w = tier.window.front();
      const double v = tier.entries[w].key + tier.gain - cost - (1 - fraction) * nu;
      if (v > m.value) m = {v, w, true};
    }
    return m;
  }
  // Records the move into tier s at boundary t (before the tier's gain
  // takes in epoch t), or that there is none.
  void add_entry(int s, std::uint32_t t, const Move& m) {
    Tier& tier = tier_[s];
    Entry& e = tier.entries[t];
    e = {m.value == kNone ? kNone : m.value - tier.gain, m.from, m.pingpong};
    if (e.key == kNone) return;
    while (!tier.window.empty() && tier.entries[tier.window.back()].key <= e.key)
      tier.window.pop_back();
    tier.window.push_back(t);
  }
  void settle(Tier& tier, std::uint32_t m) {
    if (m >= tier.oldest) tier.oldest = m + 1;
    const Entry& e = tier.entries[m];
    if (e.key > tier.settled) tier.settled = e.key, tier.settled_from = m;
  }

  std::uint32_t epochs_, window_;
  Tier tier_[2];
  int best_tier_ = 0;
  std::uint32_t best_from_ = kInitial;
};

// A schedule within the limits, found greedily in hindsight: at
// each boundary the slow pages with the most accesses in the next `horizon`
// epochs replace the fast pages with the fewest, pair by pair, while the
// newcomer has at least `min_gain` more, the promotion budget lasts and a
// ping-pong move keeps ping-pong within its fraction. O(epochs * pages *
// log pages).
inline ScheduleCounts greedy_schedule(const RuleBoundProblem& pb, std::uint32_t horizon,
                                      double min_gain) {
  const std::uint32_t n = pb.pages, T = pb.epochs;
  // Index of (epoch t, page p) in counts and prefix: 64-bit, as t * n can
  // pass 2^32.
  auto at = [n](std::uint32_t t, std::uint32_t p) { return std::size_t{t} * n + p; };
  std::vector<std::uint64_t> prefix((std::uint64_t{T} + 1) * n, 0);  // prefix[at(t, p)]: before t
  for (std::uint32_t t = 0; t < T; ++t)
    for (std::uint32_t p = 0; p < n; ++p)
      prefix[at(t + 1, p)] = prefix[at(t, p)] + pb.counts[at(t, p)];
  std::vector<std::uint8_t> fast(pb.initial.begin(), pb.initial.end());
  constexpr std::uint64_t kNever = ~std::uint64_t{0};
  std::vector<std::uint64_t> moved(n, kNever);
  std::uint64_t used = 0, hits = 0, promotions = 0, demotions = 0, moves = 0, pingpong = 0;
  for (std::uint32_t p = 0; p < n; ++p) used += fast[p], hits += fast[p] ? pb.counts[p] : 0;
  std::vector<std::uint32_t> in, out;
  for (std::uint32_t t = 1; t < T; ++t) {
    const std::uint32_t end = std::min(T, t + horizon);
    auto value = [&](std::uint32_t p) { return prefix[at(end, p)] - prefix[at(t, p)]; };
    in.clear(), out.clear();
    for (std::uint32_t p = 0; p < n; ++p)
      if (prefix[at(t, p)] > 0) (fast[p] ? out : in).push_back(p);  // accessed: exists
    std::sort(in.begin(), in.end(), [&](auto a, auto b) { return value(a) > value(b); });
    std::sort(out.begin(), out.end(), [&](auto a, auto b) { return value(a) < value(b); });
    auto pp = [&](std::uint32_t p) { return moved[p] != kNever && t - moved[p] <= pb.window; };
    auto allowed = [&](std::uint64_t extra_pp, std::uint64_t extra_moves) {
      return static_cast<double>(pingpong + extra_pp) <=
             pb.pingpong_fraction * static_cast<double>(moves + extra_moves);
    };
    std::size_t v = 0;
    for (std::uint32_t p : in) {
      if (promotions >= pb.promotion_budget) break;
      const bool room = used < pb.cap;
      while (!room && v < out.size() && pp(out[v]) && !allowed(1 + pp(p), 2)) ++v;
      if (!room && v >= out.size()) break;
      const double victim = room ? 0.0 : static_cast<double>(value(out[v]));
      if (static_cast<double>(value(p)) < victim + min_gain) break;
      const std::uint64_t extra = pp(p) + (room ? 0 : pp(out[v]));
      if (!allowed(extra, room ? 1 : 2)) continue;
      if (!room) fast[out[v]] = 0, moved[out[v]] = t, ++v, --used, ++moves, ++demotions;
      fast[p] = 1, moved[p] = t, ++used, ++moves, ++promotions;
      pingpong += extra;
    }
    for (std::uint32_t p = 0; p < n; ++p) hits += fast[p] ? pb.counts[at(t, p)] : 0;
  }
  return {hits, promotions, demotions, pingpong};
}

// Capacity is never free: at a price of 0 a page with no accesses is
// indifferent to its tier, and the ties made the descent oscillate.
inline constexpr double kMinPrice = 1e-3;

// Each epoch's capacity price to start from: its cap-th largest count (the
// marginal page's).
inline std::vector<double> initial_prices(const RuleBoundProblem& pb) {
  const std::uint32_t n = pb.pages;
  std::vector<double> lambda(pb.epochs, kMinPrice);
  if (pb.cap == 0 || pb.cap >= n) return lambda;
  std::vector<std::uint32_t> col(n);
  for (std::uint32_t t = 1; t < pb.epochs; ++t) {
    std::copy_n(&pb.counts[std::uint64_t{t} * n], n, col.begin());
    auto kth = col.begin() + static_cast<std::ptrdiff_t>(pb.cap) - 1;
    std::nth_element(col.begin(), kth, col.end(), std::greater<>());
    lambda[t] = std::max(kMinPrice, static_cast<double>(*kth));
  }
  return lambda;
}

}  // namespace detail

// rule_bound()
//
// The bounds described in the file banner: `upper` by the relaxation,
// `lower` by the best of a few greedy schedules (detail::greedy_schedule).
// Deterministic.
inline RuleBound rule_bound(const RuleBoundProblem& pb) {
  RuleBound out;
  const std::uint32_t n = pb.pages, T = pb.epochs;
  for (std::uint32_t p = 0; p < n && T > 0; ++p)
    if (pb.initial[p]) out.epoch0_hits += pb.counts[p];  // epoch 0's row
  if (T == 0 || n == 0) return out;
  for (std::uint32_t h : {1u, 2u, 4u, 8u, 16u, T})
    for (double gain : {1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0})
      if (ScheduleCounts c = detail::greedy_schedule(pb, h, gain); c.hits > out.found.hits)
        out.found = c;
  out.lower = out.found.hits;
  out.upper = static_cast<double>(out.lower);
  if (T < 2 || !pb.upper) return out;
  const double cap = static_cast<double>(std::min<std::uint64_t>(pb.cap, n));
  std::vector<double> lambda = detail::initial_prices(pb);
  double mu = 0, nu = 0, theta = 1, best = std::numeric_limits<double>::infinity();
  int stale = 0;
  detail::PageSchedule page(T, pb.window);
  std::vector<std::uint8_t> fast(T, 0);
  std::vector<double> used(T), g(T);
  for (int it = 0; it < pb.iterations && theta >= 1e-4; ++it) {
    out.iterations = it + 1;
    double value = static_cast<double>(out.epoch0_hits) + mu * pb.promotion_budget;
    for (std::uint32_t t = 1; t < T; ++t) value += lambda[t] * cap;
    std::fill(used.begin(), used.end(), 0);
    std::uint64_t promotions = 0, moves = 0, pingpong = 0;
    for (std::uint32_t p = 0; p < n; ++p) {
      value +=
          page.solve(&pb.counts[p], n, pb.initial[p] != 0, lambda, mu, nu, pb.pingpong_fraction);
      page.trace(fast, promotions, moves, pingpong);
      for (std::uint32_t t = 1; t < T; ++t) used[t] += fast[t];
    }
    if (value < best - 1e-9) {
      best = value, stale = 0;
    } else if (++stale >= 8) {
      theta /= 2, stale = 0;
    }
    // The slopes of the priced optimum in each price: capacity, budget and
    // ping-pong allowance left. Polyak's step toward the schedule found.
    double norm = 0;
    for (std::uint32_t t = 1; t < T; ++t) g[t] = cap - used[t], norm += g[t] * g[t];
    const double gmu = static_cast<double>(pb.promotion_budget) - static_cast<double>(promotions);
    const double gnu = pb.pingpong_fraction * static_cast<double>(moves) - pingpong;
    norm += gmu * gmu + gnu * gnu;
    if (norm == 0) break;  // the priced optimum is within the limits: optimal
    const double step = theta * (value - static_cast<double>(out.lower)) / norm;
    for (std::uint32_t t = 1; t < T; ++t)
      lambda[t] = std::max(detail::kMinPrice, lambda[t] - step * g[t]);
    mu = std::max(0.0, mu - step * gmu);
    nu = std::max(0.0, nu - step * gnu);
  }
  // Every access a hit is the bound before any step.
  double total = 0;
  for (std::uint32_t c : pb.counts) total += c;
  out.upper = std::max(std::min(best, total), static_cast<double>(out.lower));
  return out;
}

}  // namespace tierkit::sim
