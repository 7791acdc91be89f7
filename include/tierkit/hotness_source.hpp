// tierkit/hotness_source.hpp: the seam between "who observes accesses" and
// the hotness tracker. A HotnessSource measures, once per epoch and at a
// bounded cost, which pages of the tracked ranges were accessed (and, where
// it can, written) without the application calling record_access(), and
// reports them through a HotnessSink into the same page words record_access
// feeds. Layer 2: includes common.hpp, std and Abseil only.
//
// Choose a source when the accesses happen where nobody can add a
// record_access() call (STL / Abseil containers, third-party libraries,
// generated code). Application calls and sources can be on together: both
// add heat to the same words. The Linux sources live in source/*.hpp (they
// make syscalls); source/sampled.hpp picks the best one the running kernel
// offers and says which and why.
//
// Contract for implementations:
//  - probe() says whether the source can work here, with a message saying
//    why not (kernel config, sysctl, privileges); it never crashes.
//  - collect() is called by one thread at a time (the engine's epoch thread),
//    with the ranges the engine tracks; it reports what it saw since the last
//    call and prepares the next observation, staying within `budget`.
//  - watch() is called when the tracked ranges grow, never concurrently with
//    collect(); sources that need no early start ignore it.
//  - stats() is cheap and callable from any thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tierkit/common.hpp"

namespace tierkit {

// One tracked address range, as the engine's registry holds it: [begin, end),
// aligned to `granularity` (kPageSize, or kHugePageSize for 2 MiB units).
// NOTE: a region may come as several ranges, and its ranges may change from
// one collect() to the next: where a chunk's unit changed (a 2 MiB unit that
// fell back to 4 KiB pages, or 4 KiB pages merged into one), the engine
// gives that chunk as a range of its own, in the unit it has now.
struct TrackedRange {
  std::uintptr_t begin = 0, end = 0;
  std::size_t granularity = kPageSize;
};

// What one collect() may spend. A source stops observing (or samples fewer
// pages) once a limit is reached; 0 means "no limit" for that field.
struct SourceBudget {
  // Pages inspected (armed, read from pagemap, ...) per epoch.
  std::uint64_t max_pages = 4096;
  // CPU time per collect() call, in nanoseconds of the calling thread.
  std::int64_t max_ns = 2'000'000;  // 2 ms
  // All the CPU time the source costs per epoch, wherever it runs (collect()
  // on the engine's thread and the faults it makes the application's
  // threads take), as a fraction of the epoch: a source that can size its
  // sample (fault sampling) sizes it from its own measured costs so the
  // total stays within this. 0 = no such limit.
  double cpu_fraction = 0.01;
  // The epoch's length, ns; the engine sets it from EngineConfig::epoch_ms
  // before every collect(). 0 = unknown: the source uses the time since its
  // previous collect().
  std::int64_t epoch_ns = 0;

  // OK, or InvalidArgument saying which field is out of range.
  absl::Status validate() const {
    if (max_ns < 0) return absl::InvalidArgumentError("SourceBudget::max_ns must be >= 0");
    if (!(cpu_fraction >= 0 && cpu_fraction <= 1))
      return absl::InvalidArgumentError("SourceBudget::cpu_fraction must be in [0, 1]");
    if (epoch_ns < 0) return absl::InvalidArgumentError("SourceBudget::epoch_ns must be >= 0");
    return absl::OkStatus();
  }
};

// What a source saw of one inspected page in one epoch: the raw evidence,
// which the engine turns into heat (see SourceEstimator). A source that
// watches pages for their first access (fault sampling) reports the pages
// that were not accessed too (accessed = false): that is evidence as well.
struct SourceObservation {
  std::uintptr_t page = 0;   // unit address (a 4 KiB page, or a 2 MiB unit's base)
  bool accessed = false;     // accessed while watched (fired, found dirty)
  bool written = false;      // known to be written (informational)
  std::uint32_t weight = 4;  // the source's fixed weight per page found (SourceEstimator::kFixed)
  // Probability that this page was inspected this epoch, in (0, 1]: the
  // sample's size over the population it was drawn from.
  double inclusion = 1;
  // How long the page was watched (armed to collected), and, when it was
  // accessed, how long after the watch began the first access came (the
  // NUMA hint fault's latency); -1 when the source cannot tell.
  std::int64_t watched_ns = -1;
  std::int64_t latency_ns = -1;
  // A page not accessed whose watch ended early because another page of the
  // same sample (a group of pages armed as one) was accessed first:
  // watched_ns is that time. It was not the first, which says little alone.
  bool watch_cut = false;
  // The page was born (first written) since the source's last look, and
  // that is all the source knows: one access, not evidence of reuse (the
  // engine does not hold a page promoted on it alone in the fast tier; see
  // Engine::add_hotness_source).
  bool birth = false;
};

// Counters of one source since it was created. Plain data.
struct HotnessSourceStats {
  std::string name;
  std::uint64_t collects = 0;
  // CPU time spent in collect() (the engine's thread) plus, for sources with
  // a fault handler, in the handler on the application's threads.
  std::uint64_t cpu_ns = 0;
  std::uint64_t handler_ns = 0;     // the part of cpu_ns spent in fault handlers
  std::uint64_t pages_sampled = 0;  // pages observed (armed, scanned)
  std::uint64_t pages_found = 0;    // observed pages found accessed
  std::uint64_t pages_written = 0;  // of which known to be written
  std::uint64_t errors = 0;         // syscalls that failed (last_error says which)
  std::uint64_t skipped = 0;        // pages skipped (unmapped, changed by the app, huge)
  std::string last_error;           // empty when none
  // For sources that size their sample by SourceBudget::cpu_fraction (0
  // otherwise): the last epoch's allowance, what the source estimates one
  // sample costs (all parts, from its own timing), the pages it inspected
  // last, and its estimate of the CPU it made the application's threads
  // spend in total (faults: kernel entry, signal delivery, handler).
  std::uint64_t budget_ns = 0;
  std::uint64_t ns_per_sample = 0;
  std::uint64_t last_sampled = 0;
  std::uint64_t app_ns = 0;
  // What the source expects its next epoch to cost in all (its plan; 0 when
  // it does not plan). source::CombinedSource counts it against the parts
  // after this one.
  std::uint64_t planned_ns = 0;

  // One collect()'s counts, for add_collect().
  struct Collect {
    std::uint64_t sampled = 0, found = 0, written = 0, skipped = 0, errors = 0;
  };
  // add_collect()
  //
  // Adds one collect() call: its CPU time, its counts, and `err` as the last
  // error when not empty. Every source ends collect() with it.
  void add_collect(std::int64_t cpu_ns_spent, const Collect& c, const std::string& err) {
    ++collects;
    cpu_ns += static_cast<std::uint64_t>(cpu_ns_spent);
    pages_sampled += c.sampled;
    pages_found += c.found;
    pages_written += c.written;
    skipped += c.skipped;
    errors += c.errors;
    if (!err.empty()) last_error = err;
  }
  // add_watch()
  //
  // Adds one watch() call: its CPU time, and its failed syscalls (`err`
  // the last one's message, empty when none).
  void add_watch(std::int64_t cpu_ns_spent, std::uint64_t failed, const std::string& err) {
    cpu_ns += static_cast<std::uint64_t>(cpu_ns_spent);
    errors += failed;
    if (!err.empty()) last_error = err;
  }
  // The same for a collect() that ends with `status`: a non-OK one counts
  // as one more error and becomes the last error.
  void add_collect(std::int64_t cpu_ns_spent, Collect c, std::string err,
                   const absl::Status& status) {
    if (!status.ok()) {
      ++c.errors;
      err = std::string(status.message());
    }
    add_collect(cpu_ns_spent, c, err);
  }
};

// Receives the pages a source found accessed. `weight` is added to the
// page's heat exactly like record_access(ptr, 1, weight); `written` is true
// when the source knows the access was a write (informational today).
// observe() receives the raw evidence instead: sources call it for every
// page they inspected; the default keeps record()'s meaning (a page found
// accessed adds its fixed weight; one not accessed adds nothing). The
// engine's sink overrides it to estimate heat (SourceEstimator).
class HotnessSink {
 public:
  virtual ~HotnessSink() = default;
  virtual void record(std::uintptr_t page, std::uint32_t weight, bool written) = 0;
  virtual void observe(const SourceObservation& o) {
    if (o.accessed) record(o.page, o.weight, o.written);
  }
};

// A sink calling `f(page, weight, written)`: make_sink([&](auto p, auto w,
// bool wr) {...}).
template <class F>
class FunctionSink final : public HotnessSink {
 public:
  explicit FunctionSink(F f) : f_(std::move(f)) {}
  void record(std::uintptr_t page, std::uint32_t weight, bool written) override {
    f_(page, weight, written);
  }

 private:
  F f_;
};
template <class F>
FunctionSink<F> make_sink(F f) {
  return FunctionSink<F>(std::move(f));
}

// How the engine turns a source's observations into heat (one per source,
// Engine::add_hotness_source).
//   kFixed          a page found accessed adds the source's fixed weight.
//   kLatency        ... times (time watched) / (time to the first access),
//                   in [1, 256]: the accesses per watch that latency suggests.
//   kScaled         ... the fixed weight over the inclusion probability
//                   (Horvitz-Thompson: unbiased for the heat record_access
//                   would have added, but one observation carries a whole
//                   population's share: capped at the tracker's maximum).
//   kLatencyScaled  both.
//   kRate           (default) the rate that latency says, as the kernel's
//                   NUMA hint fault reads it: (time watched) / (time to the
//                   first access) accesses per watch, in [weight, kMaxRateHeat],
//                   the accesses record_access would have counted for the
//                   page in that epoch (an estimate conditional on the page
//                   being inspected: unscaled, so one observation never
//                   outweighs a page seen accessed every epoch). A page
//                   watched and not accessed is evidence of a low rate: its
//                   heat drops to 0. The engine also compares a newcomer
//                   found this way against residents with what it knows of
//                   them (Engine: "sampled evidence"). Sources that cannot
//                   tell latency (soft-dirty, uffd) add their fixed weight.
enum class SourceEstimator { kFixed, kLatency, kScaled, kLatencyScaled, kRate };

// The most heat one kRate observation adds: latency is a single exponential
// sample of the page's access interval, so a page seen once is never taken
// for hotter than this many accesses per epoch (an eighth of the tracker's
// heat range), however short its latency.
inline constexpr std::uint32_t kMaxRateHeat = 64;

// Parses fixed, latency, scaled, latency+scaled, rate.
inline absl::StatusOr<SourceEstimator> parse_source_estimator(absl::string_view s) {
  if (s == "fixed") return SourceEstimator::kFixed;
  if (s == "latency") return SourceEstimator::kLatency;
  if (s == "scaled") return SourceEstimator::kScaled;
  if (s == "latency+scaled") return SourceEstimator::kLatencyScaled;
  if (s == "rate") return SourceEstimator::kRate;
  return absl::InvalidArgumentError(absl::StrCat(
      "source estimator '", s, "': expected one of fixed, latency, scaled, latency+scaled, rate"));
}

// The heat one observation of a page found accessed adds under `e`
// (0 for a page not accessed), at most `max_heat`. O(1).
inline std::uint32_t observation_heat(const SourceObservation& o, SourceEstimator e,
                                      std::uint32_t max_heat) {
  if (!o.accessed) return 0;
  const bool timed = o.latency_ns >= 0 && o.watched_ns > 0;
  const double per_watch =
      timed
          ? static_cast<double>(o.watched_ns) /
                static_cast<double>(std::max<std::int64_t>(1, std::min(o.latency_ns, o.watched_ns)))
          : 1.0;
  double h = o.weight;
  switch (e) {
    case SourceEstimator::kFixed:
      break;
    case SourceEstimator::kLatency:
      h *= std::clamp(per_watch, 1.0, 256.0);
      break;
    case SourceEstimator::kScaled:
      h /= std::clamp(o.inclusion, 1e-9, 1.0);
      break;
    case SourceEstimator::kLatencyScaled:
      h *= std::clamp(per_watch, 1.0, 256.0) / std::clamp(o.inclusion, 1e-9, 1.0);
      break;
    case SourceEstimator::kRate:
      // Never below the fixed weight: a late first access also waited out
      // the earlier sampled faults on the application's threads (a
      // millisecond each under emulation), so a rate below it is not
      // evidence that the page is colder than "found accessed".
      h = timed ? std::clamp(
                      per_watch, static_cast<double>(o.weight),
                      std::max(static_cast<double>(o.weight), static_cast<double>(kMaxRateHeat)))
                : o.weight;
      break;
  }
  h = std::round(std::min(h, static_cast<double>(max_heat)));
  return h < 1 ? 1 : static_cast<std::uint32_t>(h);
}

class HotnessSource {
 public:
  virtual ~HotnessSource() = default;

  // A short stable name ("fault", "softdirty", "uffd-wp", "perf-mem").
  virtual std::string_view name() const = 0;

  // Whether this source can work on the running kernel and with this
  // process's privileges: OK, or an error whose message says what is
  // missing and why. May make a few syscalls (tens of microseconds).
  virtual absl::Status probe() = 0;

  // Reports through `sink` the pages of `ranges` observed accessed since the
  // previous call, then arms the next observation, within `budget`. Returns
  // OK, or an error when the source stopped working (it then reports nothing
  // more and says why; it never crashes the process).
  virtual absl::Status collect(absl::Span<const TrackedRange> ranges, HotnessSink& sink,
                               const SourceBudget& budget) = 0;

  // The tracked ranges grew (a region was registered, or the source was
  // just added): `ranges` are all of them. A source that can watch pages
  // from their birth (write-protect) starts on the new ones now, so what
  // happens before the next collect() is seen; the default does nothing.
  // Called by one thread at a time, never concurrently with collect().
  virtual void watch(absl::Span<const TrackedRange> ranges) { (void)ranges; }
  // Undoes everything the source changed in the address space (protections,
  // registrations). Called before the ranges go away; collect() re-arms.
  virtual void disarm() {}

  // Counters since creation. Cheap; any thread.
  virtual HotnessSourceStats stats() const = 0;
};

namespace detail {
// CPU time of the calling thread, in ns.
inline std::int64_t thread_cpu_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace detail

}  // namespace tierkit
