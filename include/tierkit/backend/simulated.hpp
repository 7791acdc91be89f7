// tierkit/backend/simulated.hpp: a Backend that keeps page placement in
// memory: a page-to-node map with per-node capacities. map() still hands out
// real memory (so containers work on it), but "moving" a page only updates
// the map. It lets the engine and every policy run on a one-node machine, in
// tests and in the simulator. Transparent huge pages are modelled when
// set_thp_mode() enables them: a whole 2 MiB chunk advised with advise_huge()
// is one huge page, moved as a whole, until split_huge(); hugetlbfs memory
// by back_with_hugetlb(), whatever the THP mode. Layer 1.
#pragma once

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "tierkit/backend.hpp"
#include "tierkit/backend/linux.hpp"
#include "tierkit/detail/mutex.hpp"

namespace tierkit {

// One simulated node.
struct SimulatedNode {
  NodeId id = 0;
  std::uint64_t capacity_bytes = 0;
};

class SimulatedBackend final : public Backend {
 public:
  // `nodes` must be non-empty; the first node is where untouched pages land
  // first (first touch by a thread on the CPU node), falling back in order.
  explicit SimulatedBackend(std::vector<SimulatedNode> nodes) : nodes_(std::move(nodes)) {
    for (const auto& n : nodes_) used_[n.id] = 0;
  }

  absl::string_view name() const override { return "simulated"; }

  // Real memory, mapped as LinuxBackend maps it; only placement is simulated.
  absl::StatusOr<void*> map(std::size_t bytes) override {
    return LinuxBackend::instance().map(bytes);
  }

  absl::Status unmap(void* addr, std::size_t bytes) override {
    forget(addr, bytes);
    return LinuxBackend::instance().unmap(addr, bytes);
  }

  ThpMode thp_mode() const override {
    detail::MutexLock lock(&mu_);
    return thp_mode_;
  }
  // Whole 2 MiB chunks of the range become huge pages (with THP enabled).
  absl::Status advise_huge(void* addr, std::size_t bytes) override {
    detail::MutexLock lock(&mu_);
    if (thp_mode_ != ThpMode::kNever) make_huge(addr, bytes);
    return absl::OkStatus();
  }
  // As on Linux, huge pages already there stay huge.
  absl::Status advise_base_pages(void*, std::size_t) override { return absl::OkStatus(); }

  // Places every page of the range on the first node of `nodes` that has room
  // (the policy's preference order), as if the pages were faulted in now.
  absl::Status bind(void* addr, std::size_t bytes, const NodeSet& nodes, BindMode mode,
                    bool move) override {
    if (absl::Status s = nodes.check("bind: the node set"); !s.ok()) return s;
    if (nodes.empty()) return absl::InvalidArgumentError("bind: empty node set");
    detail::MutexLock lock(&mu_);
    for (NodeId n : nodes.to_vector())
      if (!used_.contains(n))
        return absl::InvalidArgumentError(absl::StrCat("bind: node ", n, " does not exist"));
    auto base = reinterpret_cast<std::uintptr_t>(addr);
    bool failed = false;
    for (std::uintptr_t a = align_down(base, kPageSize); a < base + bytes; a += kPageSize) {
      auto it = placement_.find(a);
      if (it != placement_.end() && !move) continue;
      NodeId target = kNoNode;
      for (NodeId n : nodes.to_vector())
        if (has_room(n) || (it != placement_.end() && it->second == n)) {
          target = n;
          break;
        }
      if (target == kNoNode && mode != BindMode::kBind) target = any_room();
      if (target == kNoNode) {
        failed = true;
        continue;
      }
      place(a, target);
    }
    if (failed)
      return absl::ResourceExhaustedError(
          absl::StrCat("bind: nodes ", nodes.to_string(), " are full"));
    return absl::OkStatus();
  }

  absl::Status query(absl::Span<void* const> pages, absl::Span<int> status) override {
    if (status.size() < pages.size())
      return absl::InvalidArgumentError("query: status span shorter than pages");
    detail::MutexLock lock(&mu_);
    for (std::size_t i = 0; i < pages.size(); ++i) {
      auto it = placement_.find(reinterpret_cast<std::uintptr_t>(pages[i]));
      status[i] = it == placement_.end() ? -ENOENT : it->second;
      counts_.add(status[i] < 0 ? -status[i] : 0);
    }
    return absl::OkStatus();
  }

  // Pages not yet placed are first-touched onto the preferred node, then moved.
  absl::Status move(absl::Span<void* const> pages, absl::Span<const NodeId> nodes,
                    absl::Span<int> status) override {
    if (nodes.size() != pages.size() || status.size() < pages.size())
      return absl::InvalidArgumentError("move: pages, nodes and status differ in length");
    detail::MutexLock lock(&mu_);
    for (NodeId n : nodes)
      if (!used_.contains(n))
        return absl::InvalidArgumentError(absl::StrCat("move_pages: node ", n, " does not exist"));
    for (std::size_t i = 0; i < pages.size(); ++i) {
      auto a = reinterpret_cast<std::uintptr_t>(pages[i]);
      auto it = placement_.find(a);
      if (it == placement_.end()) {
        status[i] = -ENOENT;
      } else if (it->second == nodes[i]) {
        status[i] = nodes[i];
      } else if (huge_.contains(align_down(a, kHugePageSize))) {
        status[i] = move_huge(align_down(a, kHugePageSize), nodes[i]);
      } else if (!has_room(nodes[i])) {
        status[i] = -ENOMEM;
      } else {
        place(a, nodes[i]);
        status[i] = nodes[i];
        ++moves_;
      }
      counts_.add(status[i] < 0 ? -status[i] : 0);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<NodeMemory> node_memory(NodeId node) override {
    detail::MutexLock lock(&mu_);
    for (const auto& n : nodes_)
      if (n.id == node) {
        auto r = kernel_reserve_.find(node);
        return NodeMemory{n.capacity_bytes, n.capacity_bytes - used_[node],
                          r == kernel_reserve_.end() ? 0 : r->second};
      }
    return absl::NotFoundError(absl::StrCat("node ", node, " does not exist"));
  }

  ErrnoCounts errno_counts() const override {
    detail::MutexLock lock(&mu_);
    return counts_;
  }

  // Records the range (numa_balancing_ranges()) and returns what
  // set_numa_balancing_result() set: false by default, as a platform
  // without the kernel's NUMA balancing.
  absl::StatusOr<bool> exclude_from_numa_balancing(void* addr, std::size_t bytes) override {
    detail::MutexLock lock(&mu_);
    numa_balancing_ranges_.emplace_back(addr, bytes);
    return numa_balancing_result_;
  }

  // The pages kernel_move() has moved: 0 until it is called.
  std::optional<std::uint64_t> kernel_moved_pages() override {
    detail::MutexLock lock(&mu_);
    ++kernel_moves_reads_;
    return kernel_moves_;
  }
  // How often kernel_moved_pages() was called (each is a /proc/vmstat read
  // on Linux).
  std::uint64_t kernel_moves_reads() const {
    detail::MutexLock lock(&mu_);
    return kernel_moves_reads_;
  }

  // As set_distance() set it; otherwise the Backend default.
  int distance(NodeId from, NodeId to) const override {
    detail::MutexLock lock(&mu_);
    auto it = distance_.find({from, to});
    return it != distance_.end() ? it->second : Backend::distance(from, to);
  }

  // Simulation helpers (not part of Backend).

  // Sets the distance between two nodes, both ways (a two-socket machine:
  // each CXL node near one socket's DRAM).
  void set_distance(NodeId a, NodeId b, int d) {
    detail::MutexLock lock(&mu_);
    distance_[{a, b}] = d;
    distance_[{b, a}] = d;
  }

  // Sets what node_memory() reports as the kernel's own reserve on `node`
  // (its zones' high watermarks; 0 by default). Nothing else changes: as on
  // Linux, a move into the reserve still succeeds.
  void set_kernel_reserve(NodeId node, std::uint64_t bytes) {
    detail::MutexLock lock(&mu_);
    kernel_reserve_[node] = bytes;
  }

  // What exclude_from_numa_balancing() returns from now on.
  void set_numa_balancing_result(absl::StatusOr<bool> result) {
    detail::MutexLock lock(&mu_);
    numa_balancing_result_ = std::move(result);
  }
  // The ranges exclude_from_numa_balancing() was asked for, in order.
  std::vector<std::pair<void*, std::size_t>> numa_balancing_ranges() const {
    detail::MutexLock lock(&mu_);
    return numa_balancing_ranges_;
  }

  // Moves a placed page to `node` as the kernel does on its own (reclaim's
  // demotion, NUMA balancing), behind the engine's back: kernel_moved_pages()
  // counts it, moves() does not. Returns false if the page is not placed or
  // `node` is full.
  bool kernel_move(std::uintptr_t page, NodeId node) {
    detail::MutexLock lock(&mu_);
    auto it = placement_.find(page);
    if (it == placement_.end() || (it->second != node && !has_room(node))) return false;
    if (it->second == node) return true;
    place(page, node);
    ++kernel_moves_;
    return true;
  }

  // Enables the huge page model (kNever, the default, disables it).
  void set_thp_mode(ThpMode mode) {
    detail::MutexLock lock(&mu_);
    thp_mode_ = mode;
  }
  // Makes the whole 2 MiB chunks of the range huge pages whatever the THP
  // mode, as memory from hugetlbfs (MAP_HUGETLB, SHM_HUGETLB) is: moved
  // whole by a move of any of its pages.
  void back_with_hugetlb(void* addr, std::size_t bytes) {
    detail::MutexLock lock(&mu_);
    make_huge(addr, bytes);
  }
  // Splits the huge page holding `addr` into base pages, in place, as the
  // kernel may under memory pressure or a partial mprotect/munmap.
  void split_huge(std::uintptr_t addr) {
    detail::MutexLock lock(&mu_);
    huge_.erase(align_down(addr, kHugePageSize));
  }
  // Whether `addr` lies in a huge page.
  bool is_huge(std::uintptr_t addr) const {
    detail::MutexLock lock(&mu_);
    return huge_.contains(align_down(addr, kHugePageSize));
  }

  // Places a page as if first touched by the application: on `node`, or on
  // the first node with room. Returns where it landed, kNoNode when all full.
  NodeId touch(std::uintptr_t page, NodeId node) {
    detail::MutexLock lock(&mu_);
    auto it = placement_.find(page);
    if (it != placement_.end()) return it->second;
    NodeId target = has_room(node) ? node : any_room();
    if (target != kNoNode) place(page, target);
    return target;
  }
  // Where `page` is, or kNoNode. Constant time (hash lookup under a mutex).
  NodeId node_of(std::uintptr_t page) const {
    detail::MutexLock lock(&mu_);
    auto it = placement_.find(page);
    return it == placement_.end() ? kNoNode : it->second;
  }
  // Bytes placed on `node`.
  std::uint64_t used_bytes(NodeId node) const {
    detail::MutexLock lock(&mu_);
    auto it = used_.find(node);
    return it == used_.end() ? 0 : it->second;
  }
  // Pages moved between nodes so far.
  std::uint64_t moves() const {
    detail::MutexLock lock(&mu_);
    return moves_;
  }
  // Drops placement of a range (as if unmapped).
  void forget(void* addr, std::size_t bytes) {
    detail::MutexLock lock(&mu_);
    auto base = reinterpret_cast<std::uintptr_t>(addr);
    for (std::uintptr_t c = align_up(base, kHugePageSize); c + kHugePageSize <= base + bytes;
         c += kHugePageSize)
      huge_.erase(c);
    for (std::uintptr_t a = align_down(base, kPageSize); a < base + bytes; a += kPageSize) {
      auto it = placement_.find(a);
      if (it == placement_.end()) continue;
      used_[it->second] -= kPageSize;
      placement_.erase(it);
    }
  }

 private:
  bool has_room(NodeId n) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& node : nodes_)
      if (node.id == n) return used_.at(n) + kPageSize <= node.capacity_bytes;
    return false;
  }
  // The whole 2 MiB chunks of the range become huge pages.
  void make_huge(void* addr, std::size_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto a = reinterpret_cast<std::uintptr_t>(addr);
    for (std::uintptr_t c = align_up(a, kHugePageSize); c + kHugePageSize <= a + bytes;
         c += kHugePageSize)
      huge_.insert(c);
  }
  // Moves every placed page of the huge page at `chunk` to `n`, or none.
  int move_huge(std::uintptr_t chunk, NodeId n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::uint64_t need = 0;
    for (std::uintptr_t p = chunk; p < chunk + kHugePageSize; p += kPageSize) {
      auto it = placement_.find(p);
      if (it != placement_.end() && it->second != n) need += kPageSize;
    }
    for (const auto& node : nodes_)
      if (node.id == n && used_.at(n) + need > node.capacity_bytes) return -ENOMEM;
    for (std::uintptr_t p = chunk; p < chunk + kHugePageSize; p += kPageSize) {
      auto it = placement_.find(p);
      if (it == placement_.end() || it->second == n) continue;
      place(p, n);
      ++moves_;
    }
    return n;
  }
  NodeId any_room() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const auto& node : nodes_)
      if (has_room(node.id)) return node.id;
    return kNoNode;
  }
  void place(std::uintptr_t page, NodeId n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto [it, inserted] = placement_.try_emplace(page, n);
    if (!inserted) {
      used_[it->second] -= kPageSize;
      it->second = n;
    }
    used_[n] += kPageSize;
  }

  std::vector<SimulatedNode> nodes_;
  mutable detail::Mutex mu_;
  absl::flat_hash_map<std::uintptr_t, NodeId> placement_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<NodeId, std::uint64_t> used_ ABSL_GUARDED_BY(mu_);
  ErrnoCounts counts_ ABSL_GUARDED_BY(mu_);
  std::uint64_t moves_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t kernel_moves_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t kernel_moves_reads_ ABSL_GUARDED_BY(mu_) = 0;
  ThpMode thp_mode_ ABSL_GUARDED_BY(mu_) = ThpMode::kNever;
  absl::flat_hash_set<std::uintptr_t> huge_ ABSL_GUARDED_BY(mu_);  // huge chunk bases
  absl::flat_hash_map<std::pair<NodeId, NodeId>, int> distance_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<NodeId, std::uint64_t> kernel_reserve_ ABSL_GUARDED_BY(mu_);
  absl::StatusOr<bool> numa_balancing_result_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<void*, std::size_t>> numa_balancing_ranges_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tierkit
