// Every public entry point, fed bad input, returns a clear absl::Status (the
// code and a message naming the problem) or is a documented no-op. Also the
// unprivileged paths: everything here runs as an ordinary user; when run as
// root, a forked child drops to nobody and checks move_pages on its own pages.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scoped_env.hpp"
#include "tierkit/backend/linux.hpp"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/detail/parse.hpp"
#include "tierkit/engine.hpp"

#if __has_include("tierkit/topology.hpp")
#include "tierkit/topology.hpp"
#define TIERKIT_HAVE_TOPOLOGY 1
#endif
#if __has_include("tierkit/allocator.hpp")
#include "tierkit/allocator.hpp"
#define TIERKIT_HAVE_ALLOCATOR 1
#endif
#if __has_include("tierkit/memory_resource.hpp")
#include "tierkit/memory_resource.hpp"
#define TIERKIT_HAVE_MEMORY_RESOURCE 1
#endif

namespace tierkit {
namespace {

using ::testing::HasSubstr;

constexpr std::uintptr_t kBase = 0x100000000000;
const void* P(std::uintptr_t a) { return reinterpret_cast<const void*>(a); }
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// Expects `s` to fail with `code` and a message containing every `needles`.
void ExpectError(const absl::Status& s, absl::StatusCode code,
                 std::initializer_list<const char*> needles) {
  EXPECT_EQ(s.code(), code) << s;
  for (const char* n : needles) EXPECT_THAT(Msg(s), HasSubstr(n)) << s;
}

struct SimEngine {
  explicit SimEngine(EngineConfig c = {}) {
    c.fast_nodes = {0};
    c.slow_nodes = {1};
    auto e = Engine::create(c, &sim, &clock);
    EXPECT_TRUE(e.ok()) << e.status();
    engine = std::move(*e);
  }
  ManualClock clock{1};
  SimulatedBackend sim{{{0, 1 << 20}, {1, 1 << 30}}};
  std::unique_ptr<Engine> engine;
};

// --- EngineConfig and Engine::create -------------------------------------

TEST(BadInput, EngineCreateRejectsEveryInvalidField) {
  SimulatedBackend sim({{0, 1 << 20}, {1, 1 << 30}});
  auto expect_bad = [&](EngineConfig c, const char* needle) {
    auto e = Engine::create(c, &sim);
    ASSERT_FALSE(e.ok()) << needle;
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << e.status();
    EXPECT_THAT(Msg(e.status()), HasSubstr(needle));
  };
  EngineConfig c;
  c.epoch_ms = 0;
  expect_bad(c, "epoch_ms");
  c = {};
  c.epoch_ms = 3600001;
  expect_bad(c, "epoch_ms");
  for (double bad : {std::nan(""), 0.0, -1.0, 1e9, double{INFINITY}}) {
    c = {};
    c.half_life_epochs = bad;
    expect_bad(c, "half_life_epochs");
  }
  for (double bad : {std::nan(""), -1.0, double{INFINITY}}) {
    c = {};
    c.rate_limit_mbps = bad;
    expect_bad(c, "rate_limit_mbps");
  }
  c = {};
  c.low_watermark = 0.99;  // above high
  expect_bad(c, "watermarks");
  c = {};
  c.high_watermark = std::nan("");
  expect_bad(c, "high_watermark");
  c = {};
  c.low_watermark = 0;
  expect_bad(c, "watermarks");
  c = {};
  c.sampling = 0;
  expect_bad(c, "sampling");
  c = {};
  c.fast_nodes = NodeSet();
  expect_bad(c, "fast_nodes is empty");
  c = {};
  c.slow_nodes = {0};
  expect_bad(c, "node 0 is in both");
  for (double bad : {std::nan(""), 0.0, -2.0, double{INFINITY}}) {
    c = {};
    c.threshold.promotion_threshold = bad;
    expect_bad(c, "promotion");
  }
  c = {};
  c.threshold.demotion_threshold = 10;  // above promotion (4)
  expect_bad(c, "must be below the promotion threshold");
  c = {};
  c.automatic.headroom = 1;
  expect_bad(c, "headroom");
  c = {};
  c.kernel.hot_threshold_ms = 0;
  expect_bad(c, "hot_threshold_ms");
  c = {};
  c.kernel.promote_throughput_mbps = -1;
  expect_bad(c, "promote_throughput");
  c = {};
  c.policy = "fastest";
  expect_bad(c, "unknown policy 'fastest'");
}

TEST(BadInput, BadPolicySpecsAreNamedErrors) {
  struct Case {
    const char* spec;
    const char* needle;
  } cases[] = {
      {"", "unknown policy ''"},
      {"bogus", "unknown policy 'bogus'"},
      {"automatic:3", "unknown automatic knob '3'"},
      {"static:1", "unknown policy 'static:1'"},
      {"Threshold", "unknown policy"},
      {"threshold:", "promotion threshold"},  // empty arg = the default; fine? see below
      {"threshold:abc", "'abc' is not a finite number"},
      {"threshold:nan", "not a finite number"},
      {"threshold:inf", "not a finite number"},
      {"threshold:-1", "threshold:RATE"},
      {"threshold:0", "promotion threshold 0"},
      {"threshold:1e7", "outside the allowed range"},
      {"kernel:speed=5", "unknown kernel knob 'speed'"},
      {"kernel:rate=", "kernel:rate"},
      {"kernel:rate=fast", "kernel:rate"},
      {"kernel:rate=0", "kernel:rate"},
      {"kernel:hot=-5", "kernel:hot"},
      {"kernel:rate", "kernel:rate"},
  };
  SimEngine rig;
  for (const auto& [spec, needle] : cases) {
    absl::Status s = rig.engine->set_policy(spec);
    if (std::string(spec) == "threshold:") {
      // An empty argument means "the configured threshold": accepted.
      EXPECT_TRUE(s.ok()) << s;
      continue;
    }
    EXPECT_FALSE(s.ok()) << spec;
    EXPECT_TRUE(s.code() == absl::StatusCode::kInvalidArgument ||
                s.code() == absl::StatusCode::kOutOfRange)
        << spec << ": " << s;
    EXPECT_THAT(Msg(s), HasSubstr(needle)) << spec;
  }
  // A failed switch keeps the active policy.
  ASSERT_TRUE(rig.engine->set_policy("automatic").ok());
  EXPECT_FALSE(rig.engine->set_policy("threshold:-3").ok());
  EXPECT_EQ(rig.engine->policy_name(), "automatic");
}

// Kernel spec keys took more than their variables: kernel:hot=ms anything
// in [0, 1e9] while TIERKIT_KERNEL_HOT_THRESHOLD_MS allows [1, 1e7]
// ("kernel:hot=0.5" and "kernel:hot=5e8" ran), kernel:rate=MBps anything > 0
// while TIERKIT_KERNEL_RATE_LIMIT_MBPS allows [1, 1e9] ("kernel:rate=1e-300",
// no promotion ever, ran). Every kernel spec key now takes exactly what its
// variable takes.
TEST(BadInput, KernelSpecKeysTakeWhatTheirVariablesTake) {
  struct Case {
    const char* key;    // named in the error
    const char* range;  // the variable's, in the error
    std::vector<const char*> bad, good;
  };
  const Case cases[] = {
      {"kernel:hot",
       "[1, 1e+07]",
       {"kernel:hot=0.5", "kernel:hot=5e8", "kernel:rate=64/hot=0"},
       {"kernel:hot=1", "kernel:hot=1e7", "kernel:hot=250/rate=64"}},
      {"kernel:rate",
       "[1, 1e+09]",
       {"kernel:rate=0.5", "kernel:rate=1e-300", "kernel:hot=5/rate=0.9"},
       {}},
  };
  EngineConfig c;
  for (const Case& k : cases) {
    for (const char* spec : k.bad) {
      c.policy = spec;
      auto p = EngineConfig::make_policy(c);
      ASSERT_FALSE(p.ok()) << spec;
      EXPECT_EQ(p.status().code(), absl::StatusCode::kOutOfRange) << p.status();
      EXPECT_THAT(Msg(p.status()), HasSubstr(k.key)) << spec;
      EXPECT_THAT(Msg(p.status()), HasSubstr(k.range)) << spec;
    }
    for (const char* spec : k.good) {
      c.policy = spec;
      EXPECT_TRUE(EngineConfig::make_policy(c).ok()) << spec;
    }
  }
  const std::pair<const char*, const char*> keys[] = {{"rate", "TIERKIT_KERNEL_RATE_LIMIT_MBPS"},
                                                      {"target", "TIERKIT_KERNEL_THROUGHPUT_MBPS"},
                                                      {"hot", "TIERKIT_KERNEL_HOT_THRESHOLD_MS"}};
  for (const auto& [key, var] : keys)
    for (const char* v : {"0", "1e-300", "0.5", "1", "64", "1e7", "2e7", "1e9", "2e9"}) {
      c.policy = absl::StrCat("kernel:", key, "=", v);
      tierkit_test::ScopedEnv env(var, v);
      EXPECT_EQ(EngineConfig::make_policy(c).ok(), EngineConfig::from_env().ok())
          << c.policy << " vs " << var << "=" << v;
    }
}

// An unknown kernel knob without "=V" (or a bare number, as threshold:RATE
// takes) was reported as a bad value of a knob that does not exist:
// "kernel:speed: '' is not a finite number".
TEST(BadInput, UnknownKernelKnobIsNamedBeforeItsValue) {
  EngineConfig c;
  for (const auto& [spec, key] : {std::pair<const char*, const char*>{"kernel:speed", "speed"},
                                  {"kernel:500", "500"},
                                  {"kernel:rate=64/warp", "warp"}}) {
    c.policy = spec;
    auto p = EngineConfig::make_policy(c);
    ASSERT_FALSE(p.ok()) << spec;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << p.status();
    EXPECT_THAT(Msg(p.status()), HasSubstr(absl::StrCat("unknown kernel knob '", key, "'")))
        << spec;
    EXPECT_THAT(Msg(p.status()), ::testing::Not(HasSubstr("not a finite number"))) << spec;
  }
}

// validate() checked only headroom and hysteresis of a program's
// AutomaticOptions: a NaN or negative swap_confidence, a reversal_share of
// 2 or a current_histogram of 7 built an engine that misbehaved silently,
// while the same values in an "automatic:" spec are refused.
TEST(BadInput, EngineCreateRejectsAutomaticOptionsOutsideTheSpecRanges) {
  SimulatedBackend sim({{0, 1 << 20}, {1, 1 << 30}});
  struct Case {
    void (*set)(AutomaticOptions&);
    const char* needle;
  } cases[] = {
      {[](AutomaticOptions& o) { o.swap_confidence = std::nan(""); }, "swap_confidence"},
      {[](AutomaticOptions& o) { o.swap_confidence = -1; }, "swap_confidence"},
      {[](AutomaticOptions& o) { o.idle_evidence = INFINITY; }, "idle"},
      {[](AutomaticOptions& o) { o.reversal_share = 2; }, "reversals"},
      {[](AutomaticOptions& o) { o.reversal_margin = 0.5; }, "reversal_margin"},
      {[](AutomaticOptions& o) { o.cool_heat_per_page = -3; }, "cool"},
      {[](AutomaticOptions& o) { o.current_histogram = 7; }, "current_histogram"},
      {[](AutomaticOptions& o) { o.keep_room = 3; }, "keep_room"},
  };
  for (const Case& k : cases) {
    EngineConfig c;
    c.slow_nodes = {1};
    k.set(c.automatic);
    auto e = Engine::create(c, &sim);
    ASSERT_FALSE(e.ok()) << k.needle;
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << e.status();
    EXPECT_THAT(Msg(e.status()), HasSubstr(k.needle)) << e.status();
    EXPECT_THAT(Msg(e.status()), HasSubstr("must be in [")) << e.status();
  }
  // The defaults, and a headroom validate() has always allowed, still work.
  EngineConfig c;
  c.slow_nodes = {1};
  EXPECT_TRUE(Engine::create(c, &sim).ok());
  c.automatic.headroom = 0.95;
  auto e = Engine::create(c, &sim);
  EXPECT_TRUE(e.ok()) << e.status();
}

// A byte count of more than 64 bits was "not a byte size (examples: 4096,
// 64K, ...)", the wrong reason, where "20000000T" said it overflows.
TEST(BadInput, ByteSizesBeyond64BitsSayTheyOverflow) {
  for (const char* text : {"18446744073709551616", "99999999999999999999", "+99999999999999999999K",
                           "123456789012345678901234567890"}) {
    auto b = detail::parse_bytes(text, "TIERKIT_FAST_BUDGET");
    ASSERT_FALSE(b.ok()) << text;
    EXPECT_EQ(b.status().code(), absl::StatusCode::kOutOfRange) << b.status();
    EXPECT_THAT(Msg(b.status()), HasSubstr("overflows 64 bits")) << b.status();
    EXPECT_THAT(Msg(b.status()), HasSubstr("TIERKIT_FAST_BUDGET")) << b.status();
  }
  EXPECT_EQ(*detail::parse_bytes("18446744073709551615", "size"), ~std::uint64_t{0});
  // Garbage is still garbage.
  for (const char* text : {"12x", "-5", "1.5", "K"})
    EXPECT_EQ(detail::parse_bytes(text, "size").status().code(), absl::StatusCode::kInvalidArgument)
        << text;
}

TEST(BadInput, RuntimeSettersRejectBadValuesAndKeepTheOldOnes) {
  SimEngine rig;
  ASSERT_TRUE(rig.engine->set_policy("threshold:8").ok());
  for (double bad : {std::nan(""), -1.0, 0.0, double{INFINITY}, -double{INFINITY}})
    ExpectError(rig.engine->set_promotion_threshold(bad), absl::StatusCode::kInvalidArgument,
                {"promotion threshold"});
  EXPECT_EQ(rig.engine->policy_unsafe().current_threshold(), 8);
  for (double bad : {std::nan(""), -1.0, 8.0, 9.0, double{INFINITY}})
    EXPECT_EQ(rig.engine->set_demotion_threshold(bad).code(), absl::StatusCode::kInvalidArgument)
        << bad;
  for (double bad : {std::nan(""), -1.0, double{INFINITY}})
    ExpectError(rig.engine->set_rate_limit_mbps(bad), absl::StatusCode::kInvalidArgument,
                {"rate limit", "finite number >= 0"});
  EXPECT_EQ(rig.engine->config().rate_limit_mbps, 256);
  EXPECT_TRUE(rig.engine->set_rate_limit_mbps(0).ok());  // 0 = no refill: valid
  // Thresholds only make sense for the threshold policy.
  ASSERT_TRUE(rig.engine->set_policy("kernel").ok());
  ExpectError(rig.engine->set_promotion_threshold(3), absl::StatusCode::kFailedPrecondition,
              {"kernel"});
  EXPECT_EQ(rig.engine->set_demotion_threshold(1).code(), absl::StatusCode::kFailedPrecondition);
}

// --- Regions ---------------------------------------------------------------

TEST(BadInput, RegisterRegionRejectsBadRanges) {
  SimEngine rig;
  Engine& e = *rig.engine;
  ExpectError(e.register_region(nullptr, kPageSize).status(), absl::StatusCode::kInvalidArgument,
              {"null pointer"});
  ExpectError(e.register_region(P(kBase), 0).status(), absl::StatusCode::kInvalidArgument,
              {"empty range"});
  ExpectError(e.register_region(P(kBase), std::numeric_limits<std::size_t>::max()).status(),
              absl::StatusCode::kInvalidArgument, {"47-bit"});
  ExpectError(e.register_region(P(~std::uintptr_t{0} - kPageSize), kPageSize).status(),
              absl::StatusCode::kInvalidArgument, {"47-bit"});
  RegionOptions odd;
  odd.granularity = 12345;
  ExpectError(e.register_region(P(kBase), kPageSize, odd).status(),
              absl::StatusCode::kInvalidArgument, {"granularity 12345"});
  auto ok = e.register_region(P(kBase), 4 * kPageSize, RegionOptions().with_name("first"));
  ASSERT_TRUE(ok.ok());
  ExpectError(
      e.register_region(P(kBase + kPageSize), kPageSize, RegionOptions().with_name("dup")).status(),
      absl::StatusCode::kAlreadyExists, {"'first'", "'dup'"});
  EXPECT_EQ(e.stats().regions, 1u);
}

TEST(BadInput, ForeignAndUnknownIdsAreNotFoundOrNoOps) {
  SimEngine rig;
  Engine& e = *rig.engine;
  ExpectError(e.regions().remove(42), absl::StatusCode::kNotFound, {"no region with id 42"});
  ExpectError(e.regions().set_tag(42, RegionTag::hot), absl::StatusCode::kNotFound,
              {"no region with id 42"});
  EXPECT_EQ(e.regions().find(42), nullptr);
  EXPECT_EQ(e.regions().lookup(P(kBase)), nullptr);
  // record_access on pointers tierkit never saw: counted as outside, nothing else.
  int local = 0;
  e.record_access(&local);
  e.record_access(nullptr);
  e.record_access(P(~std::uintptr_t{0}));
  e.record_access(P(kBase), 0);
  e.record_access(P(kBase), std::numeric_limits<std::size_t>::max(), 0xFFFFFFFFu);
  EXPECT_GE(e.stats().outside_accesses, 5u);
  EXPECT_TRUE(e.step().ok());
  EXPECT_EQ(e.stats().tracked_pages, 0u);
  // A handle from a registration that was removed behind its back.
  auto h = e.register_region(P(kBase), kPageSize);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(e.regions().remove(h->id()).ok());
  h->reset();  // documented: reset ignores the NotFound
  EXPECT_EQ(e.regions().size(), 0u);
}

TEST(BadInput, RegionOnPagesTheBackendDoesNotKnowIsHarmless) {
  // Pages never touched (simulated) or never mapped (Linux): the placement
  // query reports -ENOENT, the engine keeps its default belief, and a
  // migration attempt fails per page and is counted as absent.
  SimEngine rig(EngineConfig{});
  ASSERT_TRUE(rig.engine->set_policy("threshold:1").ok());
  auto h = rig.engine->register_region(P(kBase), 8 * kPageSize, RegionOptions(), false);
  ASSERT_TRUE(h.ok());
  for (int i = 0; i < 8; ++i) rig.engine->record_access(P(kBase + i * kPageSize), kPageSize, 50);
  rig.clock.advance_ns(100 * kNsPerMs);
  ASSERT_TRUE(rig.engine->step().ok());
  EngineStats s = rig.engine->stats();
  EXPECT_EQ(s.promoted_pages, 0u);
  EXPECT_EQ(s.absent_pages, 8u);
  EXPECT_EQ(s.failed_pages, 0u);
  EXPECT_EQ(s.failures_by_errno.count[ENOENT], 8u);
}

TEST(BadInput, UnknownNodesAreRefusedAtCreateByName) {
  // A node the backend cannot use would fail every move to it as a whole
  // call, epoch after epoch: Engine::create asks the backend about each.
  SimulatedBackend sim({{0, 1 << 20}, {1, 1 << 30}});
  EngineConfig c;
  c.policy = "threshold:1";
  c.slow_nodes = {7};
  auto e = Engine::create(c, &sim);
  ExpectError(e.status(), absl::StatusCode::kInvalidArgument, {"slow_nodes", "node 7"});
  c.slow_nodes = {1};
  c.fast_nodes = {0, 9};
  ExpectError(Engine::create(c, &sim).status(), absl::StatusCode::kInvalidArgument,
              {"fast_nodes", "node 9"});
  // The backends themselves name the node.
  std::vector<void*> pages{reinterpret_cast<void*>(kBase)};
  std::vector<NodeId> nodes{7};
  std::vector<int> status(1);
  ExpectError(sim.move(pages, nodes, absl::MakeSpan(status)), absl::StatusCode::kInvalidArgument,
              {"node 7"});
  ExpectError(sim.node_memory(7).status(), absl::StatusCode::kNotFound, {"node 7"});
  ExpectError(LinuxBackend::instance().node_memory(4000).status(), absl::StatusCode::kNotFound,
              {"node 4000"});
}

TEST(BadInput, NodeIdsLinuxCannotHaveAreRefusedNotDropped) {
  // NodeSet holds ids [0, 1024). An id outside used to be dropped without a
  // word: {0, 2000} ran on node 0 alone, and {2000} became an empty set
  // whose error did not name the id.
  NodeSet s{0, 2000, 3000};
  EXPECT_EQ(s.to_vector(), std::vector<NodeId>{0});
  EXPECT_EQ(s.refused(), std::optional<NodeId>(2000));
  EXPECT_FALSE(s == NodeSet{0});
  EXPECT_TRUE(NodeSet({0, 1}).check("x").ok());
  SimulatedBackend sim({{0, 1 << 20}, {1, 1 << 30}});
  EngineConfig c;
  c.slow_nodes = {1, 2000};
  ExpectError(Engine::create(c, &sim).status(), absl::StatusCode::kInvalidArgument,
              {"slow_nodes", "node 2000", "1024"});
  c.slow_nodes = {1};
  c.fast_nodes = {-2};
  ExpectError(c.validate(), absl::StatusCode::kInvalidArgument, {"fast_nodes", "node -2"});
  for (Backend* b : {static_cast<Backend*>(&sim), static_cast<Backend*>(&LinuxBackend::instance())})
    ExpectError(b->bind(reinterpret_cast<void*>(kBase), kPageSize, NodeSet{0, 1024},
                        BindMode::kBind, false),
                absl::StatusCode::kInvalidArgument, {"node 1024"});
}

TEST(BadInput, TagsOutsideRegionTagAreRefused) {
  // A RegionTag cast from an unchecked integer used to act as pinned.
  SimEngine rig;
  Engine& e = *rig.engine;
  const auto bad = static_cast<RegionTag>(9);
  ExpectError(e.register_region(P(kBase), kPageSize, RegionOptions().with_tag(bad)).status(),
              absl::StatusCode::kInvalidArgument, {"tag 9"});
  EXPECT_EQ(e.regions().size(), 0u);
  auto h = e.register_region(P(kBase), kPageSize, RegionOptions().with_tag(RegionTag::hot));
  ASSERT_TRUE(h.ok());
  ExpectError(e.regions().set_tag(h->id(), bad), absl::StatusCode::kInvalidArgument,
              {"set_tag", "tag 9"});
  EXPECT_EQ(e.regions().find(h->id())->tag.load(), RegionTag::hot);
}

// --- Backends --------------------------------------------------------------

TEST(BadInput, BackendsRejectBadSizesAndSpans) {
  SimulatedBackend sim({{0, 1 << 20}});
  for (Backend* b :
       {static_cast<Backend*>(&sim), static_cast<Backend*>(&LinuxBackend::instance())}) {
    ExpectError(b->map(0).status(), absl::StatusCode::kInvalidArgument, {"size 0"});
    ExpectError(b->map(100).status(), absl::StatusCode::kInvalidArgument, {"size 100"});
    std::vector<void*> pages(2, nullptr);
    std::vector<int> status(1);
    EXPECT_EQ(b->query(pages, absl::MakeSpan(status)).code(), absl::StatusCode::kInvalidArgument);
    std::vector<NodeId> nodes(1, 0);
    EXPECT_EQ(b->move(pages, nodes, absl::MakeSpan(status)).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(b->bind(nullptr, kPageSize, NodeSet(), BindMode::kBind, false).code(),
              absl::StatusCode::kInvalidArgument);
  }
  // A foreign (unmapped) address: the Linux query reports -EFAULT/-ENOENT per
  // page rather than failing, and never touches the memory.
  std::vector<void*> foreign{reinterpret_cast<void*>(kBase)};
  std::vector<int> st(1, 12345);
  ASSERT_TRUE(LinuxBackend::instance().query(foreign, absl::MakeSpan(st)).ok());
  EXPECT_LT(st[0], 0);
}

// --- Environment and parsers -----------------------------------------------

using tierkit_test::ScopedEnv;

TEST(BadInput, EveryTierkitVariableRejectsGarbageByName) {
  // The numeric ones: every knob but TIERKIT_POLICY.
  std::vector<const char*> vars;
  for (const Knob& k : kKnobs)
    if (k.kind != Knob::kText) vars.push_back(k.env);
  ASSERT_GE(vars.size(), 14u);
  const char* garbage[] = {"fast", "nan", "inf", "-inf", "1e999",  "12abc", "0x",
                           "--1",  "1,5", " ",   "\t7x", "-1e300", "1 2"};
  for (const char* var : vars)
    for (const char* value : garbage) {
      ScopedEnv env(var, value);
      auto c = EngineConfig::from_env();
      if (std::string(value) == " ") {
        // Whitespace only parses as empty: an error, not "unset".
        EXPECT_FALSE(c.ok()) << var;
        continue;
      }
      ASSERT_FALSE(c.ok()) << var << "=" << value;
      EXPECT_TRUE(c.status().code() == absl::StatusCode::kInvalidArgument ||
                  c.status().code() == absl::StatusCode::kOutOfRange)
          << c.status();
      EXPECT_THAT(Msg(c.status()), HasSubstr(var)) << var << "=" << value;
    }
}

TEST(BadInput, OutOfRangeAndInconsistentEnvValues) {
  struct Case {
    const char* var;
    const char* value;
    const char* needle;
  } cases[] = {
      {"TIERKIT_EPOCH_MS", "0", "TIERKIT_EPOCH_MS"},
      {"TIERKIT_EPOCH_MS", "3600001", "TIERKIT_EPOCH_MS"},
      {"TIERKIT_RATE_LIMIT_MBPS", "-5", "TIERKIT_RATE_LIMIT_MBPS"},
      {"TIERKIT_HIGH_WATERMARK", "1.5", "TIERKIT_HIGH_WATERMARK"},
      {"TIERKIT_LOW_WATERMARK", "0.99", "watermarks"},  // above the default high 0.95
      {"TIERKIT_LOW_WATERMARK", "0", "watermarks"},
      {"TIERKIT_SAMPLING", "0", "TIERKIT_SAMPLING"},
      {"TIERKIT_SAMPLING", "2000000", "TIERKIT_SAMPLING"},
      {"TIERKIT_BURST_BYTES", "-4096", "TIERKIT_BURST_BYTES"},
      {"TIERKIT_BURST_BYTES", "16E", "TIERKIT_BURST_BYTES"},
      {"TIERKIT_BURST_BYTES", "99999999999999999999", "TIERKIT_BURST_BYTES"},
      {"TIERKIT_FAST_BUDGET", "17179869184T", "overflows 64 bits"},
      {"TIERKIT_PROMOTION_THRESHOLD", "0", "promotion threshold"},
      {"TIERKIT_DEMOTION_THRESHOLD", "100", "below the promotion threshold"},
      {"TIERKIT_KERNEL_RATE_LIMIT_MBPS", "0", "TIERKIT_KERNEL_RATE_LIMIT_MBPS"},
      {"TIERKIT_POLICY", "threshold:x", "TIERKIT_POLICY"},
      {"TIERKIT_POLICY", "kernel:warp=9", "TIERKIT_POLICY"},
  };
  for (const auto& [var, value, needle] : cases) {
    ScopedEnv env(var, value);
    auto c = EngineConfig::from_env();
    ASSERT_FALSE(c.ok()) << var << "=" << value;
    EXPECT_THAT(Msg(c.status()), HasSubstr(needle)) << var << "=" << value << ": " << c.status();
  }
  // Documented no-op: an empty variable counts as unset.
  ScopedEnv empty("TIERKIT_EPOCH_MS", "");
  auto c = EngineConfig::from_env();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->epoch_ms, 100);
  // Suffixes and whitespace that are documented to work.
  ScopedEnv burst("TIERKIT_BURST_BYTES", " 64K ");
  ScopedEnv budget("TIERKIT_FAST_BUDGET", "2GiB");
  auto ok = EngineConfig::from_env();
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->burst_bytes, 64u << 10);
  EXPECT_EQ(ok->fast_budget_bytes, 2ull << 30);
}

TEST(BadInput, DetailParsersNameWhatTheyParse) {
  using detail::parse_bool;
  using detail::parse_bytes;
  using detail::parse_double;
  using detail::parse_int;
  ExpectError(parse_double("", "speed").status(), absl::StatusCode::kInvalidArgument,
              {"speed", "not a finite number"});
  ExpectError(parse_double("nan", "speed").status(), absl::StatusCode::kInvalidArgument, {"speed"});
  ExpectError(parse_double("1e400", "speed").status(), absl::StatusCode::kInvalidArgument,
              {"speed"});
  ExpectError(parse_double("5", "speed", 0, 1).status(), absl::StatusCode::kOutOfRange,
              {"speed", "outside the allowed range"});
  ExpectError(parse_int("1.5", "count").status(), absl::StatusCode::kInvalidArgument,
              {"count", "not an integer"});
  ExpectError(parse_int("-3", "count", 0).status(), absl::StatusCode::kOutOfRange, {"count"});
  ExpectError(parse_bool("maybe", "flag").status(), absl::StatusCode::kInvalidArgument,
              {"flag", "not a boolean"});
  ExpectError(parse_bytes("", "size").status(), absl::StatusCode::kInvalidArgument, {"size"});
  ExpectError(parse_bytes("K", "size").status(), absl::StatusCode::kInvalidArgument, {"size"});
  ExpectError(parse_bytes("1.5G", "size").status(), absl::StatusCode::kInvalidArgument, {"size"});
  ExpectError(parse_bytes("20000000T", "size").status(), absl::StatusCode::kOutOfRange,
              {"overflows 64 bits"});
  EXPECT_EQ(*parse_bytes("1T", "size"), 1ull << 40);
  EXPECT_EQ(*parse_bytes("7b", "size"), 7u);
  EXPECT_EQ(*parse_int(" -3 ", "count"), -3);
  // "any case", on/off included (Abseil's SimpleAtob alone lacks on/off).
  for (const char* t : {"ON", "on", " On ", "true", "YES", "1"}) {
    auto b = parse_bool(t, "flag");
    ASSERT_TRUE(b.ok()) << t << ": " << b.status();
    EXPECT_TRUE(*b) << t;
  }
  for (const char* f : {"OFF", "off", "False", "no", "0"}) {
    auto b = parse_bool(f, "flag");
    ASSERT_TRUE(b.ok()) << f << ": " << b.status();
    EXPECT_FALSE(*b) << f;
  }
  EXPECT_FALSE(parse_bool("onn", "flag").ok());
}

// An integer of more than 64 bits was "'99999999999999999999' is not an
// integer", the wrong reason (tierctl --set, tierkit-sim's integer flags);
// it is out of range like any integer past the bounds.
TEST(BadInput, IntegersBeyond64BitsAreOutOfRange) {
  for (const char* text : {"99999999999999999999", "-99999999999999999999", "+9223372036854775808",
                           " 123456789012345678901234567890 "})
    ExpectError(detail::parse_int(text, "count").status(), absl::StatusCode::kOutOfRange,
                {"count", "is outside the allowed range"});
  ExpectError(detail::parse_int("99999999999999999999", "--seed", 0, 100).status(),
              absl::StatusCode::kOutOfRange, {"--seed", "99999999999999999999", "[0, 100]"});
  EXPECT_EQ(*detail::parse_int("9223372036854775807", "count"),
            std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(*detail::parse_int("+42", "count"), 42);
  // Garbage is still garbage.
  for (const char* text : {"", "-", "+", "+-5", "0x10", "1.5", "12abc", "1 2"})
    ExpectError(detail::parse_int(text, "count").status(), absl::StatusCode::kInvalidArgument,
                {"count", "not an integer"});
}

// parse_double read hexadecimal (Abseil's SimpleAtod does): TIERKIT_EPOCH_MS
// =0x10 ran with 16 ms and "threshold:0x1p3" with 8, while parse_int and
// parse_bytes refuse "0x10" (TIERKIT_BURST_BYTES=0x10 is an error).
TEST(BadInput, HexadecimalNumbersAreRefusedEverywhere) {
  for (const char* text : {"0x10", "0X1p3", " -0x1.8p1 ", "+0x10"})
    ExpectError(detail::parse_double(text, "speed").status(), absl::StatusCode::kInvalidArgument,
                {"speed", "not a decimal number"});
  EXPECT_FALSE(detail::parse_int("0x10", "count").ok());
  EXPECT_FALSE(detail::parse_bytes("0x10", "size").ok());
  for (const char* var : {"TIERKIT_EPOCH_MS", "TIERKIT_SAMPLING", "TIERKIT_HIGH_WATERMARK"}) {
    tierkit_test::ScopedEnv env(var, "0x1");
    auto c = EngineConfig::from_env();
    ASSERT_FALSE(c.ok()) << var;
    EXPECT_THAT(Msg(c.status()), HasSubstr(var)) << c.status();
  }
  EngineConfig c;
  for (const char* spec : {"threshold:0x1p3", "kernel:rate=0x10", "automatic:first_swap=0x2"}) {
    c.policy = spec;
    auto p = EngineConfig::make_policy(c);
    ASSERT_FALSE(p.ok()) << spec;
    EXPECT_THAT(Msg(p.status()), HasSubstr("not a decimal number")) << p.status();
  }
  EXPECT_EQ(*detail::parse_double(" 1e3 ", "speed"), 1000);  // decimal exponents stay
}

// A nonzero number too small for a double parsed as 0: "automatic:cool=1e-400"
// turned volume cooling off and TIERKIT_RATE_LIMIT_MBPS=1e-400 stopped the
// bucket's refill, silently, while 1e400 is an error.
TEST(BadInput, NumbersThatUnderflowToZeroAreRefused) {
  for (const char* text : {"1e-400", "-1e-400", " 0.5e-400 ", "2e-324", "1E-99999"})
    ExpectError(detail::parse_double(text, "speed").status(), absl::StatusCode::kInvalidArgument,
                {"speed", "is too small to represent (underflows to 0)"});
  for (const char* zero : {"0", "0.0", "0e5", "-0", "0e-400", "000.000E-9"}) {
    auto v = detail::parse_double(zero, "speed");
    ASSERT_TRUE(v.ok()) << zero << ": " << v.status();
    EXPECT_EQ(*v, 0) << zero;
  }
  EXPECT_GT(*detail::parse_double("4e-324", "speed"), 0);  // a denormal is representable
  for (const char* var :
       {"TIERKIT_RATE_LIMIT_MBPS", "TIERKIT_DEMOTION_THRESHOLD", "TIERKIT_MIN_RESIDENCY_EPOCHS"}) {
    tierkit_test::ScopedEnv env(var, "1e-400");
    auto c = EngineConfig::from_env();
    ASSERT_FALSE(c.ok()) << var;
    EXPECT_THAT(Msg(c.status()), HasSubstr(absl::StrCat(var, "=1e-400: 1e-400 is too small")))
        << c.status();
  }
  EngineConfig c;
  for (const char* spec : {"automatic:cool=1e-400", "kernel:target=1e-400"}) {
    c.policy = spec;
    auto p = EngineConfig::make_policy(c);
    ASSERT_FALSE(p.ok()) << spec;
    EXPECT_THAT(Msg(p.status()), HasSubstr("underflows to 0")) << p.status();
  }
}

// --- Topology override and memory resources (when present) ----------------

#ifdef TIERKIT_HAVE_TOPOLOGY
// Override syntax errors: TopologyOverride.RejectsMalformedSpecsWithAClearMessage.
TEST(BadInput, TierkitTiersVariableIsValidatedByDiscover) {
  {
    ScopedEnv env("TIERKIT_TIERS", "0/zero");
    auto t = Topology::discover();
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Msg(t.status()), HasSubstr("TIERKIT_TIERS"));
  }
  {
    ScopedEnv env("TIERKIT_TIERS", "0/1000");  // syntactically fine, no such node
    auto t = Topology::discover();
    ASSERT_FALSE(t.ok());
    EXPECT_THAT(Msg(t.status()), HasSubstr("node 1000"));
  }
  TopologyOptions bad_xml;
  bad_xml.use_env = false;
  bad_xml.xml_buffer = "<topology><not-closed>";
  EXPECT_FALSE(Topology::discover(bad_xml).ok());
  TopologyOptions missing;
  missing.use_env = false;
  missing.xml_path = "/nonexistent/tierkit/topology.xml";
  EXPECT_FALSE(Topology::discover(missing).ok());
}
#endif

#ifdef TIERKIT_HAVE_MEMORY_RESOURCE
TEST(BadInput, MemoryResourceOptionsAreValidated) {
  SimulatedBackend sim({{0, 64 << 20}, {1, 64 << 20}});
  TierResourceOptions o;
  o.backend = &sim;
  ExpectError(TierMemoryResource::create(o).status(), absl::StatusCode::kInvalidArgument,
              {"nodes is empty"});
  o.nodes = {0};
  o.arena_bytes = 0;
  ExpectError(TierMemoryResource::create(o).status(), absl::StatusCode::kInvalidArgument,
              {"arena_bytes"});
  o.arena_bytes = kHugePageSize + kPageSize;
  ExpectError(TierMemoryResource::create(o).status(), absl::StatusCode::kInvalidArgument,
              {"arena_bytes"});
  o.arena_bytes = kHugePageSize;
  o.limit_bytes = 100;
  ExpectError(TierMemoryResource::create(o).status(), absl::StatusCode::kInvalidArgument,
              {"limit_bytes"});
  o.limit_bytes = 0;
  o.nodes = {0, 5000};
  ExpectError(TierMemoryResource::create(o).status(), absl::StatusCode::kInvalidArgument,
              {"node 5000"});
  o.nodes = {5};
  ExpectError(TierMemoryResource::create(o).status(), absl::StatusCode::kInvalidArgument,
              {"node 5"});
  // A tier that does not exist.
  for (int t : {-1, kMaxTierResources, 1000}) {
    ExpectError(tier_nodes_for(static_cast<Tier>(t)).status(), absl::StatusCode::kInvalidArgument,
                {"out of range"});
    EXPECT_FALSE(tier_resource(static_cast<Tier>(t)).ok());
    set_tier_nodes(static_cast<Tier>(t), NodeSet{0});  // documented no-op
  }
  // A set of nothing but a refused id is not "empty, so the default".
  const Tier unused = static_cast<Tier>(kMaxTierResources - 1);
  set_tier_nodes(unused, NodeSet{4096});
  ExpectError(tier_resource(unused).status(), absl::StatusCode::kInvalidArgument, {"node 4096"});
  set_tier_nodes(unused, NodeSet{});
}
#endif

#ifdef TIERKIT_HAVE_ALLOCATOR
TEST(BadInputDeathTest, BadDefaultTierVariableFallsBackToFastAndSaysWhy) {
  // TIERKIT_DEFAULT_TIER is read once per process: check it in a child.
  EXPECT_EXIT(
      {
        setenv("TIERKIT_DEFAULT_TIER", "warp9", 1);
        absl::Status s = default_tier_status();
        bool ok = default_tier() == Tier::fast && !s.ok() &&
                  Msg(s).find("TIERKIT_DEFAULT_TIER") != std::string::npos &&
                  Msg(s).find("fast tier") != std::string::npos;
        std::_Exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}
#endif

// --- Unprivileged operation --------------------------------------------------

TEST(Unprivileged, EngineRunsWithoutPrivilegeOnLinuxQueries) {
  // Everything here is ordinary-user work: map, query own pages, node memory.
  LinuxBackend& be = LinuxBackend::instance();
  auto m = be.map(4 * kPageSize);
  ASSERT_TRUE(m.ok()) << m.status();
  static_cast<char*>(*m)[0] = 1;  // fault in page 0 only
  std::vector<void*> pages;
  for (int i = 0; i < 4; ++i) pages.push_back(static_cast<char*>(*m) + i * kPageSize);
  std::vector<int> status(4);
  ASSERT_TRUE(be.query(pages, absl::MakeSpan(status)).ok());
  EXPECT_GE(status[0], 0);        // present: its node
  EXPECT_EQ(status[1], -ENOENT);  // not faulted in yet
  EXPECT_TRUE(be.node_memory(0).ok());
  // An engine over the Linux backend registers, records and steps.
  EngineConfig c;
  auto e = Engine::create(c);
  ASSERT_TRUE(e.ok()) << e.status();
  {
    auto h = (*e)->register_region(*m, 4 * kPageSize);
    ASSERT_TRUE(h.ok()) << h.status();
    (*e)->record_access(*m);
    ASSERT_TRUE((*e)->step().ok());
    EXPECT_EQ((*e)->stats().tracked_pages, 4u);
  }
  ASSERT_TRUE(be.unmap(*m, 4 * kPageSize).ok());
}

TEST(Unprivileged, MovePagesOnOwnPagesWorksAfterDroppingRoot) {
  if (geteuid() != 0) GTEST_SKIP() << "not root: this whole binary already ran unprivileged";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: become nobody, then move its own page to the node it is on.
    if (setgid(65534) != 0 || setuid(65534) != 0 || getuid() != 65534) _exit(10);
    void* p = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) _exit(11);
    static_cast<char*>(p)[0] = 1;
    std::vector<void*> pages{p};
    std::vector<int> st(1);
    if (!LinuxBackend::instance().query(pages, absl::MakeSpan(st)).ok() || st[0] < 0) _exit(12);
    std::vector<NodeId> nodes{st[0]};
    if (!LinuxBackend::instance().move(pages, nodes, absl::MakeSpan(st)).ok()) _exit(13);
    _exit(st[0] >= 0 ? 0 : 14);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 0) << "10 setuid, 11 mmap, 12 query, 13 move call, 14 page";
}

}  // namespace
}  // namespace tierkit
