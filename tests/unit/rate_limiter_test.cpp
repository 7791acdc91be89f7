// RateLimiter unit tests on a ManualClock: no timing assertions.
#include "tierkit/rate_limiter.hpp"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tierkit {
namespace {

using ::testing::HasSubstr;

constexpr double kMB = RateLimiter::kBytesPerMB;

TEST(RateLimiter, StartsFullAndGrantsUpToTheBurst) {
  ManualClock clock(1000);
  RateLimiter rl(1, 100000, &clock);
  EXPECT_EQ(rl.available_bytes(), 100000u);
  EXPECT_EQ(rl.acquire_up_to(30000), 30000u);
  EXPECT_EQ(rl.acquire_up_to(1000000), 70000u);  // the rest of the bucket
  EXPECT_EQ(rl.acquire_up_to(1), 0u);
  EXPECT_FALSE(rl.try_acquire(1));
  EXPECT_EQ(rl.granted_bytes(), 100000u);
}

TEST(RateLimiter, GrantsAreRoundedDownToTheUnit) {
  ManualClock clock;
  RateLimiter rl(0, 10000, &clock);
  EXPECT_EQ(rl.acquire_up_to(1 << 20, 4096), 8192u);
  EXPECT_EQ(rl.available_bytes(), 10000u - 8192u);
  EXPECT_EQ(rl.acquire_up_to(1 << 20, 4096), 0u);  // 1808 left < one unit
  EXPECT_TRUE(rl.try_acquire(1808));
}

TEST(RateLimiter, RefillsAtTheRateUpToTheBurst) {
  ManualClock clock;
  RateLimiter rl(1, 1 << 20, &clock);  // 1 MiB/s, 1 MiB bucket
  EXPECT_EQ(rl.acquire_up_to(1 << 20), 1u << 20);
  clock.advance_ns(kNsPerSec / 4);
  EXPECT_EQ(rl.available_bytes(), 1u << 18);
  clock.advance_ns(100 * kNsPerSec);
  EXPECT_EQ(rl.available_bytes(), 1u << 20);  // capped at the burst
  // A clock that goes backwards grants nothing extra.
  clock.set_ns(0);
  EXPECT_EQ(rl.acquire_up_to(1 << 21), 1u << 20);
  EXPECT_EQ(rl.available_bytes(), 0u);
}

// A step back used to leave the last reading where it was: nothing was
// refilled until the clock passed it again (an hour back, an hour stalled).
TEST(RateLimiter, AClockSteppedBackRefillsFromTheNewReadingWithoutOverGranting) {
  constexpr std::int64_t kHour = 3600 * kNsPerSec;
  ManualClock clock(2 * kHour);
  RateLimiter rl(1, 1 << 20, &clock);  // 1 MiB/s, 1 MiB bucket
  EXPECT_EQ(rl.acquire_up_to(1 << 20), 1u << 20);
  clock.set_ns(kHour);
  EXPECT_EQ(rl.available_bytes(), 0u);  // the step back creates nothing
  clock.advance_ns(kNsPerSec / 4);
  EXPECT_EQ(rl.available_bytes(), 1u << 18);  // a quarter second's, at the rate
  EXPECT_EQ(rl.acquire_up_to(1 << 20), 1u << 18);
  clock.advance_ns(kNsPerSec / 2);
  EXPECT_EQ(rl.acquire_up_to(1 << 20), 1u << 19);
  EXPECT_EQ(rl.granted_bytes(), (1u << 20) + (1u << 18) + (1u << 19));
}

TEST(RateLimiter, RefundReturnsTokensButNeverBeyondTheBurst) {
  ManualClock clock;
  RateLimiter rl(0, 1000, &clock);
  EXPECT_EQ(rl.acquire_up_to(600), 600u);
  rl.refund(200);
  EXPECT_EQ(rl.available_bytes(), 600u);
  EXPECT_EQ(rl.granted_bytes(), 400u);
  rl.refund(1 << 30);  // more than was ever granted
  EXPECT_EQ(rl.available_bytes(), 1000u);
  EXPECT_EQ(rl.granted_bytes(), 0u);  // never negative
}

TEST(RateLimiter, SetRateRejectsNanInfAndNegative) {
  ManualClock clock;
  RateLimiter rl(5, 0, &clock);
  for (double bad : {std::nan(""), double{INFINITY}, -double{INFINITY}, -1.0, -1e-300}) {
    absl::Status s = rl.set_rate_mbps(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr("rate limit"));
    EXPECT_THAT(std::string(s.message()), HasSubstr("finite number >= 0"));
    EXPECT_EQ(rl.rate_mbps(), 5);  // unchanged
  }
  EXPECT_TRUE(rl.set_rate_mbps(0).ok());
  EXPECT_TRUE(rl.set_rate_mbps(1e9).ok());
  // The constructor clamps invalid rates to 0 instead.
  RateLimiter nan_rl(std::nan(""), 10, &clock);
  EXPECT_EQ(nan_rl.rate_mbps(), 0);
  RateLimiter neg_rl(-3, 10, &clock);
  EXPECT_EQ(neg_rl.rate_mbps(), 0);
}

TEST(RateLimiter, RateZeroAfterTheBurstGrantsNothing) {
  ManualClock clock;
  RateLimiter rl(100, 8192, &clock);
  ASSERT_TRUE(rl.set_rate_mbps(0).ok());
  EXPECT_EQ(rl.acquire_up_to(1 << 30), 8192u);
  for (int i = 0; i < 10; ++i) {
    clock.advance_ns(1000 * kNsPerSec);
    EXPECT_EQ(rl.acquire_up_to(1 << 30), 0u);
    EXPECT_FALSE(rl.try_acquire(1));
  }
  EXPECT_EQ(rl.granted_bytes(), 8192u);
}

TEST(RateLimiter, SetBurstTrimsTheBucket) {
  ManualClock clock;
  RateLimiter rl(1, 1 << 20, &clock);
  rl.set_burst_bytes(4096);
  EXPECT_EQ(rl.burst_bytes(), 4096u);
  EXPECT_EQ(rl.available_bytes(), 4096u);
  clock.advance_ns(10 * kNsPerSec);
  EXPECT_EQ(rl.available_bytes(), 4096u);
}

// A burst near 2^64 rounded to 2^64 in the double bucket, and every cast
// back to bytes was out of range (the bucket read as empty).
TEST(RateLimiter, BurstsBeyondTwoToThe53AreClampedNotLost) {
  ManualClock clock;
  constexpr std::uint64_t kMax = RateLimiter::kMaxBurstBytes;
  RateLimiter rl(256, std::numeric_limits<std::uint64_t>::max(), &clock);
  EXPECT_EQ(rl.burst_bytes(), kMax);
  EXPECT_EQ(rl.available_bytes(), kMax);
  EXPECT_EQ(rl.acquire_up_to(std::numeric_limits<std::uint64_t>::max(), 4096), kMax);
  EXPECT_EQ(rl.available_bytes(), 0u);
  rl.set_burst_bytes(kMax + 1);
  EXPECT_EQ(rl.burst_bytes(), kMax);
  // A rate whose bytes/s overflow a double is refused like infinity.
  EXPECT_FALSE(rl.set_rate_mbps(std::numeric_limits<double>::max()).ok());
  EXPECT_EQ(rl.rate_mbps(), 256);
}

TEST(RateLimiter, AWholeRequestBiggerThanTheBurstWaitsForAFullBucketAndOwesTheRest) {
  ManualClock clock;
  RateLimiter rl(1, 1 << 20, &clock);           // 1 MiB/s, 1 MiB bucket
  EXPECT_TRUE(rl.try_acquire_whole(4096));      // one that fits: as try_acquire
  EXPECT_FALSE(rl.try_acquire_whole(2 << 20));  // bigger: only from a full bucket
  clock.advance_ns(kNsPerSec);
  EXPECT_TRUE(rl.try_acquire_whole(2 << 20));
  EXPECT_EQ(rl.granted_bytes(), 4096u + (2u << 20));
  EXPECT_EQ(rl.available_bytes(), 0u);  // owes 1 MiB
  clock.advance_ns(kNsPerSec / 2);
  EXPECT_EQ(rl.acquire_up_to(1 << 20), 0u);  // still owes half
  EXPECT_FALSE(rl.try_acquire(1));
  clock.advance_ns(kNsPerSec * 3 / 4);
  EXPECT_EQ(rl.available_bytes(), 1u << 18);  // repaid, then a quarter second's
}

// Bytes moved without a grant (a huge page a 4 KiB move carried) are owed:
// nothing more is granted until refills have repaid them.
TEST(RateLimiter, ChargedBytesAreOwedBeforeTheNextGrant) {
  ManualClock clock;
  RateLimiter rl(/*mbps=*/1, /*burst=*/1 << 20, &clock);
  rl.charge(3 << 19);  // 1.5 MiB from a full 1 MiB bucket: owes 0.5 MiB
  EXPECT_EQ(rl.granted_bytes(), 3u << 19);
  EXPECT_EQ(rl.available_bytes(), 0u);
  clock.advance_ns(kNsPerSec / 4);
  EXPECT_FALSE(rl.try_acquire(1));  // still owes a quarter
  clock.advance_ns(kNsPerSec / 2);
  EXPECT_EQ(rl.available_bytes(), 1u << 18);  // repaid, then a quarter second's
}

// Checks granted <= rate * T + burst over every interval [t_i, t_j] of a
// trace of (time, granted) events. O(n^2).
void ExpectBoundOverAllIntervals(const std::vector<std::int64_t>& t,
                                 const std::vector<std::uint64_t>& g, double rate_bps,
                                 double burst) {
  std::vector<double> prefix(g.size() + 1, 0);
  for (std::size_t i = 0; i < g.size(); ++i) prefix[i + 1] = prefix[i] + static_cast<double>(g[i]);
  int violations = 0;
  for (std::size_t i = 0; i < g.size(); ++i)
    for (std::size_t j = i; j < g.size(); ++j) {
      double granted = prefix[j + 1] - prefix[i];
      double bound = rate_bps * static_cast<double>(t[j] - t[i]) / 1e9 + burst;
      if (granted > bound + 1e-6 * bound && violations++ < 5)
        ADD_FAILURE() << "events " << i << ".." << j << ": granted " << granted << " > bound "
                      << bound;
    }
  EXPECT_EQ(violations, 0);
}

TEST(RateLimiter, RandomisedNeverExceedsRateTimesTPlusBurst) {
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 20; ++trial) {
    double mbps = std::uniform_real_distribution<double>(0.01, 100)(rng);
    std::uint64_t burst = rng() % (4 << 20);
    ManualClock clock(static_cast<std::int64_t>(rng() % kNsPerSec));
    RateLimiter rl(mbps, burst, &clock);
    std::vector<std::int64_t> times;
    std::vector<std::uint64_t> grants;
    for (int k = 0; k < 1500; ++k) {
      clock.advance_ns(static_cast<std::int64_t>(rng() % (20 * kNsPerMs)));
      std::uint64_t want = rng() % (1 << 20);
      std::uint64_t unit = (rng() % 3 == 0) ? 4096 : 1;
      std::uint64_t got =
          rng() % 4 == 0 ? (rl.try_acquire(want) ? want : 0) : rl.acquire_up_to(want, unit);
      EXPECT_LE(got, want);
      times.push_back(clock.now_ns());
      grants.push_back(got);
    }
    ExpectBoundOverAllIntervals(times, grants, mbps * kMB, static_cast<double>(burst));
    std::uint64_t total = 0;
    for (auto g : grants) total += g;
    EXPECT_EQ(rl.granted_bytes(), total);
    // When demand (about 37 MiB/s here) far exceeds the rate and the bucket
    // holds a whole request, it grants close to the rate: not a trivially
    // passing limiter.
    double seconds = static_cast<double>(times.back() - times.front()) / 1e9;
    if (mbps < 10 && burst >= (1u << 20)) {
      EXPECT_GT(static_cast<double>(total), 0.5 * mbps * kMB * seconds) << "trial " << trial;
    }
  }
}

TEST(RateLimiter, TwoThreadsNeverExceedTheBoundTogether) {
  ManualClock clock;
  const double mbps = 4;
  const std::uint64_t burst = 256 << 10;
  RateLimiter rl(mbps, burst, &clock);
  std::atomic<std::uint64_t> total{0};
  auto worker = [&](int seed) {
    std::mt19937 rng(static_cast<unsigned>(seed));
    std::uint64_t mine = 0;
    for (int k = 0; k < 20000; ++k) {
      if (rng() % 2) clock.advance_ns(rng() % (kNsPerMs / 10));
      mine += rl.acquire_up_to(rng() % 65536, rng() % 2 ? 4096 : 1);
      if (k % 100 == 0) {  // the bound holds at every moment, not only at the end
        auto granted = static_cast<double>(rl.granted_bytes());  // before reading the clock
        double elapsed = static_cast<double>(clock.now_ns()) / 1e9;
        EXPECT_LE(granted, mbps * kMB * elapsed + static_cast<double>(burst) + 1);
      }
    }
    total += mine;
  };
  std::thread a(worker, 1), b(worker, 2);
  a.join();
  b.join();
  double elapsed = static_cast<double>(clock.now_ns()) / 1e9;
  EXPECT_EQ(rl.granted_bytes(), total.load());
  EXPECT_LE(static_cast<double>(total.load()),
            mbps * kMB * elapsed + static_cast<double>(burst) + 1);
  EXPECT_GT(total.load(), burst);  // it refilled and granted more
}

}  // namespace
}  // namespace tierkit
