// Fuzzes the TIERKIT_* environment (EngineConfig::from_env) and the strict
// number parsers behind it (detail::parse_*). Input: newline-separated
// values, line i for knob i of tierkit::kKnobs (empty = unset). Invariants: an
// accepted config validates and builds its policy and an engine; every parser
// result is in range and round-trips; errors name what was parsed.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "fuzz_check.hpp"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/detail/parse.hpp"
#include "tierkit/engine.hpp"

namespace {

const char* var(std::size_t i) { return tierkit::kKnobs[i].env; }
constexpr std::size_t kVars = std::size(tierkit::kKnobs);

void check_parsers(const std::string& v) {
  using namespace tierkit::detail;
  if (auto d = parse_double(v, "x"); d.ok()) {
    FUZZ_CHECK(std::isfinite(*d), "'%s'", v.c_str());
    auto again = parse_double(absl::StrCat(*d), "x");
    FUZZ_CHECK(again.ok(), "'%s' -> %g does not reparse", v.c_str(), *d);
  } else {
    FUZZ_CHECK(absl::StrContains(d.status().message(), "x:"), "'%s'", v.c_str());
  }
  if (auto d = parse_double(v, "x", -5, 5); d.ok())
    FUZZ_CHECK(*d >= -5 && *d <= 5, "'%s'", v.c_str());
  if (auto i = parse_int(v, "n", -1000, 1000); i.ok()) {
    FUZZ_CHECK(*i >= -1000 && *i <= 1000, "'%s'", v.c_str());
    FUZZ_CHECK(*parse_int(absl::StrCat(*i), "n") == *i, "'%s'", v.c_str());
  }
  if (auto b = parse_bytes(v, "b"); b.ok()) {
    FUZZ_CHECK(*parse_bytes(absl::StrCat(*b), "b") == *b, "'%s'", v.c_str());
  } else {
    FUZZ_CHECK(absl::StrContains(b.status().message(), "b:"), "'%s'", v.c_str());
  }
  (void)parse_bool(v, "flag");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  std::string in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines = absl::StrSplit(in, '\n');
  for (std::size_t i = 0; i < kVars; ++i) {
    std::string v = i < lines.size() ? lines[i] : "";
    v = v.substr(0, v.find('\0'));  // the environment cannot hold NUL
    if (v.empty())
      unsetenv(var(i));
    else
      setenv(var(i), v.c_str(), 1);
  }
  auto c = tierkit::EngineConfig::from_env();
  if (c.ok()) {
    FUZZ_CHECK(c->validate().ok(), "%s", std::string(c->validate().message()).c_str());
    FUZZ_CHECK(tierkit::EngineConfig::make_policy(*c).ok(), "policy '%s'", c->policy.c_str());
    FUZZ_CHECK(c->epoch_ms >= 1 && c->sampling >= 1, "epoch %lld",
               static_cast<long long>(c->epoch_ms));
    tierkit::SimulatedBackend sim({{0, 1 << 20}, {1, 1 << 20}});
    c->slow_nodes = {1};
    auto e = tierkit::Engine::create(*c, &sim);
    FUZZ_CHECK(e.ok(), "%s", std::string(e.status().message()).c_str());
  } else {
    // The error names a TIERKIT_ variable or the field validate() rejected.
    std::string m(c.status().message());
    FUZZ_CHECK(absl::StrContains(m, "TIERKIT_") || absl::StrContains(m, "watermark") ||
                   absl::StrContains(m, "threshold") || absl::StrContains(m, "kernel model") ||
                   absl::StrContains(m, "epoch_ms") || absl::StrContains(m, "sampling"),
               "unclear error: %s", m.c_str());
  }
  for (const auto& line : lines) check_parsers(line.substr(0, 256));
  for (std::size_t i = 0; i < kVars; ++i) unsetenv(var(i));
  return 0;
}
