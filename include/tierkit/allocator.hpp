// tierkit/allocator.hpp: tiered_allocator<T>, a standard Allocator that puts a
// container's memory on a memory tier: `std::vector<int, tiered_allocator<int>>
// v(Tier::slow);`. It is a thin handle on a std::pmr::memory_resource: by
// default the process-wide pooled resource of a tier (tier_resource(): objects
// of up to 256 bytes from per-thread free lists, so a node-based container
// takes no lock per node; up to 32 KiB aligned to at most 4 KiB pooled;
// larger ones straight from the tier's arenas in whole pages), or any
// resource you pass, such as a TierMemoryResource. Layer 2: includes
// memory_resource.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory_resource>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tierkit/common.hpp"
#include "tierkit/detail/parse.hpp"
#include "tierkit/memory_resource.hpp"

namespace tierkit {

// Parses a tier name: "fast", "slow" (any case) or a tier index 0 ..
// kMaxTierResources - 1. InvalidArgument/OutOfRange otherwise.
inline absl::StatusOr<Tier> parse_tier_spec(absl::string_view text) {
  const std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (t == "fast") return Tier::fast;
  if (t == "slow") return Tier::slow;
  absl::StatusOr<std::int64_t> n = detail::parse_int(t, "tier", 0, kMaxTierResources - 1);
  if (!n.ok())
    return absl::Status(n.status().code(),
                        absl::StrCat("'", text, "' is not a tier: use fast, slow or 0 .. ",
                                     kMaxTierResources - 1, " (", n.status().message(), ")"));
  return static_cast<Tier>(*n);
}

namespace detail {

struct DefaultTier {
  Tier tier = Tier::fast;
  absl::Status status;
};

// TIERKIT_DEFAULT_TIER, read once per process.
inline const DefaultTier& default_tier_state() {
  static const DefaultTier state = [] {
    DefaultTier d;
    std::optional<std::string> env = getenv_string("TIERKIT_DEFAULT_TIER");
    if (!env.has_value()) return d;
    absl::StatusOr<Tier> t = parse_tier_spec(*env);
    if (t.ok()) {
      d.tier = *t;
    } else {
      d.status = absl::InvalidArgumentError(absl::StrCat(
          "TIERKIT_DEFAULT_TIER: ", t.status().message(), "; using the fast tier instead"));
    }
    return d;
  }();
  return state;
}

}  // namespace detail

// The tier default-constructed tiered_allocators use: Tier::fast, or the
// value of environment variable TIERKIT_DEFAULT_TIER (fast, slow or an index),
// read once per process. An invalid value falls back to Tier::fast.
inline Tier default_tier() { return detail::default_tier_state().tier; }

// OkStatus, or why TIERKIT_DEFAULT_TIER was ignored (print it at startup).
inline absl::Status default_tier_status() { return detail::default_tier_state().status; }

namespace detail {

// Stands in for a tier resource that could not be created where the
// allocator must not throw: every allocate() throws TierAllocError(status).
class UnavailableResource final : public std::pmr::memory_resource {
 public:
  explicit UnavailableResource(absl::Status status) : status_(std::move(status)) {}

 private:
  void* do_allocate(std::size_t, std::size_t) override { throw TierAllocError(status_); }
  void do_deallocate(void*, std::size_t, std::size_t) override {}
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
  absl::Status status_;
};

// tier_resource(default_tier()), or, if it cannot be created, a resource that
// fails every allocation with the (first) reason. Never destroyed.
inline std::pmr::memory_resource* default_tier_resource_or_failure() noexcept {
  try {
    absl::StatusOr<std::pmr::memory_resource*> r = tier_resource(default_tier());
    if (r.ok()) return *r;
    static UnavailableResource* const unavailable = new UnavailableResource(r.status());
    return unavailable;
  } catch (...) {                             // no memory to create it
    return std::pmr::null_memory_resource();  // throws std::bad_alloc
  }
}

}  // namespace detail

// An Allocator whose memory comes from a std::pmr::memory_resource, normally
// that of a tier. Copies share the resource; two allocators are equal iff
// they use the same resource object. Unlike std::pmr::polymorphic_allocator
// the allocator propagates on container copy/move assignment and swap, and a
// copied container keeps its tier. Throws std::bad_alloc (a TierAllocError
// from tierkit's resources, whose what() says why) when the resource is
// exhausted and std::bad_array_new_length when n * sizeof(T) overflows.
// Thread-safe as its resource is; the size of one pointer.
template <class T>
class tiered_allocator {
 public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;

  // Uses default_tier(). Throws TierAllocError if that tier's resource cannot
  // be created. One atomic load once the tier exists.
  tiered_allocator() : tiered_allocator(default_tier()) {}
  // Uses the process-wide resource of tier `t` (tier_resource(t)). Throws
  // TierAllocError if it cannot be created (bad tier, unusable nodes).
  tiered_allocator(Tier t)  // NOLINT(google-explicit-constructor): like pmr's
      : resource_(resource_of(t)) {}
  // Uses `resource`, which must outlive every allocator and container using
  // it (e.g. a TierMemoryResource or a pool over one). Null means the default
  // tier's resource, as with the default constructor. NOTE: never throws; if
  // that resource cannot be created, every allocate() throws TierAllocError
  // saying why.
  tiered_allocator(std::pmr::memory_resource* resource) noexcept  // NOLINT: like pmr's
      : resource_(resource != nullptr ? resource : detail::default_tier_resource_or_failure()) {}
  // Rebinding copy: same resource.
  template <class U>
  tiered_allocator(const tiered_allocator<U>& other) noexcept  // NOLINT: rebind
      : resource_(other.resource()) {}
  tiered_allocator(const tiered_allocator&) noexcept = default;
  tiered_allocator& operator=(const tiered_allocator&) noexcept = default;

  // Memory for `n` objects, aligned to alignof(T). One resource allocate().
  [[nodiscard]] T* allocate(std::size_t n) {
    if (n > max_size()) throw std::bad_array_new_length();
    return static_cast<T*>(resource_->allocate(n * sizeof(T), alignof(T)));
  }
  // Returns memory from allocate(n) of an equal allocator.
  void deallocate(T* p, std::size_t n) noexcept {
    resource_->deallocate(p, n * sizeof(T), alignof(T));
  }

  // Largest n allocate() accepts without overflow.
  std::size_t max_size() const noexcept {
    // As std::allocator: no object may exceed PTRDIFF_MAX bytes.
    return static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max()) / sizeof(T);
  }

  // A copied container keeps the tier (a copy of this allocator).
  tiered_allocator select_on_container_copy_construction() const noexcept { return *this; }

  // The resource memory comes from. Never null.
  std::pmr::memory_resource* resource() const noexcept { return resource_; }

 private:
  static std::pmr::memory_resource* resource_of(Tier t) {
    absl::StatusOr<std::pmr::memory_resource*> r = tier_resource(t);
    if (!r.ok()) throw TierAllocError(r.status());
    return *r;
  }

  std::pmr::memory_resource* resource_;
};

// Equal iff both use the same resource object (memory from one can be freed
// by the other).
template <class T, class U>
bool operator==(const tiered_allocator<T>& a, const tiered_allocator<U>& b) noexcept {
  return a.resource() == b.resource();
}

}  // namespace tierkit
