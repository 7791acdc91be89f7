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
  // source/sampled.hpp tries perf, births+fault, fault, uffd, softdirty; on
  // Debian 12 (6.1 or 6.12, unprivileged) perf is blocked, so the real
  // "sampled" is births+fault with the budgeted fault source.
  ASSERT_EQ(source::kSampledOrder[0], "perf");
  ASSERT_EQ(source::kSampledOrder[1], "births+fault");
  auto h = parse_hotness("sampled", debian12_6_12_sources());
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->kind, HotnessSpec::kBirthsFault);
  EXPECT_EQ(h->fault_pages, 0u);  // as many as the CPU budget allows
  EXPECT_EQ(h->label(), "sampled->births+fault");
  auto h32 = parse_hotness("sampled:32", debian12_6_12_sources());
  ASSERT_TRUE(h32.ok());
  EXPECT_EQ(h32->resolved(), "births+fault:32");
  auto on61 = parse_hotness("sampled", debian12_6_1_sources());
  ASSERT_TRUE(on61.ok());
  EXPECT_EQ(on61->label(), "sampled->births+fault");
  // Without births: the budgeted fault source.
  auto f = parse_hotness("sampled", {"fault", "uffd"});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->label(), "sampled->fault");
  // Without fault (a machine where its probe fails): uffd, then softdirty.
  auto u = parse_hotness("sampled", {"softdirty", "uffd"});
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->kind, HotnessSpec::kUffd);
  auto s = parse_hotness("sampled", {"softdirty"});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->kind, HotnessSpec::kSoftDirty);
  // The combinations by name.
  auto uf = parse_hotness("uffd+fault:8", {});
  ASSERT_TRUE(uf.ok());
  EXPECT_EQ(uf->resolved(), "uffd+fault:8");
  auto bf = parse_hotness("births+fault", {});
  ASSERT_TRUE(bf.ok());
  EXPECT_EQ(bf->kind, HotnessSpec::kBirthsFault);
  EXPECT_EQ(bf->label(), "births+fault");
  EXPECT_FALSE(parse_hotness("uffd+fault:0", {}).ok());
  EXPECT_FALSE(parse_hotness("births+fault:x", {}).ok());
  // perf first where it is available: no model, said so.
  EXPECT_EQ(parse_hotness("sampled", {"perf", "fault"}).status().code(),
            absl::StatusCode::kUnimplemented);
}

// births: a page born (by a write, or a zero page's copy-on-write) is
// reported once, at no cost to the program; reads and rewrites never.
TEST(SimHotnessTest, BirthsSeesPagesBornOnceAndNothingElse) {
  auto m = make_source_model(*parse_hotness("births", {}), kBase, 64, unit_costs());
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->name(), "births");
  Seen seen;
  auto sink = sink_into(seen);
  auto ranges = one_range(64);
  m->watch(ranges);
  for (std::uint32_t p = 0; p < 8; ++p) EXPECT_EQ(m->on_access(p, true), 0);    // born
  for (std::uint32_t p = 8; p < 16; ++p) EXPECT_EQ(m->on_access(p, false), 0);  // zero page
  ASSERT_TRUE(m->collect(ranges, sink, {}).ok());
  EXPECT_EQ(seen.pages, (std::vector<std::uint32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  for (std::uint32_t p = 0; p < 16; ++p) EXPECT_EQ(m->on_access(p, p == 9), 0);  // 9: CoW
  ASSERT_TRUE(m->collect(ranges, sink, {}).ok());
  EXPECT_EQ(seen.pages.size(), 9u);
  EXPECT_EQ(seen.pages.back(), 9u);
  EXPECT_EQ(m->faults(), 0u);
  EXPECT_EQ(m->app_ns(), 0);
  EXPECT_GT(m->engine_ns(), 0);  // the pagemap reads
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
  UffdModel m(kBase, 32, unit_costs(), {.weight = 16, .reprotect = 1, .fault_ns = 0});
  Seen seen;
  auto sink = sink_into(seen);
  auto ranges = one_range(32);
  m.watch(ranges);
  for (std::uint32_t p = 0; p < 32; ++p) EXPECT_EQ(m.on_access(p, false), 0);  // zero pages
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
  for (std::uint32_t p = 0; p < 32; ++p) EXPECT_EQ(m.on_access(p, false), 0);
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
  EXPECT_TRUE(seen.pages.empty()) << "uffd reported a page that was only read";
  // The copy-on-write of a zero page: the program's own fault, free.
  EXPECT_EQ(m.on_access(7, true), 0);
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
  ASSERT_EQ(seen.pages, std::vector<std::uint32_t>{7});
  EXPECT_EQ(m.on_access(7, true), 700);  // protected by the scan
  EXPECT_EQ(m.on_access(7, true), 0);    // unprotected until the next scan
  ASSERT_TRUE(m.collect(ranges, sink, {}).ok());
  EXPECT_EQ(seen.pages, (std::vector<std::uint32_t>{7, 7}));
  EXPECT_EQ(m.faults(), 1u);
  EXPECT_GT(m.engine_ns(), 0);
}

// The default (budgeted) model: births are free and reported once; of pages
// rewritten every epoch only the budget's sample is protected, so the
// faults per epoch stay within one epoch's allowance.
TEST(SimHotnessTest, UffdProtectsRewritesWithinTheBudget) {
  const std::uint32_t n = 4096;
  UffdModel m(kBase, n, unit_costs());
  Seen seen;
  auto sink = sink_into(seen);
  auto ranges = one_range(n);
  SourceBudget b;
  b.max_pages = 0;
  b.cpu_fraction = 0.01;
  b.epoch_ns = 10'000'000;  // 100 us allowance: at 700 ns a fault, <= 142 pages
  m.watch(ranges);
  for (std::uint32_t p = 0; p < n; ++p) EXPECT_EQ(m.on_access(p, true), 0);  // births
  ASSERT_TRUE(m.collect(ranges, sink, b).ok());
  EXPECT_EQ(seen.pages.size(), n);
  for (int e = 0; e < 10; ++e) {
    const std::uint64_t before = m.faults();
    for (std::uint32_t p = 0; p < n; ++p) m.on_access(p, true);
    EXPECT_LE(m.faults() - before, 142u) << "epoch " << e;
    ASSERT_TRUE(m.collect(ranges, sink, b).ok());
  }
  EXPECT_GT(m.faults(), 0u) << "no rewrite was ever sampled";
  EXPECT_LE(m.reprotect_fraction(), 1.0);
}

// fault:N arms N samples per epoch over all ranges together, one in each of
// N equal strata of the ranges laid end to end.
TEST(SimHotnessTest, FaultSamplesNPerEpochOverAllRangesOnePerStratum) {
  const std::uint64_t n = 1000;
  FaultModel m(kBase, 2 * n, unit_costs(), [] {
    source::FaultSourceOptions o;
    o.pages_per_epoch = 16;
    o.group_pages = 1;
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
      per_stratum[p * 16 / (2 * n)] += 1;
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
  source::FaultSourceOptions o;
  o.pages_per_epoch = 8;
  o.group_pages = 1;
  FaultModel m(kBase, 64, unit_costs(), o);
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
  o.pages_per_epoch = k;
  o.group_pages = 1;
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

// A fault model of `units` pages arming `per_epoch` samples of
// `group_pages` pages each, at unit_costs().
FaultModel fixed_fault(std::uint64_t units, std::uint32_t per_epoch, std::uint32_t group_pages) {
  source::FaultSourceOptions o;
  o.pages_per_epoch = per_epoch;
  o.group_pages = group_pages;
  return FaultModel(kBase, units, unit_costs(), o);
}

// Collects every observation a source reports.
struct Observations final : HotnessSink {
  std::vector<SourceObservation> all;
  void record(std::uintptr_t, std::uint32_t, bool) override {}
  void observe(const SourceObservation& o) override { all.push_back(o); }
  const SourceObservation* of(std::uint32_t page) const {
    for (const auto& o : all)
      if (o.page == kBase + std::uintptr_t{page} * kPageSize) return &o;
    return nullptr;
  }
};

// What the fault model reports for each armed page (as the real source):
// fired or not, how long it was armed, when it fired, its inclusion
// probability; and how the engine's estimators turn one observation into
// heat (observation_heat).
TEST(SimHotnessTest, FaultReportsLatencyAndEstimatorsTurnItIntoHeat) {
  const std::uint64_t units = 1024;
  FaultModel m = fixed_fault(units, 8, 1);
  Observations obs;
  auto ranges = one_range(units);
  m.set_now(0);
  ASSERT_TRUE(m.collect(ranges, obs, {}).ok());
  const std::vector<std::uint32_t> armed = m.armed();
  ASSERT_EQ(armed.size(), 8u);
  m.on_access(armed[0], false, 10000);  // 1% into the watch
  m.on_access(armed[1], true, 500000);  // half way
  m.set_now(1000000);
  ASSERT_TRUE(m.collect(ranges, obs, {}).ok());
  ASSERT_EQ(obs.all.size(), 8u);
  for (std::size_t i = 0; i < armed.size(); ++i) {
    const SourceObservation* x = obs.of(armed[i]);
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(x->accessed, i < 2);
    EXPECT_EQ(x->watched_ns, 1000000);
    EXPECT_DOUBLE_EQ(x->inclusion, 8.0 / 1024);
    EXPECT_EQ(x->latency_ns, i == 0 ? 10000 : i == 1 ? 500000 : -1);
  }
  const SourceObservation& early = *obs.of(armed[0]);
  const SourceObservation& late = *obs.of(armed[1]);
  const SourceObservation& idle = *obs.of(armed[2]);
  const auto max = PageWord::kMaxHeat;
  EXPECT_EQ(observation_heat(early, SourceEstimator::kFixed, max), 4u);
  EXPECT_EQ(observation_heat(early, SourceEstimator::kLatency, max), 400u);       // 4 x 100
  EXPECT_EQ(observation_heat(late, SourceEstimator::kLatency, max), 8u);          // 4 x 2
  EXPECT_EQ(observation_heat(late, SourceEstimator::kScaled, max), max);          // 4 x 128, capped
  EXPECT_EQ(observation_heat(early, SourceEstimator::kRate, max), kMaxRateHeat);  // 100, capped
  EXPECT_EQ(observation_heat(late, SourceEstimator::kRate, max), 4u);  // rate 2: the fixed weight
  EXPECT_EQ(observation_heat(idle, SourceEstimator::kRate, max), 0u);
  EXPECT_EQ(parse_source_estimator("latency+scaled").value(), SourceEstimator::kLatencyScaled);
  EXPECT_EQ(parse_source_estimator("banana").status().code(), absl::StatusCode::kInvalidArgument);
}

// A group of 16 pages armed as one fires on its first access and reports
// that page: among one hot page and 15 cold ones, the hot one nearly always.
TEST(SimHotnessTest, FaultGroupReportsItsFirstAccessedPage) {
  const std::uint64_t units = 1024;
  FaultModel m = fixed_fault(units, 16, 16);
  Observations obs;
  auto ranges = one_range(units);
  ASSERT_TRUE(m.collect(ranges, obs, {}).ok());
  Rng rng(7);
  std::uint64_t hot_first = 0, fired = 0;
  std::int64_t t = 0;
  for (int e = 0; e < 50; ++e) {
    // Page 16j + 5 of every group is hot (about 2 accesses per epoch); the
    // other 15 about 0.1 between them.
    for (int a = 0; a < 2000; ++a) {
      const auto p = static_cast<std::uint32_t>(rng.below(units));
      if (p % 16 == 5 || rng.below(300) == 0) m.on_access(p, false, t);
      t += 1000;
    }
    m.set_now(t);
    obs.all.clear();
    ASSERT_TRUE(m.collect(ranges, obs, {}).ok());
    ASSERT_EQ(obs.all.size(), 16u * 16u);  // every page of every group
    for (const auto& x : obs.all)
      if (x.accessed) {
        ++fired;
        hot_first += (x.page - kBase) / kPageSize % 16 == 5;
      }
  }
  ASSERT_GT(fired, 500u);
  EXPECT_GT(static_cast<double>(hot_first), 0.85 * static_cast<double>(fired));
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
  // static moves nothing: the source and the placement queries
  EXPECT_EQ(fault.background_ns, fault.tracking_background_ns + fault.query_ns);
  // record_access, when charged, is the app source's cost.
  o.hotness_costs.record_access_ns = 6;
  SimResult charged = run("app");
  EXPECT_EQ(charged.tracking_app_ns, 6.0 * static_cast<double>(charged.accesses));
  EXPECT_NEAR(static_cast<double>(charged.app_ns - app.app_ns), charged.tracking_app_ns, 1.0);
}

// The budgeted fault source ("fault", what "sampled" picks) sizes its
// sample from its costs so that everything it costs, faults on the
// application's threads included, stays within SourceBudget::cpu_fraction
// of the time: whatever the costs (the quiet and the loaded figures) and
// however many ranges the footprint is registered as. fault:N arms N over
// all ranges, not N per range.
TEST(SimHotnessTest, FaultCostStaysWithinTheBudgetWhateverTheRanges) {
  WorkloadOptions w;
  w.pages = 16384;
  w.accesses = 3000000;
  auto run = [&](const std::string& hotness, std::uint64_t region_pages, HotnessCosts costs,
                 double fraction) {
    SimOptions o;
    o.gap_ns = 800;
    o.fast_pages = w.pages / 4;
    o.hotness = hotness;
    o.region_pages = region_pages;
    o.hotness_costs = costs;
    o.hotness_budget.cpu_fraction = fraction;
    auto wl = make_workload("uniform", w);
    EXPECT_TRUE(wl.ok()) << wl.status();
    auto res = simulate(**wl, "static", o);
    EXPECT_TRUE(res.ok()) << res.status();
    return res.ok() ? *res : SimResult{};
  };
  for (const HotnessCosts& costs : {HotnessCosts::measured(), HotnessCosts::loaded()})
    for (double fraction : {0.01, 0.03}) {
      SimResult one = run("fault", 0, costs, fraction), four = run("fault", 4096, costs, fraction);
      ASSERT_GT(one.epochs, 20u);
      EXPECT_GE(one.source_sampled, one.epochs) << "at least one sample per epoch";
      for (const SimResult& r : {one, four})
        EXPECT_LE(r.tracking_ns(), fraction * static_cast<double>(r.app_ns))
            << "fraction " << fraction << ", " << r.source_sampled << " samples";
      // Four ranges take the same sample as one: the budget is per epoch.
      EXPECT_NEAR(static_cast<double>(four.source_sampled), static_cast<double>(one.source_sampled),
                  0.05 * static_cast<double>(one.source_sampled));
    }
  // fault:N: N per epoch whatever the ranges.
  SimResult one = run("fault:8", 0, HotnessCosts::measured(), 0.01),
            four = run("fault:8", 4096, HotnessCosts::measured(), 0.01);
  EXPECT_EQ(one.source_sampled, 8 * one.epochs);
  EXPECT_EQ(four.source_sampled, 8 * four.epochs);
}

// FaultBudget: a token bucket of the allowance; an overspent epoch is paid
// back by the next, an underspent one carries over at most one allowance.
TEST(SimHotnessTest, FaultBudgetIsATokenBucket) {
  source::FaultSampleCosts c{.arm_ns = 10, .disarm_ns = 10, .fire_ns = 30, .maps_ns = 100};
  source::FaultBudget b;
  b.p_fire = 0.5;                   // 10 + 15 + 5 = 30 ns per sample expected
  EXPECT_EQ(b.plan(c, 1000), 30u);  // (1000 - 100) / 30
  b.settle(30, 30, 100 + 30 * 40);  // every sample fired: 1300 spent, 300 over
  EXPECT_DOUBLE_EQ(b.balance_ns, -300);
  EXPECT_DOUBLE_EQ(b.p_fire, 0.625);
  const double per = c.per_sample_ns(b.p_fire);                               // 32.5
  EXPECT_EQ(b.plan(c, 1000), static_cast<std::uint64_t>((700 - 100) / per));  // paid back
  b.settle(18, 0, 100 + 18 * 20);
  EXPECT_LE(b.balance_ns, 1000);
  b.balance_ns = 50000;  // long idle: carries one allowance at most
  b.plan(c, 1000);
  EXPECT_DOUBLE_EQ(b.balance_ns, 1000);
  EXPECT_EQ(source::FaultBudget{}.plan(source::FaultSampleCosts{}, 1000), 0u);  // nothing measured
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

// The issue-14 rule on the committed real-program traces: automatic fed by
// a source reaches >= min_ratio times the hit ratio it reaches fed by the
// application, at a tracking cost <= 1% of the application's time
// (--gap_ns=800, --fast=25%, the default costs). gcc and xz end within
// their first epoch (no source runs: both 1.000x), so they are not here.
//  - "sampled" (on Debian 12: births+fault): the rule's 0.9x on all three
//    (measured 0.975x / 1.191x / 1.004x; docs/performance.md, session 9).
//  - "fault" alone, by name: 0.9x on python3 and sqlite3; on mawk it falls
//    short ("Why sampled falls short"), asserted as a floor against
//    regression, 0.84x: 0.844x since session 45's first-boundary rule
//    raised the app-fed figure (35.4% to 36.3%); the fault-fed 30.6% did
//    not change.
struct TraceRule {
  const char* trace;
  const char* source;
  const char* label;
  double min_ratio;
};
class SimHotnessTraceTest : public ::testing::TestWithParam<TraceRule> {};
TEST_P(SimHotnessTraceTest, SampledWithinTheBudgetNearApp) {
  auto t = read_lackey_trace(std::string(TIERKIT_FIXTURES_DIR "/../traces/") + GetParam().trace);
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
  SimResult app = run("app"), sampled = run(GetParam().source);
  EXPECT_EQ(sampled.hotness, GetParam().label);
  EXPECT_GE(sampled.hit_ratio(), GetParam().min_ratio * app.hit_ratio());
  EXPECT_GT(sampled.tracking_ns(), 0);
  EXPECT_LE(sampled.tracking_ns(), 0.01 * static_cast<double>(sampled.app_ns));
  std::printf("%s %s: app %.2f%%, source %.2f%% (%.3fx), %llu promoted, tracking %.3f%%\n",
              GetParam().trace, GetParam().source, 100 * app.hit_ratio(), 100 * sampled.hit_ratio(),
              sampled.hit_ratio() / app.hit_ratio(),
              static_cast<unsigned long long>(sampled.promoted_pages),
              100 * sampled.tracking_ns() / static_cast<double>(sampled.app_ns));
}
INSTANTIATE_TEST_SUITE_P(
    Traces, SimHotnessTraceTest,
    ::testing::Values(TraceRule{"mawk-groupby.lackey.gz", "sampled", "sampled->births+fault", 0.9},
                      TraceRule{"python3-dict.lackey.gz", "sampled", "sampled->births+fault", 0.9},
                      TraceRule{"sqlite3-lookups.lackey.gz", "sampled", "sampled->births+fault",
                                0.9},
                      // Recorded after the sources were tuned (session 10): held out.
                      TraceRule{"sort-lines.lackey.gz", "sampled", "sampled->births+fault", 0.9},
                      // Recorded in session 12, after both: held out.
                      TraceRule{"sfdp-graph.lackey.gz", "sampled", "sampled->births+fault", 0.9},
                      TraceRule{"mawk-groupby.lackey.gz", "fault", "fault", 0.84},
                      TraceRule{"python3-dict.lackey.gz", "fault", "fault", 0.9},
                      TraceRule{"sqlite3-lookups.lackey.gz", "fault", "fault", 0.9}));

// Sampled evidence acts: on the built-in workloads (64 MiB, 10M accesses,
// the defaults) automatic fed by "sampled" alone promotes (before issue
// 14's rework it promoted nothing: one observation never beat the swap's
// noise guard), ping-pongs less than 2% of what it promotes and stays
// within the 1% budget; on a stationary skew (zipf) it beats first touch.
// On the moving hot set (hotshift) it does not, at this host's costs: it
// must not lose more than a point to it.
TEST(SimHotnessTest, SampledPromotesWithoutPingPongWithinTheBudget) {
  WorkloadOptions w;
  w.pages = 16384;
  w.accesses = 10000000;
  auto run = [&](const char* workload, const std::string& policy) {
    SimOptions o;
    o.gap_ns = 800;
    o.fast_pages = w.pages / 4;
    o.hotness = "sampled";
    auto wl = make_workload(workload, w);
    EXPECT_TRUE(wl.ok()) << wl.status();
    auto res = simulate(**wl, policy, o);
    EXPECT_TRUE(res.ok()) << res.status();
    return res.ok() ? *res : SimResult{};
  };
  for (const char* workload : {"hotshift", "zipf"}) {
    SimResult first_touch = run(workload, "static"), sampled = run(workload, "automatic");
    EXPECT_GT(sampled.promoted_pages, 30u) << workload;
    EXPECT_LT(static_cast<double>(sampled.pingpong_pages),
              0.02 * static_cast<double>(sampled.promoted_pages))
        << workload;
    EXPECT_LE(sampled.tracking_ns(), 0.01 * static_cast<double>(sampled.app_ns)) << workload;
    if (std::string(workload) == "zipf")
      EXPECT_GT(sampled.hit_ratio(), first_touch.hit_ratio() + 0.005);
    else
      EXPECT_GT(sampled.hit_ratio(), first_touch.hit_ratio() - 0.01);
    std::printf("%s: first touch %.2f%%, sampled %.2f%%, %llu promoted, %llu ping-pong\n", workload,
                100 * first_touch.hit_ratio(), 100 * sampled.hit_ratio(),
                static_cast<unsigned long long>(sampled.promoted_pages),
                static_cast<unsigned long long>(sampled.pingpong_pages));
  }
}

}  // namespace
}  // namespace tierkit::sim
