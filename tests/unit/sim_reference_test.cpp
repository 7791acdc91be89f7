// Simulator additions for real traces: the LLC model and filter, the
// reference policies (lfu, reactive, best-static), the application's move
// cost and the dominance helper; then committed real traces replayed with
// every reference policy, and automatic held to the dominance rule.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tierkit/sim/llc.hpp"
#include "tierkit/sim/reference.hpp"
#include "tierkit/sim/report.hpp"
#include "tierkit/sim/simulator.hpp"
#include "tierkit/sim/trace_file.hpp"
#include "tierkit/sim/workload.hpp"
#include "trace_replay.hpp"

namespace tierkit::sim {
namespace {

// A small committed real trace (tests/traces/README.md: how it was recorded).
const std::string kSmallTrace = committed_trace("sqlite3-lookups");

std::string temp_path(const char* suffix) {
  char tmpl[] = "/tmp/tierkit_sim_ref_test_XXXXXX";
  int fd = ::mkstemp(tmpl);
  EXPECT_GE(fd, 0);
  ::close(fd);
  std::remove(tmpl);
  return std::string(tmpl) + suffix;
}

std::string contents(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(Llc, ParsesSpecs) {
  auto c = parse_llc_spec("4M");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->bytes, 4u << 20);
  EXPECT_EQ(c->ways, 16u);
  EXPECT_EQ(c->sets(), 4096u);
  c = parse_llc_spec("512K,8");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->bytes, 512u << 10);
  EXPECT_EQ(c->ways, 8u);
  EXPECT_TRUE(parse_llc_spec("6M,12").ok());  // 8192 sets: not a power of two
  for (const char* bad : {"", "0", "4M,0", "4M,16,2", "x", "-4M", "100,16", "4M,abc", "99G"}) {
    auto r = parse_llc_spec(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("--llc"), absl::string_view::npos);
    }
  }
}

// A size whose byte count overflows 64 bits is refused as too large, not
// taken modulo 2^64 (2^34 + 1 G once wrapped to a 1 GiB cache, 2^34 G to 0).
TEST(Llc, RefusesSizesThatOverflow) {
  for (const char* big : {"17179869185G", "17179869184G", "68719476736G", "18014398509481985K"}) {
    auto r = parse_llc_spec(big);
    EXPECT_FALSE(r.ok()) << big << " parsed as " << (r.ok() ? r->bytes : 0) << " bytes";
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("over 64 GiB"), absl::string_view::npos) << r.status();
    }
  }
}

TEST(Llc, IsLruWithinASet) {
  LlcConfig c;
  c.bytes = 4 * 64;  // one set of 4 ways
  c.ways = 4;
  LlcModel m(c);
  for (std::uint64_t a : {0, 64, 128, 192}) EXPECT_TRUE(m.access(a));
  EXPECT_FALSE(m.access(0 + 8));  // same line
  EXPECT_TRUE(m.access(256));     // evicts the LRU line: 64
  EXPECT_FALSE(m.access(0));
  EXPECT_TRUE(m.access(64));  // evicts 128
  EXPECT_TRUE(m.access(128));
  EXPECT_EQ(m.misses(), 7u);
  EXPECT_EQ(m.hits(), 2u);
}

TEST(Llc, SetsAreIndependentAndCapacityHolds) {
  LlcModel m(*parse_llc_spec("64K,4"));
  for (int pass = 0; pass < 3; ++pass)
    for (std::uint64_t a = 0; a < 64 * 1024; a += 64) m.access(a);
  EXPECT_EQ(m.misses(), 1024u);  // first pass only: 64 KiB fits
  for (std::uint64_t a = 0; a < 128 * 1024; a += 64) m.access(a);
  for (std::uint64_t a = 0; a < 128 * 1024; a += 64) m.access(a);
  EXPECT_EQ(m.misses(), 1024u + 1024u + 2048u);  // a 2x sweep thrashes LRU
}

const char kRaw[] =
    "I  04010173,3\n"
    " L 00001000,8\n"   // miss: line 0x1000
    " L 00001008,8\n"   // hit
    " S 0000103c,8\n"   // straddles lines 0x1000 (hit) and 0x1040 (miss)
    " M 00005000,4\n"   // miss
    " L 00001000,4\n";  // hit

TEST(Llc, ReadFiltersThroughTheCache) {
  std::string path = temp_path(".txt");
  std::ofstream(path) << kRaw;
  auto t = read_lackey_trace(path, 0, nullptr, *parse_llc_spec("4M"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->llc_misses, 3u);
  EXPECT_EQ(t->llc_hits, 3u);
  EXPECT_EQ(t->pages, 2u);
  EXPECT_EQ(t->accesses, (std::vector<std::uint32_t>{0, 0, 1}));
  EXPECT_NE(t->summary().find("LLC model: 3 misses of 6"), std::string::npos) << t->summary();
  std::remove(path.c_str());
}

// The line walk ends at the top of the address space whatever the line
// size: with 1-byte lines the last line number is 2^64 - 1, and a loop on
// "line <= last" wrapped to 0 and never ended.
TEST(Llc, AccessAtTheTopOfTheAddressSpaceEnds) {
  LlcConfig c;
  c.bytes = 16;
  c.ways = 16;
  c.line = 1;
  ASSERT_TRUE(c.validate().ok());
  std::string in = temp_path(".txt"), out = temp_path(".txt");
  std::ofstream(in) << " L fffffffffffffffe,8\n";
  auto t = read_lackey_trace(in, 0, nullptr, c);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->llc_misses, 2u);  // the access is clamped at the last byte
  auto f = filter_lackey_trace(in, out, c);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->llc_misses, 2u);
  std::remove(in.c_str());
  std::remove(out.c_str());
}

TEST(Llc, FilterWritesAReplayableTrace) {
  std::string in = temp_path(".txt"), out = temp_path(".gz");
  std::ofstream(in) << kRaw;
  auto f = filter_lackey_trace(in, out, *parse_llc_spec("4M"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->llc_misses, 3u);
  auto t = read_lackey_trace(out);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->loads, 1u);
  EXPECT_EQ(t->stores, 1u);
  EXPECT_EQ(t->modifies, 1u);
  EXPECT_EQ(t->accesses, (std::vector<std::uint32_t>{0, 0, 1}));
  EXPECT_EQ(filter_lackey_trace("/nonexistent", out, LlcConfig{}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(filter_lackey_trace(in, "/nonexistent/x.gz", LlcConfig{}).status().code(),
            absl::StatusCode::kNotFound);
  std::remove(in.c_str());
  std::remove(out.c_str());
}

// The output is replaced only when the filter succeeds: never by its own input
// (by name or through a link), nor for an input without data accesses (the
// replay's error) or cut short; and no temporary file stays behind.
TEST(Llc, FilterReplacesItsOutputOnlyOnSuccess) {
  char tmpl[] = "/tmp/tierkit_sim_ref_test_dir_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, in = dir + "/in.txt", link = dir + "/link.txt",
                    none = dir + "/none.txt", cut = dir + "/cut.gz", out = dir + "/out.gz";
  std::ofstream(in) << kRaw;
  ASSERT_EQ(::symlink(in.c_str(), link.c_str()), 0);
  for (const std::string& same : {in, link}) {
    auto f = filter_lackey_trace(in, same, LlcConfig{});
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
    EXPECT_NE(f.status().message().find("is the input trace"), absl::string_view::npos);
  }
  EXPECT_EQ(contents(in), kRaw);

  std::ofstream(out) << "old";
  std::ofstream(none) << "I  04010173,3\n";
  auto f = filter_lackey_trace(none, out, LlcConfig{});
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
  EXPECT_NE(f.status().message().find("has no data accesses"), absl::string_view::npos);
  gzFile g = gzopen(cut.c_str(), "wb");
  for (int i = 0; i < 1000; ++i) gzputs(g, kRaw);
  gzclose(g);
  ASSERT_EQ(::truncate(cut.c_str(), static_cast<off_t>(contents(cut).size() / 2)), 0);
  f = filter_lackey_trace(cut, out, LlcConfig{});
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss) << f.status();
  EXPECT_EQ(contents(out), "old");

  ASSERT_TRUE(filter_lackey_trace(in, out, LlcConfig{}).ok());
  auto t = read_lackey_trace(out);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->accesses.size(), 3u);
  std::uint64_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.exists();
  EXPECT_EQ(files, 5u);  // in, link, none, cut, out
  std::filesystem::remove_all(dir);
}

TEST(Reference, TopKFollowsCountsAndCountsPingPong) {
  TopKPlacement lfu(4, 1, /*halve_each_epoch=*/false, /*pingpong_window=*/2);
  lfu.place(0, true);
  for (int i = 0; i < 3; ++i) lfu.access(1);
  auto m = lfu.end_epoch();
  EXPECT_EQ(m.promoted, 1u);
  EXPECT_EQ(m.demoted, 1u);
  EXPECT_TRUE(lfu.fast(1));
  for (int i = 0; i < 4; ++i) lfu.access(0);  // 0 now leads: it comes back
  lfu.end_epoch();
  EXPECT_TRUE(lfu.fast(0));
  EXPECT_EQ(lfu.pingpong(), 2u);  // 0 back up, 1 back down, within 2 epochs
  // Equal counts keep the current placement.
  TopKPlacement tie(2, 1, false);
  tie.place(1, true);
  tie.access(0);
  tie.access(1);
  EXPECT_EQ(tie.end_epoch().promoted, 0u);
}

TEST(Reference, ReactiveForgetsAndLfuRemembers) {
  TopKPlacement lfu(2, 1, false), reactive(2, 1, true);
  for (auto* p : {&lfu, &reactive}) {
    for (int i = 0; i < 10; ++i) p->access(0);
    p->end_epoch();
    for (int e = 0; e < 4; ++e) {
      p->access(1);
      p->access(1);
      p->end_epoch();
    }
  }
  EXPECT_TRUE(lfu.fast(0));
  EXPECT_TRUE(reactive.fast(1));
}

TEST(Reference, BestStaticPicksTheMostAccessed) {
  std::vector<std::uint8_t> f = best_static_placement({2, 2, 2, 0, 1, 1}, 3, 2);
  EXPECT_EQ(f, (std::vector<std::uint8_t>{0, 1, 1}));
  EXPECT_EQ(best_static_placement({0}, 3, 5), (std::vector<std::uint8_t>{1, 1, 1}));
}

SimOptions SmallSim(std::uint64_t fast_pages) {
  SimOptions o;
  o.fast_pages = fast_pages;
  o.gap_ns = 1000;
  o.engine.epoch_ms = 100;
  return o;
}

SimResult run(const std::string& workload, const std::string& policy, const SimOptions& o) {
  WorkloadOptions w;
  w.pages = 4096;
  w.accesses = 1000000;
  w.seed = 5;
  auto wl = make_workload(workload, w);
  EXPECT_TRUE(wl.ok());
  auto r = simulate(**wl, policy, o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : SimResult{};
}

TEST(Reference, RunInTheSimulatorAndChargeTheirMoves) {
  SimOptions o = SmallSim(1024);
  SimResult stat = run("hotshift", "static", o);
  SimResult best = run("hotshift", "best-static", o);
  SimResult lfu = run("hotshift", "lfu", o);
  SimResult reactive = run("hotshift", "reactive", o);
  SimResult oracle = run("hotshift", "oracle", o);
  EXPECT_GE(best.hit_ratio(), stat.hit_ratio());
  EXPECT_EQ(best.promoted_pages, 0u);
  EXPECT_GT(lfu.promoted_pages, 0u);
  EXPECT_GT(reactive.hit_ratio(), stat.hit_ratio());
  EXPECT_GE(oracle.hit_ratio(), reactive.hit_ratio());
  EXPECT_GT(lfu.epochs, 5u);
  for (const SimResult* r : {&lfu, &reactive}) {
    EXPECT_EQ(r->accesses, 1000000u);
    const double pages = static_cast<double>(r->promoted_pages + r->demoted_pages);
    EXPECT_NEAR(r->background_ns, pages * o.page_cost_ns(), 1);
    EXPECT_NEAR(r->app_move_ns,
                static_cast<double>(r->move_calls) * o.move_call_ns + pages * o.move_page_ns, 1);
    EXPECT_LE(r->move_calls, 2 * r->epochs);
    EXPECT_DOUBLE_EQ(r->total_cpu_ns(), static_cast<double>(r->app_ns) + r->background_ns);
  }
}

TEST(Simulator, BackgroundMovesNowStallTheApplication) {
  SimOptions o = SmallSim(1024);
  SimResult a = run("hotshift", "automatic", o);
  ASSERT_GT(a.promoted_pages, 0u);
  const double pages = static_cast<double>(a.promoted_pages + a.demoted_pages);
  EXPECT_GT(a.move_calls, 0u);
  EXPECT_NEAR(a.app_move_ns,
              static_cast<double>(a.move_calls) * o.move_call_ns + pages * o.move_page_ns, 1);
  const double mem =
      static_cast<double>(a.fast_hits) * static_cast<double>(o.fast_ns + o.gap_ns) +
      static_cast<double>(a.accesses - a.fast_hits) * static_cast<double>(o.slow_ns + o.gap_ns);
  EXPECT_NEAR(static_cast<double>(a.app_ns), mem + a.app_move_ns, 2.0);
  // The kernel model's promotions: one call per page, no extra per-page stall.
  SimResult k = run("hotshift", "kernel", o);
  EXPECT_GE(k.move_calls, k.promoted_pages);
  o.move_call_ns = o.move_page_ns = 0;
  EXPECT_EQ(run("hotshift", "automatic", o).app_move_ns, 0);
  o.move_page_ns = -1;
  WorkloadOptions w;
  w.pages = 64;
  UniformWorkload u(w);
  auto bad = simulate(u, "automatic", o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("move_page_ns"), absl::string_view::npos);
}

SimResult result(const std::string& policy, std::uint64_t hits, std::uint64_t promoted) {
  SimResult r;
  r.workload = "w";
  r.policy = policy;
  r.accesses = 100;
  r.fast_hits = hits;
  r.promoted_pages = promoted;
  return r;
}

TEST(Dominance, NeedsAsManyHitsAndNoMorePromotionsAndBetterInOne) {
  std::vector<SimResult> rs = {result("automatic", 30, 100), result("lfu", 30, 90),
                               result("reactive", 40, 500),  result("static", 20, 0),
                               result("oracle", 90, 0),      result("best-static", 50, 0)};
  EXPECT_EQ(dominators(rs, "w", "automatic"), std::vector<std::string>{"lfu"});
  EXPECT_TRUE(is_dominated(rs, "w", "automatic"));
  EXPECT_FALSE(is_dominated(rs, "w", "automatic", 0.005));  // lfu must beat it by half a point
  EXPECT_FALSE(is_dominated(rs, "w", "reactive"));
  EXPECT_FALSE(is_dominated(rs, "other", "automatic"));  // did not run there
  rs[1].fast_hits = 29;
  EXPECT_FALSE(is_dominated(rs, "w", "automatic"));
  EXPECT_NE(to_markdown(rs).find("w: `automatic` is not dominated"), std::string::npos);
  rs[3].fast_hits = 30;  // first touch matches it without moving: dominated
  EXPECT_NE(to_markdown(rs).find("w: `automatic` is **dominated** by static"), std::string::npos);
  rs[0].promoted_pages = 0;  // automatic moved nothing either: a tie, not dominated
  EXPECT_FALSE(is_dominated(rs, "w", "automatic"));
  EXPECT_NE(to_markdown(rs).find("w: `automatic` is not dominated"), std::string::npos);
  rs[3].fast_hits = 31;  // first touch is better at the same cost
  EXPECT_EQ(dominators(rs, "w", "automatic"), std::vector<std::string>{"static"});
}

// With pages placed at their first access the engine believes untouched
// pages slow and learns where each newborn landed (Engine::learn_placement).
// A policy that keeps the fast tier full leaves no room for newborns, so it
// runs (nearly) as with every page placed before the run; the kernel model
// keeps free room (its watermark), and newborns take it. So does automatic
// (AutomaticOptions::keep_room=2), having seen births take free memory at
// the start; with every page placed before the run it never sees that, and
// runs exactly as with keep_room=0.
TEST(RealTrace, PlacingAtAccessLeavesAFullFastTierAsItWasAndFillsFreeRoom) {
  TraceReplay run(committed_trace("python3-dict"), 5000);
  ASSERT_TRUE(run.ok());
  const SimOptions& o = run.options();
  SimOptions at_access = o;
  at_access.place_at_access = true;
  // Nearly: an epoch's newborns count where they are only after its visit,
  // so the room a policy sees at the epoch's start may differ a little.
  for (const char* p : {"static", "automatic:keep_room=0"}) {
    SimResult before = run(p, o), at = run(p, at_access);
    EXPECT_NEAR(at.hit_ratio(), before.hit_ratio(), 0.005) << p;
    EXPECT_NEAR(static_cast<double>(at.promoted_pages), static_cast<double>(before.promoted_pages),
                0.05 * static_cast<double>(before.promoted_pages) + 1)
        << p;
  }
  EXPECT_GT(run("kernel", at_access).hit_ratio(), run("kernel", o).hit_ratio() + 0.05);
  const SimResult filled = run("automatic:keep_room=0", o), placed = run("automatic", o);
  EXPECT_EQ(placed.fast_hits, filled.fast_hits);
  EXPECT_EQ(placed.promoted_pages, filled.promoted_pages);
  EXPECT_EQ(placed.demoted_pages, filled.demoted_pages);
  const SimResult born = run("automatic", at_access);
  EXPECT_GT(born.hit_ratio(), run("automatic:keep_room=0", at_access).hit_ratio() + 0.05);
  EXPECT_LE(born.pingpong_pages, filled.pingpong_pages + born.promoted_pages / 2);
}

TEST(Reference, TopKMarginsHoldBackSwapsAndReturns) {
  TopKMargins k;
  k.margin = 2;
  k.back = 3;
  TopKPlacement sel(2, 1, k, /*pingpong_window=*/4);
  sel.place(0, true);
  auto epoch = [&](int c0, int c1) {
    for (int i = 0; i < c0; ++i) sel.access(0);
    for (int i = 0; i < c1; ++i) sel.access(1);
    return sel.end_epoch();
  };
  EXPECT_EQ(epoch(2, 4).promoted, 0u);  // 4 is not above 2 x 2 (lfu swaps here)
  EXPECT_EQ(epoch(0, 1).promoted, 1u);  // 5 > 2 x 2
  EXPECT_TRUE(sel.fast(1));
  // 0 needs 3 x (2 x 5) now that both moved lately: 29 is not enough.
  EXPECT_EQ(epoch(27, 0).promoted, 0u);
  EXPECT_EQ(epoch(2, 0).promoted, 1u);  // 31 > 30
  EXPECT_EQ(sel.pingpong(), 2u);
  // A promoted page is held `residency` epochs whatever the counts say.
  TopKMargins held;
  held.residency = 2;
  TopKPlacement r(2, 1, held);
  r.place(0, true);
  r.access(1);
  EXPECT_EQ(r.end_epoch().promoted, 1u);
  for (int i = 0; i < 5; ++i) r.access(0);
  EXPECT_EQ(r.end_epoch().promoted, 0u);  // 1 was promoted 1 epoch ago
  EXPECT_EQ(r.end_epoch().promoted, 1u);
}

TEST(Reference, TopKSpecsSayWhatIsWrong) {
  auto k = parse_topk("topk:decay=0.5/margin=2,add=4/back=3/residency=8");
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->decay, 0.5);
  EXPECT_EQ(k->margin, 2);
  EXPECT_EQ(k->add, 4);
  EXPECT_EQ(k->back, 3);
  EXPECT_EQ(k->residency, 8u);
  EXPECT_TRUE(validate_policy("topk").ok());
  for (const char* bad :
       {"topk:decay=2", "topk:back=0.5", "topk:x=1", "topk:margin=", "topk:add"}) {
    absl::Status st = validate_policy(bad);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.message().find("topk"), absl::string_view::npos) << st;
  }
}

// The committed small real trace, through every reference policy.
TEST(RealTrace, ReferencePoliciesAreSane) {
  auto t = read_lackey_trace(kSmallTrace);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_GT(t->pages, 1000u);
  auto trace = std::make_shared<const Trace>(*std::move(t));
  SimOptions o;
  o.fast_pages = trace->pages / 4;
  o.gap_ns = 800;
  std::vector<SimResult> rs;
  for (const char* p : {"static", "kernel", "threshold:4", "automatic", "lfu", "reactive",
                        "best-static", "oracle"}) {
    TraceWorkload wl(trace);
    auto r = simulate(wl, p, o);
    ASSERT_TRUE(r.ok()) << p << ": " << r.status();
    EXPECT_EQ(r->accesses, trace->accesses.size()) << p;
    EXPECT_GE(r->total_cpu_ns(), static_cast<double>(r->app_ns)) << p;
    rs.push_back(*r);
  }
  auto get = [&](const std::string& p) {
    return *std::find_if(rs.begin(), rs.end(), [&](const SimResult& r) { return r.policy == p; });
  };
  EXPECT_GE(get("best-static").hit_ratio(), get("static").hit_ratio());
  EXPECT_GE(get("oracle").hit_ratio(), get("best-static").hit_ratio() - 0.02);
  EXPECT_GT(get("lfu").promoted_pages, 0u);
  EXPECT_GT(get("reactive").promoted_pages, 0u);
  EXPECT_EQ(get("best-static").promoted_pages, 0u);
  for (const auto& r : rs) {
    EXPECT_LE(r.pingpong_pages, r.promoted_pages + r.demoted_pages) << r.policy;
    EXPECT_LE(r.hit_ratio(), get("oracle").hit_ratio() + 0.02) << r.policy;
  }
  // topk without margins is lfu's rule, and with decay 0.5 reactive's.
  for (auto [spec, ref] : {std::pair{"topk", "lfu"}, std::pair{"topk:decay=0.5", "reactive"}}) {
    TraceWorkload wl(trace);
    auto r = simulate(wl, spec, o);
    ASSERT_TRUE(r.ok()) << spec << ": " << r.status();
    EXPECT_EQ(r->fast_hits, get(ref).fast_hits) << spec;
    EXPECT_EQ(r->promoted_pages, get(ref).promoted_pages) << spec;
    EXPECT_EQ(r->pingpong_pages, get(ref).pingpong_pages) << spec;
  }
  // The dominance verdict is computable (the lead asserts it after the rework).
  std::string md = to_markdown(rs);
  EXPECT_NE(md.find("`automatic` is"), std::string::npos);
}

// The dominance rule, on real traces where it holds (sqlite3 and xz
// at --gap_ns=5000; sqlite3 at 800, one epoch boundary; 25% fast tier): automatic's hit ratio at
// least the best of lfu, reactive and the kernel model less half a point, no more promotions than
// lfu, ping-pong at most 5% of its moves (docs/performance.md has every trace and gap, the failing
// ones too).
// Replays a committed trace with a 25% fast tier at `gap_ns`, one policy
// per call (failures reported, an empty result returned).
void ExpectNotDominated(const std::string& path, std::int64_t gap_ns = 5000) {
  TraceReplay run(path, gap_ns);
  ASSERT_TRUE(run.ok());
  SimResult a = run("automatic"), lfu = run("lfu"), reactive = run("reactive"),
            kernel = run("kernel");
  const double best = std::max({lfu.hit_ratio(), reactive.hit_ratio(), kernel.hit_ratio()});
  EXPECT_GE(a.hit_ratio(), best - 0.005) << path;
  EXPECT_GT(a.promoted_pages, 0u) << path;
  EXPECT_LE(a.promoted_pages, lfu.promoted_pages) << path;
  EXPECT_LE(static_cast<double>(a.pingpong_pages),
            0.05 * static_cast<double>(a.promoted_pages + a.demoted_pages))
      << path;
}
TEST(RealTrace, AutomaticIsNotDominatedOnSqlite) { ExpectNotDominated(kSmallTrace); }
// One epoch boundary: the first epoch's swaps (residents of credible heat).
TEST(RealTrace, AutomaticIsNotDominatedOnSqliteAtOneEpochBoundary) {
  ExpectNotDominated(kSmallTrace, 800);
}
TEST(RealTrace, AutomaticIsNotDominatedOnXz) { ExpectNotDominated(committed_trace("xz-3")); }
// graphviz sfdp, recorded in session 12 after the policy work (held out):
// little to gain over first touch, and moving must not lose it.
TEST(RealTrace, AutomaticIsNotDominatedOnSfdp) {
  ExpectNotDominated(committed_trace("sfdp-graph"));
}

// GNU sort (recorded after the policy work, not tuned on) at --gap_ns=800:
// swaps made on one epoch's heat demote what sort's next pass needs. With
// the payoff rule (AutomaticOptions::payoff_backoff_epochs) automatic stays
// within 1.5 points of first touch and moves less; without it, it fell ten
// points below (docs/performance.md, "moves that must pay").
TEST(RealTrace, AutomaticStopsSwapsThatLoseHitsOnSort) {
  TraceReplay run(committed_trace("sort-lines"), 800);
  ASSERT_TRUE(run.ok());
  SimResult first_touch = run("static"), paying = run("automatic"),
            blind = run("automatic:payoff=0");
  EXPECT_GE(paying.hit_ratio(), first_touch.hit_ratio() - 0.015);
  EXPECT_LT(paying.promoted_pages, blind.promoted_pages);
  EXPECT_LT(blind.hit_ratio(), first_touch.hit_ratio() - 0.05);  // what the rule prevents
}

}  // namespace
}  // namespace tierkit::sim
