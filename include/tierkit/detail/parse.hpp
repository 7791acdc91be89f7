// tierkit/detail/parse.hpp: strict parsing of numbers and environment
// variables into absl::StatusOr, with errors that name what was being parsed.
// Layer 0. Used by the TIERKIT_* configuration, the policy specs
// (parse_knobs), the tier override and tierctl.
#pragma once

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tierkit::detail {

// The shortest text that reads back as `v` (StrCat keeps 6 digits: 3600001
// would print as 3.6e+06, the bound it is beyond).
inline std::string format_double(double v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// Whether `t`, read as `v`, is a nonzero number too small for a double:
// SimpleAtod rounds 1e-400 to 0 and says nothing.
inline bool underflows(absl::string_view t, double v) {
  return v == 0 &&
         t.substr(0, t.find_first_of("eE")).find_first_of("123456789") != absl::string_view::npos;
}

// Parses a finite double in [lo, hi]; `what` names the value in the error.
inline absl::StatusOr<double> parse_double(absl::string_view text, absl::string_view what,
                                           double lo = -std::numeric_limits<double>::max(),
                                           double hi = std::numeric_limits<double>::max()) {
  double v = 0;
  absl::string_view t = absl::StripAsciiWhitespace(text);
  // SimpleAtod also reads hex ("0x10" = 16), which parse_int and parse_bytes refuse.
  if (t.find_first_of("xX") != absl::string_view::npos)
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is not a decimal number"));
  if (t.empty() || !absl::SimpleAtod(t, &v) || !std::isfinite(v))
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is not a finite number"));
  if (underflows(t, v))
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", t, " is too small to represent (underflows to 0)"));
  if (v < lo || v > hi)
    return absl::OutOfRangeError(absl::StrCat(what, ": ", format_double(v),
                                              " is outside the allowed range [", format_double(lo),
                                              ", ", format_double(hi), "]"));
  return v;
}

// Parses a base-10 integer in [lo, hi]; `what` names the value in the error.
inline absl::StatusOr<std::int64_t> parse_int(
    absl::string_view text, absl::string_view what,
    std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
    std::int64_t hi = std::numeric_limits<std::int64_t>::max()) {
  std::int64_t v = 0;
  const absl::string_view t = absl::StripAsciiWhitespace(text);
  const absl::string_view digits = t.substr(!t.empty() && (t[0] == '-' || t[0] == '+'));
  if (digits.empty() || digits.find_first_not_of("0123456789") != absl::string_view::npos)
    return absl::InvalidArgumentError(absl::StrCat(what, ": '", text, "' is not an integer"));
  // A sign and digits: SimpleAtoi fails only past 64 bits, beyond any range.
  if (!absl::SimpleAtoi(t, &v) || v < lo || v > hi)
    return absl::OutOfRangeError(
        absl::StrCat(what, ": ", t, " is outside the allowed range [", lo, ", ", hi, "]"));
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
  const absl::string_view digits = absl::StripPrefix(absl::StripAsciiWhitespace(t), "+");
  if (!digits.empty() && digits.find_first_not_of("0123456789") == absl::string_view::npos &&
      !absl::SimpleAtoi(t, &v))  // all digits, but more than 64 bits of them
    return absl::OutOfRangeError(absl::StrCat(what, ": '", text, "' overflows 64 bits"));
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

// One knob of an options struct S in a "name:key=V/key=V" spec: the double
// or the uint32 member it sets (the other is null) and its allowed range.
template <class S>
struct SpecKnob {
  const char* key;
  double S::*d;
  std::uint32_t S::*u;
  double lo, hi;
};

// The error for a knob given twice in `spec`: either value may have been
// meant, so neither silently wins.
inline absl::Status knob_given_twice(absl::string_view spec, absl::string_view family,
                                     absl::string_view key) {
  return absl::InvalidArgumentError(
      absl::StrCat("policy '", spec, "': ", family, " knob '", key, "' is given twice"));
}

// Sets `out`'s knobs from `text` ("key=V" separated by ',' or '/'); `spec`
// is the whole spec and `family` its name, for errors: an unknown key lists
// the known ones (from `knobs`, so a new knob cannot be left out), and a bad
// value names "family:key"; a key given twice is an error.
template <class S, std::size_t N>
absl::Status parse_knobs(absl::string_view text, const SpecKnob<S> (&knobs)[N],
                         absl::string_view spec, absl::string_view family, S& out) {
  bool seen[N] = {};
  for (absl::string_view part : absl::StrSplit(text, absl::ByAnyChar(",/"), absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    const SpecKnob<S>* k = nullptr;
    for (const SpecKnob<S>& c : knobs)
      if (kv.first == c.key) k = &c;
    if (k == nullptr) {
      std::string known;
      for (const SpecKnob<S>& c : knobs) absl::StrAppend(&known, known.empty() ? "" : ", ", c.key);
      return absl::InvalidArgumentError(absl::StrCat(
          "policy '", spec, "': unknown ", family, " knob '", kv.first, "' (known: ", known, ")"));
    }
    if (std::exchange(seen[k - knobs], true)) return knob_given_twice(spec, family, kv.first);
    auto v = parse_double(kv.second, absl::StrCat(family, ":", kv.first), k->lo, k->hi);
    if (!v.ok()) return v.status();
    if (k->u != nullptr && *v != std::floor(*v))
      return absl::InvalidArgumentError(
          absl::StrCat(family, ":", kv.first, ": '", kv.second, "' is not a whole number"));
    if (k->d != nullptr)
      out.*(k->d) = *v;
    else
      out.*(k->u) = static_cast<std::uint32_t>(*v);
  }
  return absl::OkStatus();
}

}  // namespace tierkit::detail
