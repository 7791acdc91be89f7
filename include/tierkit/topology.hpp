// tierkit/topology.hpp: which NUMA nodes are fast and which are slow. Topology
// discovers the machine's memory nodes with hwloc (or loads an hwloc XML
// export), reads what the firmware and the kernel say about them, and groups
// them into tiers: tier 0 is the fastest (local DRAM), tier 1 the next (CXL or
// other CPU-less memory), and so on. Everything above this layer places memory
// by tier, so this is where "is there anything to tier here?" is answered.
//
// Classification rules, in order; the first that applies decides, and each
// node's `reason` says which one it was:
//  1. Override. TopologyOptions::override_spec, else the environment variable
//     TIERKIT_TIERS (when use_env), in the form "0,1/2" (tier 0 = nodes 0,1;
//     tier 1 = node 2; "a-b" ranges allowed). A malformed spec, a node the
//     machine does not have, or a node left out of every tier is an
//     InvalidArgumentError that names the problem (and TIERKIT_TIERS when the
//     spec came from there).
//  2. Evidence, strongest first:
//     (a) HMAT memory attributes (hwloc memattrs Latency / Bandwidth, read from
//         each node's local initiator, i.e. its own cpuset, or else the first
//         initiator hwloc lists for it). Used when every node has a value.
//         Nodes are sorted best first; a node joins the current tier when its
//         latency is within 1.3x of the tier's best (bandwidth: at least 1/1.3
//         of it), else it starts the next tier. Latency is tried first, then
//         bandwidth; if every node has HMAT data and neither separates them,
//         the machine has one tier.
//     (b) Kernel memory tiers (sysfs_root/devices/virtual/memory_tiering/
//         memory_tierN/nodelist). Used when every node is listed and there are
//         at least two different N: lower N is faster. All nodes in one kernel
//         tier says nothing and falls through. The kernel tiers are read when
//         discovering the live machine, or for an XML when sysfs_root is not
//         "/sys" (the live /sys describes this machine, not the XML's).
//     (c) Node kinds from hwloc: hwloc >= 2.10's MemoryTier info when every
//         node has one and it separates them (hwloc tiers up to the slowest
//         DRAM/HBM node's merge into tier 0); otherwise the kind (see
//         NodeKind, set from subtype, DAX infos and CPUs): DRAM and HBM are
//         fast (HBM is never slow), CXL-DRAM / SPM / DAX-onlined / CPU-less
//         memory is tier 1, NVM (persistent memory) the tier after it.
//         Subtypes and infos are read as strings at run time, so the newer
//         hwloc subtypes (CXL-DRAM, CXL-NVM, DRAM, HBM) are honoured without
//         compile-time version checks.
//     (d) NUMA distances (hwloc "NUMALatency" matrix): each node's distance
//         from the nearest node with CPUs, grouped with the 1.3x rule.
//  3. Nothing separates the nodes (or there is only one): one tier, and
//     summary() says in plain words that there is nothing to tier.
// CPUs: live, from sysfs nodeN/cpulist; for an XML (hwloc does not record which
// node owns a CPU, and hangs a CPU-less node under its HMAT initiator's
// package) each CPU goes to the node with the smallest cpuset containing it,
// ties to the lower HMAT latency, then to a node without a slow-memory subtype
// or DAX info, then to the lower index. free_bytes is only known live.
// After (a), (b) and (d), HBM nodes are moved to tier 0 (HBM is never slow),
// and tiers are renumbered 0, 1, ... without gaps. Discovery never crashes on
// odd input: bad XML or sysfs files give a Status or are ignored.
#pragma once

#include <hwloc.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "tierkit/common.hpp"
#include "tierkit/detail/parse.hpp"

namespace tierkit {

// What kind of memory a node holds, as far as hwloc and the kernel tell.
enum class NodeKind {
  kDram,        // Ordinary DRAM, usually with CPUs.
  kSlowMemory,  // CXL or other CPU-less / slower memory (incl. SPM, DAX-onlined RAM).
  kPmem,        // Persistent memory used as RAM (hwloc subtype NVM / CXL-NVM, DAXType NVM).
  kHbm,         // High-bandwidth memory (subtype HBM / MCDRAM); never a slow tier.
  kUnknown,     // Anything else (e.g. GPUMemory).
};

// Short display name: "DRAM", "CXL/slow", "PMEM", "HBM", "unknown". Constant time.
inline absl::string_view kind_name(NodeKind kind) {
  switch (kind) {
    case NodeKind::kDram:
      return "DRAM";
    case NodeKind::kSlowMemory:
      return "CXL/slow";
    case NodeKind::kPmem:
      return "PMEM";
    case NodeKind::kHbm:
      return "HBM";
    case NodeKind::kUnknown:
      break;
  }
  return "unknown";
}

// Everything tierkit knows about one NUMA node. Plain data; cheap to copy for
// the handful of nodes a machine has.
struct NodeInfo {
  NodeId os_index = kNoNode;
  int tier = 0;  // 0 = fastest.
  NodeKind kind = NodeKind::kUnknown;
  std::uint64_t capacity_bytes = 0;
  // From sysfs nodeN/meminfo when discovering the live machine; 0 = unknown.
  std::uint64_t free_bytes = 0;
  std::vector<int> cpus;  // OS indexes of the node's own CPUs; empty = CPU-less.
  // HMAT values (hwloc memattrs) from the node's local initiator.
  std::optional<std::uint64_t> latency_ns, read_latency_ns, write_latency_ns;
  std::optional<std::uint64_t> bandwidth_mibs, read_bandwidth_mibs, write_bandwidth_mibs;
  std::optional<int> kernel_memory_tier;  // N of sysfs memory_tierN.
  // hwloc object subtype ("NVM", "CXL-DRAM", ...) and DAX infos, "" if absent.
  std::string subtype, dax_type, dax_parent, dax_device;
  std::string reason;  // Plain words: which rule put the node in its tier.
};

// Where discover() looks and what may override it.
struct TopologyOptions {
  std::optional<std::string> xml_path;    // Load this hwloc XML instead of the live machine.
  std::optional<std::string> xml_buffer;  // Or this XML text (used when xml_path is unset).
  // Tiers by hand, e.g. "0,1/2" (tier 0 = nodes 0,1; tier 1 = node 2). Wins over everything.
  std::optional<std::string> override_spec;
  bool use_env = true;  // Read TIERKIT_TIERS when override_spec is unset.
  // Root of sysfs for memory_tiering nodelists and (live only) node cpulist/meminfo.
  std::string sysfs_root = "/sys";
};

namespace detail::topo {

inline constexpr double kTierRatio = 1.3;  // Within 1.3x of the best = same tier.

// Reads a small text file; nullopt if it cannot be opened.
inline std::optional<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses a kernel list such as "0-1,3\n" (empty = no entries). Errors on junk.
inline absl::StatusOr<std::vector<int>> parse_kernel_list(absl::string_view text) {
  std::vector<int> out;
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t.empty()) return out;
  for (absl::string_view part : absl::StrSplit(t, ',')) {
    part = absl::StripAsciiWhitespace(part);
    std::pair<absl::string_view, absl::string_view> r =
        absl::StrSplit(part, absl::MaxSplits('-', 1));
    int lo = 0, hi = 0;
    if (!absl::SimpleAtoi(r.first, &lo) || lo < 0)
      return absl::InvalidArgumentError(absl::StrCat("bad list entry '", part, "'"));
    hi = lo;
    if (part.find('-') != absl::string_view::npos && (!absl::SimpleAtoi(r.second, &hi) || hi < lo))
      return absl::InvalidArgumentError(absl::StrCat("bad list range '", part, "'"));
    if (hi - lo > 1 << 20) return absl::InvalidArgumentError("list range too large");
    for (int i = lo; i <= hi; ++i) out.push_back(i);
  }
  return out;
}

// "0-3,5" from a sorted list of ints; "-" when empty.
inline std::string format_list(const std::vector<int>& v) {
  if (v.empty()) return "-";
  std::string out;
  for (std::size_t i = 0; i < v.size();) {
    std::size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += j == i ? absl::StrCat(v[i]) : absl::StrCat(v[i], "-", v[j]);
    i = j + 1;
  }
  return out;
}

// "1.0 GiB", "896 MiB", "512 KiB", "-" for 0 (unknown).
inline std::string format_bytes(std::uint64_t b) {
  if (b == 0) return "-";
  const double d = static_cast<double>(b);
  if (b >= (1ull << 30)) return absl::StrFormat("%.1f GiB", d / (1ull << 30));
  if (b >= (1ull << 20)) return absl::StrFormat("%.0f MiB", d / (1ull << 20));
  return absl::StrFormat("%.0f KiB", d / (1ull << 10));
}

// "node 0" or "nodes 0,1".
inline std::string nodes_phrase(const std::vector<int>& ids) {
  return absl::StrCat(ids.size() == 1 ? "node " : "nodes ", absl::StrJoin(ids, ","));
}

// JSON string literal with escaping.
inline std::string json_string(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += absl::StrFormat("\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
        else
          out += c;
    }
  }
  return out + "\"";
}

// A JSON number, or null when unset.
template <typename T>
std::string json_optional(const std::optional<T>& v) {
  return v ? absl::StrCat(*v) : std::string("null");
}

// Groups values best first: a value joins the current group while it is within
// kTierRatio of the group's best, else it starts the next group. Returns the
// group index per input. O(n log n).
inline std::vector<int> cluster(const std::vector<double>& v, bool lower_is_better) {
  std::vector<std::size_t> order(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return lower_is_better ? v[a] < v[b] : v[a] > v[b];
  });
  std::vector<int> group(v.size(), 0);
  int g = 0;
  double leader = order.empty() ? 0 : v[order[0]];
  for (std::size_t idx : order) {
    const bool worse =
        lower_is_better ? v[idx] > leader * kTierRatio : v[idx] < leader / kTierRatio;
    if (worse) {
      ++g;
      leader = v[idx];
    }
    group[idx] = g;
  }
  return group;
}

// Extra per-node facts used only while classifying.
struct Evidence {
  std::vector<std::optional<int>> hwloc_memory_tier;      // hwloc >= 2.10 "MemoryTier" info.
  std::vector<std::string> kind_reason;                   // Why the node got its kind.
  std::map<std::pair<int, int>, std::uint64_t> distance;  // (from, to) os index -> distance.
};

// True for hwloc NUMA subtypes that mean slower-than-DRAM memory.
inline bool is_slow_subtype(absl::string_view s) {
  return absl::EqualsIgnoreCase(s, "NVM") || absl::EqualsIgnoreCase(s, "CXL-DRAM") ||
         absl::EqualsIgnoreCase(s, "CXL-NVM") || absl::EqualsIgnoreCase(s, "SPM") ||
         absl::EqualsIgnoreCase(s, "GPUMemory");
}

// Sets node.kind from subtype, DAX infos and CPUs; returns the reason in words.
inline std::string classify_kind(NodeInfo& n) {
  const std::string& st = n.subtype;
  const bool dax = !n.dax_device.empty() || !n.dax_type.empty();
  std::string dax_words;
  if (dax) {
    dax_words = absl::StrCat("DAX device ", n.dax_device.empty() ? "?" : n.dax_device,
                             n.dax_type.empty() ? "" : absl::StrCat(" (DAXType ", n.dax_type, ")"),
                             " onlined as system RAM");
  }
  const std::string cpu_words =
      n.cpus.empty() ? "CPU-less" : absl::StrCat("has CPUs ", format_list(n.cpus));
  auto with = [&](absl::string_view what) {
    std::string s = absl::StrCat(cpu_words, st.empty() ? "" : absl::StrCat(", hwloc subtype ", st));
    if (dax) absl::StrAppend(&s, ", ", dax_words);
    return absl::StrCat(s, ": ", what);
  };
  if (absl::EqualsIgnoreCase(st, "HBM") || absl::EqualsIgnoreCase(st, "MCDRAM")) {
    n.kind = NodeKind::kHbm;
    return with("high-bandwidth memory");
  }
  if (absl::EqualsIgnoreCase(st, "NVM") || absl::EqualsIgnoreCase(st, "CXL-NVM") ||
      absl::EqualsIgnoreCase(n.dax_type, "NVM")) {
    n.kind = NodeKind::kPmem;
    return with("persistent memory used as RAM");
  }
  if (absl::EqualsIgnoreCase(st, "CXL-DRAM")) {
    n.kind = NodeKind::kSlowMemory;
    return with("CXL memory");
  }
  if (absl::EqualsIgnoreCase(st, "SPM")) {
    n.kind = NodeKind::kSlowMemory;
    return with("specific-purpose (soft-reserved) memory");
  }
  if (absl::EqualsIgnoreCase(st, "DRAM")) {
    n.kind = NodeKind::kDram;
    return with("DRAM");
  }
  if (!st.empty()) {
    n.kind = NodeKind::kUnknown;
    return with("unknown memory type");
  }
  if (dax) {
    n.kind = NodeKind::kSlowMemory;
    return with(absl::StrContains(absl::AsciiStrToLower(n.dax_parent), "cxl") ? "CXL memory"
                                                                              : "slow memory");
  }
  if (n.cpus.empty()) {
    n.kind = NodeKind::kSlowMemory;
    return with("memory without CPUs (CXL or other slow memory)");
  }
  n.kind = NodeKind::kDram;
  return with("DRAM");
}

// Speed class used by rule (c): 0 fast, 1 slow, 2 persistent.
inline int kind_class(const NodeInfo& n) {
  switch (n.kind) {
    case NodeKind::kDram:
    case NodeKind::kHbm:
      return 0;
    case NodeKind::kSlowMemory:
      return 1;
    case NodeKind::kPmem:
      return 2;
    case NodeKind::kUnknown:
      break;
  }
  return n.cpus.empty() ? 1 : 0;
}

// Renumbers tiers densely (keeping order). Returns the tier count.
inline int compact_tiers(std::vector<NodeInfo>& nodes) {
  std::set<int> used;
  for (const auto& n : nodes) used.insert(n.tier);
  std::map<int, int> rank;
  for (int t : used) rank.emplace(t, static_cast<int>(rank.size()));
  for (auto& n : nodes) n.tier = rank[n.tier];
  return static_cast<int>(used.size());
}

// Applies group numbers as tiers if they separate the nodes. Returns true if so.
inline bool apply_groups(std::vector<NodeInfo>& nodes, const std::vector<int>& group) {
  if (std::set<int>(group.begin(), group.end()).size() < 2) return false;
  for (std::size_t i = 0; i < nodes.size(); ++i) nodes[i].tier = group[i];
  return true;
}

// Moves HBM nodes to tier 0 (HBM is never slow). Returns true if any moved.
inline bool hbm_never_slow(std::vector<NodeInfo>& nodes) {
  bool moved = false;
  for (auto& n : nodes) {
    if (n.kind == NodeKind::kHbm && n.tier != 0) {
      n.tier = 0;
      absl::StrAppend(&n.reason, "; moved to the fast tier because HBM is never slow");
      moved = true;
    }
  }
  return moved;
}

// Rule (a): HMAT latency then bandwidth. Returns true if it decided (including
// "one tier" when every node has HMAT data and none stands out).
inline bool rule_hmat(std::vector<NodeInfo>& nodes, std::string* by) {
  auto try_attr = [&](bool latency) {
    std::vector<double> v;
    for (const auto& n : nodes) {
      const auto& a = latency ? n.latency_ns : n.bandwidth_mibs;
      if (!a || *a == 0) return std::optional<bool>();
      v.push_back(static_cast<double>(*a));
    }
    const std::vector<int> g = cluster(v, latency);
    if (!apply_groups(nodes, g)) return std::optional<bool>(false);
    std::map<int, double> best;  // group -> leader value
    for (std::size_t i = 0; i < v.size(); ++i) {
      auto it = best.find(g[i]);
      if (it == best.end() || (latency ? v[i] < it->second : v[i] > it->second)) best[g[i]] = v[i];
    }
    const double top = best[0];
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      const double ratio = v[i] / top;
      nodes[i].reason =
          latency ? absl::StrFormat(
                        "HMAT latency %.0f ns is %.1fx the fastest node's %.0f ns (%s 1.3x)", v[i],
                        ratio, top, ratio <= kTierRatio ? "within" : "beyond")
                  : absl::StrFormat(
                        "HMAT bandwidth %.0f MiB/s is %.2fx the best node's %.0f MiB/s (%s 1/1.3)",
                        v[i], ratio, top, ratio >= 1.0 / kTierRatio ? "within" : "below");
    }
    return std::optional<bool>(true);
  };
  std::optional<bool> lat = try_attr(true);
  if (lat && *lat) {
    *by = "HMAT latency";
    return true;
  }
  std::optional<bool> bw = try_attr(false);
  if (bw && *bw) {
    *by = "HMAT bandwidth";
    return true;
  }
  if (lat || bw) {  // Complete HMAT data, nothing stands out: one tier.
    *by = "HMAT (all alike)";
    for (auto& n : nodes) {
      n.tier = 0;
      n.reason = "HMAT: every node is within 1.3x of the best latency/bandwidth, so one tier";
    }
    return true;
  }
  return false;
}

// Rule (b): kernel memory tiers.
inline bool rule_kernel_tiers(std::vector<NodeInfo>& nodes) {
  std::set<int> ids;
  for (const auto& n : nodes) {
    if (!n.kernel_memory_tier) return false;
    ids.insert(*n.kernel_memory_tier);
  }
  if (ids.size() < 2) return false;
  const int fastest = *ids.begin();
  for (auto& n : nodes) {
    n.tier = static_cast<int>(std::distance(ids.begin(), ids.find(*n.kernel_memory_tier)));
    n.reason = n.tier == 0
                   ? absl::StrCat("kernel memory_tier", fastest, " is the fastest kernel tier")
                   : absl::StrCat("kernel memory_tier", *n.kernel_memory_tier,
                                  " is slower than memory_tier", fastest);
  }
  return true;
}

// Rule (c): hwloc MemoryTier infos, else node kinds.
inline bool rule_kinds(std::vector<NodeInfo>& nodes, const Evidence& ev) {
  bool all_mt = !nodes.empty();
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (!ev.hwloc_memory_tier[i]) all_mt = false;
  if (all_mt) {
    // Fast kinds (DRAM/HBM) and everything hwloc ranks at or above them form tier 0.
    std::optional<int> fast_max;
    for (std::size_t i = 0; i < nodes.size(); ++i)
      if (kind_class(nodes[i]) == 0)
        fast_max = std::max(fast_max.value_or(*ev.hwloc_memory_tier[i]), *ev.hwloc_memory_tier[i]);
    std::vector<int> key(nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      const int mt = *ev.hwloc_memory_tier[i];
      key[i] = fast_max && mt <= *fast_max ? -1 : mt;
    }
    if (std::set<int>(key.begin(), key.end()).size() >= 2) {
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        nodes[i].tier = key[i];
        nodes[i].reason = absl::StrCat("hwloc MemoryTier ", *ev.hwloc_memory_tier[i], " (",
                                       ev.kind_reason[i], ")");
      }
      return true;
    }
  }
  std::vector<int> cls(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) cls[i] = kind_class(nodes[i]);
  if (!apply_groups(nodes, cls)) return false;
  for (std::size_t i = 0; i < nodes.size(); ++i) nodes[i].reason = ev.kind_reason[i];
  return true;
}

// Rule (d): distance from the nearest node with CPUs.
inline bool rule_distances(std::vector<NodeInfo>& nodes, const Evidence& ev) {
  if (ev.distance.empty()) return false;
  std::vector<double> v;
  for (const auto& n : nodes) {
    std::optional<std::uint64_t> best;
    for (const auto& c : nodes) {
      if (c.cpus.empty()) continue;
      auto it = ev.distance.find({c.os_index, n.os_index});
      if (it != ev.distance.end() && it->second > 0)
        best = std::min(best.value_or(it->second), it->second);
    }
    if (!best) return false;
    v.push_back(static_cast<double>(*best));
  }
  const std::vector<int> g = cluster(v, true);
  if (!apply_groups(nodes, g)) return false;
  const double top = *std::min_element(v.begin(), v.end());
  for (std::size_t i = 0; i < nodes.size(); ++i)
    nodes[i].reason = absl::StrFormat(
        "NUMA distance %.0f from the nearest CPUs is %.1fx the closest node's %.0f (%s 1.3x)", v[i],
        v[i] / top, top, v[i] <= top * kTierRatio ? "within" : "beyond");
  return true;
}

// Runs rules 2 and 3 on `nodes` (sorted by os_index). Returns a short name of
// the rule that decided.
inline std::string classify(std::vector<NodeInfo>& nodes, const Evidence& ev) {
  for (auto& n : nodes) n.tier = 0;
  if (nodes.size() <= 1) {
    for (auto& n : nodes) n.reason = "the only memory node on this machine";
    return "one node";
  }
  std::string by;
  const bool hmat = rule_hmat(nodes, &by);
  if (!hmat && rule_kernel_tiers(nodes))
    by = "kernel memory tiers";
  else if (!hmat && rule_kinds(nodes, ev))
    by = "node kinds";
  else if (!hmat && rule_distances(nodes, ev))
    by = "NUMA distances";
  if (by.empty()) {
    for (auto& n : nodes) {
      n.tier = 0;
      n.reason =
          "no evidence that any node is slower: no HMAT, no kernel memory tier split, no "
          "slow-memory kind, no NUMA distance gap";
    }
    return "no evidence";
  }
  if (hbm_never_slow(nodes)) absl::StrAppend(&by, ", HBM kept in the fast tier");
  compact_tiers(nodes);
  return by;
}

// Owns an hwloc topology (hwloc_topology_destroy on scope exit).
struct TopologyDeleter {
  void operator()(hwloc_topology_t t) const { hwloc_topology_destroy(t); }
};
using TopologyPtr = std::unique_ptr<hwloc_topology, TopologyDeleter>;

// Reads one memattr of `node` from its own cpuset, else from the first
// initiator hwloc lists for it; nullopt when hwloc has no value. O(initiators).
inline std::optional<std::uint64_t> memattr(hwloc_topology_t topo, hwloc_memattr_id_t id,
                                            hwloc_obj_t node) {
  hwloc_uint64_t value = 0;
  if (node->cpuset != nullptr && !hwloc_bitmap_iszero(node->cpuset)) {
    hwloc_location loc{};
    loc.type = HWLOC_LOCATION_TYPE_CPUSET;
    loc.location.cpuset = node->cpuset;
    if (hwloc_memattr_get_value(topo, id, node, &loc, 0, &value) == 0) return value;
  }
  unsigned nr = 1;
  hwloc_location first{};
  hwloc_uint64_t first_value = 0;
  if (hwloc_memattr_get_initiators(topo, id, node, 0, &nr, &first, &first_value) == 0 && nr >= 1 &&
      first.type == HWLOC_LOCATION_TYPE_CPUSET) {
    if (hwloc_memattr_get_value(topo, id, node, &first, 0, &value) == 0) return value;
  }
  return std::nullopt;
}

// The object's info `name`, or "".
inline std::string info_or_empty(hwloc_obj_t obj, const char* name) {
  const char* v = hwloc_obj_get_info_by_name(obj, name);
  return v != nullptr ? std::string(v) : std::string();
}

// Reads sysfs_root/devices/virtual/memory_tiering/memory_tier*/nodelist into
// node -> tier id. Missing directory = empty map.
inline std::map<int, int> read_kernel_tiers(const std::string& sysfs_root) {
  std::map<int, int> out;
  const std::string dir = absl::StrCat(sysfs_root, "/devices/virtual/memory_tiering");
  std::error_code ec;
  std::vector<int> ids;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    absl::string_view rest(name);
    int id = 0;
    if (absl::ConsumePrefix(&rest, "memory_tier") && absl::SimpleAtoi(rest, &id) && id >= 0)
      ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());  // Deterministic: a node listed twice keeps the lowest id.
  for (int id : ids) {
    auto text = read_small_file(absl::StrCat(dir, "/memory_tier", id, "/nodelist"));
    if (!text) continue;
    auto list = parse_kernel_list(*text);
    if (!list.ok()) continue;
    for (int node : *list) out.emplace(node, id);
  }
  return out;
}

// "Node 0 MemFree:  123 kB" from nodeN/meminfo, in bytes; 0 if unreadable.
inline std::uint64_t read_free_bytes(const std::string& sysfs_root, int node) {
  auto text =
      read_small_file(absl::StrCat(sysfs_root, "/devices/system/node/node", node, "/meminfo"));
  if (!text) return 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    const std::size_t pos = line.find("MemFree:");
    if (pos == absl::string_view::npos) continue;
    absl::string_view rest = absl::StripAsciiWhitespace(line.substr(pos + 8));
    std::uint64_t kb = 0;
    if (absl::ConsumeSuffix(&rest, "kB") && absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kb))
      return kb * 1024;
  }
  return 0;
}

// Loads hwloc from the live machine, opts.xml_path or else opts.xml_buffer.
// Sets *source to how messages name what was loaded.
inline absl::StatusOr<TopologyPtr> load_hwloc(const TopologyOptions& opts, std::string* source) {
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0)
    return absl::InternalError(absl::StrCat("hwloc_topology_init failed: ", std::strerror(errno)));
  TopologyPtr topo(raw);
  *source = "the live machine";
  if (opts.xml_path) {
    *source = absl::StrCat("hwloc XML file '", *opts.xml_path, "'");
    if (hwloc_topology_set_xml(raw, opts.xml_path->c_str()) != 0)
      return absl::InvalidArgumentError(
          absl::StrCat("cannot use ", *source, ": ", std::strerror(errno)));
  } else if (opts.xml_buffer) {
    *source = "the hwloc XML buffer";
    if (opts.xml_buffer->empty() || opts.xml_buffer->size() >= 0x7fffffffu)
      return absl::InvalidArgumentError(
          "cannot use the hwloc XML buffer: it is empty or larger than 2 GiB");
    // hwloc wants the length including the terminating NUL.
    if (hwloc_topology_set_xmlbuffer(raw, opts.xml_buffer->c_str(),
                                     static_cast<int>(opts.xml_buffer->size() + 1)) != 0)
      return absl::InvalidArgumentError(
          absl::StrCat("cannot use ", *source, ": ", std::strerror(errno)));
  }
  if (hwloc_topology_load(raw) != 0)
    return absl::InvalidArgumentError(absl::StrCat("hwloc could not load ", *source, ": ",
                                                   std::strerror(errno),
                                                   " (malformed or unreadable topology?)"));
  return topo;
}

// Every NUMA node, CPU-less ones included, sorted by OS index.
inline absl::StatusOr<std::vector<hwloc_obj_t>> numa_node_objs(hwloc_topology_t topo,
                                                               const std::string& source) {
  unsigned nr =
      static_cast<unsigned>(std::max(0, hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE)));
  std::vector<hwloc_obj_t> objs(std::max(1u, nr));
  hwloc_location any{};
  any.type = HWLOC_LOCATION_TYPE_OBJECT;  // Ignored with FLAG_ALL, but must be valid.
  any.location.object = hwloc_get_root_obj(topo);
  if (hwloc_get_local_numanode_objs(topo, &any, &nr, objs.data(), HWLOC_LOCAL_NUMANODE_FLAG_ALL) !=
      0)
    return absl::InternalError("hwloc_get_local_numanode_objs failed");
  objs.resize(std::min<std::size_t>(nr, objs.size()));
  std::sort(objs.begin(), objs.end(),
            [](hwloc_obj_t a, hwloc_obj_t b) { return a->os_index < b->os_index; });
  if (objs.empty()) return absl::NotFoundError(absl::StrCat("no NUMA nodes in ", source));
  return objs;
}

// Each node's attributes from hwloc (and, live, its free memory from sysfs);
// hwloc's MemoryTier infos go to ev->hwloc_memory_tier. CPUs come later.
inline std::vector<NodeInfo> read_nodes(hwloc_topology_t topo, const std::vector<hwloc_obj_t>& objs,
                                        bool live, const std::string& sysfs_root, Evidence* ev) {
  std::vector<NodeInfo> nodes(objs.size());
  ev->hwloc_memory_tier.resize(objs.size());
  for (std::size_t i = 0; i < objs.size(); ++i) {
    hwloc_obj_t o = objs[i];
    NodeInfo& n = nodes[i];
    n.os_index = static_cast<NodeId>(o->os_index);
    n.capacity_bytes = o->attr != nullptr ? o->attr->numanode.local_memory : 0;
    n.subtype = o->subtype != nullptr ? o->subtype : "";
    n.dax_type = info_or_empty(o, "DAXType");
    n.dax_parent = info_or_empty(o, "DAXParent");
    n.dax_device = info_or_empty(o, "DAXDevice");
    int mt = 0;
    if (absl::SimpleAtoi(info_or_empty(o, "MemoryTier"), &mt) && mt >= 0)
      ev->hwloc_memory_tier[i] = mt;
    n.latency_ns = memattr(topo, HWLOC_MEMATTR_ID_LATENCY, o);
    n.read_latency_ns = memattr(topo, HWLOC_MEMATTR_ID_READ_LATENCY, o);
    n.write_latency_ns = memattr(topo, HWLOC_MEMATTR_ID_WRITE_LATENCY, o);
    n.bandwidth_mibs = memattr(topo, HWLOC_MEMATTR_ID_BANDWIDTH, o);
    n.read_bandwidth_mibs = memattr(topo, HWLOC_MEMATTR_ID_READ_BANDWIDTH, o);
    n.write_bandwidth_mibs = memattr(topo, HWLOC_MEMATTR_ID_WRITE_BANDWIDTH, o);
    if (live) n.free_bytes = read_free_bytes(sysfs_root, n.os_index);
  }
  return nodes;
}

// Sets each node's CPUs from its sysfs nodeN/cpulist. Returns which nodes had
// a readable one.
inline std::vector<bool> read_cpulists(const std::string& sysfs_root,
                                       std::vector<NodeInfo>& nodes) {
  std::vector<bool> have_cpulist(nodes.size(), false);
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    auto text = read_small_file(
        absl::StrCat(sysfs_root, "/devices/system/node/node", nodes[i].os_index, "/cpulist"));
    if (!text) continue;
    auto list = parse_kernel_list(*text);
    if (!list.ok()) continue;
    nodes[i].cpus = *list;
    have_cpulist[i] = true;
  }
  return have_cpulist;
}

// True if node a should own a PU that nodes a and b both contain: the smaller
// cpuset, then the lower HMAT latency, then a node without a slow-memory
// subtype or DAX info, then the lower index.
inline bool better_pu_owner(const std::vector<hwloc_obj_t>& objs,
                            const std::vector<NodeInfo>& nodes, std::size_t a, std::size_t b) {
  const int wa = hwloc_bitmap_weight(objs[a]->cpuset), wb = hwloc_bitmap_weight(objs[b]->cpuset);
  if (wa != wb) return wa < wb;
  const auto& la = nodes[a].latency_ns;
  const auto& lb = nodes[b].latency_ns;
  if (la && lb && *la != *lb) return *la < *lb;
  const bool sa = is_slow_subtype(nodes[a].subtype) || !nodes[a].dax_device.empty();
  const bool sb = is_slow_subtype(nodes[b].subtype) || !nodes[b].dax_device.empty();
  if (sa != sb) return !sa;
  return nodes[a].os_index < nodes[b].os_index;
}

// Gives each PU to its better_pu_owner among the nodes whose cpuset contains
// it, unless that node's CPUs came from its cpulist. Sorts every node's CPUs.
inline void assign_pus_by_cpuset(hwloc_topology_t topo, const std::vector<hwloc_obj_t>& objs,
                                 const std::vector<bool>& have_cpulist,
                                 std::vector<NodeInfo>& nodes) {
  for (hwloc_obj_t pu = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PU, nullptr); pu != nullptr;
       pu = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PU, pu)) {
    std::optional<std::size_t> owner;
    for (std::size_t i = 0; i < objs.size(); ++i) {
      if (objs[i]->cpuset == nullptr || !hwloc_bitmap_isset(objs[i]->cpuset, pu->os_index))
        continue;
      if (!owner || better_pu_owner(objs, nodes, i, *owner)) owner = i;
    }
    if (owner && !have_cpulist[*owner])
      nodes[*owner].cpus.push_back(static_cast<int>(pu->os_index));
  }
  for (auto& n : nodes) std::sort(n.cpus.begin(), n.cpus.end());
}

// CPUs of each node. Live: the kernel's cpulist. Otherwise (XML), hwloc gives
// a CPU-less node its initiator's cpuset, so each PU goes to its
// better_pu_owner (the smallest cpuset containing it, then tie-breaks).
inline void assign_cpus(hwloc_topology_t topo, const std::vector<hwloc_obj_t>& objs, bool live,
                        const std::string& sysfs_root, std::vector<NodeInfo>& nodes) {
  std::vector<bool> have_cpulist(objs.size(), false);
  if (live) have_cpulist = read_cpulists(sysfs_root, nodes);
  if (std::find(have_cpulist.begin(), have_cpulist.end(), false) != have_cpulist.end())
    assign_pus_by_cpuset(topo, objs, have_cpulist, nodes);
}

// Sets kernel_memory_tier of the nodes listed in sysfs_root's memory_tiering.
inline void set_kernel_tiers(const std::string& sysfs_root, std::vector<NodeInfo>& nodes) {
  const std::map<int, int> kt = read_kernel_tiers(sysfs_root);
  for (auto& n : nodes) {
    auto it = kt.find(n.os_index);
    if (it != kt.end()) n.kernel_memory_tier = it->second;
  }
}

// NUMA node distances, (from, to) os index -> value: hwloc's "NUMALatency"
// matrix, else any NUMA node matrix; empty if hwloc has none.
inline std::map<std::pair<int, int>, std::uint64_t> read_distances(hwloc_topology_t topo) {
  std::map<std::pair<int, int>, std::uint64_t> out;
  unsigned dnr = 1;
  hwloc_distances_s* dist = nullptr;
  if (hwloc_distances_get_by_name(topo, "NUMALatency", &dnr, &dist, 0) != 0 || dnr == 0) {
    dnr = 1;
    dist = nullptr;
    if (hwloc_distances_get_by_type(topo, HWLOC_OBJ_NUMANODE, &dnr, &dist, 0, 0) != 0) dnr = 0;
  }
  if (dnr >= 1 && dist != nullptr) {
    for (unsigned a = 0; a < dist->nbobjs; ++a)
      for (unsigned b = 0; b < dist->nbobjs; ++b)
        if (dist->objs[a] != nullptr && dist->objs[b] != nullptr &&
            dist->objs[a]->type == HWLOC_OBJ_NUMANODE && dist->objs[b]->type == HWLOC_OBJ_NUMANODE)
          out[{static_cast<int>(dist->objs[a]->os_index),
               static_cast<int>(dist->objs[b]->os_index)}] = dist->values[a * dist->nbobjs + b];
    hwloc_distances_release(topo, dist);
  }
  return out;
}

// Rule 1's spec: TopologyOptions::override_spec, else TIERKIT_TIERS when
// use_env. Sets *origin to how messages name it.
inline std::optional<std::string> chosen_override(const TopologyOptions& opts,
                                                  std::string* origin) {
  *origin = "tier override";
  if (opts.override_spec || !opts.use_env) return opts.override_spec;
  *origin = "TIERKIT_TIERS";
  return getenv_string("TIERKIT_TIERS");
}

// One node number of a tier override entry: digits only, below
// NodeSet::kMaxNodes. `prefix` starts every message.
inline absl::StatusOr<int> parse_override_node(absl::string_view num, absl::string_view item,
                                               int tier, const std::string& prefix) {
  const bool digits = !num.empty() && std::all_of(num.begin(), num.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
  if (!digits)
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "'", item, "' in tier ", tier, " is not a node number"));
  std::int64_t v = 0;
  if (!absl::SimpleAtoi(num, &v) || v >= NodeSet::kMaxNodes)
    return absl::InvalidArgumentError(absl::StrCat(prefix, "node ", num, " in tier ", tier,
                                                   " is out of range (nodes are 0..",
                                                   NodeSet::kMaxNodes - 1, ")"));
  return static_cast<int>(v);
}

// One non-empty entry of a tier override, "n" or "a-b", as {first, last}.
inline absl::StatusOr<std::pair<int, int>> parse_override_entry(absl::string_view item, int tier,
                                                                const std::string& prefix) {
  if (item[0] == '-')
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "node '", item, "' in tier ", tier, " is negative"));
  std::vector<absl::string_view> ends = absl::StrSplit(item, absl::MaxSplits('-', 1));
  absl::StatusOr<int> lo =
      parse_override_node(absl::StripAsciiWhitespace(ends[0]), item, tier, prefix);
  if (!lo.ok()) return lo.status();
  int hi = *lo;
  if (ends.size() == 2) {
    absl::StatusOr<int> h =
        parse_override_node(absl::StripAsciiWhitespace(ends[1]), item, tier, prefix);
    if (!h.ok()) return h.status();
    if (*h < *lo)
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "range '", item, "' in tier ", tier, " is reversed"));
    hi = *h;
  }
  return std::make_pair(*lo, hi);
}

}  // namespace detail::topo

// The machine's memory nodes grouped into tiers. Immutable after construction;
// copying costs a few hundred bytes per node. All queries are O(nodes).
class Topology {
 public:
  // Discovers the live machine (or the XML in `opts`) and classifies its nodes
  // by the rules at the top of this file. Loading a live hwloc topology takes a
  // few milliseconds; an XML less. Errors: unreadable/malformed XML, a bad
  // override (InvalidArgumentError naming the problem).
  static absl::StatusOr<Topology> discover(const TopologyOptions& opts = {});

  // Parses "0,1/2" into tier node sets (tier 0 = {0,1}, tier 1 = {2}); "a-b"
  // ranges are allowed. Errors (InvalidArgumentError) name the problem: empty
  // spec or tier, empty entry, non-number, negative node, node >=
  // NodeSet::kMaxNodes, reversed range, node listed twice. Whether the nodes
  // exist is checked by discover(). Linear in the spec length.
  static absl::StatusOr<std::vector<NodeSet>> parse_override(absl::string_view spec);

  // Wraps already classified nodes (simulation, tests). Nodes are sorted by
  // os_index, duplicates dropped, tiers renumbered 0, 1, ... keeping order.
  static Topology from_nodes(std::vector<NodeInfo> nodes);

  // A two-node machine for the simulator: node 0 DRAM with CPU 0 (tier 0,
  // fast_bytes), node 1 CPU-less slow memory (tier 1, slow_bytes). Free bytes
  // equal capacity. simulated() is true.
  static Topology simulated(std::uint64_t fast_bytes, std::uint64_t slow_bytes);

  // All nodes, sorted by os_index.
  const std::vector<NodeInfo>& nodes() const { return nodes_; }
  // The node with this OS index, or nullptr.
  const NodeInfo* node(NodeId id) const {
    for (const auto& n : nodes_)
      if (n.os_index == id) return &n;
    return nullptr;
  }
  // Number of tiers (0 only for an empty topology).
  int tier_count() const { return tier_count_; }
  // Nodes of one tier; empty for a tier that does not exist.
  NodeSet tier_nodes(int tier) const {
    NodeSet s;
    for (const auto& n : nodes_)
      if (n.tier == tier) s.insert(n.os_index);
    return s;
  }
  NodeSet tier_nodes(Tier t) const { return tier_nodes(tier_index(t)); }
  // Tier 0.
  NodeSet fast_nodes() const { return tier_nodes(0); }
  // Every tier >= 1; empty on a one-tier machine.
  NodeSet slow_nodes() const {
    NodeSet s;
    for (const auto& n : nodes_)
      if (n.tier >= 1) s.insert(n.os_index);
    return s;
  }
  // True when there is nothing to tier (one tier, or no nodes).
  bool single_tier() const { return tier_count_ <= 1; }
  // The node's tier, or -1 if the node is unknown.
  int tier_of(NodeId id) const {
    const NodeInfo* n = node(id);
    return n != nullptr ? n->tier : -1;
  }
  // Which rule decided, in a few words: "HMAT latency", "HMAT bandwidth", "HMAT (all
  // alike)", "kernel memory tiers", "node kinds", "NUMA distances", "one node", "no
  // evidence", "override (TIERKIT_TIERS)", "override (tier override)", "given", "simulation".
  const std::string& decided_by() const { return decided_by_; }
  bool from_override() const { return from_override_; }
  bool simulated() const { return simulated_; }

  // One line in plain words, e.g. "2 tiers: fast = node 0 (DRAM), slow = node 1
  // (CXL/slow); decided by HMAT" or "one memory tier (node 0): nothing to tier
  // on this machine; ...".
  std::string summary() const;
  // A fixed-width table, one row per node: node, tier, kind, capacity, free,
  // CPUs, latency, bandwidth, kernel tier, reason.
  std::string to_table() const;
  // {"tiers": N, "decided_by": ..., "override": b, "simulated": b, "nodes": [...]}.
  std::string to_json() const;

 private:
  Topology() = default;
  void finish() {
    std::stable_sort(nodes_.begin(), nodes_.end(),
                     [](const NodeInfo& a, const NodeInfo& b) { return a.os_index < b.os_index; });
    nodes_.erase(
        std::unique(nodes_.begin(), nodes_.end(),
                    [](const NodeInfo& a, const NodeInfo& b) { return a.os_index == b.os_index; }),
        nodes_.end());
    tier_count_ = detail::topo::compact_tiers(nodes_);
  }

  // Rule 1: puts each node in its tier from `spec`, which came from
  // `spec_origin` ("tier override" or "TIERKIT_TIERS"). Errors name a bad spec,
  // a node `source` does not have, or a node left out of every tier.
  static absl::Status apply_override(const std::string& spec, const std::string& spec_origin,
                                     const std::string& source, std::vector<NodeInfo>& nodes);

  std::vector<NodeInfo> nodes_;
  int tier_count_ = 0;
  std::string decided_by_;
  bool from_override_ = false;
  bool simulated_ = false;
};

inline absl::StatusOr<std::vector<NodeSet>> Topology::parse_override(absl::string_view spec) {
  const std::string prefix = absl::StrCat("tier override \"", spec, "\": ");
  const absl::string_view s = absl::StripAsciiWhitespace(spec);
  if (s.empty())
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "is empty; expected tiers separated by '/' and nodes by ',', e.g. \"0,1/2\""));
  std::vector<NodeSet> tiers;
  std::map<int, int> seen;  // node -> tier
  int t = 0;
  for (absl::string_view tier_text : absl::StrSplit(s, '/')) {
    tier_text = absl::StripAsciiWhitespace(tier_text);
    if (tier_text.empty())
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "tier ", t, " is empty (nothing between the '/' separators)"));
    NodeSet set;
    for (absl::string_view item : absl::StrSplit(tier_text, ',')) {
      item = absl::StripAsciiWhitespace(item);
      if (item.empty())
        return absl::InvalidArgumentError(
            absl::StrCat(prefix, "tier ", t, " has an empty node entry (two ',' in a row?)"));
      absl::StatusOr<std::pair<int, int>> range =
          detail::topo::parse_override_entry(item, t, prefix);
      if (!range.ok()) return range.status();
      for (int n = range->first; n <= range->second; ++n) {
        auto [it, fresh] = seen.emplace(n, t);
        if (!fresh)
          return absl::InvalidArgumentError(absl::StrCat(
              prefix, "node ", n, " appears twice (tier ", it->second, " and tier ", t, ")"));
        set.insert(n);
      }
    }
    tiers.push_back(set);
    ++t;
  }
  return tiers;
}

inline Topology Topology::from_nodes(std::vector<NodeInfo> nodes) {
  Topology topo;
  topo.nodes_ = std::move(nodes);
  topo.decided_by_ = "given";
  topo.finish();
  return topo;
}

inline Topology Topology::simulated(std::uint64_t fast_bytes, std::uint64_t slow_bytes) {
  NodeInfo fast;
  fast.os_index = 0;
  fast.tier = 0;
  fast.kind = NodeKind::kDram;
  fast.capacity_bytes = fast.free_bytes = fast_bytes;
  fast.cpus = {0};
  fast.reason = "simulated fast tier (DRAM)";
  NodeInfo slow;
  slow.os_index = 1;
  slow.tier = 1;
  slow.kind = NodeKind::kSlowMemory;
  slow.capacity_bytes = slow.free_bytes = slow_bytes;
  slow.reason = "simulated slow tier (CXL/slow)";
  Topology topo;
  topo.nodes_ = {fast, slow};
  topo.decided_by_ = "simulation";
  topo.simulated_ = true;
  topo.finish();
  return topo;
}

inline absl::StatusOr<Topology> Topology::discover(const TopologyOptions& opts) {
  namespace dt = detail::topo;
  std::string source;
  absl::StatusOr<dt::TopologyPtr> topo = dt::load_hwloc(opts, &source);
  if (!topo.ok()) return topo.status();
  hwloc_topology_t raw = topo->get();
  const bool live = hwloc_topology_is_thissystem(raw) != 0;
  absl::StatusOr<std::vector<hwloc_obj_t>> objs = dt::numa_node_objs(raw, source);
  if (!objs.ok()) return objs.status();

  dt::Evidence ev;
  std::vector<NodeInfo> nodes = dt::read_nodes(raw, *objs, live, opts.sysfs_root, &ev);
  dt::assign_cpus(raw, *objs, live, opts.sysfs_root, nodes);
  // The live /sys describes this machine, not an XML's.
  if (live || opts.sysfs_root != "/sys") dt::set_kernel_tiers(opts.sysfs_root, nodes);
  ev.distance = dt::read_distances(raw);
  ev.kind_reason.resize(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) ev.kind_reason[i] = dt::classify_kind(nodes[i]);

  Topology out;
  std::string spec_origin;
  const std::optional<std::string> spec = dt::chosen_override(opts, &spec_origin);
  if (spec) {  // Rule 1: override.
    absl::Status st = apply_override(*spec, spec_origin, source, nodes);
    if (!st.ok()) return st;
    out.decided_by_ = absl::StrCat("override (", spec_origin, ")");
    out.from_override_ = true;
  } else {
    out.decided_by_ = dt::classify(nodes, ev);
  }
  out.nodes_ = std::move(nodes);
  out.finish();
  return out;
}

inline absl::Status Topology::apply_override(const std::string& spec,
                                             const std::string& spec_origin,
                                             const std::string& source,
                                             std::vector<NodeInfo>& nodes) {
  namespace dt = detail::topo;
  auto tiers = parse_override(spec);
  if (!tiers.ok()) {
    if (spec_origin == "TIERKIT_TIERS")
      return absl::InvalidArgumentError(absl::StrCat("TIERKIT_TIERS: ", tiers.status().message()));
    return tiers.status();
  }
  const std::string prefix = absl::StrCat(spec_origin == "TIERKIT_TIERS" ? "TIERKIT_TIERS " : "",
                                          "tier override \"", spec, "\": ");
  std::vector<int> all_ids;
  for (const auto& n : nodes) all_ids.push_back(n.os_index);
  for (std::size_t t = 0; t < tiers->size(); ++t)
    for (int id : (*tiers)[t].to_vector())
      if (std::find(all_ids.begin(), all_ids.end(), id) == all_ids.end())
        return absl::InvalidArgumentError(
            absl::StrCat(prefix, "node ", id, " (tier ", t, ") is not a memory node of ", source,
                         " (it has ", dt::nodes_phrase(all_ids), ")"));
  std::vector<int> missing;
  for (auto& n : nodes) {
    bool found = false;
    for (std::size_t t = 0; t < tiers->size() && !found; ++t) {
      if ((*tiers)[t].contains(n.os_index)) {
        n.tier = static_cast<int>(t);
        n.reason = absl::StrCat("tier ", t, " from the ", spec_origin, " override \"", spec, "\"");
        found = true;
      }
    }
    if (!found) missing.push_back(n.os_index);
  }
  if (!missing.empty())
    return absl::InvalidArgumentError(absl::StrCat(prefix, "leaves out ", dt::nodes_phrase(missing),
                                                   "; every memory node must be in a tier"));
  return absl::OkStatus();
}

inline std::string Topology::summary() const {
  namespace dt = detail::topo;
  std::string suffix;
  if (simulated_) suffix = " (simulated)";
  if (from_override_) suffix = absl::StrCat("; set by ", decided_by_);
  std::vector<int> all;
  for (const auto& n : nodes_) all.push_back(n.os_index);
  if (nodes_.empty()) return "no memory nodes: nothing to tier";
  if (tier_count_ <= 1) {
    std::string s = absl::StrCat("one memory tier (", dt::nodes_phrase(all),
                                 "): nothing to tier on this machine; ");
    if (all.size() == 1)
      absl::StrAppend(&s, "tierkit leaves placement to the kernel");
    else
      absl::StrAppend(&s, nodes_.front().reason,
                      "; set TIERKIT_TIERS (e.g. \"0/1\") to force tiers");
    return s + suffix;
  }
  std::vector<std::string> parts;
  for (int t = 0; t < tier_count_; ++t) {
    std::vector<int> ids;
    std::vector<std::string> kinds;
    for (const auto& n : nodes_) {
      if (n.tier != t) continue;
      ids.push_back(n.os_index);
      std::string k(kind_name(n.kind));
      if (std::find(kinds.begin(), kinds.end(), k) == kinds.end()) kinds.push_back(k);
    }
    const std::string label =
        t == 0 ? "fast" : (tier_count_ == 2 ? "slow" : absl::StrCat("tier ", t));
    parts.push_back(
        absl::StrCat(label, " = ", dt::nodes_phrase(ids), " (", absl::StrJoin(kinds, "+"), ")"));
  }
  std::string s = absl::StrCat(tier_count_, " tiers: ", absl::StrJoin(parts, ", "));
  if (!from_override_ && !simulated_) absl::StrAppend(&s, "; decided by ", decided_by_);
  return s + suffix;
}

inline std::string Topology::to_table() const {
  namespace dt = detail::topo;
  std::vector<std::vector<std::string>> rows = {{"node", "tier", "kind", "capacity", "free", "CPUs",
                                                 "latency", "bandwidth", "kernel tier", "reason"}};
  for (const auto& n : nodes_) {
    const auto& lat = n.latency_ns ? n.latency_ns : n.read_latency_ns;
    const auto& bw = n.bandwidth_mibs ? n.bandwidth_mibs : n.read_bandwidth_mibs;
    rows.push_back({absl::StrCat(n.os_index), absl::StrCat(n.tier), std::string(kind_name(n.kind)),
                    dt::format_bytes(n.capacity_bytes), dt::format_bytes(n.free_bytes),
                    dt::format_list(n.cpus), lat ? absl::StrCat(*lat, " ns") : "-",
                    bw ? absl::StrCat(*bw, " MiB/s") : "-",
                    n.kernel_memory_tier ? absl::StrCat("memory_tier", *n.kernel_memory_tier) : "-",
                    n.reason});
  }
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (std::size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t c = 0; c < r.size(); ++c) {
      if (c + 1 == r.size())
        line += r[c];
      else
        line += absl::StrCat(r[c], std::string(width[c] - r[c].size() + 2, ' '));
    }
    out += line + "\n";
  }
  return out;
}

inline std::string Topology::to_json() const {
  namespace dt = detail::topo;
  std::vector<std::string> items;
  for (const auto& n : nodes_) {
    items.push_back(absl::StrCat(
        "{\"node\":", n.os_index, ",\"tier\":", n.tier,
        ",\"kind\":", dt::json_string(kind_name(n.kind)), ",\"capacity_bytes\":", n.capacity_bytes,
        ",\"free_bytes\":", n.free_bytes, ",\"cpus\":[", absl::StrJoin(n.cpus, ","),
        "],\"latency_ns\":", dt::json_optional(n.latency_ns),
        ",\"read_latency_ns\":", dt::json_optional(n.read_latency_ns),
        ",\"write_latency_ns\":", dt::json_optional(n.write_latency_ns),
        ",\"bandwidth_mibs\":", dt::json_optional(n.bandwidth_mibs),
        ",\"read_bandwidth_mibs\":", dt::json_optional(n.read_bandwidth_mibs),
        ",\"write_bandwidth_mibs\":", dt::json_optional(n.write_bandwidth_mibs),
        ",\"kernel_memory_tier\":", dt::json_optional(n.kernel_memory_tier),
        ",\"subtype\":", dt::json_string(n.subtype), ",\"dax_type\":", dt::json_string(n.dax_type),
        ",\"dax_parent\":", dt::json_string(n.dax_parent), ",\"dax_device\":",
        dt::json_string(n.dax_device), ",\"reason\":", dt::json_string(n.reason), "}"));
  }
  return absl::StrCat("{\"tiers\":", tier_count_, ",\"decided_by\":", dt::json_string(decided_by_),
                      ",\"override\":", from_override_ ? "true" : "false",
                      ",\"simulated\":", simulated_ ? "true" : "false",
                      ",\"summary\":", dt::json_string(summary()), ",\"nodes\":[",
                      absl::StrJoin(items, ","), "]}");
}

}  // namespace tierkit
