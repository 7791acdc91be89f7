// tierkit/sim/lackey.hpp: a parser for one line of valgrind lackey output
// (`valgrind --tool=lackey --trace-mem=yes`). Pure function, no allocation,
// total on any input (fuzzable): every byte string is either a record or a
// counted reason. Layer 0 of the simulator: includes Abseil only.
//
//   I  04010173,3        instruction fetch          -> kInstruction (skipped)
//    L 04222cac,8        load                       -> kLoad
//    S 7ff000398,8       store                      -> kStore
//    M 0421a5c8,4        modify (load + store)      -> kModify
//   ==12345== ...        valgrind's own messages    -> kComment (skipped)
//   (blank)                                         -> kBlank (skipped)
//   anything else                                   -> kMalformed
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace tierkit::sim {

struct LackeyRecord {
  enum Kind : std::uint8_t {
    kLoad,
    kStore,
    kModify,
    kInstruction,
    kComment,
    kBlank,
    kMalformed,
  } kind = kMalformed;
  std::uint64_t addr = 0;
  std::uint32_t size = 0;  // bytes, 1 .. kMaxSize

  static constexpr std::uint32_t kMaxSize = 1u << 16;
  // A data access (L, S or M) that the simulator replays.
  bool is_data() const { return kind == kLoad || kind == kStore || kind == kModify; }
};

namespace detail {
inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
inline int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace detail

// Parses one line (with or without its trailing newline). Addresses are hex
// without 0x (an optional 0x is accepted), at most 16 digits; sizes decimal,
// 1 .. LackeyRecord::kMaxSize. Leading/trailing whitespace is ignored.
// O(line length); never reads outside `line`.
inline LackeyRecord parse_lackey_line(absl::string_view line) {
  LackeyRecord r;
  std::size_t i = 0, n = line.size();
  while (i < n && detail::is_space(line[i])) ++i;
  if (i == n) {
    r.kind = LackeyRecord::kBlank;
    return r;
  }
  if (line[i] == '=' && i + 1 < n && line[i + 1] == '=') {
    r.kind = LackeyRecord::kComment;
    return r;
  }
  LackeyRecord::Kind kind;
  switch (line[i]) {
    case 'I':
      kind = LackeyRecord::kInstruction;
      break;
    case 'L':
      kind = LackeyRecord::kLoad;
      break;
    case 'S':
      kind = LackeyRecord::kStore;
      break;
    case 'M':
      kind = LackeyRecord::kModify;
      break;
    default:
      return r;  // kMalformed
  }
  ++i;
  // At least one space between the letter and the address.
  if (i == n || !detail::is_space(line[i])) return r;
  while (i < n && detail::is_space(line[i])) ++i;
  if (i + 1 < n && line[i] == '0' && (line[i + 1] == 'x' || line[i + 1] == 'X')) i += 2;
  std::uint64_t addr = 0;
  int digits = 0;
  for (; i < n; ++i) {
    int d = detail::hex_digit(line[i]);
    if (d < 0) break;
    if (++digits > 16) return r;
    addr = (addr << 4) | static_cast<std::uint64_t>(d);
  }
  if (digits == 0 || i == n || line[i] != ',') return r;
  ++i;
  std::uint64_t size = 0;
  int sdigits = 0;
  for (; i < n && line[i] >= '0' && line[i] <= '9'; ++i) {
    size = size * 10 + static_cast<std::uint64_t>(line[i] - '0');
    if (++sdigits > 7) return r;
  }
  while (i < n && detail::is_space(line[i])) ++i;
  if (sdigits == 0 || i != n || size == 0 || size > LackeyRecord::kMaxSize) return r;
  r.kind = kind;
  r.addr = addr;
  r.size = static_cast<std::uint32_t>(size);
  return r;
}

}  // namespace tierkit::sim
