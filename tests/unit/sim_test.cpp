// Simulator tests: lackey parsing and loading, workload generators, the
// simulator's accounting and the oracle. Small, deterministic runs; no timing.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tierkit/sim/lackey.hpp"
#include "tierkit/sim/report.hpp"
#include "tierkit/sim/simulator.hpp"
#include "tierkit/sim/trace_file.hpp"
#include "tierkit/sim/workload.hpp"

namespace tierkit::sim {
namespace {

TEST(Lackey, ParsesLoadsStoresAndModifies) {
  LackeyRecord r = parse_lackey_line(" L 04222cac,8\n");
  EXPECT_EQ(r.kind, LackeyRecord::kLoad);
  EXPECT_EQ(r.addr, 0x04222cacu);
  EXPECT_EQ(r.size, 8u);
  r = parse_lackey_line(" S 7ff000398,4");
  EXPECT_EQ(r.kind, LackeyRecord::kStore);
  EXPECT_EQ(r.addr, 0x7ff000398u);
  EXPECT_EQ(r.size, 4u);
  r = parse_lackey_line(" M 0421A5C8,16\r\n");
  EXPECT_EQ(r.kind, LackeyRecord::kModify);
  EXPECT_EQ(r.addr, 0x0421a5c8u);
  EXPECT_EQ(r.size, 16u);
  r = parse_lackey_line("L\t0xffffffffffffffff,1");
  EXPECT_EQ(r.kind, LackeyRecord::kLoad);
  EXPECT_EQ(r.addr, ~std::uint64_t{0});
  EXPECT_TRUE(r.is_data());
}

TEST(Lackey, SkipsInstructionCommentAndBlankLines) {
  EXPECT_EQ(parse_lackey_line("I  04010173,3").kind, LackeyRecord::kInstruction);
  EXPECT_FALSE(parse_lackey_line("I  04010173,3").is_data());
  EXPECT_EQ(parse_lackey_line("==12345== Lackey, an example Valgrind tool").kind,
            LackeyRecord::kComment);
  EXPECT_EQ(parse_lackey_line("").kind, LackeyRecord::kBlank);
  EXPECT_EQ(parse_lackey_line("   \n").kind, LackeyRecord::kBlank);
}

TEST(Lackey, RejectsMalformedLines) {
  for (const char* bad : {"X 1234,4", " L ,4", " L 1234", " L 1234,", " L 12345678901234567,4",
                          " L 1234,0", " L zz,4", " L 1234,4 junk", "L1234,4", " L 1234,99999999",
                          " L 1234,-4", "=", " L", " L 0x,4", " L 1234,70000", "\xff\xfe L 1,1"}) {
    LackeyRecord r = parse_lackey_line(bad);
    EXPECT_EQ(r.kind, LackeyRecord::kMalformed) << "'" << bad << "'";
    EXPECT_FALSE(r.is_data());
  }
}

TEST(Lackey, RandomBytesNeverCrashAndGiveAKnownKind) {
  std::mt19937 rng(3);
  const std::string alphabet = " LSMI=,0123456789abcdefxX\t\n\r\xff";
  for (int i = 0; i < 20000; ++i) {
    std::string s(rng() % 40, ' ');
    for (auto& c : s) c = alphabet[rng() % alphabet.size()];
    LackeyRecord r = parse_lackey_line(s);
    EXPECT_LE(r.kind, LackeyRecord::kMalformed);
    if (r.is_data()) {
      EXPECT_GE(r.size, 1u);
      EXPECT_LE(r.size, LackeyRecord::kMaxSize);
    }
  }
}

std::string temp_path(const char* suffix) {
  char tmpl[] = "/tmp/tierkit_sim_test_XXXXXX";
  int fd = ::mkstemp(tmpl);
  EXPECT_GE(fd, 0);
  ::close(fd);
  std::remove(tmpl);
  return std::string(tmpl) + suffix;
}

const char kTrace[] =
    "==1== Lackey, an example Valgrind tool\n"
    "I  04010173,3\n"
    " S 00003008,8\n"  // page 3: first touch
    " L 00001000,4\n"  // page 1
    " M 00003ffe,4\n"  // straddles pages 3 and 4
    "garbage here\n"   // malformed (line 6)
    "\n"
    " L 00001010,8\n";  // page 1 again

void check_trace(const Trace& t) {
  EXPECT_EQ(t.lines, 8u);
  EXPECT_EQ(t.loads, 2u);
  EXPECT_EQ(t.stores, 1u);
  EXPECT_EQ(t.modifies, 1u);
  EXPECT_EQ(t.instructions, 1u);
  EXPECT_EQ(t.comments, 1u);
  EXPECT_EQ(t.blank, 1u);
  EXPECT_EQ(t.malformed, 1u);
  EXPECT_EQ(t.first_malformed_line, 6u);
  EXPECT_EQ(t.straddling, 1u);
  // Pages 1, 3, 4 in address order -> 0, 1, 2. Accesses: 3, 1, 3, 4, 1.
  EXPECT_EQ(t.pages, 3u);
  EXPECT_EQ(t.accesses, (std::vector<std::uint32_t>{1, 0, 1, 2, 0}));
  // First touch order: page 3 (index 1), page 1 (index 0), page 4 (index 2).
  EXPECT_EQ(t.first_touch, (std::vector<std::uint32_t>{1, 0, 2}));
}

TEST(TraceFile, LoadsPlainText) {
  std::string path = temp_path(".txt");
  std::ofstream(path) << kTrace;
  auto t = read_lackey_trace(path);
  ASSERT_TRUE(t.ok()) << t.status();
  check_trace(*t);
  EXPECT_NE(t->summary().find("1 malformed"), std::string::npos);
  std::remove(path.c_str());
}

TEST(TraceFile, LoadsGzip) {
  std::string path = temp_path(".gz");
  gzFile g = gzopen(path.c_str(), "wb");
  ASSERT_NE(g, nullptr);
  gzwrite(g, kTrace, sizeof kTrace - 1);
  gzclose(g);
  auto t = read_lackey_trace(path);
  ASSERT_TRUE(t.ok()) << t.status();
  check_trace(*t);
  std::remove(path.c_str());
}

// Writes `copies` x kTrace to `path` as `members` gzip members; returns the
// file's size.
long write_gzip_members(const std::string& path, int members, int copies) {
  std::string body;
  for (int i = 0; i < copies; ++i) body += kTrace;
  for (int m = 0; m < members; ++m) {
    gzFile g = gzopen(path.c_str(), m == 0 ? "wb" : "ab");
    EXPECT_NE(g, nullptr);
    gzwrite(g, body.data(), static_cast<unsigned>(body.size()));
    gzclose(g);
  }
  return static_cast<long>(std::ifstream(path, std::ios::ate | std::ios::binary).tellg());
}

// A gzip trace cut short is DataLoss, not a shorter trace (zlib reports it as
// Z_BUF_ERROR); several members (cat a.gz b.gz) make one whole trace.
TEST(TraceFile, GzipCutShortIsDataLoss) {
  std::string path = temp_path(".gz");
  const long size = write_gzip_members(path, 2, 500);
  auto whole = read_lackey_trace(path);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_EQ(whole->lines, 2u * 500 * 8);
  for (long cut : {size / 4, size * 3 / 4, size - 1}) {
    ASSERT_EQ(::truncate(path.c_str(), cut), 0);
    auto t = read_lackey_trace(path);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kDataLoss) << cut << ": " << t.status();
    EXPECT_NE(t.status().message().find("the gzip stream ends early after"),
              absl::string_view::npos)
        << t.status();
  }
  std::remove(path.c_str());
}

TEST(TraceFile, ErrorsAndLimits) {
  EXPECT_EQ(read_lackey_trace("/nonexistent/trace").status().code(), absl::StatusCode::kNotFound);
  std::string path = temp_path(".txt");
  std::ofstream(path) << "I  0401,3\n==1== hi\n";
  EXPECT_EQ(read_lackey_trace(path).status().code(), absl::StatusCode::kInvalidArgument);
  std::ofstream(path) << kTrace << std::string(600, 'x') << "\n L 5000,4\n";
  auto t = read_lackey_trace(path);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->malformed, 2u);  // the overlong line too
  EXPECT_EQ(t->accesses.size(), 6u);
  auto cut = read_lackey_trace(path, 2);
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->accesses.size(), 2u);
  EXPECT_TRUE(cut->truncated);
  std::remove(path.c_str());
}

// An access wider than a page touches every page it covers, not only its
// first and last: a 12 KiB load at 0x1000 is pages 1, 2 and 3, and each page
// of a wide store is a write.
TEST(TraceFile, WideAccessTouchesEveryPageItCovers) {
  std::string path = temp_path(".txt");
  std::ofstream(path) << " L 00001000,12288\n S 00010ffc,8200\n";
  auto t = read_lackey_trace(path);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->pages, 7u);  // 1, 2, 3 and 0x10 .. 0x13
  EXPECT_EQ(t->accesses, (std::vector<std::uint32_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(t->writes(), 4u);
  EXPECT_EQ(t->straddling, 2u);
  std::remove(path.c_str());
}

// A NUL byte (a binary or corrupt file) makes its line malformed: the text
// before it is not a record, and a long line's rest is not a line of its own.
TEST(TraceFile, LineWithANulByteIsMalformed) {
  std::string path = temp_path(".txt");
  std::string body = std::string(" L 00001000,8\0 junk\n", 20) + '\0' + std::string(510, 'x') +
                     " L 00007000,8\n S 00002000,8\n";
  std::ofstream(path, std::ios::binary) << body;
  auto t = read_lackey_trace(path);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->lines, 3u);
  EXPECT_EQ(t->malformed, 2u);
  EXPECT_EQ(t->first_malformed_line, 1u);
  EXPECT_EQ(t->loads, 0u);
  EXPECT_EQ(t->stores, 1u);
  EXPECT_EQ(t->accesses.size(), 1u);
  std::remove(path.c_str());
}

// --max_trace_accesses is a limit on page accesses: an access that would
// take the trace past it adds only the pages within it (and no others to
// the footprint), with or without the LLC model.
TEST(TraceFile, MaxAccessesIsExactWhenAnAccessSpansPages) {
  std::string path = temp_path(".txt");
  std::ofstream(path) << " L 00000ffc,8\n L 00005000,4\n S 00010000,16384\n";
  for (std::uint64_t max : {1, 3, 4}) {
    auto t = read_lackey_trace(path, max);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->accesses.size(), max);
    EXPECT_EQ(t->pages, max);
    EXPECT_TRUE(t->truncated);
  }
  auto llc = read_lackey_trace(path, 5, nullptr, LlcConfig{});
  ASSERT_TRUE(llc.ok()) << llc.status();
  EXPECT_EQ(llc->accesses.size(), 5u);  // the 16 KiB store misses 256 lines over 4 pages
  EXPECT_EQ(llc->pages, 4u);
  std::remove(path.c_str());
}

WorkloadOptions Small(std::uint64_t pages = 4096, std::uint64_t accesses = 200000) {
  WorkloadOptions o;
  o.pages = pages;
  o.accesses = accesses;
  o.seed = 7;
  return o;
}

std::vector<std::uint32_t> drain(Workload& w) {
  std::vector<std::uint32_t> all, buf(1000);
  while (std::size_t n = w.next(absl::MakeSpan(buf)))
    all.insert(all.end(), buf.begin(), buf.begin() + n);
  return all;
}

std::vector<std::uint32_t> stream(const std::string& name, const WorkloadOptions& o) {
  auto w = make_workload(name, o);
  EXPECT_TRUE(w.ok()) << w.status();
  return drain(**w);
}

TEST(Workload, EveryBuiltinIsDeterministicBySeedAndInBounds) {
  for (const auto& name : builtin_workloads()) {
    WorkloadOptions o = Small();
    auto a = stream(name, o), b = stream(name, o);
    EXPECT_EQ(a.size(), o.accesses) << name;
    EXPECT_EQ(a, b) << name << ": same seed, different stream";
    o.seed = 8;
    EXPECT_NE(a, stream(name, o)) << name << ": seed ignored";
    EXPECT_LT(*std::max_element(a.begin(), a.end()), o.pages) << name;
    std::set<std::uint32_t> distinct(a.begin(), a.end());
    EXPECT_GT(distinct.size(), o.pages / 10) << name << ": uses too little of the footprint";
  }
  EXPECT_FALSE(make_workload("nope", Small()).ok());
  WorkloadOptions bad = Small();
  bad.hot_share = 2;
  EXPECT_FALSE(make_workload("hotshift", bad).ok());
}

TEST(Workload, ZipfIsSkewed) {
  auto a = stream("zipf", Small());
  std::vector<std::uint32_t> count(4096);
  for (auto p : a) ++count[p];
  std::sort(count.rbegin(), count.rend());
  std::uint64_t top = 0;
  for (int i = 0; i < 41; ++i) top += count[static_cast<std::size_t>(i)];
  // s = 1 over 4096 pages: the top 1% of pages take about 48% of accesses.
  EXPECT_GT(static_cast<double>(top) / static_cast<double>(a.size()), 0.4);
  EXPECT_LT(static_cast<double>(top) / static_cast<double>(a.size()), 0.6);
}

TEST(Workload, HotshiftMovesItsHotSetEveryPhase) {
  WorkloadOptions o = Small();
  o.phases = 4;
  HotShiftWorkload w(o);
  auto a = drain(w);
  const std::uint64_t per_phase = o.accesses / 4;
  for (std::uint32_t k = 0; k < 4; ++k) {
    std::set<std::uint32_t> hot;
    for (std::uint64_t j = 0; j < w.hot_pages(); ++j) hot.insert(w.hot_page(k, j));
    std::uint64_t in = 0;
    for (std::uint64_t i = k * per_phase; i < (k + 1) * per_phase; ++i) in += hot.count(a[i]);
    double share = static_cast<double>(in) / static_cast<double>(per_phase);
    EXPECT_GT(share, 0.88) << "phase " << k;  // 90% + 10% * 10% by chance
    if (k > 0) {
      std::uint64_t overlap = 0;
      for (std::uint64_t j = 0; j < w.hot_pages(); ++j) overlap += hot.count(w.hot_page(k - 1, j));
      EXPECT_EQ(overlap, 0u) << "phase " << k << " reuses the previous hot set";
    }
  }
}

TEST(Workload, ScanReadsEveryPageInOrder) {
  WorkloadOptions o = Small(1024, 100000);
  o.scans = 4;
  ScanWorkload w(o);
  auto a = drain(w);
  // Each 25000-access cycle ends with pages 0..1023 in order.
  for (int c = 0; c < 4; ++c)
    for (std::uint32_t p = 0; p < 1024; ++p)
      ASSERT_EQ(a[static_cast<std::size_t>(c) * 25000 + 25000 - 1024 + p], p) << "cycle " << c;
}

TEST(Workload, ChurnFavoursYoungPages) {
  WorkloadOptions o = Small();
  ChurnWorkload w(o);
  auto a = drain(w);
  std::uint64_t young = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    std::uint64_t age = (w.head(i) + o.pages - a[i]) % o.pages;
    young += age < w.young_pages();
  }
  EXPECT_GT(static_cast<double>(young) / static_cast<double>(a.size()), 0.88);
  EXPECT_EQ(w.head(a.size() / 4), o.pages / 2);  // 2 laps: half way round at 1/4
}

TEST(Workload, TraceReplaysAndKeepsFirstTouch) {
  auto t = std::make_shared<Trace>();
  t->name = "t";
  t->pages = 3;
  t->accesses = {2, 0, 1, 2};
  t->first_touch = {1, 2, 0};
  TraceWorkload w(t);
  EXPECT_EQ(drain(w), t->accesses);
  EXPECT_EQ(w.first_touch_rank(2), 0u);
  EXPECT_EQ(w.name(), "trace:t");
}

SimOptions SmallSim(std::uint64_t fast_pages) {
  SimOptions o;
  o.fast_pages = fast_pages;
  o.gap_ns = 1000;
  o.sample_ms = 500;
  o.engine.epoch_ms = 100;
  return o;
}

SimResult run(const std::string& workload, const std::string& policy, const WorkloadOptions& w,
              const SimOptions& o) {
  auto wl = make_workload(workload, w);
  EXPECT_TRUE(wl.ok());
  auto r = simulate(**wl, policy, o);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : SimResult{};
}

TEST(Simulator, OracleBeatsEveryPolicyOnZipf) {
  WorkloadOptions w = Small(8192, 3000000);
  SimOptions o = SmallSim(2048);
  SimResult oracle = run("zipf", "oracle", w, o);
  EXPECT_EQ(oracle.migrated_bytes, 0u);
  EXPECT_EQ(oracle.accesses, w.accesses);
  for (const char* p : {"static", "kernel", "kernel:rate=16", "threshold:4", "automatic"}) {
    SimResult r = run("zipf", p, w, o);
    EXPECT_EQ(r.accesses, w.accesses) << p;
    EXPECT_GE(oracle.hit_ratio(), r.hit_ratio()) << p;
    EXPECT_LE(oracle.app_ns, r.app_ns) << p;
  }
}

TEST(Simulator, StaticMigratesNothingAndKeepsFirstTouch) {
  WorkloadOptions w = Small(4096, 500000);
  SimOptions o = SmallSim(1024);
  SimResult r = run("zipf", "static", w, o);
  EXPECT_EQ(r.promoted_pages + r.demoted_pages, 0u);
  EXPECT_EQ(r.migrated_bytes, 0u);
  EXPECT_EQ(r.background_ns, r.query_ns);  // only the placement queries
  EXPECT_GE(r.query_pages, 4096u);         // registration asks about every page
  EXPECT_GE(r.epochs, 5u);
  // Zipf ranks are scattered: first touch of pages 0..1023 hits about 1/4.
  EXPECT_GT(r.hit_ratio(), 0.1);
  EXPECT_LT(r.hit_ratio(), 0.45);
  o.all_slow = true;
  EXPECT_EQ(run("zipf", "static", w, o).fast_hits, 0u);
}

TEST(Simulator, PlacingAtAccessIsForTracesOnly) {
  SimOptions o = SmallSim(1024);
  o.place_at_access = true;
  auto wl = make_workload("zipf", Small(4096, 10000));
  ASSERT_TRUE(wl.ok());
  auto r = simulate(**wl, "automatic", o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--place_at_access"), std::string::npos) << r.status();
}

// The engine's placement queries are background work at query_call_ns a
// call plus query_page_ns a page, and change nothing else.
TEST(Simulator, ChargesTheEnginesPlacementQueriesToTheBackground) {
  WorkloadOptions w = Small(4096, 1000000);
  SimOptions o = SmallSim(1024);
  o.query_call_ns = 0;
  o.query_page_ns = 1;
  SimResult a = run("hotshift", "automatic", w, o);
  EXPECT_EQ(a.query_ns, static_cast<double>(a.query_pages));
  EXPECT_GE(a.query_pages, 4096u);  // registration asks about every page
  o.query_page_ns = 0;
  SimResult free = run("hotshift", "automatic", w, o);
  EXPECT_EQ(free.query_ns, 0);
  EXPECT_EQ(free.query_pages, a.query_pages);
  EXPECT_EQ(free.fast_hits, a.fast_hits);
  EXPECT_EQ(free.app_ns, a.app_ns);  // on the engine's thread, not the application's
  EXPECT_DOUBLE_EQ(a.background_ns - free.background_ns, a.query_ns);
  o.query_page_ns = -1;
  EXPECT_FALSE(o.validate().ok());
}

TEST(Simulator, ChargesSyncPromotionsToTheAppAndTheRestToTheBackground) {
  WorkloadOptions w = Small(4096, 1000000);
  SimOptions o = SmallSim(1024);
  SimResult k = run("hotshift", "kernel", w, o);
  SimResult a = run("hotshift", "automatic", w, o);
  ASSERT_GT(k.promoted_pages, 0u);
  ASSERT_GT(a.promoted_pages, 0u);
  const double page = o.page_cost_ns();
  EXPECT_NEAR(k.sync_migration_ns, static_cast<double>(k.promoted_pages) * page, page);
  EXPECT_NEAR(k.background_ns, static_cast<double>(k.demoted_pages) * page, page);
  EXPECT_EQ(k.query_ns, 0);  // the kernel knows where its pages are
  EXPECT_EQ(a.sync_migration_ns, 0);
  EXPECT_GT(a.query_ns, 0);
  EXPECT_NEAR(a.background_ns - a.query_ns,
              static_cast<double>(a.promoted_pages + a.demoted_pages) * page, page);
  EXPECT_EQ(k.migrated_bytes, (k.promoted_pages + k.demoted_pages) * kPageSize);
  // App time = accesses' latencies and gaps + sync stalls.
  const double mem =
      static_cast<double>(k.fast_hits) * static_cast<double>(o.fast_ns + o.gap_ns) +
      static_cast<double>(k.accesses - k.fast_hits) * static_cast<double>(o.slow_ns + o.gap_ns);
  EXPECT_NEAR(static_cast<double>(k.app_ns), mem + k.sync_migration_ns + k.app_move_ns, 2.0);
  EXPECT_FALSE(a.series.empty());
  EXPECT_EQ(a.series.back().migrated_bytes, a.migrated_bytes);
}

TEST(Simulator, AutomaticMigratesLittleOnUniform) {
  WorkloadOptions w = Small(8192, 2000000);
  SimOptions o = SmallSim(2048);
  SimResult a = run("uniform", "automatic", w, o);
  SimResult k = run("uniform", "kernel", w, o);
  // Nothing to gain: at most the initial watermark trim plus a little noise.
  EXPECT_LT(a.promoted_pages + a.demoted_pages, 2048u / 4) << "automatic churns on uniform";
  EXPECT_GT(k.promoted_pages + k.demoted_pages, 4 * (a.promoted_pages + a.demoted_pages));
}

// Idle pages are registered with the engine, on the slow tier, and never
// accessed: tierkit's policies, which judge accesses (automatic's cooling
// window counts seen pages, not tracked ones), are unmoved by them, while
// the kernel model's scanner, which walks the address space as
// task_numa_work() does, takes longer to come round to the hot pages.
TEST(Simulator, IdlePagesAreTrackedButNeverTouched) {
  WorkloadOptions w = Small(4096, 1000000);
  SimOptions o = SmallSim(1024);
  SimOptions idle = o;
  idle.idle_pages = 8 * 4096;
  for (const char* p : {"static", "threshold:4", "automatic"}) {
    SimResult a = run("zipf", p, w, o), b = run("zipf", p, w, idle);
    EXPECT_EQ(a.fast_hits, b.fast_hits) << p;
    EXPECT_EQ(a.promoted_pages, b.promoted_pages) << p;
    EXPECT_EQ(b.pages, 4096u) << p;  // the footprint, not what is tracked
  }
  SimResult k = run("zipf", "kernel", w, o), ki = run("zipf", "kernel", w, idle);
  EXPECT_EQ(ki.accesses, k.accesses);
  EXPECT_LT(ki.promoted_pages, k.promoted_pages);
  idle.idle_pages = (std::uint64_t{1} << 28) + 1;
  UniformWorkload u(Small());
  EXPECT_FALSE(simulate(u, "automatic", idle).ok());
}

TEST(Simulator, RejectsBadPolicyAndOptions) {
  UniformWorkload w(Small());
  EXPECT_FALSE(simulate(w, "bogus", SmallSim(10)).ok());
  EXPECT_FALSE(simulate(w, "threshold:-1", SmallSim(10)).ok());
  EXPECT_FALSE(simulate(w, "automatic", SmallSim(0)).ok());
  EXPECT_TRUE(validate_policy("oracle").ok());
  EXPECT_TRUE(validate_policy("kernel:rate=64,target=32").ok());
}

TEST(Report, CsvHasEveryColumnAndOneRowPerRun) {
  WorkloadOptions w = Small(2048, 100000);
  std::vector<SimResult> rs = {run("zipf", "automatic", w, SmallSim(512)),
                               run("zipf", "kernel:rate=64,target=32", w, SmallSim(512))};
  std::string csv = to_csv(rs);
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  std::vector<std::string> header = absl::StrSplit(lines[0], ',');
  for (const char* col :
       {"workload", "policy", "accesses", "fast_hit_ratio", "mean_latency_ns", "promoted_pages",
        "demoted_pages", "migrated_bytes", "pingpong_pages", "app_time_s", "background_time_s",
        "sync_migration_time_s", "final_threshold"})
    EXPECT_NE(std::find(header.begin(), header.end(), col), header.end()) << col;
  EXPECT_EQ(lines[1].rfind("zipf,automatic,100000,", 0), 0u) << lines[1];
  EXPECT_NE(lines[2].find("\"kernel:rate=64,target=32\""), std::string::npos) << lines[2];
  std::string md = to_markdown(rs);
  EXPECT_NE(md.find("| zipf | automatic |"), std::string::npos);
  std::string gp = gnuplot_script(rs, "/tmp/x.png");
  EXPECT_NE(gp.find("set multiplot"), std::string::npos);
  EXPECT_NE(gp.find("$d1 << EOD"), std::string::npos);
}

TEST(Report, SeriesCsvHasOneRowPerIntervalOfEveryRun) {
  WorkloadOptions w = Small(2048, 100000);
  SimOptions o = SmallSim(512);
  o.sample_ms = 10;
  std::vector<SimResult> rs = {run("zipf", "automatic", w, o),
                               run("zipf", "kernel:rate=64,target=32", w, o)};
  ASSERT_GT(rs[0].series.size(), 1u);
  std::vector<std::string> lines = absl::StrSplit(series_csv(rs), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1 + rs[0].series.size() + rs[1].series.size());
  EXPECT_EQ(lines[0], "workload,policy,hotness,t_s,hit_ratio,migrated_bytes");
  EXPECT_EQ(lines[1].rfind("zipf,automatic,app,", 0), 0u) << lines[1];
  // The last interval of a run ends with everything it migrated.
  const std::string& last = lines[rs[0].series.size()];
  EXPECT_EQ(last.substr(last.rfind(',') + 1), std::to_string(rs[0].migrated_bytes)) << last;
  EXPECT_NE(lines.back().find("\"kernel:rate=64,target=32\""), std::string::npos) << lines.back();
}

}  // namespace
}  // namespace tierkit::sim
