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
//  - stats() is cheap and callable from any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "tierkit/common.hpp"

namespace tierkit {

// One tracked address range, as the engine's registry holds it: [begin, end),
// aligned to `granularity` (kPageSize, or kHugePageSize for 2 MiB units).
struct TrackedRange {
  std::uintptr_t begin = 0, end = 0;
  std::size_t granularity = kPageSize;
};

// What one collect() may spend. A source stops observing (or samples fewer
// pages) once either limit is reached; 0 means "no limit" for that field.
struct SourceBudget {
  // Pages inspected (armed, read from pagemap, ...) per epoch.
  std::uint64_t max_pages = 4096;
  // CPU time per collect() call, in nanoseconds of the calling thread.
  std::int64_t max_ns = 2'000'000;  // 2 ms
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
class HotnessSink {
 public:
  virtual ~HotnessSink() = default;
  virtual void record(std::uintptr_t page, std::uint32_t weight, bool written) = 0;
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
