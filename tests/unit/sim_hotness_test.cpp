// The simulator's models of the hotness sources (sim/hotness_model.hpp):
// what each sees, how many pages it samples, what it costs and where that
// cost is charged, and the issue-14 rule on a committed real-program trace.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tierkit/sim/hotness_model.hpp"
#include "tierkit/sim/simulator.hpp"
#include "tierkit/sim/trace_file.hpp"
#include "tierkit/sim/workload.hpp"

namespace tierkit::sim {
namespace {

constexpr std::uintptr_t kBase = 0x100000000000;

// Collects what a source reports: page index -> (weight, written).
struct Seen {
  std::vector<std::uint32_t> pages;
  std::vector<bool> written;
  std::uint64_t weight = 0;
};
auto sink_into(Seen& s) {
  return make_sink([&s](std::uintptr_t a, std::uint32_t w, bool wr) {
    s.pages.push_back(static_cast<std::uint32_t>((a - kBase) / kPageSize));
    s.written.push_back(wr);
    s.weight += w;
  });
}
std::vector<TrackedRange> one_range(std::uint64_t pages) {
  return {{kBase, kBase + pages * kPageSize, kPageSize}};
}
HotnessCosts unit_costs() {
  HotnessCosts c;
  c.fault_arm_ns = 10;
  c.fault_disarm_ns = 20;
  c.fault_fire_ns = 1000;
  c.proc_maps_ns = 5;
  c.pagemap_ns_per_page = 1;
  c.clear_refs_ns_per_page = 0.5;
  c.wp_fault_ns = 700;
  c.uffd_scan_ns_per_page = 2;
  return c;
}

// One synthetic run of `workload` under `policy`: 10 ms epochs at an
// 800 ns gap, so a short stream spans tens of epochs.
SimResult run_small(const char* workload, const WorkloadOptions& w, const std::string& policy,
                    SimOptions o) {
  o.gap_ns = 800;
  o.engine.epoch_ms = 10;
  o.fast_pages = w.pages / 4;
  auto wl = make_workload(workload, w);
  EXPECT_TRUE(wl.ok()) << wl.status();
  auto res = simulate(**wl, policy, o);
  EXPECT_TRUE(res.ok()) << res.status();
  return res.ok() ? *res : SimResult{};
}

TEST(SimHotnessTest, SampledPicksWhatDebian12With612Picks) {
  // source/sampled.hpp tries perf, fault, uffd, softdirty; on Debian 12
  // (6.12, unprivileged) perf is blocked, so the real "sampled" is fault:8.
  ASSERT_EQ(source::kSampledOrder[0], "perf");
  ASSERT_EQ(source::kSampledOrder[1], "fault");
  auto h = parse_hotness("sampled", debian12_6_12_sources());
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->kind, HotnessSpec::kFault);
  EXPECT_EQ(h->fault_pages, source::FaultSourceOptions{}.pages_per_range);
  EXPECT_EQ(h->label(), "sampled->fault:8");
  auto h32 = parse_hotness("sampled:32", debian12_6_12_sources());
  ASSERT_TRUE(h32.ok());
  EXPECT_EQ(h32->resolved(), "fault:32");
  // Without fault (a machine where its probe fails): uffd, then softdirty.
  auto u = parse_hotness("sampled", {"softdirty", "uffd"});
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->kind, HotnessSpec::kUffd);
  auto s = parse_hotness("sampled", {"softdirty"});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->kind, HotnessSpec::kSoftDirty);
  // perf first where it is available: no model, said so.
  EXPECT_EQ(parse_hotness("sampled", {"perf", "fault"}).status().code(),
            absl::StatusCode::kUnimplemented);
}

TEST(SimHotnessTest, BadSpecsAreErrorsNamingTheSpec) {
  for (const char* bad : {"fault:0", "fault:x", "fault:5000", "banana", "sampled:-1", ""}) {
    auto h = parse_hotness(bad, debian12_6_12_sources());
    ASSERT_FALSE(h.ok()) << bad;
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(h.status().message().find(std::string("'") + bad + "'"), std::string::npos)
        << h.status();
  }
  auto none = parse_hotness("sampled", {});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("hotness_available"), std::string::npos);
  SimOptions o;
  o.hotness = "fault:0";
  EXPECT_FALSE(o.validate().ok());
  o.hotness = "uffd";
  o.hotness_costs.wp_fault_ns = -1;
  EXPECT_FALSE(o.validate().ok());
}

TEST(SimHotnessTest, SoftDirtySeesWritesNotLoads) {
  SoftDirtyModel m(kBase, 64, unit_costs());
  Seen seen;
  auto sink = sink_into(seen);
  auto ranges = one_range(64);
  for (std::uint32_t p = 0; p < 64; ++p) m.on_access(p, false);  // present, clean
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());                 // first: clears
  for (int round = 0; round < 3; ++round)
    for (std::uint32_t p = 0; p < 64; ++p) EXPECT_EQ(m.on_access(p, false), 0);
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
  EXPECT_TRUE(seen.pages.empty()) << "softdirty reported a page that was only read";
  // Writes to 5 pages: each write-faults once after the clear, then not.
  for (std::uint32_t p : {3u, 9u, 10u, 40u, 63u}) {
    EXPECT_EQ(m.on_access(p, true), 700);
    EXPECT_EQ(m.on_access(p, true), 0);
  }
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
  EXPECT_EQ(std::set<std::uint32_t>(seen.pages.begin(), seen.pages.end()),
            (std::set<std::uint32_t>{3, 9, 10, 40, 63}));
  for (bool w : seen.written) EXPECT_TRUE(w);
  EXPECT_EQ(m.app_ns(), 5 * 700);
  EXPECT_EQ(m.faults(), 5u);
}

TEST(SimHotnessTest, SoftDirtyPassSpansEpochsWithinTheBudgetAndClearsOnce) {
  SoftDirtyModel m(kBase, 100, unit_costs());
  Seen seen;
  auto sink = sink_into(seen);
  auto ranges = one_range(100);
  for (std::uint32_t p = 0; p < 100; ++p) m.on_access(p, true);
  SourceBudget b;
  b.max_pages = 30;
  ASSERT_TRUE(m.collect(ranges, sink, b).ok());  // clear
  for (std::uint32_t p = 0; p < 100; ++p) m.on_access(p, true);
  for (int e = 0; e < 3; ++e) {  // 30 + 30 + 30 pages: the pass is not done
    ASSERT_TRUE(m.collect(ranges, sink, b).ok());
    EXPECT_EQ(m.stats().pages_sampled, 30u * static_cast<std::uint64_t>(e + 1));
    EXPECT_EQ(m.passes(), 0u);
  }
  ASSERT_TRUE(m.collect(ranges, sink, b).ok());  // last 10, then the clear
  EXPECT_EQ(m.passes(), 1u);
  EXPECT_EQ(seen.pages.size(), 100u);  // every written page once per pass
}

TEST(SimHotnessTest, UffdSeesWritesNotLoadsAndReprotects) {
  UffdModel m(kBase, 32, unit_costs());
  Seen seen;
  auto sink = sink_into(seen);
  auto ranges = one_range(32);
  for (std::uint32_t p = 0; p < 32; ++p) m.on_access(p, false);
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());  // registers: all protected
  for (std::uint32_t p = 0; p < 32; ++p) EXPECT_EQ(m.on_access(p, false), 0);
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
  EXPECT_TRUE(seen.pages.empty()) << "uffd reported a page that was only read";
  EXPECT_EQ(m.on_access(7, true), 700);
  EXPECT_EQ(m.on_access(7, true), 0);  // unprotected until the next scan
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
  ASSERT_EQ(seen.pages, std::vector<std::uint32_t>{7});
  EXPECT_EQ(m.on_access(7, true), 700);  // re-protected by the scan
  EXPECT_GT(m.engine_ns(), 0);
}

TEST(SimHotnessTest, FaultSamplesAtMostNPagesPerRangePerEpochOnePerStratum) {
  const std::uint64_t n = 1000;
  FaultModel m(kBase, 2 * n, unit_costs(), [] {
    source::FaultSourceOptions o;
    o.pages_per_range = 8;
    return o;
  }());
  Seen seen;
  auto sink = sink_into(seen);
  std::vector<TrackedRange> ranges = {
      {kBase, kBase + n * kPageSize, kPageSize},
      {kBase + n * kPageSize, kBase + 2 * n * kPageSize, kPageSize}};
  for (int epoch = 0; epoch < 50; ++epoch) {
    ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
    std::vector<int> per_range(2, 0), per_stratum(16, 0);
    for (std::uint32_t p : m.armed()) {
      per_range[p / n] += 1;
      per_stratum[(p / n) * 8 + (p % n) * 8 / n] += 1;
    }
    EXPECT_EQ(per_range[0], 8);
    EXPECT_EQ(per_range[1], 8);
    for (int s : per_stratum) EXPECT_EQ(s, 1);
  }
  SourceBudget b;
  b.max_pages = 5;  // the budget caps the total
  ASSERT_TRUE(m.collect(ranges, sink, b).ok());
  EXPECT_EQ(m.armed().size(), 5u);
}

TEST(SimHotnessTest, FaultSeesLoadsAndStoresAndChargesOneFaultPerArmedPage) {
  FaultModel m(kBase, 64, unit_costs(), source::FaultSourceOptions{});
  Seen seen;
  auto sink = sink_into(seen);
  auto ranges = one_range(64);
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
  const std::vector<std::uint32_t> armed = m.armed();
  ASSERT_EQ(armed.size(), 8u);
  // Loads fire the first four, stores the others; a second access is free.
  double app = 0;
  for (std::size_t i = 0; i < armed.size(); ++i) {
    app += m.on_access(armed[i], i >= 4);
    EXPECT_EQ(m.on_access(armed[i], true), 0);
  }
  EXPECT_EQ(app, 8 * 1000);
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
  ASSERT_EQ(seen.pages.size(), 8u);
  for (std::size_t i = 0; i < seen.pages.size(); ++i) {
    auto at = std::find(armed.begin(), armed.end(), seen.pages[i]) - armed.begin();
    EXPECT_EQ(seen.written[i], at >= 4) << "page " << seen.pages[i];
  }
  EXPECT_EQ(seen.weight, 8u * source::FaultSourceOptions{}.weight);
  // Engine side: 8 arms + maps read, then (all fired: no disarm) maps + 8 arms.
  EXPECT_EQ(m.engine_ns(), 2 * (8 * 10 + 5));
}

TEST(SimHotnessTest, FaultEstimateOfTouchedPagesIsUnbiased) {
  // Each epoch touches the pages whose index mod 64 is < 16: a quarter of
  // them, all at the start of each 64-page stratum, so a sampler that did
  // not draw uniformly within its strata would be far off. fired * units / k
  // estimates the pages touched per epoch.
  const std::uint64_t units = 4096, k = 64;
  source::FaultSourceOptions o;
  o.pages_per_range = k;
  FaultModel m(kBase, units, unit_costs(), o);
  Seen seen;
  auto sink = sink_into(seen);
  auto ranges = one_range(units);
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
  const int epochs = 400;
  double sum = 0;
  for (int e = 0; e < epochs; ++e) {
    for (std::uint32_t p = 0; p < units; ++p)
      if (p % 64 < 16) m.on_access(p, false);
    seen.pages.clear();
    ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
    sum += static_cast<double>(seen.pages.size()) * static_cast<double>(units) /
           static_cast<double>(k);
  }
  const double truth = static_cast<double>(units) / 4;
  EXPECT_NEAR(sum / epochs, truth, 0.05 * truth);
}

// The what-if estimators (--source_estimator): "scaled" divides the weight
// by the chance a page was inspected; "latency" multiplies a fired page's
// weight by (time armed) / (time to its fault). The default is the real
// sources' fixed weight.
TEST(SimHotnessTest, EstimatorsScaleByInclusionAndLatency) {
  const std::uint64_t units = 1024;
  auto fire_all = [&](bool scaled, bool latency, std::int64_t early, std::int64_t late) {
    source::FaultSourceOptions o;  // 8 per range, weight 4
    FaultModel m(kBase, units, unit_costs(), o);
    m.set_scaled(scaled);
    m.set_latency(latency);
    Seen seen;
    auto sink = sink_into(seen);
    auto ranges = one_range(units);
    m.set_now(0);
    EXPECT_TRUE(m.collect(ranges, sink, {}).ok());
    std::vector<std::uint32_t> armed = m.armed();
    for (std::size_t i = 0; i < armed.size(); ++i)
      m.on_access(armed[i], false, i == 0 ? early : late);
    m.set_now(1000000);
    EXPECT_TRUE(m.collect(ranges, sink, {}).ok());
    for (std::uint32_t p : armed)
      EXPECT_NE(std::find(seen.pages.begin(), seen.pages.end(), p), seen.pages.end());
    return seen.weight;
  };
  EXPECT_EQ(fire_all(false, false, 10000, 500000), 8u * 4);
  // scaled: each of the 8 pages had a 8/1024 chance: weight 4 * 128 = 512,
  // capped at the most heat a page can hold (PageWord::kMaxHeat, 511).
  EXPECT_EQ(fire_all(true, false, 10000, 500000), 8u * PageWord::kMaxHeat);
  // latency: one page faulted after 1% of the epoch (x100), seven after half (x2).
  EXPECT_EQ(fire_all(false, true, 10000, 500000), 4u * 100 + 7u * 4 * 2);
}

// A small synthetic run: fault sampling under "static" (nothing migrates, so
// both runs hit the same tier on every access) costs the application exactly
// the faults it took, and the background exactly the collect() work.
TEST(SimHotnessTest, OverheadIsChargedWhereItIsPaid) {
  WorkloadOptions w;
  w.pages = 4096;
  w.accesses = 400000;
  SimOptions o;
  o.hotness_costs = unit_costs();
  auto run = [&](const std::string& hotness) {
    SimOptions r = o;
    r.hotness = hotness;
    return run_small("hotshift", w, "static", r);
  };
  SimResult app = run("app"), fault = run("fault:64");
  EXPECT_EQ(app.fast_hits, fault.fast_hits);
  EXPECT_EQ(app.tracking_ns(), 0);
  EXPECT_EQ(fault.hotness, "fault:64");
  ASSERT_GT(fault.source_faults, 100u);
  EXPECT_EQ(fault.tracking_app_ns, static_cast<double>(fault.source_faults) * 1000);
  EXPECT_NEAR(static_cast<double>(fault.app_ns - app.app_ns), fault.tracking_app_ns, 1.0);
  EXPECT_GT(fault.tracking_background_ns, 0);
  EXPECT_EQ(fault.background_ns, fault.tracking_background_ns);  // static moves nothing
  // record_access, when charged, is the app source's cost.
  o.hotness_costs.record_access_ns = 6;
  SimResult charged = run("app");
  EXPECT_EQ(charged.tracking_app_ns, 6.0 * static_cast<double>(charged.accesses));
  EXPECT_NEAR(static_cast<double>(charged.app_ns - app.app_ns), charged.tracking_app_ns, 1.0);
}

// fault:N samples per range: the footprint registered as 4 regions (as
// ArenaRegions registers arenas) arms 4x the pages, and costs 4x.
TEST(SimHotnessTest, FaultSamplesPerRegisteredRange) {
  WorkloadOptions w;
  w.pages = 4096;
  w.accesses = 200000;
  auto run = [&](std::uint64_t region_pages) {
    SimOptions r;
    r.hotness = "fault:8";
    r.region_pages = region_pages;
    return run_small("uniform", w, "static", r);
  };
  SimResult one = run(0), four = run(1024);
  ASSERT_GT(one.epochs, 5u);
  EXPECT_EQ(one.source_sampled, 8 * one.epochs);
  EXPECT_EQ(four.source_sampled, 4 * 8 * four.epochs);  // (its faults make the run longer)
  EXPECT_GT(four.tracking_background_ns / static_cast<double>(four.epochs),
            3 * one.tracking_background_ns / static_cast<double>(one.epochs));
}

// Write-only sources see nothing of a workload without writes.
TEST(SimHotnessTest, WriteOnlySourcesSeeNothingOfAReadOnlyRun) {
  WorkloadOptions w;
  w.pages = 2048;
  w.accesses = 300000;
  w.write_fraction = 0;
  for (const char* h : {"softdirty", "uffd"}) {
    SimOptions o;
    o.hotness = h;
    SimResult r = run_small("hotshift", w, "automatic", o);
    EXPECT_GT(r.source_sampled, 0u) << h;
    EXPECT_EQ(r.source_found, 0u) << h;
    EXPECT_EQ(r.promoted_pages, 0u) << h;
    EXPECT_EQ(r.tracking_app_ns, 0) << h;
  }
}

TEST(SimHotnessTest, TraceCarriesTheWriteBit) {
  char path[] = "/tmp/sim_hotness_trace_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text =
      " L 1000,8\n S 2000,8\n M 3000,4\nI  4000,2\n S 4ffc,8\n L 1008,8\n";  // 4ffc straddles
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  auto t = read_lackey_trace(path);
  unlink(path);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->accesses.size(), 6u);  // L, S, M, S twice (straddling), L
  const std::vector<bool> want = {false, true, true, true, true, false};
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(t->is_write(i), want[i]) << i;
  EXPECT_EQ(t->writes(), 4u);
  auto shared = std::make_shared<const Trace>(*std::move(t));
  TraceWorkload wl(shared);
  std::vector<std::uint32_t> pages(6);
  std::vector<std::uint8_t> writes(6);
  ASSERT_EQ(wl.next(absl::MakeSpan(pages), writes.data()), 6u);
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(writes[i] != 0, want[i]) << i;
}

// The issue-14 rule on a committed real-program trace: automatic fed by
// "sampled" reaches >= 0.9x the hit ratio it reaches fed by the application,
// at a tracking cost <= 1% of the application's time (--gap_ns=800,
// --fast=25%, the default costs).
TEST(SimHotnessTest, SampledHoldsTheRuleOnTheSqliteTrace) {
  auto t =
      read_lackey_trace(std::string(TIERKIT_FIXTURES_DIR "/../traces/sqlite3-lookups.lackey.gz"));
  ASSERT_TRUE(t.ok()) << t.status();
  auto shared = std::make_shared<const Trace>(*std::move(t));
  SimOptions o;
  o.fast_pages = (shared->pages + 2) / 4;
  o.gap_ns = 800;
  auto run = [&](const std::string& hotness) {
    TraceWorkload wl(shared);
    SimOptions r = o;
    r.hotness = hotness;
    auto res = simulate(wl, "automatic", r);
    EXPECT_TRUE(res.ok()) << res.status();
    return *res;
  };
  SimResult app = run("app"), sampled = run("sampled");
  EXPECT_EQ(sampled.hotness, "sampled->fault:8");
  EXPECT_GE(sampled.hit_ratio(), 0.9 * app.hit_ratio());
  EXPECT_GT(sampled.tracking_ns(), 0);
  EXPECT_LE(sampled.tracking_ns(), 0.01 * static_cast<double>(sampled.app_ns));
}

}  // namespace
}  // namespace tierkit::sim
