// tierkit/sim/trace_file.hpp: loads a valgrind lackey trace (plain or gzip,
// from a file or stdin) into a compact page trace for replay. Needs zlib:
// link ZLIB::ZLIB (Debian: zlib1g-dev). Layer 1 of the simulator.
//
// Each data access (L/S/M) becomes one access to the 4 KiB page holding its
// address (two when it straddles a page boundary). Distinct pages are
// numbered 0..pages-1 in address order, so the address layout (what the
// kernel model scans in order) is kept while gaps are squeezed out; the order
// of first touch is kept too, for first-touch initial placement. Memory: 4
// bytes per access + about 16 bytes per distinct page while loading.
#pragma once

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tierkit/common.hpp"
#include "tierkit/sim/lackey.hpp"

namespace tierkit::sim {

struct Trace {
  std::string name;                        // file name, or "stdin"
  std::vector<std::uint32_t> accesses;     // page index per access
  std::vector<std::uint32_t> first_touch;  // page index -> rank of its first touch
  std::uint64_t pages = 0;                 // distinct pages (the footprint)
  std::uint64_t lines = 0;                 // lines read
  std::uint64_t loads = 0, stores = 0, modifies = 0;
  std::uint64_t instructions = 0, comments = 0, blank = 0;  // skipped lines
  std::uint64_t malformed = 0;                              // counted, never fatal
  std::uint64_t straddling = 0;                             // accesses that touched two pages
  std::uint64_t first_malformed_line = 0;                   // 1-based; 0 = none
  bool truncated = false;                                   // stopped at max_accesses

  std::string summary() const {
    return absl::StrCat(name, ": ", lines, " lines, ", loads, " loads, ", stores, " stores, ",
                        modifies, " modifies, ", accesses.size(), " page accesses over ", pages,
                        " pages (", pages * kPageSize / 1048576.0, " MiB); skipped ", instructions,
                        " I, ", comments, " ==, ", blank, " blank; ", malformed, " malformed",
                        first_malformed_line
                            ? absl::StrCat(" (first at line ", first_malformed_line, ")")
                            : std::string(),
                        truncated ? "; truncated at --max_trace_accesses" : "");
  }
};

// Reads a lackey trace from `path` ("-" = stdin); gzip is detected by zlib,
// plain text passes through. Stops after `max_accesses` page accesses (0 = no
// limit). `progress` (optional) is called every 2^20 lines with lines read.
// Errors: the file cannot be opened or read, or it holds no data access.
inline absl::StatusOr<Trace> read_lackey_trace(
    const std::string& path, std::uint64_t max_accesses = 0,
    const std::function<void(std::uint64_t)>& progress = nullptr) {
  gzFile f = nullptr;
  Trace t;
  if (path == "-") {
    int fd = ::dup(0);
    if (fd >= 0) f = ::gzdopen(fd, "rb");
    t.name = "stdin";
  } else {
    f = ::gzopen(path.c_str(), "rb");
    auto slash = path.find_last_of('/');
    t.name = slash == std::string::npos ? path : path.substr(slash + 1);
  }
  if (f == nullptr)
    return absl::NotFoundError(
        absl::StrCat("trace '", path, "': cannot open: ", std::strerror(errno)));
  ::gzbuffer(f, 1 << 18);

  absl::flat_hash_map<std::uint64_t, std::uint32_t> id_of;  // page number -> first-touch id
  std::vector<std::uint64_t> page_of_id;
  auto add = [&](std::uint64_t page) {
    auto [it, inserted] = id_of.try_emplace(page, static_cast<std::uint32_t>(page_of_id.size()));
    if (inserted) page_of_id.push_back(page);
    t.accesses.push_back(it->second);
  };

  char buf[512];
  bool ok = true;
  while (!(max_accesses && t.accesses.size() >= max_accesses)) {
    if (::gzgets(f, buf, sizeof buf) == nullptr) {
      int err = 0;
      const char* msg = ::gzerror(f, &err);
      if (err != Z_OK && err != Z_BUF_ERROR) {
        std::string m = msg ? msg : "read error";
        ::gzclose(f);
        return absl::DataLossError(
            absl::StrCat("trace '", path, "': ", m, " after ", t.lines, " lines"));
      }
      break;
    }
    ++t.lines;
    std::size_t len = std::strlen(buf);
    bool whole = len > 0 && buf[len - 1] == '\n';
    if (!whole && len == sizeof buf - 1) {
      // An overlong line: count it and skip to its end.
      ++t.malformed;
      if (!t.first_malformed_line) t.first_malformed_line = t.lines;
      int c;
      while ((c = gzgetc(f)) != -1 && c != '\n') {
      }
      continue;
    }
    LackeyRecord r = parse_lackey_line(absl::string_view(buf, len));
    switch (r.kind) {
      case LackeyRecord::kLoad:
        ++t.loads;
        break;
      case LackeyRecord::kStore:
        ++t.stores;
        break;
      case LackeyRecord::kModify:
        ++t.modifies;
        break;
      case LackeyRecord::kInstruction:
        ++t.instructions;
        break;
      case LackeyRecord::kComment:
        ++t.comments;
        break;
      case LackeyRecord::kBlank:
        ++t.blank;
        break;
      case LackeyRecord::kMalformed:
        ++t.malformed;
        if (!t.first_malformed_line) t.first_malformed_line = t.lines;
        break;
    }
    if (r.is_data()) {
      std::uint64_t first = r.addr >> 12;
      std::uint64_t last = (r.addr + (r.size - 1)) >> 12;
      if (r.addr + (r.size - 1) < r.addr) last = first;  // wraps at 2^64: keep one page
      add(first);
      if (last != first) {
        ++t.straddling;
        add(last);
      }
      if (page_of_id.size() > (1ull << 32) - 2) {
        ok = false;
        break;
      }
    }
    if (progress && (t.lines & ((1u << 20) - 1)) == 0) progress(t.lines);
  }
  if (max_accesses && t.accesses.size() >= max_accesses) t.truncated = true;
  ::gzclose(f);
  if (!ok) return absl::ResourceExhaustedError(absl::StrCat("trace '", path, "': over 2^32 pages"));
  if (t.accesses.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("trace '", path, "' has no data accesses (L/S/M lines): ", t.summary(),
                     "; record one with valgrind --tool=lackey --trace-mem=yes"));

  // Renumber pages in address order; keep the first-touch rank of each.
  t.pages = page_of_id.size();
  std::vector<std::uint32_t> order(t.pages);
  for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::uint32_t a, std::uint32_t b) { return page_of_id[a] < page_of_id[b]; });
  std::vector<std::uint32_t> index_of_id(t.pages);
  t.first_touch.resize(t.pages);
  for (std::uint32_t idx = 0; idx < order.size(); ++idx) {
    index_of_id[order[idx]] = idx;
    t.first_touch[idx] = order[idx];
  }
  for (auto& a : t.accesses) a = index_of_id[a];
  return t;
}

}  // namespace tierkit::sim
