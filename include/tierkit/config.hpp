// tierkit/config.hpp: EngineConfig, everything the engine can be told, and
// kKnobs, the one table of its knobs: field, TIERKIT_* variable, range and
// unit. from_env(), validate(), describe(), tierctl, the docs and the tests
// all read that table, so a knob added there is parsed, checked, shown and
// tested everywhere. Layer 5 (below engine.hpp): includes policy.hpp,
// topology.hpp, rate_limiter.hpp and detail/parse.hpp.
//
// The environment contract. Engine::create() applies the TIERKIT_*
// variables on top of the EngineConfig the program built, so every program
// that uses tierkit can be steered from its environment (as memkind's
// MEMKIND_* or glibc's GLIBC_TUNABLES): environment > program > default,
// where a program's policy argument ("threshold:8") is its value of the knob
// it sets. A malformed variable, or one that gives a knob another value than
// TIERKIT_POLICY's argument does, is an error from Engine::create() that
// names the variable, the value and why. A program that must not be
// steered sets `config.environment = EngineConfig::Environment::kIgnore`.
// describe() and EngineStats::environment say which values came from where.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "tierkit/detail/parse.hpp"
#include "tierkit/policy.hpp"
#include "tierkit/policy/automatic.hpp"
#include "tierkit/policy/kernel_model.hpp"
#include "tierkit/policy/static.hpp"
#include "tierkit/policy/threshold.hpp"
#include "tierkit/rate_limiter.hpp"
#include "tierkit/topology.hpp"

namespace tierkit {

struct EngineConfig;

// One knob: a field of EngineConfig and the environment variable that sets it.
struct Knob {
  enum Kind : std::uint8_t { kText, kNumber, kInteger, kBytes };
  using Ref = std::variant<std::string*, double*, std::int64_t*, std::uint32_t*, std::uint64_t*>;
  const char* env;    // TIERKIT_*
  const char* field;  // path in EngineConfig
  Kind kind;
  // Allowed range: numbers and integers always, bytes when hi > 0.
  double lo, hi;
  const char* unit;
  Ref (*ref)(EngineConfig&);
};

// Everything the engine can be told. Defaults in comments; units in names.
struct EngineConfig {
  // Whether Engine::create() applies the TIERKIT_* environment (see the
  // file comment). kIgnore: the program's values stand as they are.
  enum class Environment : std::uint8_t { kApply, kIgnore };
  Environment environment = Environment::kApply;

  // "automatic[:knob=V/...]" | "threshold" | "threshold:RATE" | "kernel" |
  // "kernel:rate=MBps" | "kernel:target=MBps" | "static". TIERKIT_POLICY.
  std::string policy = "automatic";
  std::int64_t epoch_ms = 100;  // TIERKIT_EPOCH_MS, 1..3600000
  // Heat halves every this many epochs. Longer = steadier heat (less noise,
  // fewer needless swaps), slower to follow a shift. TIERKIT_HALF_LIFE_EPOCHS
  // NOTE: automatic cools by access volume instead (unless automatic:cool=0)
  // and reads it only to turn a region's own promotion threshold into heat.
  double half_life_epochs = 4.0;
  double rate_limit_mbps = 256;  // migration cap, MiB/s. TIERKIT_RATE_LIMIT_MBPS
  // Token bucket size, 4096 (one page) .. 2^53. A move bigger than the
  // bucket (a 2 MiB unit, or a swap of two) goes alone once it is full, and
  // the bucket owes the rest (RateLimiter::try_acquire_whole).
  // TIERKIT_BURST_BYTES
  std::uint64_t burst_bytes = 16 << 20;
  // 0 = the fast nodes' total; else at least one page, counted in whole
  // pages (4097 bytes is one). TIERKIT_FAST_BUDGET
  std::uint64_t fast_budget_bytes = 0;
  // Of the budget: above it, demote. TIERKIT_HIGH_WATERMARK. Promotions also
  // leave 1 - high_watermark of each fast node free, or the kernel's own
  // high watermarks there where those are larger (EngineStats::reserve_pages).
  double high_watermark = 0.95;
  double low_watermark = 0.90;                // demote down to this. TIERKIT_LOW_WATERMARK
  std::uint32_t pingpong_window_epochs = 32;  // a move back within this is a ping-pong
  std::uint32_t sampling = 1;                 // record 1 in N accesses. TIERKIT_SAMPLING
  // Most fast-tier units the clock looks at per epoch for cold demotion
  // candidates (HotnessTracker::scan_fast_cold). TIERKIT_SCAN_PAGES
  std::uint64_t scan_pages_per_epoch = 1 << 18;
  // Regions with default granularity get 2 MiB units (where THP is on) only
  // when the fast-tier budget holds at least this many bytes: a budget of a
  // few 2 MiB units would place data too coarsely (or, under 2 MiB, not at
  // all). TIERKIT_HUGE_MIN_BUDGET
  std::uint64_t huge_min_budget_bytes = std::uint64_t{128} << 20;
  // "exclude": each registered region is kept from the kernel's own NUMA
  // balancing (Backend::exclude_from_numa_balancing), so the engine is the
  // only one moving its pages; "share": regions are left as they are, and
  // with kernel.numa_balancing on the kernel moves them too (two placers,
  // each undoing the other). TIERKIT_KERNEL_BALANCING
  std::string kernel_balancing = "exclude";
  ThresholdOptions threshold;  // TIERKIT_PROMOTION_THRESHOLD, TIERKIT_DEMOTION_THRESHOLD,
                               // TIERKIT_MIN_RESIDENCY_EPOCHS
  AutomaticOptions automatic;
  KernelModelOptions kernel;  // TIERKIT_KERNEL_HOT_THRESHOLD_MS, TIERKIT_KERNEL_RATE_LIMIT_MBPS,
                              // TIERKIT_KERNEL_THROUGHPUT_MBPS
  // The tiers' nodes (from Topology). A page moves to the node of its new
  // tier nearest to it that has room. Empty slow_nodes: nothing to move.
  NodeSet fast_nodes{0};
  NodeSet slow_nodes;

  // The variables from_env() applied, with their values, in table order.
  std::vector<std::pair<std::string, std::string>> from_environment;

  // use_topology()
  //
  // Takes the nodes from a discovered topology: fast = tier 0, slow = tier 1
  // (empty on a one-tier machine: the engine then tracks but moves nothing).
  EngineConfig& use_topology(const Topology& t) {
    fast_nodes = t.fast_nodes();
    slow_nodes = t.tier_nodes(1);
    return *this;
  }

  // decay()
  //
  // Heat multiplier per epoch: 2^(-1/half_life).
  double decay() const { return std::pow(0.5, 1.0 / half_life_epochs); }

  // validate()
  //
  // Checks every field against kKnobs' ranges and the cross-field rules; the
  // error names the field and says why.
  absl::Status validate() const;

  // from_env()
  //
  // Applies every set TIERKIT_* variable of kKnobs to `c` (unset or empty
  // variables are skipped), records them in from_environment, and validates
  // the result. A malformed value is an error naming the variable, the value
  // and why. Cost: one getenv per knob.
  // The program's spec argument is its value of the knobs it sets: unless
  // TIERKIT_POLICY replaces the spec, "threshold:8" becomes "threshold" with
  // threshold.promotion_threshold = 8 before the variables apply, so
  // TIERKIT_PROMOTION_THRESHOLD wins; the program's demotion threshold is
  // then lowered to half the promotion threshold that runs only if at or
  // above it (as "threshold:RATE" does). TIERKIT_POLICY's own argument and
  // a variable that give one knob two values are an error naming both.
  static absl::StatusOr<EngineConfig> from_env(EngineConfig c);
  static absl::StatusOr<EngineConfig> from_env() { return from_env(EngineConfig()); }

  // describe()
  //
  // One line per knob: field, value, unit and where the value came from
  // ("environment TIERKIT_X", "program", "default"), and where the
  // configured policy ignores the knob, why (a threshold.* knob under
  // automatic: "not read by automatic"; under "threshold:8", the promotion
  // threshold "overridden by policy 'threshold:8' (runs with 8)").
  std::string describe() const;

  // environment_summary()
  //
  // "TIERKIT_POLICY=threshold:8 TIERKIT_EPOCH_MS=50" (what from_env()
  // applied), else "none", or "ignored (...)" for a program that opted out.
  std::string environment_summary() const {
    if (from_environment.empty())
      return environment == Environment::kIgnore ? "ignored (Environment::kIgnore)" : "none";
    std::string s;
    for (const auto& [var, value] : from_environment)
      absl::StrAppend(&s, s.empty() ? "" : " ", var, "=", value);
    return s;
  }

  // make_policy()
  //
  // Builds the policy named by `policy` with this config's options. Spec
  // grammar: name[:arg] where threshold:RATE sets the promotion threshold,
  // kernel:rate=MBps / kernel:target=MBps / kernel:hot=ms set the kernel
  // model's knobs and automatic:hysteresis=V / swap_confidence=V / cool=V /
  // headroom=V / min_heat=N / max_cool_epochs=N / residency=N / burst=N /
  // idle=V / idle_swap_confidence=V / spread_confidence=V / payoff=N /
  // first_swap=V / first_confidence=V / current_histogram=N / keep_room=N / reversals=V /
  // reversal_margin=V the
  // automatic policy's (AutomaticOptions). Several knobs are separated by
  // ',' or '/' ('/' inside tierkit-sim's comma-separated --policy list).
  static absl::StatusOr<std::unique_ptr<Policy>> make_policy(const EngineConfig& c);
};

// Every knob, TIERKIT_POLICY first. The one place a knob is declared.
inline constexpr Knob kKnobs[] = {
    {"TIERKIT_POLICY", "policy", Knob::kText, 0, 0, "spec",
     +[](EngineConfig& c) -> Knob::Ref { return &c.policy; }},
    {"TIERKIT_EPOCH_MS", "epoch_ms", Knob::kInteger, 1, 3600000, "ms",
     +[](EngineConfig& c) -> Knob::Ref { return &c.epoch_ms; }},
    {"TIERKIT_HALF_LIFE_EPOCHS", "half_life_epochs", Knob::kNumber, 0.1, 1000, "epochs",
     +[](EngineConfig& c) -> Knob::Ref { return &c.half_life_epochs; }},
    {"TIERKIT_RATE_LIMIT_MBPS", "rate_limit_mbps", Knob::kNumber, 0, 1e9, "MiB/s",
     +[](EngineConfig& c) -> Knob::Ref { return &c.rate_limit_mbps; }},
    {"TIERKIT_BURST_BYTES", "burst_bytes", Knob::kBytes, kPageSize, RateLimiter::kMaxBurstBytes,
     "bytes", +[](EngineConfig& c) -> Knob::Ref { return &c.burst_bytes; }},
    {"TIERKIT_FAST_BUDGET", "fast_budget_bytes", Knob::kBytes, 0, 0, "bytes (0 = fast nodes)",
     +[](EngineConfig& c) -> Knob::Ref { return &c.fast_budget_bytes; }},
    {"TIERKIT_HIGH_WATERMARK", "high_watermark", Knob::kNumber, 0, 1, "fraction of budget",
     +[](EngineConfig& c) -> Knob::Ref { return &c.high_watermark; }},
    {"TIERKIT_LOW_WATERMARK", "low_watermark", Knob::kNumber, 0, 1, "fraction of budget",
     +[](EngineConfig& c) -> Knob::Ref { return &c.low_watermark; }},
    {"TIERKIT_SAMPLING", "sampling", Knob::kInteger, 1, 1 << 20, "1 in N accesses",
     +[](EngineConfig& c) -> Knob::Ref { return &c.sampling; }},
    {"TIERKIT_SCAN_PAGES", "scan_pages_per_epoch", Knob::kInteger, 1, 1ull << 40, "pages/epoch",
     +[](EngineConfig& c) -> Knob::Ref { return &c.scan_pages_per_epoch; }},
    {"TIERKIT_KERNEL_BALANCING", "kernel_balancing", Knob::kText, 0, 0, "exclude | share",
     +[](EngineConfig& c) -> Knob::Ref { return &c.kernel_balancing; }},
    {"TIERKIT_HUGE_MIN_BUDGET", "huge_min_budget_bytes", Knob::kBytes, 0, 0,
     "bytes of fast budget for 2 MiB units",
     +[](EngineConfig& c) -> Knob::Ref { return &c.huge_min_budget_bytes; }},
    {"TIERKIT_PROMOTION_THRESHOLD", "threshold.promotion_threshold", Knob::kNumber, 0, 1e6,
     "accesses/epoch",
     +[](EngineConfig& c) -> Knob::Ref { return &c.threshold.promotion_threshold; }},
    {"TIERKIT_DEMOTION_THRESHOLD", "threshold.demotion_threshold", Knob::kNumber, 0, 1e6,
     "accesses/epoch",
     +[](EngineConfig& c) -> Knob::Ref { return &c.threshold.demotion_threshold; }},
    {"TIERKIT_MIN_RESIDENCY_EPOCHS", "threshold.min_residency_epochs", Knob::kInteger, 0, 1e6,
     "epochs", +[](EngineConfig& c) -> Knob::Ref { return &c.threshold.min_residency_epochs; }},
    {"TIERKIT_KERNEL_HOT_THRESHOLD_MS", "kernel.hot_threshold_ms", Knob::kNumber, 1, 1e7, "ms",
     +[](EngineConfig& c) -> Knob::Ref { return &c.kernel.hot_threshold_ms; }},
    {"TIERKIT_KERNEL_RATE_LIMIT_MBPS", "kernel.promote_rate_limit_mbps", Knob::kNumber, 1, 1e9,
     "MiB/s (the kernel's MBps)",
     +[](EngineConfig& c) -> Knob::Ref { return &c.kernel.promote_rate_limit_mbps; }},
    {"TIERKIT_KERNEL_THROUGHPUT_MBPS", "kernel.promote_throughput_mbps", Knob::kNumber, 0, 1e9,
     "MiB/s (the kernel's MBps; 0 = stock)",
     +[](EngineConfig& c) -> Knob::Ref { return &c.kernel.promote_throughput_mbps; }},
};

namespace detail {

// The index of the knob of `field` in kKnobs; std::size(kKnobs) if none.
constexpr std::size_t knob_index(std::string_view field) {
  std::size_t i = 0;
  while (i < std::size(kKnobs) && field != kKnobs[i].field) ++i;
  return i;
}

// The knob's value in `c`, formatted as from_env() would read it back.
inline std::string knob_value(const Knob& k, const EngineConfig& c) {
  return std::visit(
      [&](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return *p;
        } else if constexpr (std::is_same_v<T, double>) {
          return format_double(*p);  // reads back as the same double
        } else {
          return absl::StrCat(*p);
        }
      },
      k.ref(const_cast<EngineConfig&>(c)));  // read only
}

// Parses `text` into the knob's field of `c`; errors start with `what`.
inline absl::Status set_knob(const Knob& k, EngineConfig& c, absl::string_view text,
                             absl::string_view what) {
  return std::visit(
      [&](auto* p) -> absl::Status {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          *p = std::string(text);
        } else if (k.kind == Knob::kBytes) {
          auto b = parse_bytes(text, what);
          if (!b.ok()) return b.status();
          *p = static_cast<T>(*b);
        } else {
          auto d = parse_double(text, what, k.lo, k.hi);
          if (!d.ok()) return d.status();
          if (k.kind == Knob::kInteger && *d != std::floor(*d))
            return absl::InvalidArgumentError(
                absl::StrCat(what, ": '", text, "' is not a whole number of ", k.unit));
          *p = static_cast<T>(*d);
        }
        return absl::OkStatus();
      },
      k.ref(c));
}

// The knob's value in `c` against its range (kKnobs); the error names the
// field, the value and the range.
inline absl::Status check_range(const Knob& k, const EngineConfig& c) {
  if (k.kind == Knob::kText || (k.kind == Knob::kBytes && k.hi <= 0)) return absl::OkStatus();
  const Knob::Ref ref = k.ref(const_cast<EngineConfig&>(c));  // read only
  if (k.kind == Knob::kBytes) {  // compared and printed whole: 2^53 + 1 is not 2^53
    const std::uint64_t v = *std::get<std::uint64_t*>(ref);
    const auto lo = static_cast<std::uint64_t>(k.lo), hi = static_cast<std::uint64_t>(k.hi);
    if (v >= lo && v <= hi) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(k.field, " = ", v, " must be in [", lo, ", ", hi, "] (", k.unit, ")"));
  }
  double v = 0;
  std::visit(
      [&](auto* p) {
        if constexpr (!std::is_same_v<std::remove_pointer_t<decltype(p)>, std::string>)
          v = static_cast<double>(*p);
      },
      ref);
  if (std::isfinite(v) && v >= k.lo && v <= k.hi) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(k.field, " = ", format_double(v), " must be in [",
                                                 format_double(k.lo), ", ", format_double(k.hi),
                                                 "] (", k.unit, ")"));
}

}  // namespace detail

namespace detail {

inline EngineConfig spec_applied(const EngineConfig& c);

// `c` with the argument of its threshold or kernel spec moved into the
// knobs it sets ("threshold:8" becomes "threshold" with threshold.* as
// threshold:8 runs them), where their variables override it as they do
// any value of the program's. An invalid spec stays, for validate() to
// report.
inline EngineConfig spec_folded(const EngineConfig& c) {
  const std::string name = c.policy.substr(0, c.policy.find(':'));
  if ((name != "threshold" && name != "kernel") || !EngineConfig::make_policy(c).ok()) return c;
  EngineConfig r = spec_applied(c);
  r.policy = name;
  return r;
}

// The demotion threshold "threshold:RATE" runs with `demote`: one at or
// above RATE is lowered to RATE / 2, so demotion stays below promotion.
constexpr double spec_demotion(double demote, double rate) {
  return demote >= rate ? rate / 2 : demote;
}

// After the variables, `c`'s demotion threshold as the program's folded
// "threshold:RATE" runs it with the promotion threshold that runs: with
// TIERKIT_PROMOTION_THRESHOLD=20 over "threshold:8", the program's 10 (not
// 8 / 2), as under "threshold:20". A TIERKIT_DEMOTION_THRESHOLD stands.
inline void refold_demotion(EngineConfig& c, const EngineConfig& program) {
  if (c.policy != "threshold" || program.policy == c.policy) return;  // nothing folded
  for (const auto& kv : c.from_environment)
    if (kv.first == "TIERKIT_DEMOTION_THRESHOLD") return;
  c.threshold.demotion_threshold =
      spec_demotion(program.threshold.demotion_threshold, c.threshold.promotion_threshold);
}

// No knob is automatic's: its spec's knobs have no variables, so
// spec_folded() and check_env_spec() leave "automatic:..." alone.
static_assert([] {
  for (const Knob& k : kKnobs)
    if (std::string_view(k.field).starts_with("automatic.")) return false;
  return true;
}());

// TIERKIT_POLICY's argument against the other variables: both are the
// user's, so a knob the spec runs with another value than its variable gave
// (TIERKIT_POLICY=threshold:100 with TIERKIT_PROMOTION_THRESHOLD=10, or with
// a TIERKIT_DEMOTION_THRESHOLD at or above 100, which the spec lowers) is an
// error naming both rather than a silent pick.
inline absl::Status check_env_spec(const EngineConfig& c) {
  const EngineConfig runs = spec_applied(c);
  for (const auto& [var, value] : c.from_environment)
    for (const Knob& k : kKnobs)
      if (var == k.env && knob_value(k, runs) != knob_value(k, c))
        return absl::InvalidArgumentError(absl::StrCat(
            "TIERKIT_POLICY=", c.policy, " would run ", k.field, " with ", knob_value(k, runs),
            ", not ", var, "=", value,
            std::string_view(k.field) == "threshold.demotion_threshold"
                ? " (threshold:RATE lowers a demotion threshold at or above RATE to RATE / 2)"
                : "",
            ": unset one of the two"));
  return absl::OkStatus();
}

// A nonzero fast budget under one page is a budget of 0 pages: every page
// the engine holds would be demoted. 0 already means "the fast nodes'
// total", so such a value is a mistake (a lost suffix: 100 for 100M).
inline absl::Status check_fast_budget(const EngineConfig& c) {
  if (c.fast_budget_bytes == 0 || c.fast_budget_bytes >= kPageSize) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("fast_budget_bytes = ", c.fast_budget_bytes,
                                                 " is less than one ", kPageSize,
                                                 "-byte page (0 = the fast nodes' total)"));
}

// validate() but for the policy spec: kKnobs' ranges and the cross-field
// rules. For an engine running a policy of the application's own, whose
// name is no spec.
inline absl::Status validate_fields(const EngineConfig& c) {
  for (const Knob& k : kKnobs)
    if (absl::Status s = check_range(k, c); !s.ok()) return s;
  if (absl::Status s = check_fast_budget(c); !s.ok()) return s;
  if (!(c.low_watermark > 0 && c.low_watermark <= c.high_watermark && c.high_watermark <= 1))
    return absl::InvalidArgumentError(absl::StrCat("watermarks: need 0 < low (", c.low_watermark,
                                                   ") <= high (", c.high_watermark, ") <= 1"));
  if (c.kernel_balancing != "exclude" && c.kernel_balancing != "share")
    return absl::InvalidArgumentError(
        absl::StrCat("kernel_balancing = '", c.kernel_balancing, "': must be exclude or share"));
  if (absl::Status s = c.fast_nodes.check("fast_nodes"); !s.ok()) return s;
  if (absl::Status s = c.slow_nodes.check("slow_nodes"); !s.ok()) return s;
  if (c.fast_nodes.empty()) return absl::InvalidArgumentError("fast_nodes is empty");
  for (NodeId n : c.slow_nodes.to_vector())
    if (c.fast_nodes.contains(n))
      return absl::InvalidArgumentError(
          absl::StrCat("node ", n, " is in both fast_nodes and slow_nodes"));
  // The pair that runs: threshold:RATE's promotion threshold, not the field's.
  const ThresholdOptions t = spec_applied(c).threshold;
  if (absl::Status s = ThresholdPolicy::validate(t.promotion_threshold, t.demotion_threshold);
      !s.ok())
    return s;
  if (!(c.automatic.headroom >= 0 && c.automatic.headroom < 1) || !(c.automatic.hysteresis >= 1))
    return absl::InvalidArgumentError("automatic: need 0 <= headroom < 1 and hysteresis >= 1");
  return KernelModelPolicy::validate(c.kernel);
}

}  // namespace detail

inline absl::Status EngineConfig::validate() const {
  if (absl::Status s = detail::validate_fields(*this); !s.ok()) return s;
  if (auto p = make_policy(*this); !p.ok()) return p.status();
  return absl::OkStatus();
}

inline absl::StatusOr<EngineConfig> EngineConfig::from_env(EngineConfig c) {
  c.from_environment.clear();
  const EngineConfig program = c;
  const std::optional<std::string> spec = detail::getenv_string("TIERKIT_POLICY");
  if (!spec) c = detail::spec_folded(c);  // so the variables override its argument
  for (const Knob& k : kKnobs) {
    auto v = detail::getenv_string(k.env);
    if (!v) continue;
    std::string what = absl::StrCat(k.env, "=", *v);
    if (absl::Status s = detail::set_knob(k, c, *v, what); !s.ok()) return s;
    c.from_environment.emplace_back(k.env, *v);
  }
  if (!spec) {
    detail::refold_demotion(c, program);
  } else {
    if (auto p = make_policy(c); !p.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("TIERKIT_POLICY=", *spec, ": ", p.status().message()));
    if (absl::Status s = detail::check_env_spec(c); !s.ok()) return s;
  }
  if (absl::Status s = c.validate(); !s.ok()) {
    // Name the variables behind an invalid combination (e.g. watermarks),
    // unless the program's config fails alike without them.
    std::string vars;
    for (const auto& kv : c.from_environment)
      absl::StrAppend(&vars, vars.empty() ? "" : ", ", kv.first);
    if (vars.empty() || program.validate() == s) return s;
    return absl::Status(s.code(), absl::StrCat(s.message(), " (environment: ", vars, ")"));
  }
  return c;
}

namespace detail {
// Why `policy` does not read knob `k`, or "" if it does: the threshold.* and
// kernel.* knobs belong to their policy, the rate limit to the policies the
// engine's token bucket limits, and the half-life, beyond converting a
// region's own promotion threshold (a rate) to heat, to the policies that
// age heat by it.
inline std::string knob_unread(const Knob& k, const Policy& policy) {
  const std::string field = k.field, name = policy.name();
  const std::string kind = name.substr(0, name.find(':'));
  const PolicyTraits t = policy.traits();
  const bool read = field.rfind("threshold.", 0) == 0                      ? kind == "threshold"
                    : field.rfind("kernel.", 0) == 0                       ? kind == "kernel"
                    : field == "rate_limit_mbps" || field == "burst_bytes" ? t.uses_rate_limiter
                                                                           : true;
  if (!read) return absl::StrCat("not read by ", name);
  if (field == "half_life_epochs" && !t.reads_half_life)
    return absl::StrCat(name, " ages heat by access volume: read only for regions' own thresholds");
  return "";
}
}  // namespace detail

inline std::string EngineConfig::describe() const {
  const EngineConfig defaults, runs = detail::spec_applied(*this);
  auto policy = make_policy(*this);
  std::string out;
  for (const Knob& k : kKnobs) {
    std::string value = detail::knob_value(k, *this), source = "default";
    for (const auto& kv : from_environment)
      if (kv.first == k.env) source = absl::StrCat("environment ", k.env);
    if (source == "default" && value != detail::knob_value(k, defaults)) source = "program";
    if (std::string why = policy.ok() ? detail::knob_unread(k, **policy) : ""; !why.empty())
      absl::StrAppend(&source, "; ", why);
    if (std::string ran = detail::knob_value(k, runs); ran != value)
      absl::StrAppend(&source, "; overridden by policy '", this->policy, "' (runs with ", ran, ")");
    absl::StrAppendFormat(&out, "%-32s %-14s %-28s %s\n", k.field, value, k.unit, source);
  }
  return out;
}

namespace detail {

// "automatic[:knob=V,...]": `arg` is what follows the colon.
inline absl::StatusOr<std::unique_ptr<Policy>> make_automatic(const EngineConfig& c,
                                                              const std::string& arg) {
  AutomaticOptions o = c.automatic;
  static constexpr detail::SpecKnob<AutomaticOptions> kAutomaticKnobs[] = {
      {"hysteresis", &AutomaticOptions::hysteresis, nullptr, 1, 1e3},
      {"swap_confidence", &AutomaticOptions::swap_confidence, nullptr, 0, 100},
      {"idle_swap_confidence", &AutomaticOptions::idle_swap_confidence, nullptr, 0, 100},
      {"cool", &AutomaticOptions::cool_heat_per_page, nullptr, 0, 1e6},
      {"headroom", &AutomaticOptions::headroom, nullptr, 0, 0.9},
      {"min_heat", nullptr, &AutomaticOptions::min_heat, 0, 1e4},
      {"max_cool_epochs", nullptr, &AutomaticOptions::max_epochs_between_coolings, 0, 1e6},
      {"residency", nullptr, &AutomaticOptions::min_residency_epochs, 0, 1e6},
      {"burst", nullptr, &AutomaticOptions::burst_heat, 0, 1e4},
      {"idle", &AutomaticOptions::idle_evidence, nullptr, 0, 1e3},
      {"spread_confidence", &AutomaticOptions::spread_confidence, nullptr, 0, 100},
      {"payoff", nullptr, &AutomaticOptions::payoff_backoff_epochs, 0, 1e6},
      {"first_swap", &AutomaticOptions::first_swap_ratio, nullptr, 0, 1e3},
      {"first_confidence", &AutomaticOptions::first_swap_confidence, nullptr, -1, 100},
      {"current_histogram", nullptr, &AutomaticOptions::current_histogram, 0, 1},
      {"keep_room", nullptr, &AutomaticOptions::keep_room, 0, 2},
      {"reversals", &AutomaticOptions::reversal_share, nullptr, 0, 1},
      {"reversal_margin", &AutomaticOptions::reversal_margin, nullptr, 1, 1e3},
  };
  // The program's options, against the spec's ranges (headroom keeps
  // validate_fields' rule, 0 <= headroom < 1).
  for (const SpecKnob<AutomaticOptions>& k : kAutomaticKnobs) {
    const double v = k.d != nullptr ? o.*(k.d) : static_cast<double>(o.*(k.u));
    if (std::string_view(k.key) != "headroom" && !(v >= k.lo && v <= k.hi))
      return absl::InvalidArgumentError(absl::StrCat("automatic: ", k.key, " = ", format_double(v),
                                                     " must be in [", format_double(k.lo), ", ",
                                                     format_double(k.hi), "]"));
  }
  if (absl::Status s = detail::parse_knobs(arg, kAutomaticKnobs, c.policy, "automatic", o); !s.ok())
    return s;
  return std::unique_ptr<Policy>(new AutomaticPolicy(o));
}

// The options "threshold[:RATE]" runs with: RATE is the promotion rate; the
// demotion rate stays below it.
inline absl::StatusOr<ThresholdOptions> threshold_options(const EngineConfig& c,
                                                          const std::string& arg) {
  ThresholdOptions o = c.threshold;
  if (!arg.empty()) {
    auto r = detail::parse_double(arg, "threshold:RATE", 0, 1e6);
    if (!r.ok()) return r.status();
    o.promotion_threshold = *r;
    o.demotion_threshold = spec_demotion(o.demotion_threshold, *r);
  }
  if (absl::Status s = ThresholdPolicy::validate(o.promotion_threshold, o.demotion_threshold);
      !s.ok())
    return s;
  return o;
}

// The options "kernel[:rate=MBps|target=MBps|hot=ms]" runs with. Each key
// sets its knob's field with that knob's range (kKnobs), so a spec takes
// what TIERKIT_KERNEL_* takes.
inline absl::StatusOr<KernelModelOptions> kernel_options(const EngineConfig& c,
                                                         const std::string& arg) {
  static constexpr std::pair<const char*, const char*> kKeys[] = {
      {"rate", "kernel.promote_rate_limit_mbps"},
      {"target", "kernel.promote_throughput_mbps"},
      {"hot", "kernel.hot_threshold_ms"}};
  EngineConfig r = c;
  bool seen[std::size(kKeys)] = {};
  for (absl::string_view part : absl::StrSplit(arg, absl::ByAnyChar(",/"), absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv2 = absl::StrSplit(part, absl::MaxSplits('=', 1));
    std::size_t i = 0;
    while (i < std::size(kKeys) && kv2.first != kKeys[i].first) ++i;
    if (i == std::size(kKeys))
      return absl::InvalidArgumentError(absl::StrCat("policy '", c.policy,
                                                     "': unknown kernel knob '", kv2.first,
                                                     "' (known: rate=MBps, target=MBps, hot=ms)"));
    if (std::exchange(seen[i], true)) return knob_given_twice(c.policy, "kernel", kv2.first);
    const Knob& k = kKnobs[knob_index(kKeys[i].second)];
    if (absl::Status s = set_knob(k, r, kv2.second, absl::StrCat("kernel:", kv2.first)); !s.ok())
      return s;
  }
  if (absl::Status s = KernelModelPolicy::validate(r.kernel); !s.ok()) return s;
  return r.kernel;
}

// `c` as its policy runs it: the threshold.* and kernel.* values a spec's
// argument sets (threshold:RATE, kernel:rate=...) replace the knobs'.
inline EngineConfig spec_applied(const EngineConfig& c) {
  EngineConfig r = c;
  std::pair<std::string, std::string> kv = absl::StrSplit(c.policy, absl::MaxSplits(':', 1));
  if (kv.first == "threshold")
    if (auto o = threshold_options(c, kv.second); o.ok()) r.threshold = *o;
  if (kv.first == "kernel")
    if (auto o = kernel_options(c, kv.second); o.ok()) r.kernel = *o;
  return r;
}

}  // namespace detail

inline absl::StatusOr<std::unique_ptr<Policy>> EngineConfig::make_policy(const EngineConfig& c) {
  std::pair<std::string, std::string> kv = absl::StrSplit(c.policy, absl::MaxSplits(':', 1));
  const std::string& name = kv.first;
  const std::string& arg = kv.second;
  if (name == "automatic") return detail::make_automatic(c, arg);
  if (name == "static" && arg.empty()) return std::unique_ptr<Policy>(new StaticPolicy());
  if (name == "threshold") {
    auto o = detail::threshold_options(c, arg);
    if (!o.ok()) return o.status();
    return std::unique_ptr<Policy>(new ThresholdPolicy(*o));
  }
  if (name == "kernel") {
    auto o = detail::kernel_options(c, arg);
    if (!o.ok()) return o.status();
    return std::unique_ptr<Policy>(new KernelModelPolicy(*o));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown policy '", c.policy,
      "' (known: automatic[:knob=V,...], threshold[:RATE], kernel[:rate=MBps|target=MBps|hot=ms], "
      "static)"));
}

}  // namespace tierkit
