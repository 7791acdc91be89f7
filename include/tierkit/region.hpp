// tierkit/region.hpp: regions the application tags (hot, cold, pinned,
// automatic) with per-region overrides. Registering a region starts tracking
// its pages in the HotnessTracker; the RegionHandle unregisters on
// destruction. The registry's own lookups take a mutex (they run in the
// engine's epoch, not on the hot path); record_access never consults it.
// Layer 3: includes hotness.hpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
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

// Options of one region.
struct RegionOptions {
  RegionTag tag = RegionTag::automatic;
  std::string name;
  // Per-region promotion threshold (same unit as the threshold policy:
  // accesses per page per epoch); unset = the policy's.
  std::optional<double> promotion_threshold;
  // kPageSize, or kHugePageSize for THP-backed regions (then the range is
  // widened to 2 MiB and each 2 MiB is tracked and moved as one unit).
  std::size_t granularity = kPageSize;

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
};

using RegionId = std::uint64_t;

// A registered region as the engine sees it. begin/end are aligned to the
// region's granularity. The tag may change at runtime (atomically).
struct Region {
  RegionId id = 0;
  std::uintptr_t begin = 0, end = 0;
  RegionOptions options;
  std::atomic<RegionTag> tag{RegionTag::automatic};
  std::atomic<double> threshold_override{-1.0};  // < 0: none

  std::size_t bytes() const { return end - begin; }
  std::size_t units() const { return bytes() / options.granularity; }
};

class RegionRegistry;

// Owns one registration; unregisters on destruction. Move-only.
class RegionHandle {
 public:
  RegionHandle() = default;
  RegionHandle(RegionRegistry* reg, RegionId id) : reg_(reg), id_(id) {}
  RegionHandle(RegionHandle&& o) noexcept : reg_(std::exchange(o.reg_, nullptr)), id_(o.id_) {}
  RegionHandle& operator=(RegionHandle&& o) noexcept {
    if (this != &o) {
      reset();
      reg_ = std::exchange(o.reg_, nullptr);
      id_ = o.id_;
    }
    return *this;
  }
  RegionHandle(const RegionHandle&) = delete;
  RegionHandle& operator=(const RegionHandle&) = delete;
  ~RegionHandle() { reset(); }

  RegionId id() const { return id_; }
  bool valid() const { return reg_ != nullptr; }
  // Unregisters now (no-op if already done).
  inline void reset();
  // Gives up ownership without unregistering; returns the id.
  RegionId release() {
    reg_ = nullptr;
    return id_;
  }

 private:
  RegionRegistry* reg_ = nullptr;
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
  RegionRegistry(const RegionRegistry&) = delete;
  RegionRegistry& operator=(const RegionRegistry&) = delete;

  // Registers [ptr, ptr+bytes), widened outwards to whole pages (or 2 MiB
  // units) because the kernel places and moves whole pages. `fast` is the
  // believed initial placement of every page (the engine refines it with a
  // placement query). Errors: null pointer, zero or overflowing length, a
  // range beyond the 47-bit user address space, an unknown granularity, or an
  // overlap with a registered region (named in the message). O(pages).
  absl::StatusOr<RegionHandle> add(const void* ptr, std::size_t bytes, RegionOptions options,
                                   bool fast = true) {
    auto a = reinterpret_cast<std::uintptr_t>(ptr);
    if (ptr == nullptr) return absl::InvalidArgumentError("register region: null pointer");
    if (bytes == 0) return absl::InvalidArgumentError("register region: empty range (0 bytes)");
    if (options.granularity != kPageSize && options.granularity != kHugePageSize)
      return absl::InvalidArgumentError(absl::StrCat(
          "register region: granularity ", options.granularity, " is neither 4096 nor 2 MiB"));
    std::uintptr_t limit = std::uintptr_t{1} << HotnessTracker::kAddressBits;
    if (a >= limit || bytes > limit - a)
      return absl::InvalidArgumentError(absl::StrFormat(
          "register region: [0x%x, +%u) is outside the 47-bit user address space", a, bytes));
    std::uintptr_t begin = align_down(a, options.granularity);
    std::uintptr_t end = align_up(a + bytes, options.granularity);
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
    auto r = std::make_shared<Region>();
    r->id = ++next_id_;
    r->begin = begin;
    r->end = end;
    r->tag.store(options.tag, std::memory_order_relaxed);
    if (options.promotion_threshold)
      r->threshold_override.store(*options.promotion_threshold, std::memory_order_relaxed);
    r->options = std::move(options);
    tracker_.track(begin, end, r->options.granularity == kHugePageSize, fast);
    regions_.emplace(begin, r);
    by_id_.emplace(r->id, r);
    tracked_bytes_ += end - begin;
    return RegionHandle(this, r->id);
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
    return absl::OkStatus();
  }

  // Changes a region's tag; takes effect at the next epoch.
  absl::Status set_tag(RegionId id, RegionTag tag) {
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
  std::uint64_t tracked_bytes() const {
    detail::MutexLock lock(&mu_);
    return tracked_bytes_;
  }

  // Held (shared) by the engine while it moves pages, so a region cannot be
  // unregistered, and its memory handed back, under a migration in flight.
  detail::Mutex& move_mutex() ABSL_LOCK_RETURNED(move_mu_) { return move_mu_; }

  HotnessTracker& tracker() { return tracker_; }

 private:
  HotnessTracker& tracker_;
  detail::Mutex move_mu_;
  mutable detail::Mutex mu_ ABSL_ACQUIRED_AFTER(move_mu_);
  absl::btree_map<std::uintptr_t, std::shared_ptr<Region>> regions_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<RegionId, std::shared_ptr<Region>> by_id_ ABSL_GUARDED_BY(mu_);
  RegionId next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t tracked_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

inline void RegionHandle::reset() {
  if (reg_ != nullptr) {
    (void)reg_->remove(id_);
    reg_ = nullptr;
  }
}

}  // namespace tierkit
