// tierkit/common.hpp: vocabulary shared by every layer: node ids, node sets,
// page sizes and the injectable clock. Layer 0: includes only the standard
// library and Abseil.
#pragma once

#include <atomic>
#include <bitset>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace tierkit {

// A NUMA node's OS index, as in /sys/devices/system/node/nodeN.
using NodeId = int;
inline constexpr NodeId kNoNode = -1;

// A memory tier, ordered by speed: tier 0 is the fastest (local DRAM), tier 1
// the next (CXL or other CPU-less memory). Machines with more tiers use
// static_cast<Tier>(n).
enum class Tier : int { fast = 0, slow = 1 };
constexpr int tier_index(Tier t) { return static_cast<int>(t); }

// Base page size tierkit tracks and migrates (x86-64 and arm64 4 KiB kernels).
inline constexpr std::size_t kPageSize = 4096;
// Transparent huge page size; regions may be tracked at this granularity.
inline constexpr std::size_t kHugePageSize = 2u << 20;

// The system's transparent huge page setting
// (/sys/kernel/mm/transparent_hugepage/enabled): whether a range advised
// with MADV_HUGEPAGE (kMadvise) or any anonymous range (kAlways) may be
// backed by 2 MiB pages.
enum class ThpMode { kNever, kMadvise, kAlways };
constexpr const char* thp_mode_name(ThpMode m) {
  return m == ThpMode::kAlways ? "always" : m == ThpMode::kMadvise ? "madvise" : "never";
}

// Rounds down/up to a multiple of `align` (a power of two). Constant time.
constexpr std::uintptr_t align_down(std::uintptr_t v, std::size_t align) {
  return v & ~(static_cast<std::uintptr_t>(align) - 1);
}
constexpr std::uintptr_t align_up(std::uintptr_t v, std::size_t align) {
  return align_down(v + align - 1, align);
}

// A set of NUMA nodes, sized for the kernel's largest MAX_NUMNODES (1024).
// Copying costs 136 bytes; membership tests are constant time.
class NodeSet {
 public:
  static constexpr int kMaxNodes = 1024;

  NodeSet() = default;
  NodeSet(std::initializer_list<NodeId> nodes) {
    for (NodeId n : nodes) insert(n);
  }
  explicit NodeSet(const std::vector<NodeId>& nodes) {
    for (NodeId n : nodes) insert(n);
  }

  // Adds `node`. An id outside [0, kMaxNodes) is not added; the set
  // remembers the first such id (refused()) so that whoever takes the set
  // (EngineConfig::validate, TierMemoryResource::create, Backend::bind) can
  // refuse it instead of quietly using fewer nodes.
  void insert(NodeId node) {
    if (node >= 0 && node < kMaxNodes)
      bits_.set(static_cast<std::size_t>(node));
    else if (!refused_)
      refused_ = node;
  }
  // refused()
  //
  // The first id insert() could not add, if any.
  std::optional<NodeId> refused() const { return refused_; }
  // check()
  //
  // OkStatus, or InvalidArgument naming `what` and the id insert() refused.
  absl::Status check(absl::string_view what) const {
    if (!refused_) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(what, " names node ", *refused_,
                                                   ", outside the node ids [0, ", kMaxNodes,
                                                   ") Linux can have (MAX_NUMNODES)"));
  }
  bool contains(NodeId node) const {
    return node >= 0 && node < kMaxNodes && bits_.test(static_cast<std::size_t>(node));
  }
  bool empty() const { return bits_.none(); }
  std::size_t size() const { return bits_.count(); }
  // Lowest node in the set, or kNoNode.
  NodeId first() const {
    for (int i = 0; i < kMaxNodes; ++i)
      if (bits_.test(static_cast<std::size_t>(i))) return i;
    return kNoNode;
  }
  // Highest node in the set + 1 (0 for an empty set): the maxnode for mbind.
  int span() const {
    for (int i = kMaxNodes - 1; i >= 0; --i)
      if (bits_.test(static_cast<std::size_t>(i))) return i + 1;
    return 0;
  }
  std::vector<NodeId> to_vector() const {
    std::vector<NodeId> out;
    for (int i = 0; i < kMaxNodes; ++i)
      if (bits_.test(static_cast<std::size_t>(i))) out.push_back(i);
    return out;
  }
  // The set as the kernel's nodemask (array of unsigned long, bit n = node n).
  std::vector<unsigned long> to_mask() const {
    constexpr int kBits = 8 * sizeof(unsigned long);
    std::vector<unsigned long> mask(static_cast<std::size_t>(kMaxNodes / kBits), 0);
    for (int i = 0; i < kMaxNodes; ++i)
      if (bits_.test(static_cast<std::size_t>(i)))
        mask[static_cast<std::size_t>(i / kBits)] |= 1ul << (i % kBits);
    return mask;
  }
  // "0,1" style, as numactl prints node lists.
  std::string to_string() const { return absl::StrJoin(to_vector(), ","); }

  friend bool operator==(const NodeSet& a, const NodeSet& b) {
    return a.bits_ == b.bits_ && a.refused_ == b.refused_;
  }

 private:
  std::bitset<kMaxNodes> bits_;
  std::optional<NodeId> refused_;
};

// Time source for the engine, the rate limiter and the simulator, in
// nanoseconds from an arbitrary epoch. Injected so tests and the simulator run
// on virtual time. Implementations must be thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t now_ns() const = 0;
};

// std::chrono::steady_clock; about 20 ns per call (vDSO).
class SteadyClock final : public Clock {
 public:
  std::int64_t now_ns() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // A process-wide instance, for defaults.
  static SteadyClock& instance() {
    static SteadyClock clock;
    return clock;
  }
};

// A clock that moves only when told to: for deterministic tests and the
// simulator's virtual time. Thread-safe (one relaxed atomic).
class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::int64_t start_ns = 0) : now_(start_ns) {}
  std::int64_t now_ns() const override { return now_.load(std::memory_order_relaxed); }
  void advance_ns(std::int64_t ns) { now_.fetch_add(ns, std::memory_order_relaxed); }
  void set_ns(std::int64_t ns) { now_.store(ns, std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> now_;
};

inline constexpr std::int64_t kNsPerMs = 1'000'000;
inline constexpr std::int64_t kNsPerSec = 1'000'000'000;

}  // namespace tierkit
