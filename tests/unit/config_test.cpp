// The environment contract (config.hpp): Engine::create applies TIERKIT_*
// over the program's values, kIgnore opts out, describe() and the stats say
// where each value came from, and malformed values are errors naming the
// variable and the value.
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scoped_env.hpp"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/config.hpp"
#include "tierkit/engine.hpp"

namespace tierkit {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using tierkit_test::ScopedEnv;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const Knob& k : kKnobs) unsetenv(k.env);
  }
  absl::StatusOr<std::unique_ptr<Engine>> create(EngineConfig c) {
    c.slow_nodes = {1};
    return Engine::create(std::move(c), &sim_);
  }
  SimulatedBackend sim_{{{0, 64 << 20}, {1, 64 << 20}}};
};

TEST_F(ConfigTest, EnvironmentBeatsProgramBeatsDefault) {
  EngineConfig program;
  program.policy = "static";
  program.epoch_ms = 50;
  program.rate_limit_mbps = 77;
  ScopedEnv policy("TIERKIT_POLICY", "threshold:8");
  ScopedEnv epoch("TIERKIT_EPOCH_MS", "20");
  auto e = create(program);
  ASSERT_TRUE(e.ok()) << e.status();
  EngineConfig c = (*e)->config();
  EXPECT_EQ(c.policy, "threshold:8");  // environment over program
  EXPECT_EQ(c.epoch_ms, 20);
  EXPECT_EQ(c.rate_limit_mbps, 77);  // program over default
  EXPECT_EQ(c.half_life_epochs, EngineConfig().half_life_epochs);
  EXPECT_EQ((*e)->policy_name(), "threshold");
  EXPECT_EQ((*e)->stats().environment, "TIERKIT_POLICY=threshold:8 TIERKIT_EPOCH_MS=20");

  std::string d = c.describe();
  EXPECT_THAT(d, HasSubstr("environment TIERKIT_POLICY"));
  EXPECT_THAT(d, HasSubstr("environment TIERKIT_EPOCH_MS"));
  EXPECT_THAT(d, ::testing::ContainsRegex("rate_limit_mbps +77 .*program"));
  EXPECT_THAT(d, ::testing::ContainsRegex("half_life_epochs +4 .*default"));
}

// A knob the configured policy does not read is shown as such, so a user who
// sets TIERKIT_HALF_LIFE_EPOCHS under automatic (volume cooling) or a
// threshold.* knob under the kernel model learns it changed nothing.
TEST_F(ConfigTest, DescribeSaysWhichKnobsThePolicyDoesNotRead) {
  EngineConfig automatic;  // the default policy
  std::string d = automatic.describe();
  EXPECT_THAT(d, ::testing::ContainsRegex(
                     "half_life_epochs +4 .*default; automatic ages heat by access volume"));
  EXPECT_THAT(d, ::testing::ContainsRegex("threshold.promotion_threshold .*not read by automatic"));
  EXPECT_THAT(d, ::testing::ContainsRegex("kernel.hot_threshold_ms .*not read by automatic"));
  EXPECT_THAT(d, ::testing::ContainsRegex("rate_limit_mbps +256 .*default\n"));
  EngineConfig volume_off;
  volume_off.policy = "automatic:cool=0";  // ages by the half-life instead
  EXPECT_THAT(volume_off.describe(), ::testing::ContainsRegex("half_life_epochs +4 .*default\n"));
  EngineConfig threshold;
  threshold.policy = "threshold:8";
  d = threshold.describe();
  EXPECT_THAT(d, ::testing::ContainsRegex("half_life_epochs +4 .*default\n"));
  EXPECT_THAT(d, ::testing::ContainsRegex("threshold.promotion_threshold .*default\n"));
  EXPECT_THAT(d, ::testing::ContainsRegex("kernel.hot_threshold_ms .*not read by threshold"));
  EngineConfig kernel;
  kernel.policy = "kernel";
  d = kernel.describe();
  EXPECT_THAT(d, ::testing::ContainsRegex("rate_limit_mbps +256 .*not read by kernel"));
  EXPECT_THAT(d, ::testing::ContainsRegex("kernel.hot_threshold_ms .*default\n"));
}

TEST_F(ConfigTest, OptOutIgnoresTheEnvironmentEvenWhenMalformed) {
  EngineConfig program;
  program.environment = EngineConfig::Environment::kIgnore;
  program.policy = "static";
  ScopedEnv policy("TIERKIT_POLICY", "banana");
  ScopedEnv rate("TIERKIT_RATE_LIMIT_MBPS", "-5");
  auto e = create(program);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->policy_name(), "static");
  EXPECT_THAT((*e)->stats().environment, HasSubstr("ignored"));
  EXPECT_TRUE((*e)->config().from_environment.empty());
}

TEST_F(ConfigTest, MalformedValuesFailCreateNamingVariableAndValue) {
  struct Case {
    const char* var;
    const char* value;
  } cases[] = {{"TIERKIT_POLICY", "banana"},     {"TIERKIT_RATE_LIMIT_MBPS", "-5"},
               {"TIERKIT_EPOCH_MS", "0"},        {"TIERKIT_FAST_BUDGET", "12Q"},
               {"TIERKIT_EPOCH_MS", "2.5"},      {"TIERKIT_MIN_RESIDENCY_EPOCHS", "1.5"},
               {"TIERKIT_POLICY", "threshold:x"}};
  for (const Case& c : cases) {
    ScopedEnv env(c.var, c.value);
    auto e = create(EngineConfig());
    ASSERT_FALSE(e.ok()) << c.var << "=" << c.value;
    EXPECT_THAT(std::string(e.status().message()), HasSubstr(c.var)) << e.status();
    EXPECT_THAT(std::string(e.status().message()), HasSubstr(c.value)) << e.status();
  }
}

TEST_F(ConfigTest, EveryKnobRoundTripsThroughTheEnvironment) {
  // describe()'s value of each knob, fed back through its variable, is
  // accepted and gives the same value: the table's field, parser and
  // formatter agree for every knob.
  EngineConfig defaults;
  for (const Knob& k : kKnobs) {
    std::string v = detail::knob_value(k, defaults);
    if (k.kind == Knob::kBytes && v == "0") continue;  // 0 budget = fast nodes' total: fine too
    ScopedEnv env(k.env, v.c_str());
    auto c = EngineConfig::from_env();
    ASSERT_TRUE(c.ok()) << k.env << "=" << v << ": " << c.status();
    EXPECT_EQ(detail::knob_value(k, *c), v) << k.env;
    ASSERT_EQ(c->from_environment.size(), 1u);
    EXPECT_EQ(c->from_environment[0].first, k.env);
  }
}

TEST_F(ConfigTest, KernelBalancingIsExcludeOrShare) {
  EXPECT_EQ(EngineConfig().kernel_balancing, "exclude");
  ScopedEnv env("TIERKIT_KERNEL_BALANCING", "off");
  auto c = EngineConfig::from_env();
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("TIERKIT_KERNEL_BALANCING"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("must be exclude or share"));
  ScopedEnv share("TIERKIT_KERNEL_BALANCING", "share");
  auto d = EngineConfig::from_env();
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->kernel_balancing, "share");
}

TEST_F(ConfigTest, ValidateChecksTheTableRanges) {
  EngineConfig c;
  c.half_life_epochs = 0.01;
  EXPECT_THAT(std::string(c.validate().message()), HasSubstr("half_life_epochs"));
  c = EngineConfig();
  c.sampling = 0;
  EXPECT_THAT(std::string(c.validate().message()), HasSubstr("sampling"));
  c = EngineConfig();
  c.kernel.promote_rate_limit_mbps = 0;
  EXPECT_FALSE(c.validate().ok());
  EXPECT_TRUE(EngineConfig().validate().ok());
}

// The burst is a double bucket: beyond 2^53 bytes it cannot count, and
// 2^64 - 1 used to be accepted and then read as an empty bucket.
TEST_F(ConfigTest, BurstBytesHasAnUpperBound) {
  EngineConfig c;
  c.burst_bytes = RateLimiter::kMaxBurstBytes;
  EXPECT_TRUE(c.validate().ok()) << c.validate();
  c.burst_bytes = RateLimiter::kMaxBurstBytes + 1;
  EXPECT_THAT(std::string(c.validate().message()),
              HasSubstr("burst_bytes = 9007199254740993 must be in ["));
  ScopedEnv env("TIERKIT_BURST_BYTES", "18446744073709551615");
  auto e = EngineConfig::from_env();
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(std::string(e.status().message()), HasSubstr("burst_bytes"));
  EXPECT_THAT(std::string(e.status().message()), HasSubstr("9007199254740992]"));
  EXPECT_THAT(std::string(e.status().message()), HasSubstr("TIERKIT_BURST_BYTES"));
}

// A burst below one page granted no step at all: every move was deferred
// for ever, silently.
TEST_F(ConfigTest, BurstBytesIsAtLeastOnePage) {
  EngineConfig c;
  for (std::uint64_t b : {0ull, 2048ull, 4095ull}) {
    c.burst_bytes = b;
    EXPECT_THAT(std::string(c.validate().message()),
                HasSubstr(absl::StrCat("burst_bytes = ", b, " must be in [4096, ")));
  }
  c.burst_bytes = 4096;
  EXPECT_TRUE(c.validate().ok()) << c.validate();
  ScopedEnv env("TIERKIT_BURST_BYTES", "0");
  auto e = EngineConfig::from_env();
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(std::string(e.status().message()), HasSubstr("TIERKIT_BURST_BYTES"));
  EXPECT_THAT(std::string(e.status().message()), HasSubstr("[4096, "));
}

// A fast budget under one page was a budget of 0 pages, silently: the
// engine demoted every page it had (TIERKIT_FAST_BUDGET=100, meant as 100M).
// 0 stays "the fast nodes' total".
TEST_F(ConfigTest, FastBudgetBelowOnePageIsRefused) {
  EngineConfig c;
  for (std::uint64_t b : {1ull, 100ull, 4095ull}) {
    c.fast_budget_bytes = b;
    EXPECT_THAT(
        std::string(c.validate().message()),
        HasSubstr(absl::StrCat("fast_budget_bytes = ", b, " is less than one 4096-byte page")));
  }
  for (std::uint64_t b : {0ull, 4096ull, 4097ull}) {
    c.fast_budget_bytes = b;
    EXPECT_TRUE(c.validate().ok()) << b << ": " << c.validate();
  }
  {
    ScopedEnv env("TIERKIT_FAST_BUDGET", "100");
    auto e = EngineConfig::from_env();
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(e.status().message()),
                HasSubstr("fast_budget_bytes = 100 is less than one 4096-byte page"));
    EXPECT_THAT(std::string(e.status().message()), HasSubstr("TIERKIT_FAST_BUDGET"));
  }
  // The runtime setter checks it too and keeps the budget that runs.
  EngineConfig program;
  program.fast_budget_bytes = 8 * kPageSize;
  auto e = create(program);
  ASSERT_TRUE(e.ok()) << e.status();
  absl::Status s = (*e)->set_fast_budget_bytes(4095);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("set_fast_budget_bytes: fast_budget_bytes = 4095 is less than one"));
  EXPECT_EQ((*e)->config().fast_budget_bytes, 8 * kPageSize);
  EXPECT_TRUE((*e)->set_fast_budget_bytes(0).ok());
  EXPECT_EQ((*e)->config().fast_budget_bytes, 0u);
}

// Every string in the JSON is escaped, not only the environment: a policy
// of the application's own (Engine::create with a Policy) and a hotness
// source name themselves, and a quote, backslash or newline there broke the
// document.
TEST(EngineStats, JsonEscapesEveryNameItQuotes) {
  EngineStats s;
  s.policy = "mine \"v2\"";
  s.backend = "back\\end";
  s.threshold_unit = "hits\n/epoch";
  s.hotness_sources.push_back({});
  s.hotness_sources.back().name = "src \"a\"";
  const std::string j = s.to_json();
  EXPECT_THAT(j, HasSubstr(R"("policy":"mine \"v2\"",)"));
  EXPECT_THAT(j, HasSubstr(R"("backend":"back\\end",)"));
  EXPECT_THAT(j, HasSubstr(R"("threshold_unit":"hits\u000a/epoch",)"));
  EXPECT_THAT(s.hotness_sources_json(), HasSubstr(R"("name":"src \"a\"",)"));
}

// Per-page failures with an errno the JSON has no name for are counted under
// one "other" key. Before, each such errno got its own "other" entry, and a
// reader of the duplicate keys kept only one of the counts.
TEST(EngineStats, JsonCountsErrnosWithoutANameUnderOneOtherKey) {
  EngineStats s;
  s.failures_by_errno.add(EBUSY);
  s.failures_by_errno.add(EAGAIN);
  s.failures_by_errno.add(ENOSPC);
  s.failures_by_errno.add(ENOSPC);
  s.failures_by_errno.add(1000);  // beyond ErrnoCounts::kMax: its last slot
  const std::string j = s.to_json();
  EXPECT_THAT(j, HasSubstr(R"("failures_by_errno":{"EBUSY":1,"other":4})"));
  EXPECT_EQ(j.find("\"other\""), j.rfind("\"other\"")) << j;
}

TEST_F(ConfigTest, ThresholdTextUsesThePolicysUnitAndDashWhenNothingQualifies) {
  EngineStats s;
  s.promotion_threshold = INFINITY;
  s.threshold_unit = "heat";
  EXPECT_EQ(s.threshold_text(), "-");
  EXPECT_THAT(s.to_line(), HasSubstr("threshold -"));
  EXPECT_THAT(s.to_json(), HasSubstr("\"promotion_threshold\":null"));
  s.promotion_threshold = 12;
  EXPECT_EQ(s.threshold_text(), "12 heat");

  // The automatic policy reports heat, not accesses/epoch.
  auto e = create(EngineConfig());
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE((*e)->step().ok());
  EXPECT_EQ((*e)->stats().threshold_unit, "heat");
}

TEST_F(ConfigTest, AutomaticKnobsParseAndBadOnesAreNamed) {
  EngineConfig c;
  c.policy = "automatic:hysteresis=3/swap_confidence=2,min_heat=1";
  auto p = EngineConfig::make_policy(c);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->name(), "automatic");
  EXPECT_DOUBLE_EQ((*p)->swap_ratio(), 3.0);
  c.policy = "automatic:burst=0/idle=0.5";
  ASSERT_TRUE(EngineConfig::make_policy(c).ok());
  c.policy = "automatic:bogus=1";
  EXPECT_THAT(std::string(EngineConfig::make_policy(c).status().message()),
              HasSubstr("unknown automatic knob 'bogus'"));
  EXPECT_THAT(std::string(EngineConfig::make_policy(c).status().message()),
              HasSubstr("burst, idle"));
  // Every knob the message lists is one the parser knows (the list once
  // missed current_histogram).
  const std::string msg(EngineConfig::make_policy(c).status().message());
  const std::size_t at = msg.find("(known: ");
  ASSERT_NE(at, std::string::npos) << msg;
  const std::size_t from = at + 8;
  const std::vector<std::string> known =
      absl::StrSplit(msg.substr(from, msg.rfind(')') - from), ", ");
  EXPECT_THAT(known, ::testing::Contains("current_histogram"));
  for (const std::string& k : known) {
    c.policy = "automatic:" + k + "=1";
    EXPECT_THAT(std::string(EngineConfig::make_policy(c).status().message()),
                Not(HasSubstr("unknown automatic knob")))
        << k;
  }
  c.policy = "automatic:idle=-1";
  EXPECT_THAT(std::string(EngineConfig::make_policy(c).status().message()),
              HasSubstr("automatic:idle"));
  c.policy = "automatic:hysteresis=0.5";  // below its range
  EXPECT_THAT(std::string(EngineConfig::make_policy(c).status().message()),
              HasSubstr("automatic:hysteresis"));
  c.policy = "automatic:reversals=1.5";  // a share of moves: above its range
  EXPECT_THAT(std::string(EngineConfig::make_policy(c).status().message()),
              HasSubstr("automatic:reversals"));
  c.policy = "automatic:reversal_margin=0.5";  // would make reversals easier
  EXPECT_THAT(std::string(EngineConfig::make_policy(c).status().message()),
              HasSubstr("automatic:reversal_margin"));
}

// The whole-number knobs of the automatic spec (min_heat, residency,
// current_histogram, ...) used to take a fraction and drop it: "min_heat=1.5"
// ran with 1 and "current_histogram=0.5" with 0, the opposite of what was
// asked, and no error.
TEST_F(ConfigTest, WholeNumberAutomaticKnobsRefuseFractions) {
  EngineConfig c;
  for (const char* spec : {"automatic:min_heat=1.5", "automatic:current_histogram=0.5",
                           "automatic:residency=2.9", "automatic:keep_room=1.5"}) {
    c.policy = spec;
    auto p = EngineConfig::make_policy(c);
    ASSERT_FALSE(p.ok()) << spec;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << p.status();
    EXPECT_THAT(std::string(p.status().message()), HasSubstr("is not a whole number")) << spec;
    EXPECT_THAT(std::string(p.status().message()), HasSubstr("automatic:")) << spec;
  }
  for (const char* spec : {"automatic:min_heat=2", "automatic:current_histogram=1",
                           "automatic:residency=1e2", "automatic:payoff=0"}) {
    c.policy = spec;
    EXPECT_TRUE(EngineConfig::make_policy(c).ok()) << spec;
  }
}

// describe() printed doubles with 6 significant digits: 1234567.5 MiB/s
// showed as 1.23457e+06 (which reads back as 1234570), and a program's
// half-life of 4.0000001 showed as "4 ... default".
TEST_F(ConfigTest, KnobValuesKeepEveryDigit) {
  EngineConfig c;
  c.rate_limit_mbps = 1234567.5;
  c.half_life_epochs = 4.0000001;
  const Knob& rate = kKnobs[detail::knob_index("rate_limit_mbps")];
  EXPECT_EQ(detail::knob_value(rate, c), "1234567.5");
  ScopedEnv env(rate.env, detail::knob_value(rate, c).c_str());
  auto back = EngineConfig::from_env();
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->rate_limit_mbps, 1234567.5);
  std::string half_life_line;
  for (absl::string_view line : absl::StrSplit(c.describe(), '\n'))
    if (absl::StartsWith(line, "half_life_epochs ")) half_life_line = std::string(line);
  EXPECT_THAT(half_life_line, HasSubstr("4.0000001")) << c.describe();
  EXPECT_THAT(half_life_line, HasSubstr("program")) << c.describe();
  // Values that print short stay short.
  EXPECT_EQ(detail::knob_value(kKnobs[detail::knob_index("high_watermark")], EngineConfig()),
            "0.95");
  EXPECT_EQ(detail::knob_value(rate, EngineConfig()), "256");
}

// Range errors printed the value and the bounds with 6 significant digits:
// "TIERKIT_EPOCH_MS=3600001: 3.6e+06 is outside the allowed range [1,
// 3.6e+06]", a value that reads as the bound it is beyond.
TEST_F(ConfigTest, RangeErrorsKeepEveryDigit) {
  struct Case {
    const char* var;
    const char* value;
    const char* needle;
  } cases[] = {
      {"TIERKIT_EPOCH_MS", "3600001", "3600001 is outside the allowed range [1, 3600000]"},
      {"TIERKIT_SCAN_PAGES", "1099511627777",
       "1099511627777 is outside the allowed range [1, 1099511627776]"},
      {"TIERKIT_PROMOTION_THRESHOLD", "1000000.5", "1000000.5 is outside the allowed range"},
  };
  for (const auto& [var, value, needle] : cases) {
    ScopedEnv env(var, value);
    auto c = EngineConfig::from_env();
    ASSERT_FALSE(c.ok()) << var << "=" << value;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(needle)) << c.status();
  }
  EngineConfig c;
  c.epoch_ms = 3600001;
  EXPECT_THAT(std::string(c.validate().message()),
              HasSubstr("epoch_ms = 3600001 must be in [1, 3600000]"));
  c = EngineConfig();
  c.automatic.max_epochs_between_coolings = 1000001;
  EXPECT_THAT(std::string(c.validate().message()),
              HasSubstr("max_cool_epochs = 1000001 must be in"));
  c = EngineConfig();
  c.policy = "automatic:max_cool_epochs=1000001";
  EXPECT_THAT(std::string(EngineConfig::make_policy(c).status().message()),
              HasSubstr("1000001 is outside the allowed range"));
}

// A knob given twice in a spec silently took the last value:
// "kernel:rate=16/rate=32" ran at 32 MBps and "automatic:first_swap=2,
// first_swap=3" with 3, whichever of the two was meant.
TEST_F(ConfigTest, KnobGivenTwiceInASpecIsAnError) {
  EngineConfig c;
  for (const auto& [spec, knob] :
       {std::pair<const char*, const char*>{"kernel:rate=16/rate=32", "kernel knob 'rate'"},
        {"kernel:hot=5/target=8,hot=5", "kernel knob 'hot'"},
        {"automatic:first_swap=2/swap_confidence=2,first_swap=3", "automatic knob 'first_swap'"},
        {"automatic:residency=1/residency=1", "automatic knob 'residency'"}}) {
    c.policy = spec;
    auto p = EngineConfig::make_policy(c);
    ASSERT_FALSE(p.ok()) << spec;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << p.status();
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(knob)) << p.status();
    EXPECT_THAT(std::string(p.status().message()), HasSubstr("given twice")) << p.status();
    EXPECT_THAT(std::string(p.status().message()), HasSubstr(spec)) << p.status();
  }
  for (const char* spec :
       {"kernel:rate=16/target=8/hot=5", "automatic:first_swap=2/swap_confidence=2"}) {
    c.policy = spec;
    EXPECT_TRUE(EngineConfig::make_policy(c).ok()) << spec;
  }
}

// A spec's own value (threshold:RATE, kernel:rate=...) replaces its knob's,
// and the demotion rate is lowered below RATE; describe() showed the knob's
// value as if it ran: the program's threshold.promotion_threshold = 10
// under TIERKIT_POLICY=threshold:2 read "10 ... program" while 2 ran.
TEST_F(ConfigTest, DescribeSaysWhenThePolicySpecOverridesAKnob) {
  auto line = [](const std::string& d, absl::string_view field) {
    for (absl::string_view l : absl::StrSplit(d, '\n'))
      if (absl::StartsWith(l, absl::StrCat(field, " "))) return std::string(l);
    return std::string();
  };
  EngineConfig program;
  program.threshold.promotion_threshold = 10;
  program.threshold.demotion_threshold = 3;
  ScopedEnv policy("TIERKIT_POLICY", "threshold:2");
  auto c = EngineConfig::from_env(program);
  ASSERT_TRUE(c.ok()) << c.status();
  std::string d = c->describe();
  EXPECT_THAT(line(d, "threshold.promotion_threshold"),
              ::testing::ContainsRegex("10 .*program; "
                                       "overridden by policy 'threshold:2' \\(runs with 2\\)$"))
      << d;
  EXPECT_THAT(line(d, "threshold.demotion_threshold"),
              HasSubstr("overridden by policy 'threshold:2' (runs with 1)"))
      << d;
  EngineConfig kernel;
  kernel.policy = "kernel:rate=16/hot=500";
  d = kernel.describe();
  EXPECT_THAT(line(d, "kernel.promote_rate_limit_mbps"),
              HasSubstr("overridden by policy 'kernel:rate=16/hot=500' (runs with 16)"))
      << d;
  EXPECT_THAT(line(d, "kernel.hot_threshold_ms"), HasSubstr("(runs with 500)")) << d;
  EXPECT_THAT(line(d, "kernel.promote_throughput_mbps"), Not(HasSubstr("overridden"))) << d;
  // Without an argument the knobs' values run.
  for (const char* spec : {"threshold", "kernel", "automatic", "threshold:4"}) {
    EngineConfig plain;
    plain.policy = spec;
    EXPECT_THAT(plain.describe(), Not(HasSubstr("overridden"))) << spec;
  }
}

// The program's policy spec beat the environment: under a program's
// "threshold:8", TIERKIT_PROMOTION_THRESHOLD=10 ran with 8, and a
// TIERKIT_KERNEL_* variable under "kernel:rate=..." lost alike, against
// environment > program > default.
TEST_F(ConfigTest, EnvironmentBeatsTheProgramsPolicySpec) {
  EngineConfig program;
  program.policy = "threshold:8";
  ScopedEnv promote("TIERKIT_PROMOTION_THRESHOLD", "10");
  auto e = create(program);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)->policy_unsafe().current_threshold(), 10);
  EXPECT_EQ((*e)->config().threshold.promotion_threshold, 10);
  std::string d = (*e)->config().describe();
  EXPECT_THAT(d,
              ::testing::ContainsRegex(
                  "threshold.promotion_threshold +10 .*environment TIERKIT_PROMOTION_THRESHOLD\n"))
      << d;
  EXPECT_THAT(d, Not(HasSubstr("overridden"))) << d;

  program.policy = "kernel:rate=16/hot=500";
  ScopedEnv rate("TIERKIT_KERNEL_RATE_LIMIT_MBPS", "32");
  auto k = EngineConfig::from_env(program);
  ASSERT_TRUE(k.ok()) << k.status();
  auto p = EngineConfig::make_policy(*k);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->name(), "kernel:rate=32");
  EXPECT_EQ(detail::spec_applied(*k).kernel.hot_threshold_ms, 500);  // the program's, unopposed
  EXPECT_THAT(k->describe(), Not(HasSubstr("overridden"))) << k->describe();
}

// TIERKIT_POLICY's argument and another variable setting the same knob are
// both the user's: TIERKIT_POLICY=threshold:100 with
// TIERKIT_PROMOTION_THRESHOLD=10 ran with 100 and said nothing.
TEST_F(ConfigTest, EnvironmentSpecAndAVariableOfItsKnobAreAnError) {
  struct Case {
    const char* spec;
    const char* var;
    const char* value;
  } cases[] = {{"threshold:100", "TIERKIT_PROMOTION_THRESHOLD", "10"},
               {"kernel:rate=16", "TIERKIT_KERNEL_RATE_LIMIT_MBPS", "32"},
               {"kernel:target=8/hot=500", "TIERKIT_KERNEL_HOT_THRESHOLD_MS", "200"}};
  for (const auto& [spec, var, value] : cases) {
    ScopedEnv policy("TIERKIT_POLICY", spec);
    ScopedEnv knob(var, value);
    auto c = EngineConfig::from_env();
    ASSERT_FALSE(c.ok()) << spec << " " << var;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(absl::StrCat("TIERKIT_POLICY=", spec)))
        << c.status();
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(absl::StrCat(var, "=", value)))
        << c.status();
  }
  // Knobs the spec leaves alone combine with it.
  ScopedEnv policy("TIERKIT_POLICY", "kernel:rate=16");
  ScopedEnv hot("TIERKIT_KERNEL_HOT_THRESHOLD_MS", "200");
  auto c = EngineConfig::from_env();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(detail::spec_applied(*c).kernel.promote_rate_limit_mbps, 16);
  EXPECT_EQ(detail::spec_applied(*c).kernel.hot_threshold_ms, 200);
}

// The demotion threshold was checked against the threshold.* field's
// promotion threshold, not the one threshold:RATE runs:
// TIERKIT_POLICY=threshold:100 with TIERKIT_DEMOTION_THRESHOLD=50 failed
// "must be below the promotion threshold 4".
TEST_F(ConfigTest, DemotionThresholdIsCheckedAgainstThePromotionThresholdThatRuns) {
  ScopedEnv policy("TIERKIT_POLICY", "threshold:100");
  {
    ScopedEnv demote("TIERKIT_DEMOTION_THRESHOLD", "50");
    auto e = create(EngineConfig());
    ASSERT_TRUE(e.ok()) << e.status();
    auto& threshold = static_cast<ThresholdPolicy&>((*e)->policy_unsafe());
    EXPECT_EQ(threshold.current_threshold(), 100);
    EXPECT_EQ(threshold.demotion_threshold(), 50);
  }
  ScopedEnv demote("TIERKIT_DEMOTION_THRESHOLD", "150");
  auto c = EngineConfig::from_env();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("threshold:100")) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("TIERKIT_DEMOTION_THRESHOLD=150"))
      << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("lowers a demotion threshold"))
      << c.status();  // why the spec runs another value
  // The program's config alike, with or without the environment.
  EngineConfig program;
  program.policy = "threshold:100";
  program.threshold.demotion_threshold = 50;
  EXPECT_TRUE(program.validate().ok()) << program.validate();
  program.environment = EngineConfig::Environment::kIgnore;
  EXPECT_TRUE(create(program).ok());
}

// A program's "threshold:8" lowers its demotion threshold 10 to 8 / 2 = 4;
// with TIERKIT_PROMOTION_THRESHOLD=20 it ran 20 / 4: the variable replaced
// the spec's promotion threshold, but the spec's lowering stayed, though 10
// is below the 20 that runs.
TEST_F(ConfigTest, ProgramsDemotionThresholdIsLoweredOnlyForThePromotionThresholdThatRuns) {
  EngineConfig program;
  program.policy = "threshold:8";
  program.threshold.demotion_threshold = 10;
  auto runs = [&](const char* promote) {
    ScopedEnv env("TIERKIT_PROMOTION_THRESHOLD", promote);
    auto e = create(program);
    EXPECT_TRUE(e.ok()) << e.status();
    if (!e.ok()) return std::pair<double, double>(-1, -1);
    const auto& t = static_cast<ThresholdPolicy&>((*e)->policy_unsafe());
    EXPECT_EQ((*e)->config().threshold.demotion_threshold, t.demotion_threshold());
    return std::pair(t.current_threshold(), t.demotion_threshold());
  };
  EXPECT_EQ(runs("20"), std::pair(20.0, 10.0));
  EXPECT_EQ(runs("10.5"), std::pair(10.5, 10.0));
  EXPECT_EQ(runs("6"), std::pair(6.0, 3.0));  // as under threshold:6
  EXPECT_EQ(runs("8"), std::pair(8.0, 4.0));  // as without the variable
  // A demotion threshold from the environment stands, checked against 20.
  ScopedEnv promote("TIERKIT_PROMOTION_THRESHOLD", "20");
  {
    ScopedEnv demote("TIERKIT_DEMOTION_THRESHOLD", "15");
    auto c = EngineConfig::from_env(program);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->threshold.demotion_threshold, 15);
  }
  ScopedEnv demote("TIERKIT_DEMOTION_THRESHOLD", "25");
  auto c = EngineConfig::from_env(program);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("demotion threshold 25 must be below the promotion threshold 20"));
}

// An error of the program's own config ended in "(environment: ...)"
// listing every variable applied, as if TIERKIT_EPOCH_MS=20 had made its
// "threshold:0" invalid.
TEST_F(ConfigTest, ProgramErrorsDoNotBlameTheEnvironment) {
  ScopedEnv epoch("TIERKIT_EPOCH_MS", "20");
  EngineConfig program;
  program.policy = "threshold:0";
  auto c = EngineConfig::from_env(program);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("promotion threshold 0"));
  EXPECT_THAT(std::string(c.status().message()), Not(HasSubstr("TIERKIT_EPOCH_MS"))) << c.status();
  program = EngineConfig();
  program.low_watermark = 0.99;  // above high
  c = EngineConfig::from_env(program);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), Not(HasSubstr("environment"))) << c.status();
  // A variable behind the error is still named.
  ScopedEnv low("TIERKIT_LOW_WATERMARK", "0.99");
  c = EngineConfig::from_env();
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("(environment: ")) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("TIERKIT_LOW_WATERMARK)")) << c.status();
}

}  // namespace
}  // namespace tierkit
