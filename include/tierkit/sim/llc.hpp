// tierkit/sim/llc.hpp: a last-level-cache model (set-associative, LRU,
// write-allocate) that turns a program's data accesses (valgrind lackey sees
// every load and store, before any cache) into the stream that reaches
// memory: only misses pass. Layer 0 of the simulator: includes Abseil only.
//
// Spec syntax (tierkit-sim --llc): SIZE[,WAYS], e.g. "4M" or "4M,16"; lines
// are 64 bytes. SIZE / (64 * WAYS) sets, any count >= 1 (not only powers of
// two). Dirty write-backs are not modelled: a store miss counts as one
// memory access (the fill), as a load miss does.
#pragma once

#include <cstdint>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace tierkit::sim {

struct LlcConfig {
  std::uint64_t bytes = 4u << 20;  // capacity
  std::uint32_t ways = 16;         // associativity
  std::uint32_t line = 64;         // line size, bytes (a power of two)

  std::uint64_t sets() const { return bytes / (std::uint64_t{line} * ways); }
  absl::Status validate() const {
    if (line == 0 || (line & (line - 1)) != 0 || line > 4096)
      return absl::InvalidArgumentError(
          absl::StrCat("llc: line size ", line, " is not a power of two <= 4096"));
    if (ways == 0 || ways > 1024)
      return absl::InvalidArgumentError(absl::StrCat("llc: ways ", ways, " not in 1..1024"));
    if (bytes > (std::uint64_t{1} << 36))
      return absl::InvalidArgumentError("llc: capacity over 64 GiB");
    if (sets() == 0 || bytes % (std::uint64_t{line} * ways) != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "llc: capacity ", bytes, " is not a whole number of sets of ", ways, " x ", line, " B"));
    return absl::OkStatus();
  }
};

// Parses "4M", "4M,16", "512K,8", "4194304" (K, M, G = 2^10, 2^20, 2^30).
inline absl::StatusOr<LlcConfig> parse_llc_spec(absl::string_view spec) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--llc='", spec, "': ", why, " (expected SIZE[,WAYS], e.g. 4M or 4M,16)"));
  };
  std::vector<absl::string_view> parts = absl::StrSplit(spec, ',');
  if (parts.size() > 2) return bad("too many fields");
  absl::string_view size = absl::StripAsciiWhitespace(parts[0]);
  std::uint64_t mult = 1;
  if (!size.empty()) {
    char c = size.back();
    if (c == 'k' || c == 'K') mult = 1u << 10;
    if (c == 'm' || c == 'M') mult = 1u << 20;
    if (c == 'g' || c == 'G') mult = 1u << 30;
    if (mult != 1) size.remove_suffix(1);
  }
  std::uint64_t n = 0;
  if (size.empty() || !absl::SimpleAtoi(size, &n) || n == 0)
    return bad("size is not a positive byte count");
  // Checked before multiplying: n * mult could wrap past 2^64 to a valid size.
  if (n > (std::uint64_t{1} << 36) / mult) return bad("llc: capacity over 64 GiB");
  LlcConfig c;
  c.bytes = n * mult;
  if (parts.size() == 2) {
    std::uint32_t w = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(parts[1]), &w) || w == 0)
      return bad("ways is not a positive integer");
    c.ways = w;
  }
  if (absl::Status s = c.validate(); !s.ok()) return bad(s.message());
  return c;
}

// The cache. access() is O(ways); memory 16 bytes per line of capacity.
class LlcModel {
 public:
  // `c` must be valid (see LlcConfig::validate; parse_llc_spec checks it).
  explicit LlcModel(const LlcConfig& c)
      : ways_(c.ways), sets_(c.sets()), shift_(log2(c.line)), slots_(sets_ * ways_) {}

  // Accesses the line holding `addr`; true on a miss (the line is filled,
  // evicting the set's least recently used line).
  bool access(std::uint64_t addr) {
    const std::uint64_t tag = addr >> shift_;  // any value: an empty way has used == 0
    Slot* set = &slots_[((addr >> shift_) % sets_) * ways_];
    ++clock_;
    Slot* victim = set;
    for (std::uint32_t w = 0; w < ways_; ++w) {
      if (set[w].used != 0 && set[w].tag == tag) {
        set[w].used = clock_;
        ++hits_;
        return false;
      }
      if (set[w].used < victim->used) victim = &set[w];
    }
    victim->tag = tag;
    victim->used = clock_;
    ++misses_;
    return true;
  }
  std::uint32_t line_shift() const { return shift_; }
  std::uint64_t hits() const { return hits_; }
  std::uint64_t misses() const { return misses_; }

 private:
  struct Slot {
    std::uint64_t tag = 0, used = 0;
  };
  static std::uint32_t log2(std::uint32_t v) {
    std::uint32_t s = 0;
    while ((1u << s) < v) ++s;
    return s;
  }
  std::uint32_t ways_;
  std::uint64_t sets_;
  std::uint32_t shift_;
  std::vector<Slot> slots_;
  std::uint64_t clock_ = 0, hits_ = 0, misses_ = 0;
};

// Builds the model of a valid `c` into `out`; ResourceExhausted when its 16
// bytes per line cannot be allocated (a 64 GiB cache needs 16 GiB).
inline absl::Status make_llc_model(const LlcConfig& c, std::optional<LlcModel>& out) {
  if (absl::Status s = c.validate(); !s.ok()) return s;
  try {
    out.emplace(c);
  } catch (const std::bad_alloc&) {
    auto size = [](std::uint64_t b) {
      return b >= (1u << 30) ? absl::StrCat(b >> 30, " GiB") : absl::StrCat(b >> 20, " MiB");
    };
    return absl::ResourceExhaustedError(
        absl::StrCat("llc: a ", size(c.bytes), " cache model needs ", size(c.bytes / c.line * 16),
                     " of memory, which cannot be allocated (16 bytes per line)"));
  }
  return absl::OkStatus();
}

}  // namespace tierkit::sim
