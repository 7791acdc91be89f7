// tools/tierctl_numa_maps.hpp: `tierctl numa-maps PID`: a process's memory
// per NUMA node and per tier, summed from /proc/PID/numa_maps (the N<node>=<pages>
// fields, times kernelpagesize_kB).
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "tierctl_kernel.hpp"
#include "tierkit/topology.hpp"

namespace tierctl {

// Bytes of one node in a process.
struct NodeUsage {
  std::uint64_t bytes = 0;
  std::uint64_t huge_bytes = 0;  // in pages larger than 4 KiB
};

struct NumaMaps {
  std::map<int, NodeUsage> nodes;
  std::uint64_t mappings = 0;
};

// "1.5 GiB", "12.0 MiB", "8 KiB".
inline std::string human_bytes(std::uint64_t b) {
  const double d = static_cast<double>(b);
  if (b >= (1ull << 30)) return absl::StrFormat("%.1f GiB", d / (1ull << 30));
  if (b >= (1ull << 20)) return absl::StrFormat("%.1f MiB", d / (1ull << 20));
  return absl::StrFormat("%u KiB", b >> 10);
}

// A count no real process reaches: the file is corrupt, not the sum.
inline absl::Status overflow(int line_no) {
  return absl::InvalidArgumentError(absl::StrCat(
      "numa_maps line ", line_no, ": page counts overflow 64-bit bytes (is the file corrupt?)"));
}

// Sums N<node>=<pages> fields of every mapping; page size from each line's
// kernelpagesize_kB= (4 KiB when absent). Malformed fields are errors.
inline absl::StatusOr<NumaMaps> parse_numa_maps(absl::string_view text) {
  NumaMaps out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    ++line_no;
    ++out.mappings;
    std::uint64_t page_kb = 4;
    std::map<int, std::uint64_t> pages;
    for (absl::string_view field : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      if (absl::ConsumePrefix(&field, "kernelpagesize_kB=")) {
        if (!absl::SimpleAtoi(field, &page_kb) || page_kb == 0)
          return absl::InvalidArgumentError(
              absl::StrCat("numa_maps line ", line_no, ": bad kernelpagesize_kB '", field, "'"));
        continue;
      }
      if (field.size() < 3 || field[0] != 'N' || !absl::ascii_isdigit(field[1])) continue;
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(field.substr(1), absl::MaxSplits('=', 1));
      int node = 0;
      std::uint64_t n = 0;
      if (!absl::SimpleAtoi(kv.first, &node) || !absl::SimpleAtoi(kv.second, &n))
        return absl::InvalidArgumentError(
            absl::StrCat("numa_maps line ", line_no, ": bad node field '", field, "'"));
      if (__builtin_add_overflow(pages[node], n, &pages[node])) return overflow(line_no);
    }
    for (const auto& [node, n] : pages) {
      NodeUsage& u = out.nodes[node];
      std::uint64_t bytes = 0;
      if (__builtin_mul_overflow(n, page_kb * 1024, &bytes) || page_kb > (~0ull >> 10) ||
          __builtin_add_overflow(u.bytes, bytes, &u.bytes))
        return overflow(line_no);
      if (page_kb > 4) u.huge_bytes += bytes;  // at most u.bytes
    }
  }
  return out;
}

// Reads /proc/PID/numa_maps (under `root`). `pid` is "self" or a positive
// number; errors say what is wrong in plain words.
inline absl::StatusOr<std::string> read_numa_maps(const std::string& root, absl::string_view pid) {
  std::int64_t n = 0;
  if (pid != "self" && (!absl::SimpleAtoi(pid, &n) || n <= 0 || n > 4194304))
    return absl::InvalidArgumentError(
        absl::StrCat("'", pid, "' is not a process id (use a positive number or 'self')"));
  std::string dir = under_root(root, absl::StrCat("/proc/", pid));
  ReadResult r = read_text(dir + "/numa_maps", std::size_t{1} << 30);  // a line per mapping
  if (r.text) return *r.text;
  if (r.err == ENOENT && ::access(dir.c_str(), F_OK) != 0)
    return absl::NotFoundError(absl::StrCat("no process with PID ", pid, " (", dir, " not found)"));
  if (r.err == ENOENT)
    return absl::UnavailableError(
        absl::StrCat(dir, "/numa_maps does not exist: kernel built without CONFIG_NUMA"));
  if (r.err == EACCES || r.err == EPERM)
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot read ", dir, "/numa_maps: permission denied (another user's process needs root)"));
  return absl::InternalError(
      absl::StrCat("cannot read ", dir, "/numa_maps: ", std::strerror(r.err)));
}

// The per-node and per-tier table. `topo` gives each node's tier and kind;
// nodes it does not know show "?".
inline std::string numa_maps_table(const NumaMaps& m, const tierkit::Topology* topo) {
  std::uint64_t total = 0;
  for (const auto& [node, u] : m.nodes) total += u.bytes;
  auto pct = [&](std::uint64_t b) {
    return total ? 100.0 * static_cast<double>(b) / static_cast<double>(total) : 0.0;
  };
  std::string out = absl::StrFormat("%-6s %-5s %-10s %12s %7s %12s\n", "node", "tier", "kind",
                                    "memory", "share", "huge pages");
  std::map<int, std::pair<std::string, std::uint64_t>> tiers;  // tier -> (nodes, bytes)
  for (const auto& [node, u] : m.nodes) {
    const tierkit::NodeInfo* info = topo ? topo->node(node) : nullptr;
    std::string tier = info ? absl::StrCat(info->tier) : "?";
    std::string kind = info ? std::string(tierkit::kind_name(info->kind)) : "?";
    absl::StrAppendFormat(&out, "%-6d %-5s %-10s %12s %6.1f%% %12s\n", node, tier, kind,
                          human_bytes(u.bytes), pct(u.bytes), human_bytes(u.huge_bytes));
    auto& t = tiers[info ? info->tier : -1];
    absl::StrAppend(&t.first, t.first.empty() ? "" : ",", node);
    t.second += u.bytes;
  }
  absl::StrAppendFormat(&out, "%-6s %-5s %-10s %12s %6.1f%%\n", "total", "", "", human_bytes(total),
                        total ? 100.0 : 0.0);
  absl::StrAppend(&out, "\nper tier:\n");
  for (const auto& [tier, t] : tiers)
    absl::StrAppendFormat(&out, "  %-16s nodes %-8s %12s %6.1f%%\n",
                          tier < 0    ? std::string("unknown tier")
                          : tier == 0 ? std::string("tier 0 (fast)")
                                      : absl::StrCat("tier ", tier, " (slow)"),
                          t.first, human_bytes(t.second), pct(t.second));
  return out;
}

}  // namespace tierctl
