// The issue-12 rule's bounds in hindsight (sim/bound.hpp): checked against
// every schedule of small problems, then on a committed real trace against
// the policies that keep within the rule's limits.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tierkit/sim/bound.hpp"
#include "tierkit/sim/simulator.hpp"
#include "tierkit/sim/trace_file.hpp"
#include "tierkit/sim/workload.hpp"
#include "trace_replay.hpp"

namespace tierkit::sim {
namespace {

// The best hits over every schedule of `pb` that keeps its limits: each
// page's tier in epochs 1..T-1 enumerated (2^(pages * (T-1)) schedules).
double brute_force(const RuleBoundProblem& pb) {
  const std::uint32_t n = pb.pages, T = pb.epochs, bits = n * (T - 1);
  double best = -1;
  for (std::uint64_t mask = 0; mask < (std::uint64_t{1} << bits); ++mask) {
    auto fast = [&](std::uint32_t p, std::uint32_t t) -> bool {
      return t == 0 ? pb.initial[p] != 0 : ((mask >> (p * (T - 1) + t - 1)) & 1) != 0;
    };
    bool ok = true;
    std::uint64_t hits = 0, promotions = 0, moves = 0, pingpong = 0;
    for (std::uint32_t t = 0; t < T && ok; ++t) {
      std::uint64_t used = 0;
      for (std::uint32_t p = 0; p < n; ++p) {
        used += fast(p, t);
        hits += fast(p, t) ? pb.counts[t * n + p] : 0;
      }
      ok = used <= pb.cap;
    }
    for (std::uint32_t p = 0; p < n && ok; ++p) {
      std::int64_t last = -1;
      bool born = false;
      for (std::uint32_t t = 1; t < T && ok; ++t) {
        born = born || pb.counts[(t - 1) * n + p] > 0;
        if (fast(p, t) == fast(p, t - 1)) continue;
        ok = born;  // a page not accessed yet does not exist: it cannot move
        ++moves;
        promotions += fast(p, t);
        pingpong += last >= 0 && t - last <= pb.window;
        last = t;
      }
    }
    ok = ok && promotions <= pb.promotion_budget &&
         static_cast<double>(pingpong) <= pb.pingpong_fraction * static_cast<double>(moves);
    if (ok) best = std::max(best, static_cast<double>(hits));
  }
  return best;
}

// One page's priced value of the schedule `fast` (epochs 1..T-1, with
// fast[0] the initial tier), or -infinity when it moves before the page's
// first access; counts its moves.
double priced(const std::vector<std::uint32_t>& counts, const std::vector<std::uint8_t>& fast,
              const std::vector<double>& lambda, double mu, double nu, double fraction,
              std::uint32_t window, std::uint64_t* moves_out = nullptr) {
  double v = 0;
  std::int64_t last = -1;
  bool born = false;
  std::uint64_t moves = 0;
  for (std::uint32_t t = 1; t < fast.size(); ++t) {
    born = born || counts[t - 1] > 0;
    if (fast[t]) v += counts[t] - lambda[t];
    if (fast[t] == fast[t - 1]) continue;
    if (!born) return -std::numeric_limits<double>::infinity();
    ++moves;
    v -= (fast[t] ? mu : 0) + (last >= 0 && t - last <= window ? nu : 0) - fraction * nu;
    last = t;
  }
  if (moves_out != nullptr) *moves_out = moves;
  return v;
}

// The O(epochs) dynamic programme against every schedule of one page, at
// random prices, and the schedule it reports is worth what it says.
TEST(RuleBound, PageScheduleIsTheBestPricedScheduleOfAPage) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 400; ++trial) {
    const std::uint32_t T = 2 + rng() % 11, window = 1 + rng() % 4;
    std::vector<std::uint32_t> counts(T);
    for (auto& c : counts) c = rng() % 3 == 0 ? 0 : rng() % 10;
    std::vector<double> lambda(T);
    for (auto& l : lambda) l = (rng() % 100) / 10.0;
    const double mu = (rng() % 50) / 10.0, nu = (rng() % 50) / 10.0, fraction = 0.25;
    const bool initial = rng() % 2;
    double best = -std::numeric_limits<double>::infinity();
    std::vector<std::uint8_t> fast(T);
    fast[0] = initial;
    for (std::uint32_t mask = 0; mask < (1u << (T - 1)); ++mask) {
      for (std::uint32_t t = 1; t < T; ++t) fast[t] = (mask >> (t - 1)) & 1;
      best = std::max(best, priced(counts, fast, lambda, mu, nu, fraction, window));
    }
    detail::PageSchedule page(T, window);
    const double got = page.solve(counts.data(), 1, initial, lambda, mu, nu, fraction);
    ASSERT_NEAR(got, best, 1e-9) << "trial " << trial;
    std::uint64_t promotions = 0, moves = 0, pingpong = 0, recount = 0;
    page.trace(fast, promotions, moves, pingpong);
    fast[0] = initial;
    EXPECT_NEAR(priced(counts, fast, lambda, mu, nu, fraction, window, &recount), best, 1e-9)
        << "trial " << trial;
    EXPECT_EQ(moves, recount) << "trial " << trial;
  }
}

TEST(RuleBound, BracketsTheBestScheduleOfSmallProblems) {
  std::mt19937 rng(12);
  int tight = 0, trials = 300;
  for (int trial = 0; trial < trials; ++trial) {
    RuleBoundProblem pb;
    pb.pages = 2 + rng() % 3;   // 2-4
    pb.epochs = 2 + rng() % 4;  // 2-5: at most 16 tier bits
    pb.cap = 1 + rng() % (pb.pages - 1);
    pb.counts.resize(pb.pages * pb.epochs);
    for (auto& c : pb.counts) c = rng() % 3 == 0 ? 0 : rng() % 20;
    pb.initial.assign(pb.pages, 0);
    for (std::uint32_t p = 0; p < pb.cap; ++p) pb.initial[p] = 1;
    pb.promotion_budget = rng() % 4;
    pb.pingpong_fraction = (rng() % 3) * 0.25;  // 0, 0.25 or 0.5
    pb.window = 1 + rng() % 3;
    const double best = brute_force(pb);
    ASSERT_GE(best, 0) << "never moving is always within the limits";
    const RuleBound b = rule_bound(pb);
    EXPECT_LE(static_cast<double>(b.lower), best) << "trial " << trial;
    EXPECT_GE(b.upper, best - 1e-6) << "trial " << trial;
    tight += b.upper < best + 0.5;
  }
  // A bound is only worth having if it is close: most small problems are
  // solved exactly (the relaxation's gap is small).
  EXPECT_GT(tight, trials * 3 / 4);
}

TEST(RuleBound, NoBoundaryMeansTheInitialPlacement) {
  RuleBoundProblem pb;
  pb.pages = 3;
  pb.epochs = 1;
  pb.cap = 1;
  pb.counts = {5, 7, 9};
  pb.initial = {0, 1, 0};
  pb.promotion_budget = 10;
  const RuleBound b = rule_bound(pb);
  EXPECT_EQ(b.lower, 7u);
  EXPECT_EQ(b.upper, 7);
  EXPECT_EQ(b.epoch0_hits, 7u);
}

TEST(RuleBound, AnUnaccessedPageCannotBeMoved) {
  // Page 1 is hot from epoch 1 on but was never accessed before it: no
  // schedule can promote it at boundary 1, only at boundary 2.
  RuleBoundProblem pb;
  pb.pages = 2;
  pb.epochs = 3;
  pb.cap = 1;
  pb.counts = {1, 0,    // epoch 0
               0, 50,   // epoch 1
               0, 50};  // epoch 2
  pb.initial = {1, 0};
  pb.promotion_budget = 5;
  pb.pingpong_fraction = 0;
  const RuleBound b = rule_bound(pb);
  EXPECT_EQ(b.lower, 51u);
  EXPECT_NEAR(b.upper, 51, 0.5);
}

// On a committed real trace: the hindsight schedule is under the bound, and
// every policy row that keeps within the rule's limits is too (the bound
// holds for all of them).
TEST(RuleBound, HoldsForThePoliciesWithinTheLimitsOnARealTrace) {
  TraceReplay run(committed_trace("sqlite3-lookups"), 5000);
  ASSERT_TRUE(run.ok());
  std::vector<SimResult> rows;
  for (const char* p : {"lfu", "automatic", "threshold:4", "rule-bound", "rule-hindsight"})
    rows.push_back(run(p));
  const SimResult &lfu = rows[0], &bound = rows[3], &hindsight = rows[4];
  EXPECT_EQ(bound.promoted_pages, lfu.promoted_pages);
  EXPECT_LE(hindsight.fast_hits, bound.fast_hits);
  EXPECT_GT(hindsight.fast_hits, lfu.fast_hits);  // foresight pays on this trace
  // The schedule found keeps the limits it is found under.
  EXPECT_LE(hindsight.promoted_pages, lfu.promoted_pages);
  EXPECT_GT(hindsight.promoted_pages, 0u);
  EXPECT_LE(hindsight.pingpong_pages * 20, hindsight.promoted_pages + hindsight.demoted_pages);
  int within = 0;
  for (const SimResult& r : {rows[1], rows[2]}) {
    const std::uint64_t moves = r.promoted_pages + r.demoted_pages;
    if (r.promoted_pages > lfu.promoted_pages || r.pingpong_pages * 20 > moves) continue;
    ++within;
    EXPECT_LE(r.fast_hits, bound.fast_hits) << r.policy;
  }
  EXPECT_GE(within, 1) << "no policy row to check the bound against";
}

}  // namespace
}  // namespace tierkit::sim
