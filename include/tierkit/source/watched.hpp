// tierkit/source/watched.hpp: what the page-table sources (source/births.hpp,
// source/uffd.hpp) share: per-page bit sets over the ranges they watch, kept
// in step with the engine's ranges, and the budgeted pass that resumes where
// the last one stopped. Layer 2 (beside the sources): hotness_source.hpp,
// std, Abseil.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "tierkit/common.hpp"
#include "tierkit/hotness_source.hpp"

namespace tierkit::source {

// One bit per page. 1/32768 of the memory it describes.
class PageBits {
 public:
  explicit PageBits(std::uint64_t pages = 0) : w_((pages + 63) / 64, 0) {}
  bool test(std::uint64_t i) const { return (w_[i / 64] >> (i % 64)) & 1; }
  void put(std::uint64_t i, bool b) {
    const std::uint64_t m = std::uint64_t{1} << (i % 64);
    w_[i / 64] = b ? w_[i / 64] | m : w_[i / 64] & ~m;
  }
  // Set bits in [i, j).
  std::uint64_t count(std::uint64_t i, std::uint64_t j) const {
    std::uint64_t n = 0;
    for (; i < j && i % 64 != 0; ++i) n += test(i);
    for (; i + 64 <= j; i += 64) n += static_cast<std::uint64_t>(__builtin_popcountll(w_[i / 64]));
    for (; i < j; ++i) n += test(i);
    return n;
  }

 private:
  std::vector<std::uint64_t> w_;
};

// A tracked range a source watches: its unit (4 KiB, or 2 MiB for huge
// units) and `kinds` bit sets over its pages.
struct WatchedRange {
  std::uintptr_t begin = 0, end = 0;
  std::size_t unit = kPageSize;
  std::vector<PageBits> bits;
  std::uint64_t page(std::uintptr_t a) const { return (a - begin) / kPageSize; }
};

// sync_watched()
//
// Keeps `watched` in step with `ranges`: ranges still tracked keep their
// bits; a new one is made with `kinds` empty bit sets and handed to
// `add(w)`, which returns false to leave it out (a failed registration);
// ranges no longer tracked are handed to `drop(w)`. O(ranges^2), small.
template <class Add, class Drop>
void sync_watched(std::vector<WatchedRange>& watched, absl::Span<const TrackedRange> ranges,
                  std::size_t kinds, Add&& add, Drop&& drop) {
  std::vector<WatchedRange> now;
  for (const TrackedRange& r : ranges) {
    if (r.end <= r.begin) continue;
    auto it = std::find_if(watched.begin(), watched.end(), [&](const WatchedRange& w) {
      return w.begin == r.begin && w.end == r.end;
    });
    if (it != watched.end()) {
      now.push_back(std::move(*it));
      watched.erase(it);
      continue;
    }
    WatchedRange w{r.begin, r.end, std::max<std::size_t>(r.granularity, kPageSize),
                   std::vector<PageBits>(kinds, PageBits((r.end - r.begin) / kPageSize))};
    if (add(w)) now.push_back(std::move(w));
  }
  for (WatchedRange& w : watched) drop(w);
  watched = std::move(now);
}

// budgeted_watched_pass()
//
// From `cursor` on, calls `visit(w, a, stop)` for windows of at most `chunk`
// pages; visit returns where it stopped (> a). Stops once `sampled` reaches
// budget.max_pages or budget.max_ns of this thread's CPU has passed since
// `t0`, leaving `cursor` where the next call resumes (0 after a full pass).
template <class Visit>
void budgeted_watched_pass(std::vector<WatchedRange>& watched, std::uintptr_t& cursor,
                           const SourceBudget& budget, std::int64_t t0, std::uint64_t& sampled,
                           std::uint64_t chunk, Visit&& visit) {
  const std::uint64_t cap = budget.max_pages ? budget.max_pages : ~std::uint64_t{0};
  for (WatchedRange& w : watched) {
    if (w.end <= cursor) continue;
    std::uintptr_t a = std::max<std::uintptr_t>(w.begin, cursor);
    while (a < w.end) {
      if (sampled >= cap || (budget.max_ns > 0 && detail::thread_cpu_ns() - t0 > budget.max_ns)) {
        cursor = a;
        return;
      }
      const std::uint64_t left = std::min(cap - sampled, chunk);
      const std::uintptr_t stop = left >= (w.end - a) / kPageSize ? w.end : a + left * kPageSize;
      const std::uintptr_t got = std::max<std::uintptr_t>(visit(w, a, stop), a + kPageSize);
      sampled += (got - a) / kPageSize;
      a = got;
    }
    cursor = w.end;
  }
  cursor = 0;
}

}  // namespace tierkit::source
