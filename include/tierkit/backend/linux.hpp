// tierkit/backend/linux.hpp: the Backend over Linux syscalls: mmap, mbind,
// move_pages (pid 0: only the calling process's own pages) and the node
// meminfo files. Layer 1.
#pragma once

#include <numa.h>
#include <numaif.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "tierkit/backend.hpp"
#include "tierkit/detail/mutex.hpp"
#include "tierkit/source/proc_maps.hpp"

namespace tierkit {

// parse_zoneinfo_high()
//
// The kernel's high watermark per node, in pages: the sum over the node's
// zones of the "high" line of /proc/zoneinfo's watermark block (between
// "pages free" and "pagesets"; the per-CPU "high:" lines below it are not
// watermarks). The values include any watermark boost. Lines it does not
// understand are skipped; a text with no zone gives an empty map.
// Example: a node 0 whose DMA32 and Normal zones say "high 6813" and
// "high 18493" gives {{0, 25306}}.
inline absl::flat_hash_map<NodeId, std::uint64_t> parse_zoneinfo_high(absl::string_view text) {
  absl::flat_hash_map<NodeId, std::uint64_t> high;
  NodeId node = -1;
  bool in_watermarks = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    int n = 0;
    if (absl::ConsumePrefix(&line, "Node ")) {
      in_watermarks = false;
      const auto comma = line.find(',');
      node =
          comma != absl::string_view::npos && absl::SimpleAtoi(line.substr(0, comma), &n) && n >= 0
              ? n
              : -1;
      continue;
    }
    line = absl::StripAsciiWhitespace(line);
    if (absl::StartsWith(line, "pages free")) in_watermarks = true;
    if (line == "pagesets") in_watermarks = false;
    std::uint64_t v = 0;
    if (node >= 0 && in_watermarks && absl::ConsumePrefix(&line, "high ") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &v))
      high[node] += v;
  }
  return high;
}

// parse_vmstat_kernel_moves()
//
// The pages the kernel has moved between nodes on its own, from the text of
// /proc/vmstat: the sum of pgdemote_kswapd, pgdemote_direct,
// pgdemote_khugepaged (reclaim's demotions to a lower tier, 5.18+) and
// pgdemote_proactive (memory.reclaim's, newer kernels), and
// numa_pages_migrated (NUMA balancing's migrations, promotions included).
// nullopt when none of those lines is there (a kernel without NUMA
// balancing or demotion). A process's own move_pages(2) is counted in
// pgmigrate_success only, so it is not in the sum.
// Example: "pgdemote_kswapd 12\npgdemote_direct 3\nnuma_pages_migrated 5\n"
// gives 20.
inline std::optional<std::uint64_t> parse_vmstat_kernel_moves(absl::string_view text) {
  constexpr absl::string_view kKeys[] = {"pgdemote_kswapd", "pgdemote_direct",
                                         "pgdemote_khugepaged", "pgdemote_proactive",
                                         "numa_pages_migrated"};
  std::optional<std::uint64_t> sum;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, ' ');
    std::uint64_t v = 0;
    if (std::find(std::begin(kKeys), std::end(kKeys), kv.first) != std::end(kKeys) &&
        absl::SimpleAtoi(kv.second, &v))
      sum = sum.value_or(0) + v;
  }
  return sum;
}

// unescape_mountinfo()
//
// A path field of /proc/self/mountinfo as the path it names: the kernel
// writes a space, tab, newline or backslash as a backslash and three octal
// digits ("/a\040b" is "/a b"). Other text is kept as it is.
inline std::string unescape_mountinfo(absl::string_view field) {
  std::string out;
  out.reserve(field.size());
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && octal(field[i + 1]) && octal(field[i + 2]) &&
        octal(field[i + 3])) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

// parse_cgroup2_dir()
//
// This process's cgroup v2 directory, from the text of /proc/self/cgroup
// (the "0::/path" line) and of /proc/self/mountinfo (the cgroup2 mount: its
// mount point, field 5, and its root, field 4, which a bind mount of a
// subtree makes other than "/"). nullopt without cgroup v2 or when the
// cgroup is outside what is mounted.
// Example: "0::/app\n" and a mountinfo line "35 24 0:30 / /sys/fs/cgroup rw
// shared:9 - cgroup2 cgroup2 rw" give "/sys/fs/cgroup/app".
inline std::optional<std::string> parse_cgroup2_dir(absl::string_view cgroup,
                                                    absl::string_view mountinfo) {
  std::optional<absl::string_view> path;
  for (absl::string_view line : absl::StrSplit(cgroup, '\n'))
    if (absl::ConsumePrefix(&line, "0::")) path = line;
  if (!path || !absl::StartsWith(*path, "/")) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n')) {
    std::pair<absl::string_view, absl::string_view> sides = absl::StrSplit(line, " - ");
    if (!absl::StartsWith(sides.second, "cgroup2 ")) continue;
    std::vector<absl::string_view> f = absl::StrSplit(sides.first, ' ');
    if (f.size() < 5) continue;
    const std::string root = unescape_mountinfo(f[3]);
    absl::string_view rest = *path;
    if (root != "/" && !(absl::ConsumePrefix(&rest, root) && (rest.empty() || rest[0] == '/')))
      continue;
    return absl::StrCat(unescape_mountinfo(f[4]), rest == "/" ? "" : rest);
  }
  return std::nullopt;
}

// common_dir()
//
// The deepest directory that both absolute paths are in (component by
// component): "/sys/fs/cgroup/a/x" and "/sys/fs/cgroup/a/y" give
// "/sys/fs/cgroup/a"; a path and one below it give the first; "/" when they
// share no component.
inline std::string common_dir(absl::string_view a, absl::string_view b) {
  std::vector<absl::string_view> x = absl::StrSplit(a, '/', absl::SkipEmpty());
  std::vector<absl::string_view> y = absl::StrSplit(b, '/', absl::SkipEmpty());
  std::string dir;
  for (std::size_t i = 0; i < x.size() && i < y.size() && x[i] == y[i]; ++i)
    absl::StrAppend(&dir, "/", x[i]);
  return dir.empty() ? "/" : dir;
}

// A running count read from a source that may change (another file): at a
// change it goes on from where it was, and rises as the new source rises.
// Example: 10 from A, 15 from A, then 100 from B, 104 from B give 10, 15,
// 15, 19.
struct ContinuousCount {
  std::string source;
  std::uint64_t offset = 0, last = 0;
  std::uint64_t next(const std::string& from, std::uint64_t value) {
    if (from != source) {
      offset = source.empty() ? 0 : last - value;  // modulo 2^64: last + (value' - value)
      source = from;
    }
    return last = value + offset;
  }
};

// Options of LinuxBackend.
struct LinuxBackendOptions {
  // Pages per move_pages(2) call. The kernel migrates runs of same-destination
  // entries together and each call has a fixed cost, so hundreds to thousands
  // of pages per call amortise best (see tierkit-bench's move batch sweep).
  std::size_t batch_pages = 1024;
};

class LinuxBackend final : public Backend {
 public:
  explicit LinuxBackend(LinuxBackendOptions options = {}) : options_(options) {
    if (options_.batch_pages == 0) options_.batch_pages = 1;
  }

  // A process-wide instance with default options.
  static LinuxBackend& instance() {
    static LinuxBackend backend;
    return backend;
  }

  absl::string_view name() const override { return "linux"; }

  absl::StatusOr<void*> map(std::size_t bytes) override {
    if (bytes == 0 || bytes % kPageSize != 0)
      return absl::InvalidArgumentError(
          absl::StrCat("map: size ", bytes, " is not a positive multiple of the page size"));
    // Whole 2 MiB units get a 2 MiB-aligned start (over-map, trim the slack),
    // else no huge page could ever back them.
    const std::size_t slack = bytes % kHugePageSize == 0 ? kHugePageSize - kPageSize : 0;
    if (bytes + slack < bytes)
      return absl::InvalidArgumentError(absl::StrCat("map: size ", bytes, " overflows"));
    void* raw =
        ::mmap(nullptr, bytes + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
      return absl::ResourceExhaustedError(
          absl::StrCat("mmap of ", bytes, " bytes failed: ", std::strerror(errno)));
    auto r = reinterpret_cast<std::uintptr_t>(raw);
    std::uintptr_t p = slack ? align_up(r, kHugePageSize) : r;
    if (p > r) ::munmap(raw, p - r);
    if (r + bytes + slack > p + bytes)
      ::munmap(reinterpret_cast<void*>(p + bytes), r + bytes + slack - (p + bytes));
    // Base pages unless the caller advises huge pages (advise_huge): with
    // THP "always" (Debian's default) move_pages of one 4 KiB page migrates
    // its whole 2 MiB huge page, moving 511 pages a 4 KiB-tracking caller
    // does not know about. Best effort (EINVAL without THP support).
    (void)::madvise(reinterpret_cast<void*>(p), bytes, MADV_NOHUGEPAGE);
    return reinterpret_cast<void*>(p);
  }

  absl::Status unmap(void* addr, std::size_t bytes) override {
    if (::munmap(addr, bytes) != 0)
      return absl::InternalError(absl::StrCat("munmap failed: ", std::strerror(errno)));
    return absl::OkStatus();
  }

  ThpMode thp_mode() const override {
    static const ThpMode mode = read_thp_mode("/sys/kernel/mm/transparent_hugepage/enabled");
    return mode;
  }

  // The bracketed word of a THP "enabled" file ("always [madvise] never");
  // kNever when the file is missing (no THP support) or unreadable.
  static ThpMode read_thp_mode(const char* path) {
    std::FILE* f = std::fopen(path, "r");
    if (f == nullptr) return ThpMode::kNever;
    char buf[128] = {};
    std::size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    absl::string_view text(buf, n);
    if (absl::StrContains(text, "[always]")) return ThpMode::kAlways;
    if (absl::StrContains(text, "[madvise]")) return ThpMode::kMadvise;
    return ThpMode::kNever;
  }

  absl::Status advise_huge(void* addr, std::size_t bytes) override {
    return advise(addr, bytes, MADV_HUGEPAGE, "MADV_HUGEPAGE");
  }
  absl::Status advise_base_pages(void* addr, std::size_t bytes) override {
    return advise(addr, bytes, MADV_NOHUGEPAGE, "MADV_NOHUGEPAGE");
  }

  absl::Status bind(void* addr, std::size_t bytes, const NodeSet& nodes, BindMode mode,
                    bool move) override {
    if (absl::Status s = nodes.check("mbind: the node set"); !s.ok()) return s;
    if (nodes.empty()) return absl::InvalidArgumentError("mbind: empty node set");
    if (absl::Status s = check_range("mbind", addr, bytes); !s.ok()) return s;
    std::vector<unsigned long> mask = nodes.to_mask();
    // maxnode counts bits; the kernel wants one more than the highest node.
    unsigned long maxnode = static_cast<unsigned long>(nodes.span()) + 1;
    unsigned flags = move ? (MPOL_MF_MOVE | MPOL_MF_STRICT) : 0;
    int m = MPOL_BIND;
    switch (mode) {
      case BindMode::kBind:
        m = MPOL_BIND;
        break;
      case BindMode::kPreferred:
        m = MPOL_PREFERRED;
        break;
      case BindMode::kPreferredMany:
        m = MPOL_PREFERRED_MANY;
        break;
      case BindMode::kInterleave:
        m = MPOL_INTERLEAVE;
        break;
    }
    if (mode == BindMode::kPreferred && nodes.size() > 1) {
      // MPOL_PREFERRED takes exactly one node.
      NodeSet first{nodes.first()};
      mask = first.to_mask();
      maxnode = static_cast<unsigned long>(first.span()) + 1;
    }
    long rc = ::mbind(addr, bytes, m, mask.data(), maxnode, flags);
    if (rc != 0 && errno == EINVAL && mode == BindMode::kPreferredMany) {
      // Kernels before 5.15 lack MPOL_PREFERRED_MANY: prefer the first node.
      return bind(addr, bytes, nodes, BindMode::kPreferred, move);
    }
    if (rc != 0) {
      int e = errno;
      return absl::Status(
          e == EIO                     ? absl::StatusCode::kAborted
          : e == EINVAL || e == EFAULT ? absl::StatusCode::kInvalidArgument
                                       : absl::StatusCode::kInternal,
          absl::StrCat("mbind(0x", absl::Hex(reinterpret_cast<std::uintptr_t>(addr)), ", ", bytes,
                       " bytes, nodes ", nodes.to_string(), move ? ", MPOL_MF_MOVE" : "",
                       ") failed: ", std::strerror(e),
                       e == EIO ? " (some pages could not be moved)" : ""));
    }
    return absl::OkStatus();
  }

  // The kernel moves a batch one run of same-target pages at a time and
  // stops at the first run with a page it could not move
  // (do_pages_move(), mm/migrate.c): the runs after it were not tried, and
  // are sent again rather than reported full or busy. Returns the end of
  // that run: the first page (by `where`, null when unknown) neither at its
  // target nor gone, then the pages after it with the same target.
  static std::size_t failed_run_end(const int* target, const int* where, std::size_t cnt) {
    if (where == nullptr) return cnt;
    std::size_t i = 0;
    while (i < cnt && (where[i] < 0 || where[i] == target[i])) ++i;
    if (i == cnt) return cnt;
    const int failed = target[i];
    while (i < cnt && target[i] == failed) ++i;
    return i;
  }

  absl::Status query(absl::Span<void* const> pages, absl::Span<int> status) override {
    if (status.size() < pages.size())
      return absl::InvalidArgumentError("query: status span shorter than pages");
    for (std::size_t off = 0; off < pages.size(); off += options_.batch_pages) {
      std::size_t n = std::min(options_.batch_pages, pages.size() - off);
      long rc = ::move_pages(0, n, const_cast<void**>(pages.data() + off), nullptr,
                             status.data() + off, 0);
      if (rc < 0)
        return absl::InternalError(
            absl::StrCat("move_pages (query) failed: ", std::strerror(errno)));
    }
    absent_is_not_unmapped(pages, status);
    tally(status.first(pages.size()));
    return absl::OkStatus();
  }

  absl::Status move(absl::Span<void* const> pages, absl::Span<const NodeId> nodes,
                    absl::Span<int> status) override {
    if (nodes.size() != pages.size() || status.size() < pages.size())
      return absl::InvalidArgumentError("move: pages, nodes and status differ in length");
    // Group by destination (stable, so the caller's hottest-first order holds
    // within a destination): the kernel batches consecutive same-node entries.
    std::vector<std::size_t> order(pages.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return nodes[a] < nodes[b]; });
    std::vector<void*> p(pages.size());
    std::vector<int> n(pages.size()), s(pages.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
      p[i] = pages[order[i]];
      n[i] = nodes[order[i]];
    }
    // move_pages(2) fails a bad node's batch only, after the entries before
    // it have moved, and says ENODEV or EINVAL without naming the node.
    if (absl::Status st = check_targets(n); !st.ok()) return st;
    for (std::size_t off = 0, cnt = 0; off < p.size(); off += cnt) {
      cnt = std::min(options_.batch_pages, p.size() - off);
      long rc = ::move_pages(0, cnt, p.data() + off, n.data() + off, s.data() + off, MPOL_MF_MOVE);
      if (rc == 0) continue;
      int e = errno;
      if (rc < 0 && e != ENOMEM) {
        // Pages queued before the bad entry may have moved (a node taken
        // offline since check_targets, say): callers re-query.
        return absl::Status(e == ENODEV || e == EINVAL  ? absl::StatusCode::kInvalidArgument
                            : e == EPERM || e == EACCES ? absl::StatusCode::kPermissionDenied
                                                        : absl::StatusCode::kInternal,
                            absl::StrCat("move_pages failed: ", std::strerror(e),
                                         e == ENODEV ? " (a target node is not online)" : ""));
      }
      // Linux 6.1 leaves the whole batch's statuses unwritten both when the
      // target is full (rc < 0, ENOMEM) and when some pages could not be
      // migrated (rc > 0, e.g. extra references). Ask where each page is:
      // at its target it moved; elsewhere it is -ENOMEM (full) or -EBUSY
      // (retry later); a query error (-EFAULT, -ENOENT) stands as is.
      std::vector<int> where(cnt);
      long q = ::move_pages(0, cnt, p.data() + off, nullptr, where.data(), 0);
      cnt = failed_run_end(n.data() + off, q < 0 ? nullptr : where.data(), cnt);
      for (std::size_t i = 0; i < cnt; ++i) {
        int w = q < 0 ? -EBUSY : where[i];
        s[off + i] = w < 0 || w == n[off + i] ? w : (rc < 0 ? -ENOMEM : -EBUSY);
      }
    }
    for (std::size_t i = 0; i < order.size(); ++i) status[order[i]] = s[i];
    absent_is_not_unmapped(pages, status);
    tally(status.first(pages.size()));
    return absl::OkStatus();
  }

  absl::StatusOr<NodeMemory> node_memory(NodeId node) override {
    if (numa_available() < 0) {
      if (node != 0) return absl::NotFoundError(absl::StrCat("node ", node, " does not exist"));
      long pages = ::sysconf(_SC_PHYS_PAGES), avail = ::sysconf(_SC_AVPHYS_PAGES);
      return NodeMemory{static_cast<std::uint64_t>(pages) * kPageSize,
                        static_cast<std::uint64_t>(avail) * kPageSize, kernel_reserve(node)};
    }
    long long free_bytes = 0;
    long long total = numa_node_size64(node, &free_bytes);
    if (total < 0)
      return absl::NotFoundError(absl::StrCat("node ", node, " does not exist or is offline"));
    if (NodeSet allowed = mems_allowed(); !allowed.empty() && !allowed.contains(node))
      return absl::PermissionDeniedError(
          absl::StrCat("node ", node, " is outside this process's cpuset (allowed nodes ",
                       allowed.to_string(), "): the kernel refuses to place or move pages there"));
    return NodeMemory{static_cast<std::uint64_t>(total), static_cast<std::uint64_t>(free_bytes),
                      kernel_reserve(node)};
  }

  // The kernel's NUMA scanner (task_numa_work, kernel/sched/fair.c) skips
  // a mapping whose memory policy lacks MPOL_F_MOF, which only the default
  // policy has. So where the process has the default policy, this sets
  // MPOL_BIND over every node the process may use (numa_get_mems_allowed)
  // on each part of the range that is private and has the default policy
  // (balanced_parts): that allocates as the default does (the local node
  // first, then the nearest) and moves nothing. A part with a policy of its
  // own is left alone (the scanner already skips it, and the application's
  // policy stands), and so is a shared mapping, whose policy would belong to
  // the shared object and bind every process mapping it. Cost: one read of
  // /proc/self/maps, one get_mempolicy(2) per mapping the range overlaps,
  // one mbind(2) per part; mbind may split a mapping (one more VMA at each
  // end of a part).
  absl::StatusOr<bool> exclude_from_numa_balancing(void* addr, std::size_t bytes) override {
    if (numa_available() < 0 || bytes == 0) return false;
    if (absl::Status s = check_range("exclude_from_numa_balancing", addr, bytes); !s.ok()) return s;
    const auto a = reinterpret_cast<std::uintptr_t>(addr);
    int task = 0;
    if (::get_mempolicy(&task, nullptr, 0, nullptr, 0) != 0)
      return absl::InternalError(absl::StrCat("get_mempolicy(): ", std::strerror(errno)));
    if (task != MPOL_DEFAULT) return false;
    absl::StatusOr<std::vector<Span>> parts =
        balanced_parts(align_down(a, kPageSize), align_up(a + bytes, kPageSize));
    if (!parts.ok()) return parts.status();
    const NodeSet allowed = mems_allowed();
    if (allowed.size() < 2) return false;  // one node: nothing to balance
    for (const auto& [begin, end] : *parts) {
      absl::Status s = bind(reinterpret_cast<void*>(begin), end - begin, allowed, BindMode::kBind,
                            /*move=*/false);
      if (!s.ok()) return s;
    }
    return !parts->empty();
  }

  // balanced_parts()
  //
  // The parts of the page-aligned range [begin, end) that the kernel's NUMA
  // balancing scans: private mappings with the default memory policy,
  // adjacent ones merged, in address order. An unmapped page is an error.
  using Span = std::pair<std::uintptr_t, std::uintptr_t>;
  static absl::StatusOr<std::vector<Span>> balanced_parts(std::uintptr_t begin,
                                                          std::uintptr_t end) {
    source::ProcMaps maps;
    if (absl::Status s = maps.read(); !s.ok()) return s;
    std::vector<Span> parts;
    for (std::uintptr_t p = begin; p < end;) {
      const source::Vma* v = maps.find(p);
      int mode = 0;
      if (v == nullptr ||
          ::get_mempolicy(&mode, nullptr, 0, reinterpret_cast<void*>(p), MPOL_F_ADDR) != 0)
        return absl::InvalidArgumentError(absl::StrCat(
            "get_mempolicy(0x", absl::Hex(p), ") in [0x", absl::Hex(begin), ", 0x", absl::Hex(end),
            "): ", v == nullptr ? "not mapped" : std::strerror(errno), " (is the range mapped?)"));
      const std::uintptr_t to = std::min(v->end, end);
      if (!v->shared && mode == MPOL_DEFAULT) {
        if (!parts.empty() && parts.back().second == p)
          parts.back().second = to;
        else
          parts.emplace_back(p, to);
      }
      p = to;
    }
    return parts;
  }

  // numa_distance(3), under the lock: libnuma reads its table from sysfs
  // on the first call, unsynchronised. 0 there (no table, no such node)
  // falls back to the Backend default.
  int distance(NodeId from, NodeId to) const override {
    if (numa_available() < 0) return Backend::distance(from, to);
    detail::MutexLock lock(&mu_);
    const int d = numa_distance(from, to);
    return d > 0 ? d : Backend::distance(from, to);
  }

  // The kernel's moves of this process's cgroup where the kernel counts them
  // per cgroup (its memory.stat has pgdemote_* and numa_pages_migrated on
  // newer kernels: Debian's 6.12 does, its 6.1 does not), else the machine's
  // (/proc/vmstat): parse_vmstat_kernel_moves reads both. Per cgroup, other
  // containers' reclaim does not start the engine's check. The file is
  // chosen at the first call and widened when the process moves to another
  // cgroup (kernel_moves_source); the count goes on across such a change
  // (ContinuousCount). About 30 us a read of a few KiB, plus 9 us for
  // /proc/self/cgroup where memory.stat is read. nullopt when neither can
  // be read.
  std::optional<std::uint64_t> kernel_moved_pages() override {
    const std::string source = kernel_moves_source();
    std::optional<std::string> text = read_text(source);
    std::optional<std::uint64_t> moved = text ? parse_vmstat_kernel_moves(*text) : std::nullopt;
    if (!moved) return std::nullopt;
    detail::MutexLock lock(&mu_);
    return moves_count_.next(source, *moved);
  }
  // kernel_moves_source()
  //
  // The file kernel_moved_pages() reads: the cgroup's memory.stat or
  // /proc/vmstat. Chosen at the first call; when /proc/self/cgroup says the
  // process has moved since, it becomes the memory.stat of the deepest
  // cgroup holding both the old and the new one (pages stay charged where
  // they were first touched, so the process's pages are now in both), or
  // /proc/vmstat if that has no counts. It only widens.
  std::string kernel_moves_source() const {
    detail::MutexLock lock(&mu_);
    if (moves_source_ == "/proc/vmstat") return moves_source_;  // nothing wider
    std::optional<std::string> cg = read_text("/proc/self/cgroup");
    if (!moves_source_.empty() && cg == moves_cgroup_) return moves_source_;
    moves_cgroup_ = cg;
    std::optional<std::string> mounts = read_text("/proc/self/mountinfo");
    std::optional<std::string> dir = cg && mounts ? parse_cgroup2_dir(*cg, *mounts) : std::nullopt;
    if (dir && !moves_dir_.empty()) dir = common_dir(moves_dir_, *dir);
    const std::string stat = dir ? absl::StrCat(*dir, "/memory.stat") : std::string();
    std::optional<std::string> text = dir ? read_text(stat) : std::nullopt;
    const bool counts = text && parse_vmstat_kernel_moves(*text);
    moves_source_ = counts ? stat : "/proc/vmstat";
    moves_dir_ = counts ? *dir : std::string();
    return moves_source_;
  }

  ErrnoCounts errno_counts() const override {
    detail::MutexLock lock(&mu_);
    return counts_;
  }

 private:
  // The range rounded out to whole pages must end inside the address space:
  // a wrapped end makes it empty, which mbind(2) takes as nothing to do.
  static absl::Status check_range(absl::string_view what, void* addr, std::size_t bytes) {
    const auto a = reinterpret_cast<std::uintptr_t>(addr);
    constexpr std::uintptr_t kLast = std::numeric_limits<std::uintptr_t>::max() - (kPageSize - 1);
    if (a <= kLast && bytes <= kLast - a) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(what, "(0x", absl::Hex(a), ", ", bytes,
                     " bytes): the range runs past the end of the address space"));
  }

  static absl::Status advise(void* addr, std::size_t bytes, int advice, const char* what) {
    if (::madvise(addr, bytes, advice) != 0)
      return absl::UnavailableError(
          absl::StrCat("madvise(", what, ") failed: ", std::strerror(errno)));
    return absl::OkStatus();
  }

  // move_pages(2) says -EFAULT, not -ENOENT, for a page of a mapped range
  // that has no page of its own: never touched (Linux 6.1: follow_page with
  // FOLL_DUMP and no pte; 6.12 says -ENOENT) or only read, so mapping the
  // shared zero page (every kernel; mincore calls it resident). Callers
  // must tell them apart: the engine drops an unmapped page but keeps an
  // absent one (believed slow), and a fresh arena is mostly absent. So each
  // -EFAULT page is asked of mincore(2), one call each: it fails (ENOMEM)
  // only where nothing is mapped; anything mapped is -ENOENT.
  static void absent_is_not_unmapped(absl::Span<void* const> pages, absl::Span<int> status) {
    for (std::size_t i = 0; i < pages.size(); ++i) {
      if (status[i] != -EFAULT) continue;
      auto page = reinterpret_cast<std::uintptr_t>(pages[i]) & ~std::uintptr_t{kPageSize - 1};
      unsigned char resident = 0;
      if (::mincore(reinterpret_cast<void*>(page), kPageSize, &resident) == 0) status[i] = -ENOENT;
    }
  }

  void tally(absl::Span<const int> status) {
    detail::MutexLock lock(&mu_);
    for (int s : status) counts_.add(s < 0 ? -s : 0);
  }

  // check_targets()
  //
  // InvalidArgument naming the first node of `sorted` (ascending) that the
  // process cannot move pages to, and why; OK when all can. The test is the
  // kernel's: a node of the process's cpuset (numa_get_mems_allowed(3), one
  // get_mempolicy(2) per call), which the kernel keeps within the nodes
  // that have memory; the reason is libnuma's view of the machine. Without
  // NUMA support there is nothing to ask: move_pages(2) says.
  static absl::Status check_targets(absl::Span<const int> sorted) {
    if (sorted.empty() || numa_available() < 0) return absl::OkStatus();
    const NodeSet allowed = mems_allowed();
    if (allowed.empty()) return absl::OkStatus();
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      const NodeId node = sorted[i];
      if ((i > 0 && node == sorted[i - 1]) || allowed.contains(node)) continue;
      const std::string why = node < 0 || node > numa_max_node()
                                  ? absl::StrCat("beyond the highest node (", numa_max_node(), ")")
                              : numa_node_size64(node, nullptr) <= 0
                                  ? std::string("not online or has no memory")
                                  : absl::StrCat("outside this process's cpuset (allowed nodes ",
                                                 allowed.to_string(), ")");
      return absl::InvalidArgumentError(
          absl::StrCat("move: target node ", node, " is ", why, "; no page was moved"));
    }
    return absl::OkStatus();
  }

  // The nodes the process may use (its cpuset), numa_get_mems_allowed(3).
  static NodeSet mems_allowed() {
    NodeSet allowed;
    if (bitmask* m = numa_get_mems_allowed(); m != nullptr) {
      for (unsigned n = 0; n < m->size && n < NodeSet::kMaxNodes; ++n)
        if (numa_bitmask_isbitset(m, n)) allowed.insert(static_cast<NodeId>(n));
      numa_bitmask_free(m);
    }
    return allowed;
  }

  // The node's high watermark in bytes (NodeMemory::kernel_reserve_bytes),
  // from /proc/zoneinfo read at most every 10 s: the file has lines per CPU
  // per zone, so on a large server it is hundreds of KiB, while watermarks
  // change only with memory hotplug, the watermark sysctls and transient
  // boosts. 0 when the file cannot be read.
  std::uint64_t kernel_reserve(NodeId node) {
    const auto now = std::chrono::steady_clock::now();
    {
      detail::MutexLock lock(&mu_);
      if (watermarks_read_ && now - watermarks_at_ < std::chrono::seconds(10)) {
        auto it = watermarks_.find(node);
        return it == watermarks_.end() ? 0 : it->second;
      }
    }
    std::ifstream in("/proc/zoneinfo");
    std::stringstream text;
    text << in.rdbuf();
    const long page = ::sysconf(_SC_PAGESIZE);
    absl::flat_hash_map<NodeId, std::uint64_t> bytes = parse_zoneinfo_high(text.str());
    for (auto& [n, pages] : bytes) pages *= static_cast<std::uint64_t>(page > 0 ? page : kPageSize);
    detail::MutexLock lock(&mu_);
    watermarks_ = std::move(bytes);
    watermarks_at_ = now;
    watermarks_read_ = true;
    auto it = watermarks_.find(node);
    return it == watermarks_.end() ? 0 : it->second;
  }

  LinuxBackendOptions options_;
  // The text of a file, or nullopt when it cannot be read.
  static std::optional<std::string> read_text(const std::string& path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::stringstream text;
    text << in.rdbuf();
    return std::move(text).str();
  }

  mutable detail::Mutex mu_;
  // kernel_moves_source() and kernel_moved_pages()
  mutable std::string moves_source_ ABSL_GUARDED_BY(mu_);
  mutable std::string moves_dir_ ABSL_GUARDED_BY(mu_);  // its cgroup, if memory.stat
  mutable std::optional<std::string> moves_cgroup_ ABSL_GUARDED_BY(mu_);  // /proc/self/cgroup
  ContinuousCount moves_count_ ABSL_GUARDED_BY(mu_);
  ErrnoCounts counts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<NodeId, std::uint64_t> watermarks_ ABSL_GUARDED_BY(mu_);  // bytes
  std::chrono::steady_clock::time_point watermarks_at_ ABSL_GUARDED_BY(mu_);
  bool watermarks_read_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tierkit
