// tierkit/rate_limiter.hpp: a token bucket that bounds migration traffic, in
// MB/s (MiB/s, as the kernel's numa_balancing_promote_rate_limit_MBps) with a
// burst. Over any interval T: bytes granted <= rate * T + burst (+ the
// request, over one holding a try_acquire_whole() larger than the burst;
// + what charge() took, moves made without a grant, which later grants repay).
// Thread-safe, changeable at runtime, on an injectable Clock. Layer 1.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tierkit/common.hpp"
#include "tierkit/detail/mutex.hpp"

namespace tierkit {

// RateLimiter
//
// A token bucket of migration bytes: `rate` MiB/s refill up to `burst`
// bytes. The engine takes a whole epoch's plan from it at once and refunds
// what it did not move. Cost: O(1) under a mutex per call. Thread safety:
// every member.
//
// Example:
//   RateLimiter l(/*rate MiB/s=*/256, /*burst=*/16 << 20);
//   std::uint64_t granted = l.acquire_up_to(bytes, kPageSize);
class RateLimiter {
 public:
  static constexpr double kBytesPerMB = 1024.0 * 1024.0;
  // The largest burst: 2^53 bytes (8 PiB), the largest count the double
  // bucket holds exactly. Larger bursts are clamped to it.
  static constexpr std::uint64_t kMaxBurstBytes = std::uint64_t{1} << 53;

  // Starts full (`burst_bytes` available, at most kMaxBurstBytes). `clock`
  // must outlive the limiter; null means the steady clock. Invalid rates are
  // clamped to 0 (use set_rate_mbps to get an error instead).
  RateLimiter(double rate_mbps, std::uint64_t burst_bytes, const Clock* clock = nullptr)
      : clock_(clock ? clock : &SteadyClock::instance()),
        rate_bps_(valid_rate(rate_mbps) ? rate_mbps * kBytesPerMB : 0),
        burst_(clamp_burst(burst_bytes)),
        tokens_(burst_),
        last_ns_(clock_->now_ns()) {}

  // Grants up to `bytes`, rounded down to a multiple of `unit` (e.g. a page),
  // without waiting; returns what was granted (0 when the bucket is short).
  // One mutex acquisition.
  std::uint64_t acquire_up_to(std::uint64_t bytes, std::uint64_t unit = 1) {
    detail::MutexLock lock(&mu_);
    refill();
    auto g = to_bytes(std::min(static_cast<double>(bytes), tokens_));
    if (unit > 1) g -= g % unit;
    tokens_ -= static_cast<double>(g);
    granted_ += g;
    return g;
  }

  // Grants exactly `bytes` or nothing. One mutex acquisition.
  bool try_acquire(std::uint64_t bytes) {
    detail::MutexLock lock(&mu_);
    refill();
    if (static_cast<double>(bytes) > tokens_) return false;
    tokens_ -= static_cast<double>(bytes);
    granted_ += bytes;
    return true;
  }

  // try_acquire_whole()
  //
  // As try_acquire(), except that a request larger than the burst, which
  // would never fit, is granted once the bucket is full and leaves it owing
  // the excess: nothing more is granted until refills have repaid it, so
  // the long-run rate holds. The engine moves a step bigger than the bucket
  // (a 2 MiB unit under a smaller burst) this way. One mutex acquisition.
  // NOTE: over an interval holding such a grant, bytes granted <= rate * T
  // + the request, not + burst.
  bool try_acquire_whole(std::uint64_t bytes) {
    detail::MutexLock lock(&mu_);
    refill();
    const auto b = static_cast<double>(bytes);
    if (b <= burst_ ? b > tokens_ : tokens_ < burst_) return false;
    tokens_ -= b;
    granted_ += bytes;
    return true;
  }

  // Returns unused grant (e.g. pages that failed to move) to the bucket,
  // never beyond the burst.
  void refund(std::uint64_t bytes) {
    detail::MutexLock lock(&mu_);
    tokens_ = std::min(burst_, tokens_ + static_cast<double>(bytes));
    granted_ -= std::min(granted_, bytes);
  }

  // charge()
  //
  // Takes `bytes` that were moved without a grant (a 4 KiB move the kernel
  // made a whole huge page), leaving the bucket owing what it lacks: later
  // requests wait until refills have repaid it, so the long-run rate holds.
  void charge(std::uint64_t bytes) {
    detail::MutexLock lock(&mu_);
    refill();
    tokens_ -= static_cast<double>(bytes);
    granted_ += bytes;
  }

  // Whether set_rate_mbps() takes `mbps`: OK, or the error it returns.
  static absl::Status check_rate(double mbps) {
    if (valid_rate(mbps)) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("rate limit: ", mbps, " MiB/s is not a finite number >= 0 (in bytes/s too)"));
  }

  // Changes the rate; NaN, infinite and negative rates are rejected. 0 stops
  // the refill: what the bucket holds (at most the burst) is still granted,
  // then nothing. Takes effect for the next request.
  absl::Status set_rate_mbps(double mbps) {
    if (absl::Status s = check_rate(mbps); !s.ok()) return s;
    detail::MutexLock lock(&mu_);
    refill();
    rate_bps_ = mbps * kBytesPerMB;
    return absl::OkStatus();
  }

  // Changes the burst (bucket size, at most kMaxBurstBytes); the bucket is
  // trimmed to it.
  void set_burst_bytes(std::uint64_t burst) {
    detail::MutexLock lock(&mu_);
    refill();
    burst_ = clamp_burst(burst);
    tokens_ = std::min(tokens_, burst_);
  }

  double rate_mbps() const {
    detail::MutexLock lock(&mu_);
    return rate_bps_ / kBytesPerMB;
  }
  std::uint64_t burst_bytes() const {
    detail::MutexLock lock(&mu_);
    return to_bytes(burst_);
  }
  // Bytes available now (0 while a try_acquire_whole() is being repaid).
  std::uint64_t available_bytes() {
    detail::MutexLock lock(&mu_);
    refill();
    return to_bytes(tokens_);
  }
  // Total bytes granted (net of refunds) since construction.
  std::uint64_t granted_bytes() const {
    detail::MutexLock lock(&mu_);
    return granted_;
  }

 private:
  static bool valid_rate(double mbps) {
    return std::isfinite(mbps) && mbps >= 0 && std::isfinite(mbps * kBytesPerMB);
  }
  static double clamp_burst(std::uint64_t burst) {
    return static_cast<double>(std::min(burst, kMaxBurstBytes));
  }
  // A token count as bytes, never out of uint64's range: the bucket holds
  // at most kMaxBurstBytes, and less than 0 while a try_acquire_whole() is
  // being repaid.
  static std::uint64_t to_bytes(double tokens) {
    return tokens <= 0
               ? 0
               : static_cast<std::uint64_t>(std::min(tokens, static_cast<double>(kMaxBurstBytes)));
  }

  // A clock stepped backwards adds nothing but moves last_ns_ back with it:
  // refilling resumes from the new reading, not once the clock is past the
  // old one (an hour's step back would stall migration for an hour).
  void refill() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::int64_t now = clock_->now_ns();
    if (now > last_ns_) {
      tokens_ = std::min(burst_, tokens_ + rate_bps_ * static_cast<double>(now - last_ns_) / 1e9);
    }
    last_ns_ = now;
  }

  const Clock* clock_;
  mutable detail::Mutex mu_;
  double rate_bps_ ABSL_GUARDED_BY(mu_);
  double burst_ ABSL_GUARDED_BY(mu_);
  double tokens_ ABSL_GUARDED_BY(mu_);
  std::int64_t last_ns_ ABSL_GUARDED_BY(mu_);
  std::uint64_t granted_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tierkit
