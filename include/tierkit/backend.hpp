// tierkit/backend.hpp: the platform seam. A Backend maps memory, binds it to
// nodes, asks where pages are and moves them. It is the only layer that makes
// memory-policy syscalls (LinuxBackend) or pretends to (SimulatedBackend), so
// every policy above it runs unchanged on a one-node machine and in the
// simulator. ForwardingBackend is the base of wrappers around another.
// Layer 1: includes common.hpp only.
#pragma once

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tierkit/common.hpp"

namespace tierkit {

// How a range is bound to its nodes (mbind(2) modes).
enum class BindMode {
  kBind,           // MPOL_BIND: only these nodes; allocation fails when full.
  kPreferred,      // MPOL_PREFERRED: the first node, falling back elsewhere.
  kPreferredMany,  // MPOL_PREFERRED_MANY (Linux >= 5.15), else kPreferred.
  kInterleave,     // MPOL_INTERLEAVE: round-robin over the nodes.
};

// Total and free bytes of one node, as the kernel reports them, and the free
// memory the kernel itself keeps there: the sum of the node's zones' high
// watermarks (/proc/zoneinfo). Below it the kernel's reclaim (kswapd) runs,
// and with demotion on it demotes pages to the next tier; its own promotions
// stop there (migrate_balanced_pgdat, mm/migrate.c). 0 when not known.
struct NodeMemory {
  std::uint64_t total_bytes = 0;
  std::uint64_t free_bytes = 0;
  std::uint64_t kernel_reserve_bytes = 0;
};

// Tally of page outcomes by errno: count[0] is success, count[e] is errno e,
// count[kMax - 1] collects errnos beyond. Costs 64 counters.
struct ErrnoCounts {
  static constexpr int kMax = 64;
  std::array<std::uint64_t, kMax> count{};
  // `err` is 0 or a positive errno.
  void add(int err) { ++count[static_cast<std::size_t>(err >= 0 && err < kMax ? err : kMax - 1)]; }
  std::uint64_t total() const {
    std::uint64_t t = 0;
    for (auto c : count) t += c;
    return t;
  }
};

// The platform interface. All methods are thread-safe. Page arguments must be
// kPageSize-aligned addresses of the calling process.
class Backend {
 public:
  virtual ~Backend() = default;

  // "linux" or "simulated", for logs and stats.
  virtual absl::string_view name() const = 0;

  // Reserves `bytes` (a multiple of kPageSize) of private anonymous memory,
  // 2 MiB aligned when `bytes` is a multiple of 2 MiB (so huge pages can back
  // it), advised for base pages until advise_huge() says otherwise. Nothing
  // is faulted in. One mmap(2) (plus a trim of the alignment slack).
  virtual absl::StatusOr<void*> map(std::size_t bytes) = 0;
  // Returns a range from map(). One munmap(2).
  virtual absl::Status unmap(void* addr, std::size_t bytes) = 0;
  // The system's transparent huge page mode (read once).
  virtual ThpMode thp_mode() const = 0;
  // Asks for transparent huge pages on the range (madvise(MADV_HUGEPAGE)):
  // pages faulted afterwards, and khugepaged, may then use 2 MiB pages.
  virtual absl::Status advise_huge(void* addr, std::size_t bytes) = 0;
  // Asks for base pages only (madvise(MADV_NOHUGEPAGE)). Huge pages already
  // there stay huge.
  virtual absl::Status advise_base_pages(void* addr, std::size_t bytes) = 0;

  // Sets the memory policy of [addr, addr+bytes) to `nodes` (mbind(2)). With
  // `move`, pages already present are migrated too (MPOL_MF_MOVE |
  // MPOL_MF_STRICT), and an error is returned if some could not be moved.
  virtual absl::Status bind(void* addr, std::size_t bytes, const NodeSet& nodes, BindMode mode,
                            bool move) = 0;

  // For each page, writes its node to `status`, or -errno: -ENOENT (not
  // present yet), -EFAULT (not mapped). move_pages(2) with nodes == NULL.
  virtual absl::Status query(absl::Span<void* const> pages, absl::Span<int> status) = 0;

  // Moves pages[i] to nodes[i]; writes the node each page ended on, or -errno:
  // -EBUSY (retry later), -ENOMEM (target full), -EFAULT (not mapped),
  // -ENOENT (not present: never touched, freed, or only read so far;
  // LinuxBackend reports it so on every kernel, though move_pages says
  // -EFAULT for an only-read page, and 6.1's for an untouched one), -EACCES
  // (shared with another process). A target node the process cannot use
  // (absent, without memory, outside its cpuset) is InvalidArgument naming
  // it, and nothing moves. Any other non-OK Status means the call failed
  // part way: `status` is undefined and some pages may have moved, so
  // callers re-query placement.
  // NOTE: a page inside a transparent huge page moves the whole huge page
  // (its 512 base pages go together; later entries of the same huge page in
  // the call report the target, or -EBUSY while it is in flight).
  virtual absl::Status move(absl::Span<void* const> pages, absl::Span<const NodeId> nodes,
                            absl::Span<int> status) = 0;

  // Total and free memory of `node`.
  virtual absl::StatusOr<NodeMemory> node_memory(NodeId node) = 0;

  // The NUMA distance from `from` to `to` (the ACPI SLIT value the kernel
  // reports in /sys/devices/system/node/node*/distance: 10 = local, larger
  // is farther). The engine sends a page to the nearest node of the tier it
  // moves to. The default, for backends that do not know, calls every other
  // node equally far. Cheap: no syscall after the first call.
  virtual int distance(NodeId from, NodeId to) const { return from == to ? 10 : 20; }

  // Keeps the kernel's NUMA balancing (kernel.numa_balancing 1 or 2: hint
  // faults that migrate a page toward the CPU that touched it, or promote a
  // slow-tier page the kernel finds hot) away from [addr, addr+bytes), so
  // the engine is the only one moving its pages. Returns whether it changed
  // anything; false where the platform has no such balancing (the default)
  // or the range already keeps it away. Errors: the range is not mapped.
  virtual absl::StatusOr<bool> exclude_from_numa_balancing(void* addr, std::size_t bytes) {
    (void)addr;
    (void)bytes;
    return false;
  }

  // A running count of pages the kernel has moved between nodes on its own,
  // as narrowly as the platform counts them (on Linux the process's cgroup
  // where its memory.stat says, else the machine): its reclaim's demotions
  // (kswapd, direct reclaim) and its NUMA balancing's migrations and
  // promotions. Not the process's own move_pages(2) calls. nullopt where the
  // platform does not say (the default). The engine reads it at most once
  // per Engine::kKernelMovesPeriodMs: when it rises, pages may not be where
  // the engine believes, so it asks where its active pages and its idle fast
  // ones are (Engine::kVerifyBatch).
  virtual std::optional<std::uint64_t> kernel_moved_pages() { return std::nullopt; }

  // Page statuses seen by query()/move() (index = errno; 0 = success).
  virtual ErrnoCounts errno_counts() const = 0;
};

// ForwardingBackend
//
// A Backend that passes every call to another: the base of wrappers that
// change a few calls and forward the rest (FaultInjectionBackend; a test's
// hook). `inner` must outlive it. Thread-safe as `inner` is; no cost but the
// extra virtual call.
class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(Backend& inner) : inner_(inner) {}

  absl::string_view name() const override { return inner_.name(); }
  absl::StatusOr<void*> map(std::size_t bytes) override { return inner_.map(bytes); }
  absl::Status unmap(void* addr, std::size_t bytes) override { return inner_.unmap(addr, bytes); }
  ThpMode thp_mode() const override { return inner_.thp_mode(); }
  absl::Status advise_huge(void* addr, std::size_t bytes) override {
    return inner_.advise_huge(addr, bytes);
  }
  absl::Status advise_base_pages(void* addr, std::size_t bytes) override {
    return inner_.advise_base_pages(addr, bytes);
  }
  absl::Status bind(void* addr, std::size_t bytes, const NodeSet& nodes, BindMode mode,
                    bool move) override {
    return inner_.bind(addr, bytes, nodes, mode, move);
  }
  absl::Status query(absl::Span<void* const> pages, absl::Span<int> status) override {
    return inner_.query(pages, status);
  }
  absl::Status move(absl::Span<void* const> pages, absl::Span<const NodeId> nodes,
                    absl::Span<int> status) override {
    return inner_.move(pages, nodes, status);
  }
  absl::StatusOr<NodeMemory> node_memory(NodeId node) override { return inner_.node_memory(node); }
  int distance(NodeId from, NodeId to) const override { return inner_.distance(from, to); }
  absl::StatusOr<bool> exclude_from_numa_balancing(void* addr, std::size_t bytes) override {
    return inner_.exclude_from_numa_balancing(addr, bytes);
  }
  std::optional<std::uint64_t> kernel_moved_pages() override { return inner_.kernel_moved_pages(); }
  ErrnoCounts errno_counts() const override { return inner_.errno_counts(); }

 protected:
  Backend& inner() const { return inner_; }

 private:
  Backend& inner_;
};

}  // namespace tierkit
