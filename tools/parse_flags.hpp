// tools/parse_flags.hpp: absl::ParseCommandLine with the tools' exit codes.
// absl exits 1 on a bad flag value ("Illegal value 'maybe' specified for
// flag 'json'") and after --help; the tools say 1 is "the operation
// failed" and 2 "bad usage", so a flag error exits 2 and a help request 0.
#pragma once

#include <atomic>
#include <cstdlib>
#include <vector>

#include "absl/flags/parse.h"

namespace tools {

namespace detail {
// The status an exit() during parsing ends with; -1 when not parsing.
inline std::atomic<int>& parsing_exit() {
  static std::atomic<int> code{-1};
  return code;
}
}  // namespace detail

// parse_flags()
//
// absl::ParseCommandLine(argc, argv), but an exit() inside it (absl's way
// of ending on a bad flag or after printing help) exits with 2, or with 0
// when `help_requested`. Returns the positional arguments, argv[0] first.
// NOTE: registers an atexit handler once per process.
inline std::vector<char*> parse_flags(int argc, char** argv, bool help_requested = false) {
  static const bool registered = [] {
    return std::atexit([] {
             if (int code = detail::parsing_exit().load(); code >= 0) std::_Exit(code);
           }) == 0;
  }();
  (void)registered;
  detail::parsing_exit() = help_requested ? 0 : 2;
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  detail::parsing_exit() = -1;
  return rest;
}

}  // namespace tools
