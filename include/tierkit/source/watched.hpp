// tierkit/source/watched.hpp: what the page-table sources (source/births.hpp,
// source/uffd.hpp) share: per-page bit sets over the ranges they watch, kept
// in step with the engine's ranges, and the budgeted pass that resumes where
// the last one stopped. Layer 2 (beside the sources): hotness_source.hpp,
// std, Abseil.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
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
  // The bits [i, j) as a set of their own. O((j - i) / 64).
  PageBits slice(std::uint64_t i, std::uint64_t j) const {
    PageBits out(j - i);
    const std::uint64_t shift = i % 64;
    for (std::uint64_t k = 0; k < out.w_.size(); ++k) {
      const std::uint64_t at = i / 64 + k;
      std::uint64_t v = w_[at] >> shift;
      if (shift != 0 && at + 1 < w_.size()) v |= w_[at + 1] << (64 - shift);
      out.w_[k] = v;
    }
    if ((j - i) % 64 != 0) out.w_.back() &= (std::uint64_t{1} << ((j - i) % 64)) - 1;
    return out;
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
// Keeps `watched` in step with `ranges`: a range inside one already
// watched keeps its bits (the engine cuts a region's range where a chunk's
// unit changed); what is no longer watched, the parts of a cut range outside
// its pieces included, is handed to `drop(w)` first; then each new range is
// made with `kinds` empty bit sets and handed to `add(w)`, which returns
// false to leave it out (a failed registration). The engine's ranges never
// overlap; overlapping ones are each watched, the later ones as new.
// O(ranges log ranges + the bits kept).
template <class Add, class Drop>
void sync_watched(std::vector<WatchedRange>& watched, absl::Span<const TrackedRange> ranges,
                  std::size_t kinds, Add&& add, Drop&& drop) {
  auto by_begin = [](const auto& x, const auto& y) { return x.begin < y.begin; };
  std::sort(watched.begin(), watched.end(), by_begin);
  std::vector<TrackedRange> sorted;
  for (const TrackedRange& r : ranges)
    if (r.begin < r.end) sorted.push_back(r);
  std::sort(sorted.begin(), sorted.end(), by_begin);
  // The old range holding each new one whole, if any.
  constexpr std::size_t kNone = ~std::size_t{0};
  std::vector<std::size_t> in(sorted.size(), kNone);
  for (std::size_t k = 0; k < sorted.size(); ++k) {
    auto it = std::upper_bound(watched.begin(), watched.end(), sorted[k].begin,
                               [](std::uintptr_t a, const WatchedRange& w) { return a < w.begin; });
    if (it != watched.begin() && std::prev(it)->end >= sorted[k].end)
      in[k] = static_cast<std::size_t>(std::prev(it) - watched.begin());
  }
  // Drops what the new ranges inside each old one leave uncovered.
  std::vector<std::uintptr_t> covered(watched.size());
  for (std::size_t i = 0; i < watched.size(); ++i) covered[i] = watched[i].begin;
  auto drop_part = [&](std::size_t i, std::uintptr_t upto) {
    if (covered[i] >= upto) return;
    WatchedRange part{covered[i], upto, watched[i].unit, {}};
    drop(part);
  };
  for (std::size_t k = 0; k < sorted.size(); ++k) {
    if (in[k] == kNone) continue;
    drop_part(in[k], sorted[k].begin);
    covered[in[k]] = std::max(covered[in[k]], sorted[k].end);
  }
  for (std::size_t i = 0; i < watched.size(); ++i) drop_part(i, watched[i].end);
  std::vector<WatchedRange> now;
  now.reserve(sorted.size());
  for (std::size_t k = 0; k < sorted.size(); ++k) {
    const TrackedRange& r = sorted[k];
    WatchedRange w{r.begin, r.end, std::max<std::size_t>(r.granularity, kPageSize), {}};
    // Not inside one, or given twice (its bits went to the first): new.
    if (in[k] == kNone || watched[in[k]].bits.size() != kinds) {
      w.bits.assign(kinds, PageBits((r.end - r.begin) / kPageSize));
      if (add(w)) now.push_back(std::move(w));
      continue;
    }
    WatchedRange& old = watched[in[k]];
    if (old.begin == r.begin && old.end == r.end) {
      w.bits = std::move(old.bits);  // the same range: nothing else lies in it
      old.bits.clear();
    } else {
      for (const PageBits& b : old.bits)
        w.bits.push_back(b.slice(old.page(r.begin), old.page(r.end)));
    }
    now.push_back(std::move(w));
  }
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
