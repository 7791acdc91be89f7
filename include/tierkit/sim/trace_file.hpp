// tierkit/sim/trace_file.hpp: loads a valgrind lackey trace (plain or gzip,
// from a file or stdin) into a compact page trace for replay. Needs zlib:
// link ZLIB::ZLIB (Debian: zlib1g-dev). Layer 1 of the simulator.
//
// Each data access (L/S/M) becomes one access to each 4 KiB page it covers
// (two when it straddles a page boundary), with a write bit (S and M
// are writes) for the hotness-source models that see only writes. Distinct pages are
// numbered 0..pages-1 in address order, so the address layout (what the
// kernel model scans in order) is kept while gaps are squeezed out; the order
// of first touch is kept too, for first-touch initial placement. Memory: 4
// bytes per access + about 16 bytes per distinct page while loading.
// With an LLC model (sim/llc.hpp) only line misses become page accesses.
// filter_lackey_trace writes such a filtered stream back in lackey format.
#pragma once

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
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
#include "tierkit/sim/llc.hpp"
#include "tierkit/sim/output_file.hpp"

namespace tierkit::sim {

struct Trace {
  std::string name;                        // file name, or "stdin"
  std::vector<std::uint32_t> accesses;     // page index per access
  std::vector<std::uint64_t> write_bits;   // bit i set: access i was a store (S) or modify (M)
  std::vector<std::uint32_t> first_touch;  // page index -> rank of its first touch
  std::uint64_t pages = 0;                 // distinct pages (the footprint)
  std::uint64_t lines = 0;                 // lines read
  std::uint64_t loads = 0, stores = 0, modifies = 0;
  std::uint64_t instructions = 0, comments = 0, blank = 0;  // skipped lines
  std::uint64_t malformed = 0;                              // counted, never fatal
  std::uint64_t straddling = 0;                             // accesses that touched 2+ pages
  std::uint64_t first_malformed_line = 0;                   // 1-based; 0 = none
  bool truncated = false;                                   // stopped at max_accesses
  std::uint64_t llc_hits = 0, llc_misses = 0;               // with an LLC model: line accesses

  std::string summary() const {
    return absl::StrCat(
        name, ": ", lines, " lines, ", loads, " loads, ", stores, " stores, ", modifies,
        " modifies, ", accesses.size(), " page accesses over ", pages, " pages (",
        pages * kPageSize / 1048576.0, " MiB, ", writes(), " of them writes); skipped ",
        instructions, " I, ", comments, " ==, ", blank, " blank; ", malformed, " malformed",
        first_malformed_line ? absl::StrCat(" (first at line ", first_malformed_line, ")")
                             : std::string(),
        llc_hits + llc_misses ? absl::StrCat("; LLC model: ", llc_misses, " misses of ",
                                             llc_hits + llc_misses, " line accesses")
                              : std::string(),
        truncated ? "; truncated at --max_trace_accesses" : "");
  }
  // Whether access `i` was a write (a store or a modify: what soft-dirty
  // and userfaultfd write-protect see). O(1).
  bool is_write(std::size_t i) const {
    return i / 64 < write_bits.size() && ((write_bits[i / 64] >> (i % 64)) & 1) != 0;
  }
  // Page accesses that were writes. O(accesses / 64).
  std::uint64_t writes() const {
    std::uint64_t n = 0;
    for (std::uint64_t w : write_bits) n += static_cast<std::uint64_t>(std::popcount(w));
    return n;
  }
};

namespace detail {

// Opens `path` ("-" = stdin) for reading, gzip or plain; sets t.name.
inline absl::StatusOr<gzFile> open_trace(const std::string& path, Trace& t) {
  gzFile f = nullptr;
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
  return f;
}

inline void count_record(const LackeyRecord& r, Trace& t) {
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
}

// Reads every line of `f`, counting into `t` and calling on_data(record) for
// each data access, until EOF or until on_data returns false. Closes `f`.
template <class OnData>
absl::Status scan_lackey(gzFile f, const std::string& path, Trace& t,
                         const std::function<void(std::uint64_t)>& progress, OnData on_data) {
  // gzgets ends what it read with a NUL, but a line may hold NULs of its
  // own: with every byte past the last read non-NUL, its NUL is the last.
  char buf[512];
  std::memset(buf, 1, sizeof buf);
  std::size_t used = 0;  // bytes of buf the last read wrote, its NUL included
  for (;;) {
    std::memset(buf, 1, used);
    if (::gzgets(f, buf, sizeof buf) == nullptr) {
      int err = 0;
      const char* msg = ::gzerror(f, &err);
      if (err == Z_OK) break;  // the end of the file
      // Z_BUF_ERROR: the input ended inside a gzip member.
      const bool corrupt = err == Z_BUF_ERROR || err == Z_DATA_ERROR;
      std::string m = err == Z_BUF_ERROR ? "the gzip stream ends early" : msg ? msg : "read error";
      ::gzclose(f);
      return absl::DataLossError(absl::StrCat("trace '", path, "': ", m, " after ", t.lines,
                                              " lines", corrupt ? ": truncated or corrupt" : ""));
    }
    ++t.lines;
    std::size_t len = std::strlen(buf);
    bool nul = false;  // the line holds a NUL byte
    if (len == 0 || buf[len - 1] != '\n') {
      // The last line, an overlong one, or one with a NUL: find gzgets' NUL.
      std::size_t end = sizeof buf - 1;
      while (buf[end] != '\0') --end;
      nul = end != len;
      len = end;
    }
    used = len + 1;
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
    if (nul) {  // not lackey text (a binary or corrupt file)
      ++t.malformed;
      if (!t.first_malformed_line) t.first_malformed_line = t.lines;
      continue;
    }
    LackeyRecord r = parse_lackey_line(absl::string_view(buf, len));
    count_record(r, t);
    if (r.is_data() && !on_data(r)) break;
    if (progress && (t.lines & ((1u << 20) - 1)) == 0) progress(t.lines);
  }
  ::gzclose(f);
  return absl::OkStatus();
}

inline absl::Status no_data_accesses(const std::string& path, const Trace& t) {
  return absl::InvalidArgumentError(
      absl::StrCat("trace '", path, "' has no data accesses (L/S/M lines): ", t.summary(),
                   "; record one with valgrind --tool=lackey --trace-mem=yes"));
}

// Last byte of an access, clamped at 2^64 - 1.
inline std::uint64_t last_byte(const LackeyRecord& r) {
  std::uint64_t end = r.addr + (r.size - 1);
  return end < r.addr ? ~std::uint64_t{0} : end;
}

}  // namespace detail

// Reads a lackey trace from `path` ("-" = stdin); gzip is detected by zlib,
// plain text passes through. Stops after `max_accesses` page accesses (0 = no
// limit). `progress` (optional) is called every 2^20 lines with lines read.
// With `llc`, every data access goes through that cache model first and only
// its line misses become page accesses (one per missed line): raw lackey
// output then gives the stream that reaches memory.
// Errors: the file cannot be opened or read, its gzip stream ends early or is
// corrupt (DataLoss), or it holds no data access.
inline absl::StatusOr<Trace> read_lackey_trace(
    const std::string& path, std::uint64_t max_accesses = 0,
    const std::function<void(std::uint64_t)>& progress = nullptr,
    const std::optional<LlcConfig>& llc = std::nullopt) {
  Trace t;
  auto opened = detail::open_trace(path, t);
  if (!opened.ok()) return opened.status();
  std::optional<LlcModel> cache;
  if (llc) {
    if (absl::Status s = make_llc_model(*llc, cache); !s.ok()) {
      ::gzclose(*opened);
      return s;
    }
  }

  absl::flat_hash_map<std::uint64_t, std::uint32_t> id_of;  // page number -> first-touch id
  std::vector<std::uint64_t> page_of_id;
  bool write = false;  // the record being added is a store or a modify
  auto add = [&](std::uint64_t page) {
    if (max_accesses && t.accesses.size() >= max_accesses) return;  // the rest of a wide access
    auto [it, inserted] = id_of.try_emplace(page, static_cast<std::uint32_t>(page_of_id.size()));
    if (inserted) page_of_id.push_back(page);
    const std::size_t i = t.accesses.size();
    if (i % 64 == 0) t.write_bits.push_back(0);
    if (write) t.write_bits.back() |= std::uint64_t{1} << (i % 64);
    t.accesses.push_back(it->second);
  };
  bool ok = true;
  auto on_data = [&](const LackeyRecord& r) {
    write = r.kind == LackeyRecord::kStore || r.kind == LackeyRecord::kModify;
    const std::uint64_t end = detail::last_byte(r);
    if (cache) {
      // Every line the access covers; stops at the last (it may be 2^64 - 1).
      const std::uint32_t sh = cache->line_shift();
      for (std::uint64_t l = r.addr >> sh;; ++l) {
        if (cache->access(l << sh)) add((l << sh) >> 12);
        if (l == end >> sh) break;
      }
    } else {
      // Every page the access covers (a size up to LackeyRecord::kMaxSize
      // spans up to 17); end >> 12 < 2^52, so the loop ends.
      for (std::uint64_t p = r.addr >> 12; p <= end >> 12; ++p) add(p);
      if (end >> 12 != r.addr >> 12) ++t.straddling;
    }
    if (page_of_id.size() > (1ull << 32) - 2) ok = false;
    return ok && !(max_accesses && t.accesses.size() >= max_accesses);
  };
  if (absl::Status s = detail::scan_lackey(*opened, path, t, progress, on_data); !s.ok()) return s;
  if (cache) {
    t.llc_hits = cache->hits();
    t.llc_misses = cache->misses();
  }
  if (max_accesses && t.accesses.size() >= max_accesses) t.truncated = true;
  if (!ok) return absl::ResourceExhaustedError(absl::StrCat("trace '", path, "': over 2^32 pages"));
  if (t.accesses.empty()) return detail::no_data_accesses(path, t);

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

namespace tierkit::sim {

namespace detail {

// Where filter_lackey_trace writes: stdout, or a file replaced only once the
// filtered trace is complete.
struct TraceSink {
  std::optional<OutputFile> file;
  gzFile gz = nullptr;
};

// Refuses to write the input over itself (it would be lost), then opens
// `out`; gzip when it ends in ".gz".
inline absl::StatusOr<TraceSink> open_sink(const std::string& in, const std::string& out) {
  struct stat si, so;
  if (out != "-" && ::stat(out.c_str(), &so) == 0 &&
      (in == "-" ? ::fstat(0, &si) : ::stat(in.c_str(), &si)) == 0 && si.st_dev == so.st_dev &&
      si.st_ino == so.st_ino)
    return absl::InvalidArgumentError(absl::StrCat(
        "output '", out, "' is the input trace: writing it would destroy the trace being read"));
  TraceSink sink;
  if (out != "-") {
    auto f = OutputFile::create(out);
    if (!f.ok()) return f.status();
    sink.file.emplace(*std::move(f));
  }
  const bool gz = out.size() > 3 && out.compare(out.size() - 3, 3, ".gz") == 0;
  const int fd = ::dup(sink.file ? sink.file->fd() : 1);
  if (fd >= 0) sink.gz = ::gzdopen(fd, gz ? "wb9" : "wbT");
  if (sink.gz == nullptr) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("output '", out, "': cannot open"));
  }
  return sink;
}

}  // namespace detail

// Streams the lackey trace `in` ("-" = stdin) through the cache model `llc`
// and writes each line miss to `out` ("-" = stdout) as a lackey record of
// the line (" L|S|M <line address>,<line size>"), gzip-compressed when `out`
// ends in ".gz". The output replays without --llc. Returns the input's counts
// (llc_hits, llc_misses set; no accesses kept). A file `out` is replaced only
// on success. Errors: as read_lackey_trace's, and `out` is the input or
// cannot be written.
inline absl::StatusOr<Trace> filter_lackey_trace(
    const std::string& in, const std::string& out, const LlcConfig& llc,
    const std::function<void(std::uint64_t)>& progress = nullptr) {
  std::optional<LlcModel> model;
  if (absl::Status s = make_llc_model(llc, model); !s.ok()) return s;
  LlcModel& cache = *model;
  Trace t;
  auto opened = detail::open_trace(in, t);
  if (!opened.ok()) return opened.status();
  auto sink = detail::open_sink(in, out);
  if (!sink.ok()) {
    ::gzclose(*opened);
    return sink.status();
  }
  const std::uint32_t sh = cache.line_shift();
  bool write_ok = true;
  auto on_data = [&](const LackeyRecord& r) {
    static constexpr char kKind[] = {'L', 'S', 'M'};
    const std::uint64_t last = detail::last_byte(r) >> sh;  // may be 2^64 - 1
    for (std::uint64_t l = r.addr >> sh;; ++l) {
      if (cache.access(l << sh))
        write_ok &= ::gzprintf(sink->gz, " %c %llx,%u\n", kKind[r.kind],
                               static_cast<unsigned long long>(l << sh), llc.line) > 0;
      if (l == last) break;
    }
    return write_ok;
  };
  absl::Status s = detail::scan_lackey(*opened, in, t, progress, on_data);
  const bool close_ok = ::gzclose(sink->gz) == Z_OK;
  if (!s.ok()) return s;
  if (!write_ok || !close_ok)
    return absl::DataLossError(absl::StrCat("output '", out, "': write failed"));
  if (t.loads + t.stores + t.modifies == 0) return detail::no_data_accesses(in, t);
  if (sink->file) {
    if (absl::Status c = sink->file->commit(); !c.ok()) return c;
  }
  t.llc_hits = cache.hits();
  t.llc_misses = cache.misses();
  return t;
}

}  // namespace tierkit::sim
