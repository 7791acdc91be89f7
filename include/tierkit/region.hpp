// tierkit/region.hpp: regions the application tags (hot, cold, pinned,
// automatic) with per-region overrides. Registering a region starts tracking
// its pages in the HotnessTracker; the RegionHandle unregisters on
// destruction. The registry's own lookups take a mutex (they run in the
// engine's epoch, not on the hot path); record_access never consults it.
// Layer 3: includes hotness.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tierkit/detail/mutex.hpp"
#include "tierkit/hotness.hpp"

namespace tierkit {

// What the application knows about a region; overrides every policy.
enum class RegionTag : std::uint8_t {
  automatic,  // the engine's policy decides
  hot,        // keep in the fast tier: promote every page, never demote
  cold,       // keep in the slow tier: demote every page, never promote
  pinned,     // never move, whatever its heat
};

inline const char* tag_name(RegionTag t) {
  switch (t) {
    case RegionTag::automatic:
      return "automatic";
    case RegionTag::hot:
      return "hot";
    case RegionTag::cold:
      return "cold";
    case RegionTag::pinned:
      return "pinned";
  }
  return "?";
}

// OkStatus if `t` is one of RegionTag's four values, else InvalidArgument
// naming `where`: a cast from an unchecked integer would otherwise act as
// pinned without saying so.
inline absl::Status check_tag(RegionTag t, absl::string_view where) {
  if (t <= RegionTag::pinned) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": tag ", static_cast<int>(t),
                   " is not a RegionTag (automatic, hot, cold or pinned: 0-3)"));
}

// RegionOptions::granularity's default: 2 MiB units for the whole 2 MiB
// chunks inside the region where transparent huge pages are enabled (THP
// "madvise" or "always"; the engine advises them), 4 KiB pages elsewhere.
inline constexpr std::size_t kAutoGranularity = 0;

// Options of one region.
struct RegionOptions {
  RegionTag tag = RegionTag::automatic;
  std::string name;
  // Per-region promotion threshold (same unit and range as the threshold
  // policy's: accesses per page per epoch, in (0, 1e6], which
  // Engine::register_region checks); unset = the policy's.
  std::optional<double> promotion_threshold;
  // The tracking and migration unit. kAutoGranularity (default): huge pages
  // where the system allows them (see above). kHugePageSize: the range is
  // widened to 2 MiB and each 2 MiB is one unit. kPageSize: 4 KiB units only
  // (for data whose accesses are skewed within 2 MiB, or for fault sampling).
  // NOTE: a 2 MiB unit that turns out not to be one huge page when it is
  // moved (THP never formed there, or the kernel split it) falls back to
  // 4 KiB units for that chunk; hotness sources watch it page by page from
  // then on (TrackedRange), as they watch a merged chunk as one unit.
  // NOTE: the reverse: where 4 KiB units lie in a huge page (THP "always",
  // memory the application advised MADV_HUGEPAGE, or hugetlbfs memory such
  // as MAP_HUGETLB, huge under any THP mode), moving one moves the whole
  // huge page. Under THP "always" the engine advises the 4 KiB units
  // it chose for a kAutoGranularity region MADV_NOHUGEPAGE when it is
  // registered, as TierMemoryResource arenas are; huge pages formed before
  // that stay. A move that carries one is found after it (a page beside the
  // moved one moved too): its pages are accounted and believed where they
  // are, and in a kAutoGranularity region the chunk becomes one 2 MiB unit.
  // With kPageSize the chunk keeps 4 KiB units and each move of one of its
  // pages carries all 512: advise such memory yourself before first use
  // (docs/vm-demo.md).
  std::size_t granularity = kAutoGranularity;
  // The node whose CPUs use the region most (kNoNode: not given). Its pages
  // then move to the node of their new tier nearest to it, not to the node
  // they are on: choose it when data loaded on one socket is served from
  // another. The kernel's own promotion goes to the faulting CPU's node,
  // which record_access does not say. Register fails if the backend cannot
  // use the node.
  NodeId home_node = kNoNode;

  // Fluent setters: RegionOptions().with_tag(RegionTag::hot).with_name("index").
  RegionOptions& with_tag(RegionTag t) {
    tag = t;
    return *this;
  }
  RegionOptions& with_name(std::string n) {
    name = std::move(n);
    return *this;
  }
  RegionOptions& with_promotion_threshold(double rate) {
    promotion_threshold = rate;
    return *this;
  }
  RegionOptions& with_huge_pages() {
    granularity = kHugePageSize;
    return *this;
  }
  RegionOptions& with_base_pages() {
    granularity = kPageSize;
    return *this;
  }
  RegionOptions& with_home_node(NodeId node) {
    home_node = node;
    return *this;
  }
};

using RegionId = std::uint64_t;

// A registered region as the engine sees it. begin/end are page aligned
// (2 MiB aligned with kHugePageSize); [huge_begin, huge_end) is the part
// registered as 2 MiB units (empty for base pages). The tag may change at
// runtime (atomically).
struct Region {
  RegionId id = 0;
  std::uintptr_t begin = 0, end = 0;
  std::uintptr_t huge_begin = 0, huge_end = 0;
  RegionOptions options;
  std::atomic<RegionTag> tag{RegionTag::automatic};
  std::atomic<double> threshold_override{-1.0};  // < 0: none

  std::size_t bytes() const { return end - begin; }
  // Units as registered (a chunk split since still counts as one).
  std::size_t units() const {
    return (bytes() - (huge_end - huge_begin)) / kPageSize +
           (huge_end - huge_begin) / kHugePageSize;
  }
  // Calls fn(begin, end, unit_bytes) for the 4 KiB head, the 2 MiB middle
  // and the 4 KiB tail, skipping empty parts.
  template <class Fn>
  void for_each_span(Fn&& fn) const {
    if (huge_begin == huge_end) return fn(begin, end, kPageSize);
    if (begin < huge_begin) fn(begin, huge_begin, kPageSize);
    fn(huge_begin, huge_end, kHugePageSize);
    if (huge_end < end) fn(huge_end, end, kPageSize);
  }
};

class RegionRegistry;

namespace detail {
// What RegionHandles reach their registry through: the registry's
// destructor clears it, so a handle that outlives the registry (its Engine)
// finds none instead of freed memory. `mu` is held while a handle
// unregisters, so the registry is not destroyed meanwhile.
struct RegistryAnchor {
  explicit RegistryAnchor(RegionRegistry* r) : registry(r) {}
  Mutex mu;
  RegionRegistry* registry ABSL_GUARDED_BY(mu);
};
}  // namespace detail

// Owns one registration; unregisters on destruction. Move-only.
// NOTE: a handle that outlives its registry (its Engine) unregisters
// nothing: reset() and the destructor then do nothing.
class RegionHandle {
 public:
  RegionHandle() = default;
  inline RegionHandle(RegionRegistry* reg, RegionId id);
  RegionHandle(RegionHandle&& o) noexcept : anchor_(std::move(o.anchor_)), id_(o.id_) {}
  RegionHandle& operator=(RegionHandle&& o) noexcept {
    if (this != &o) {
      reset();
      anchor_ = std::move(o.anchor_);
      id_ = o.id_;
    }
    return *this;
  }
  RegionHandle(const RegionHandle&) = delete;
  RegionHandle& operator=(const RegionHandle&) = delete;
  ~RegionHandle() { reset(); }

  RegionId id() const { return id_; }
  bool valid() const { return anchor_ != nullptr; }
  // Unregisters now (no-op if already done, or if the registry is gone).
  inline void reset();
  // Gives up ownership without unregistering; returns the id.
  RegionId release() {
    anchor_.reset();
    return id_;
  }

 private:
  std::shared_ptr<detail::RegistryAnchor> anchor_;  // null: owns nothing
  RegionId id_ = 0;
};

// RegionRegistry
//
// The application's regions, address-ordered, each with a tag and options;
// adding one starts tracking its pages in the HotnessTracker. Cost: add and
// remove O(pages) (tracker words) + O(log regions); lookup O(log regions)
// under a mutex (the epoch, not the hot path). Thread safety: every member;
// remove() waits for a migration batch in flight (move_mutex()).
//
// Example:
//   auto h = registry.add(p, bytes, RegionOptions().with_tag(RegionTag::hot));
//   // ... h's destructor unregisters
class RegionRegistry {
 public:
  explicit RegionRegistry(HotnessTracker& tracker) : tracker_(tracker) {}
  // Handles still alive become inert (see RegionHandle); waits for one
  // unregistering now.
  ~RegionRegistry() {
    detail::MutexLock lock(&anchor_->mu);
    anchor_->registry = nullptr;
  }
  RegionRegistry(const RegionRegistry&) = delete;
  RegionRegistry& operator=(const RegionRegistry&) = delete;

  // Registers [ptr, ptr+bytes), widened outwards to whole pages (or 2 MiB
  // units) because the kernel places and moves whole pages. With
  // kAutoGranularity the whole 2 MiB chunks inside become 2 MiB units when
  // set_auto_huge(true), else the region uses 4 KiB pages. `fast` is the
  // believed initial placement of every page (the engine refines it with a
  // placement query). Errors: null pointer, zero or overflowing length, a
  // range beyond the 47-bit user address space, an unknown granularity, or an
  // overlap with a registered region (named in the message); and
  // ResourceExhausted, with nothing registered or tracked, when the tracker's
  // metadata (about 2 bytes a page) cannot be allocated. O(pages).
  absl::StatusOr<RegionHandle> add(const void* ptr, std::size_t bytes, RegionOptions options,
                                   bool fast = true) {
    auto a = reinterpret_cast<std::uintptr_t>(ptr);
    if (ptr == nullptr) return absl::InvalidArgumentError("register region: null pointer");
    if (bytes == 0) return absl::InvalidArgumentError("register region: empty range (0 bytes)");
    if (absl::Status s = check_tag(options.tag, "register region"); !s.ok()) return s;
    if (options.granularity != kAutoGranularity && options.granularity != kPageSize &&
        options.granularity != kHugePageSize)
      return absl::InvalidArgumentError(
          absl::StrCat("register region: granularity ", options.granularity,
                       " is neither 4096, 2 MiB nor kAutoGranularity (0)"));
    std::uintptr_t limit = std::uintptr_t{1} << HotnessTracker::kAddressBits;
    if (a >= limit || bytes > limit - a)
      return absl::InvalidArgumentError(absl::StrFormat(
          "register region: [0x%x, +%u) is outside the 47-bit user address space", a, bytes));
    const bool huge = options.granularity == kHugePageSize;
    std::uintptr_t begin = align_down(a, huge ? kHugePageSize : kPageSize);
    std::uintptr_t end = align_up(a + bytes, huge ? kHugePageSize : kPageSize);
    detail::MutexLock lock(&mu_);
    // Overlap: the region starting at or before `end` - 1 with the largest begin.
    auto it = regions_.lower_bound(end);
    if (it != regions_.begin()) {
      const Region& prev = *std::prev(it)->second;
      if (prev.end > begin)
        return absl::AlreadyExistsError(
            absl::StrFormat("register region '%s' [0x%x, 0x%x): overlaps region '%s' [0x%x, 0x%x)",
                            options.name, begin, end, prev.options.name, prev.begin, prev.end));
    }
    try {
      return add_locked(begin, end, huge, options, fast);
    } catch (const std::bad_alloc&) {
      // Nothing else was tracked in [begin, end), and no other region
      // starts at `begin`: it overlaps none.
      tracker_.untrack(begin, end);
      regions_.erase(begin);
      return absl::ResourceExhaustedError(absl::StrFormat(
          "register region '%s' [0x%x, 0x%x): out of memory for its tracker metadata (up to %u "
          "bytes for %u pages); nothing was registered",
          options.name, begin, end, HotnessTracker::metadata_bytes_for(begin, end),
          (end - begin) / kPageSize));
    }
  }

  // Unregisters a region by id; pages stop being tracked at once. Waits for
  // an in-flight migration batch (which holds the registry's reader lock).
  absl::Status remove(RegionId id) {
    detail::WriterMutexLock move_lock(&move_mu_);
    detail::MutexLock lock(&mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end())
      return absl::NotFoundError(absl::StrCat("unregister: no region with id ", id));
    std::shared_ptr<Region> r = it->second;
    tracker_.untrack(r->begin, r->end);
    regions_.erase(r->begin);
    by_id_.erase(it);
    tracked_bytes_ -= r->end - r->begin;
    note_removed(r->begin, r->end);
    return absl::OkStatus();
  }

  // take_removed()
  //
  // The ranges unregistered since the last call, for the engine to drop
  // what it and its policy keep per page there (move history, scan stamps)
  // before the addresses are registered again. At most kMaxRemovedRanges
  // are kept: past that the closest ranges are merged, so a range may also
  // cover the gaps between removed ones (forgetting what is kept there only
  // loses history; keeping what a removed range left would let a region
  // registered there inherit it). `overflowed` is set only when a note could
  // not be allocated: then the caller must treat every page no longer
  // tracked as removed. O(1) under the mutex.
  struct Removed {
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> ranges;  // [begin, end)
    bool overflowed = false;
  };
  static constexpr std::size_t kMaxRemovedRanges = 1024;
  Removed take_removed() {
    detail::MutexLock lock(&mu_);
    Removed out;
    std::swap(out, removed_);
    return out;
  }

  // Changes a region's tag; takes effect at the next epoch.
  absl::Status set_tag(RegionId id, RegionTag tag) {
    if (absl::Status s = check_tag(tag, "set_tag"); !s.ok()) return s;
    auto r = find(id);
    if (!r) return absl::NotFoundError(absl::StrCat("set_tag: no region with id ", id));
    r->tag.store(tag, std::memory_order_relaxed);
    return absl::OkStatus();
  }

  // The region with `id`, or null. O(log n) under the mutex.
  std::shared_ptr<Region> find(RegionId id) const {
    detail::MutexLock lock(&mu_);
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : it->second;
  }

  // The region containing `addr`, or null. O(log n) under the mutex; not for
  // hot paths (record_access does not need it).
  std::shared_ptr<Region> lookup(const void* addr) const {
    auto a = reinterpret_cast<std::uintptr_t>(addr);
    detail::MutexLock lock(&mu_);
    auto it = regions_.upper_bound(a);
    if (it == regions_.begin()) return nullptr;
    --it;
    return a < it->second->end ? it->second : nullptr;
  }

  // A consistent copy of the registered regions, in address order. O(n).
  std::vector<std::shared_ptr<Region>> snapshot() const {
    detail::MutexLock lock(&mu_);
    std::vector<std::shared_ptr<Region>> out;
    out.reserve(regions_.size());
    for (const auto& [b, r] : regions_) out.push_back(r);
    return out;
  }

  // The same into `out` (cleared first): no allocation once it has grown.
  void snapshot(std::vector<std::shared_ptr<Region>>& out) const {
    detail::MutexLock lock(&mu_);
    out.clear();
    for (const auto& [b, r] : regions_) out.push_back(r);
  }

  std::size_t size() const {
    detail::MutexLock lock(&mu_);
    return regions_.size();
  }

  // set_auto_huge()
  //
  // Whether kAutoGranularity regions registered from now on get 2 MiB units
  // (the engine sets it when the backend reports THP enabled). Default false.
  void set_auto_huge(bool on) {
    detail::MutexLock lock(&mu_);
    auto_huge_ = on;
  }
  std::uint64_t tracked_bytes() const {
    detail::MutexLock lock(&mu_);
    return tracked_bytes_;
  }

  // Held (shared) by the engine while it moves pages, so a region cannot be
  // unregistered, and its memory handed back, under a migration in flight.
  detail::Mutex& move_mutex() ABSL_LOCK_RETURNED(move_mu_) { return move_mu_; }

  HotnessTracker& tracker() { return tracker_; }

 private:
  // add()'s allocating half: may throw std::bad_alloc (the tracker's
  // metadata, the maps), which add() undoes.
  // `options` is moved from only on success.
  RegionHandle add_locked(std::uintptr_t begin, std::uintptr_t end, bool huge,
                          RegionOptions& options, bool fast) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto r = std::make_shared<Region>();
    r->id = ++next_id_;
    r->begin = begin;
    r->end = end;
    if (huge || (options.granularity == kAutoGranularity && auto_huge_)) {
      r->huge_begin = std::min(align_up(begin, kHugePageSize), end);
      r->huge_end = std::max(align_down(end, kHugePageSize), r->huge_begin);
    }
    if (r->huge_begin == r->huge_end) r->huge_begin = r->huge_end = begin;
    r->tag.store(options.tag, std::memory_order_relaxed);
    if (options.promotion_threshold)
      r->threshold_override.store(*options.promotion_threshold, std::memory_order_relaxed);
    r->for_each_span([&](std::uintptr_t b, std::uintptr_t e, std::size_t unit) {
      tracker_.track(b, e, unit == kHugePageSize, fast);
    });
    regions_.emplace(begin, r);
    by_id_.emplace(r->id, r);
    r->options = std::move(options);  // nothing throws from here on
    tracked_bytes_ += end - begin;
    return RegionHandle(this, r->id);
  }

  // remove()'s note for take_removed(); never throws: a note it cannot
  // allocate becomes `overflowed`.
  void note_removed(std::uintptr_t begin, std::uintptr_t end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (removed_.overflowed) return;
    if (removed_.ranges.size() >= kMaxRemovedRanges) compact_removed();
    try {
      removed_.ranges.emplace_back(begin, end);
    } catch (const std::bad_alloc&) {
      removed_.overflowed = true;
      removed_.ranges.clear();
    }
  }

  // Halves the removed ranges (kMaxRemovedRanges of them): sorted, and
  // merged across the smallest gaps, so that unrelated mappings far apart
  // stay apart. No allocation. O(k log k), once per k / 2 removals.
  void compact_removed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto& r = removed_.ranges;
    std::sort(r.begin(), r.end());
    std::array<std::uintptr_t, kMaxRemovedRanges> gaps;
    std::size_t n = r.size() - 1;
    for (std::size_t i = 0; i < n; ++i)
      gaps[i] = r[i + 1].first > r[i].second ? r[i + 1].first - r[i].second : 0;
    // Merging every gap up to the k-th smallest leaves at most n + 1 - k.
    const std::size_t k = r.size() - kMaxRemovedRanges / 2;
    std::nth_element(gaps.begin(), gaps.begin() + static_cast<std::ptrdiff_t>(k - 1),
                     gaps.begin() + static_cast<std::ptrdiff_t>(n));
    const std::uintptr_t merge_up_to = gaps[k - 1];
    std::size_t out = 0;
    for (std::size_t i = 1; i < r.size(); ++i) {
      if (r[i].first <= r[out].second || r[i].first - r[out].second <= merge_up_to)
        r[out].second = std::max(r[out].second, r[i].second);
      else
        r[++out] = r[i];
    }
    r.resize(out + 1);
  }

  HotnessTracker& tracker_;
  detail::Mutex move_mu_;
  mutable detail::Mutex mu_ ABSL_ACQUIRED_AFTER(move_mu_);
  absl::btree_map<std::uintptr_t, std::shared_ptr<Region>> regions_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<RegionId, std::shared_ptr<Region>> by_id_ ABSL_GUARDED_BY(mu_);
  RegionId next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t tracked_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool auto_huge_ ABSL_GUARDED_BY(mu_) = false;
  Removed removed_ ABSL_GUARDED_BY(mu_);
  const std::shared_ptr<detail::RegistryAnchor> anchor_ =
      std::make_shared<detail::RegistryAnchor>(this);

  friend class RegionHandle;
};

inline RegionHandle::RegionHandle(RegionRegistry* reg, RegionId id)
    : anchor_(reg != nullptr ? reg->anchor_ : nullptr), id_(id) {}

inline void RegionHandle::reset() {
  if (anchor_ == nullptr) return;
  {
    detail::MutexLock lock(&anchor_->mu);
    if (anchor_->registry != nullptr) (void)anchor_->registry->remove(id_);
  }
  anchor_.reset();
}

}  // namespace tierkit
