// tierkit/detail/parse.hpp: strict parsing of numbers and environment
// variables into absl::StatusOr, with errors that name what was being parsed.
// Layer 0. Used by the TIERKIT_* configuration, the tier override and tierctl.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tierkit::detail {

// Parses a finite double in [lo, hi]; `what` names the value in the error.
inline absl::StatusOr<double> parse_double(absl::string_view text, absl::string_view what,
                                           double lo = -std::numeric_limits<double>::max(),
                                           double hi = std::numeric_limits<double>::max()) {
  double v = 0;
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t.empty() || !absl::SimpleAtod(t, &v) || !std::isfinite(v))
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is not a finite number"));
  if (v < lo || v > hi)
    return absl::OutOfRangeError(
        absl::StrCat(what, ": ", v, " is outside the allowed range [", lo, ", ", hi, "]"));
  return v;
}

// Parses a base-10 integer in [lo, hi]; `what` names the value in the error.
inline absl::StatusOr<std::int64_t> parse_int(
    absl::string_view text, absl::string_view what,
    std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
    std::int64_t hi = std::numeric_limits<std::int64_t>::max()) {
  std::int64_t v = 0;
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t.empty() || !absl::SimpleAtoi(t, &v))
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is not an integer"));
  if (v < lo || v > hi)
    return absl::OutOfRangeError(
        absl::StrCat(what, ": ", v, " is outside the allowed range [", lo, ", ", hi, "]"));
  return v;
}

// Parses true/false/1/0/yes/no/on/off (any case).
inline absl::StatusOr<bool> parse_bool(absl::string_view text, absl::string_view what) {
  bool v = false;
  absl::string_view t = absl::StripAsciiWhitespace(text);
  // absl::SimpleAtob (Abseil 20220623) knows true/t/yes/y/1 and false/f/no/n/0, not on/off.
  if (absl::EqualsIgnoreCase(t, "on")) return true;
  if (absl::EqualsIgnoreCase(t, "off")) return false;
  if (!absl::SimpleAtob(t, &v))
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": '", text, "' is not a boolean (use true/false, 1/0, yes/no, on/off)"));
  return v;
}

// Parses a byte size with an optional binary suffix: 4096, 64K, 512M, 2G, 1T
// (KiB/MiB/GiB/TiB spellings too). Errors name `what`.
inline absl::StatusOr<std::uint64_t> parse_bytes(absl::string_view text, absl::string_view what) {
  std::string t(absl::StripAsciiWhitespace(text));
  std::uint64_t mult = 1;
  auto strip = [&](absl::string_view suffix, std::uint64_t m) {
    if (t.size() > suffix.size() &&
        absl::EqualsIgnoreCase(absl::string_view(t).substr(t.size() - suffix.size()), suffix)) {
      t.resize(t.size() - suffix.size());
      mult = m;
      return true;
    }
    return false;
  };
  strip("KiB", 1ull << 10) || strip("MiB", 1ull << 20) || strip("GiB", 1ull << 30) ||
      strip("TiB", 1ull << 40) || strip("K", 1ull << 10) || strip("M", 1ull << 20) ||
      strip("G", 1ull << 30) || strip("T", 1ull << 40) || strip("B", 1);
  std::uint64_t v = 0;
  if (t.empty() || !absl::SimpleAtoi(t, &v))
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", text, "' is not a byte size (examples: 4096, 64K, 512M, 2G)"));
  if (v > std::numeric_limits<std::uint64_t>::max() / mult)
    return absl::OutOfRangeError(absl::StrCat(what, ": '", text, "' overflows 64 bits"));
  return v * mult;
}

// The value of environment variable `name`, or nullopt when unset. Empty
// strings count as unset so `TIERKIT_X= prog` clears a setting.
inline std::optional<std::string> getenv_string(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

}  // namespace tierkit::detail
