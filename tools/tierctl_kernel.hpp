// tools/tierctl_kernel.hpp: `tierctl kernel`: shows and sets the kernel's own
// memory tiering (AutoNUMA, numa_balancing=2) knobs, memory tiers and vmstat
// counters. Every path is relative to a root ("/" on a real machine, a fake
// tree in tests), and a missing or unreadable file is explained, never fatal.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
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
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "tierkit/detail/parse.hpp"

namespace tierctl {

// `root` joined with an absolute path: ("/", "/proc/x") -> "/proc/x".
inline std::string under_root(const std::string& root, absl::string_view path) {
  std::string r = root;
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return r == "/" ? std::string(path) : absl::StrCat(r, path);
}

// A file's contents (whitespace-trimmed), or the errno of the failed read:
// EFBIG past `limit` bytes (a knob is a line; a device such as /dev/zero
// under --root would otherwise be read until memory runs out).
struct ReadResult {
  std::optional<std::string> text;
  int err = 0;
};
inline ReadResult read_text(const std::string& path, std::size_t limit = std::size_t{1} << 20) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {std::nullopt, errno};
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return {std::nullopt, e};
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > limit) {
      ::close(fd);
      return {std::nullopt, EFBIG};
    }
  }
  ::close(fd);
  return {std::string(absl::StripAsciiWhitespace(out)), 0};
}

enum class KnobType { kInt, kBool };

// One kernel tunable tierctl can show and set.
struct Knob {
  const char* key;   // --set KEY=...
  const char* path;  // absolute path on a real machine
  KnobType type;
  std::int64_t lo, hi;  // kInt range
  const char* unit;
  const char* missing;  // why the file may be absent
  bool debugfs;
  bool optional;  // only some kernels have it: the report omits it when absent
};

inline const std::vector<Knob>& knobs() {
  static const std::vector<Knob> k = {
      {"numa_balancing", "/proc/sys/kernel/numa_balancing", KnobType::kInt, 0, 3, "",
       "kernel built without CONFIG_NUMA_BALANCING", false, false},
      {"promote_rate_limit_MBps", "/proc/sys/kernel/numa_balancing_promote_rate_limit_MBps",
       KnobType::kInt, 0, 2147483647, "MB/s",
       "kernel too old (added in Linux 6.0) or built without CONFIG_NUMA_BALANCING", false, false},
      // The seed's separate promotion target (tests/vm/kernel/promote-throughput.patch):
      // what the hot threshold is tuned towards, while promote_rate_limit_MBps caps.
      {"promote_throughput_MBps", "/proc/sys/kernel/numa_balancing_promote_throughput_MBps",
       KnobType::kInt, 0, 2147483647, "MB/s",
       "not in this kernel: stock Linux lacks it (tests/vm/kernel/promote-throughput.patch "
       "adds it)",
       false, true},
      {"hot_threshold_ms", "/sys/kernel/debug/sched/numa_balancing/hot_threshold_ms",
       KnobType::kInt, 1, 4294967295, "ms",
       "kernel too old (added in Linux 6.0) or built without CONFIG_NUMA_BALANCING", true, false},
      {"demotion_enabled", "/sys/kernel/mm/numa/demotion_enabled", KnobType::kBool, 0, 1, "",
       "kernel too old (added in Linux 5.15) or built without CONFIG_NUMA/CONFIG_MIGRATION", false,
       false},
  };
  return k;
}

inline const Knob* find_knob(absl::string_view key) {
  for (const auto& k : knobs())
    if (key == k.key) return &k;
  return nullptr;
}

// numa_balancing in words.
inline std::string decode_numa_balancing(std::int64_t v) {
  switch (v) {
    case 0:
      return "disabled: no NUMA balancing, no promotion of hot slow-tier pages";
    case 1:
      return "NUMA locality balancing only (moves pages to the CPU using them; no tiering)";
    case 2:
      return "memory tiering: the kernel promotes hot slow-tier pages to the fast tier";
    case 3:
      return "locality balancing and memory tiering";
  }
  return "unknown mode";
}

// Why `path` could not be read or written (errno `err`), in plain words.
inline std::string explain(const std::string& root, const Knob* knob, int err) {
  if (err == EACCES || err == EPERM)
    return knob != nullptr && knob->debugfs
               ? "not root: debugfs (/sys/kernel/debug) is readable by root only; needs root"
               : "permission denied: needs root";
  if (err == EROFS) return "read-only file system (containers often mount /proc/sys read-only)";
  if (err == ENOENT && knob != nullptr && knob->debugfs) {
    std::error_code ec;
    std::string dbg = under_root(root, "/sys/kernel/debug");
    int probe = ::access(under_root(root, "/sys/kernel/debug/sched").c_str(), F_OK);
    if (probe != 0 && errno == EACCES)
      return "not root: debugfs (/sys/kernel/debug) is readable by root only; needs root";
    if (probe != 0 &&
        (!std::filesystem::is_directory(dbg, ec) || std::filesystem::is_empty(dbg, ec)))
      return "debugfs not mounted: mount -t debugfs none /sys/kernel/debug";
  }
  if (err == ENOENT && knob != nullptr) return knob->missing;
  if (err == EINVAL) return "the kernel rejected the value";
  return std::strerror(err);
}

// How a knob's current value reads, with a note.
inline std::string describe_knob(const std::string& root, const Knob& k) {
  ReadResult r = read_text(under_root(root, k.path));
  if (!r.text) return absl::StrCat("not available (", explain(root, &k, r.err), ")");
  std::string out = *r.text;
  if (k.unit[0] != '\0') absl::StrAppend(&out, " ", k.unit);
  std::int64_t v = 0;
  if (absl::string_view(k.key) == "numa_balancing" && absl::SimpleAtoi(*r.text, &v))
    absl::StrAppend(&out, "  (", decode_numa_balancing(v), ")");
  if (absl::string_view(k.key) == "promote_throughput_MBps" && absl::SimpleAtoi(*r.text, &v))
    absl::StrAppend(&out, v == 0 ? "  (off: the hot threshold is tuned towards the rate limit)"
                                 : "  (target the hot threshold is tuned towards; the rate "
                                   "limit still caps)");
  if (absl::string_view(k.key) == "demotion_enabled") {
    bool b = false;
    if (absl::SimpleAtob(*r.text, &b))
      absl::StrAppend(&out, b ? "  (reclaim demotes cold fast-tier pages to the slow tier)"
                              : "  (reclaim discards or swaps instead of demoting)");
  }
  return out;
}

// The counters `tierctl kernel` shows, with what they count.
inline const std::vector<std::pair<const char*, const char*>>& vmstat_counters() {
  static const std::vector<std::pair<const char*, const char*>> c = {
      {"pgpromote_success", "pages promoted to the fast tier"},
      {"pgpromote_candidate", "hot pages considered for promotion"},
      {"pgdemote_kswapd", "pages demoted by kswapd"},
      {"pgdemote_direct", "pages demoted by direct reclaim"},
      {"numa_hint_faults", "NUMA hinting faults"},
      {"numa_pages_migrated", "pages migrated by NUMA balancing"},
      {"pgmigrate_success", "page migrations that succeeded"},
      {"pgmigrate_fail", "page migrations that failed"},
  };
  return c;
}

// Renders the whole `tierctl kernel` report.
inline std::string kernel_report(const std::string& root) {
  std::string out = absl::StrCat("Kernel memory tiering (AutoNUMA) state",
                                 root == "/" ? "" : absl::StrCat(" under ", root), ":\n");
  for (const auto& k : knobs()) {
    if (k.optional && ::access(under_root(root, k.path).c_str(), F_OK) != 0 && errno == ENOENT)
      continue;
    absl::StrAppendFormat(&out, "  %-24s %s\n", k.key, describe_knob(root, k));
  }

  absl::StrAppend(&out, "Memory tiers (/sys/devices/virtual/memory_tiering):\n");
  std::string dir = under_root(root, "/sys/devices/virtual/memory_tiering");
  std::vector<std::pair<int, std::string>> tiers;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    int id = 0;
    if (!absl::StartsWith(name, "memory_tier") ||
        !absl::SimpleAtoi(absl::string_view(name).substr(11), &id))
      continue;
    ReadResult nl = read_text(it->path().string() + "/nodelist");
    tiers.emplace_back(id, nl.text ? absl::StrCat("nodes ", *nl.text)
                                   : absl::StrCat("nodelist unreadable: ", std::strerror(nl.err)));
  }
  std::sort(tiers.begin(), tiers.end());
  if (tiers.empty())
    absl::StrAppend(&out, "  not available (",
                    ec == std::errc::permission_denied ? "permission denied: needs root"
                                                       : "kernel too old (memory tiers appeared "
                                                         "in Linux 6.1) or built without NUMA",
                    ")\n");
  for (const auto& [id, text] : tiers)
    absl::StrAppendFormat(
        &out, "  memory_tier%-13d %s%s\n", id, text,
        tiers.size() == 1 ? "  (one kernel tier: nothing to promote or demote)" : "");

  absl::StrAppend(&out, "Counters (/proc/vmstat):\n");
  ReadResult vm = read_text(under_root(root, "/proc/vmstat"));
  if (!vm.text) {
    absl::StrAppend(&out, "  not available (", explain(root, nullptr, vm.err), ")\n");
    return out;
  }
  for (const auto& [name, what] : vmstat_counters()) {
    std::string value = "not available (not in /proc/vmstat: kernel too old or feature not built)";
    for (absl::string_view line : absl::StrSplit(*vm.text, '\n')) {
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(line, absl::MaxSplits(' ', 1));
      if (kv.first == name) value = absl::StrFormat("%-12s %s", kv.second, what);
    }
    absl::StrAppendFormat(&out, "  %-24s %s\n", name, value);
  }
  return out;
}

// One validated --set: the text to write to the knob's file.
struct Setting {
  const Knob* knob;
  std::string value;
};

// Parses and validates "KEY=VALUE"; errors name the key and the allowed range.
inline absl::StatusOr<Setting> parse_setting(absl::string_view text) {
  std::pair<std::string, std::string> kv = absl::StrSplit(text, absl::MaxSplits('=', 1));
  std::string keys;
  for (const auto& k : knobs()) absl::StrAppend(&keys, keys.empty() ? "" : ", ", k.key);
  if (text.find('=') == absl::string_view::npos || kv.first.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("--set '", text, "': expected KEY=VALUE with KEY one of ", keys));
  const Knob* k = find_knob(kv.first);
  if (k == nullptr)
    return absl::InvalidArgumentError(
        absl::StrCat("--set: unknown key '", kv.first, "' (known: ", keys, ")"));
  if (k->type == KnobType::kBool) {
    // parse_bool's absl::SimpleAtob (Abseil 20220623) lacks on/off.
    std::string v = absl::AsciiStrToLower(absl::StripAsciiWhitespace(kv.second));
    if (v == "on" || v == "off") return Setting{k, v == "on" ? "true" : "false"};
    auto b = tierkit::detail::parse_bool(kv.second, k->key);
    if (!b.ok()) return b.status();
    return Setting{k, *b ? "true" : "false"};
  }
  auto v = tierkit::detail::parse_int(kv.second, k->key, k->lo, k->hi);
  if (!v.ok()) return v.status();
  return Setting{k, absl::StrCat(*v)};
}

// Why `s` could not be written under `root` (errno `err`), in plain words.
inline absl::Status write_error(const std::string& root, const Setting& s, int err) {
  return absl::Status(err == EACCES || err == EPERM ? absl::StatusCode::kPermissionDenied
                                                    : absl::StatusCode::kFailedPrecondition,
                      absl::StrCat("cannot write ", s.value, " to ", under_root(root, s.knob->path),
                                   ": ", explain(root, s.knob, err)));
}

// check_writable()
//
// Opens the knob's file for writing without truncating or writing it: what
// --apply asks of every setting before it writes any, so that a missing
// debugfs or a missing permission leaves every knob as it was. The kernel
// may still reject a value at write time (EINVAL); apply_setting says so.
inline absl::Status check_writable(const std::string& root, const Setting& s) {
  int fd = ::open(under_root(root, s.knob->path).c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return write_error(root, s, errno);
  ::close(fd);
  return absl::OkStatus();
}

// Writes `s` under `root`; OK or an error saying why in plain words.
inline absl::Status apply_setting(const std::string& root, const Setting& s) {
  int fd = ::open(under_root(root, s.knob->path).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  int err = fd < 0 ? errno : 0;
  if (fd >= 0) {
    std::string line = s.value + "\n";
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
      err = errno == 0 ? EIO : errno;
    if (::close(fd) != 0 && err == 0) err = errno;
  }
  return err == 0 ? absl::OkStatus() : write_error(root, s, err);
}

}  // namespace tierctl
