// tierkit-sim: replays built-in workloads or a valgrind lackey trace against
// tierkit's placement policies, the kernel model and an oracle, on virtual
// time, through the same Engine code applications use. See docs/performance.md.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "parse_flags.hpp"
#include "tierkit/detail/parse.hpp"
#include "tierkit/sim/llc.hpp"
#include "tierkit/sim/output_file.hpp"
#include "tierkit/sim/report.hpp"
#include "tierkit/sim/simulator.hpp"
#include "tierkit/sim/trace_file.hpp"
#include "tierkit/sim/workload.hpp"

// The policies --policy=all runs, in table order.
static const char* const kAllPolicies[] = {
    "static",    "kernel", "kernel:rate=16", "kernel:target=16", "threshold:4",
    "automatic", "lfu",    "reactive",       "best-static",      "oracle"};

ABSL_FLAG(std::string, workload, "all",
          "Comma-separated workloads: zipf, hotshift, scan, uniform, churn, or all. Not with "
          "--trace.");
ABSL_FLAG(std::string, policy, "all",
          "Comma-separated policies: static, kernel, kernel:rate=MBps, kernel:target=MBps, "
          "threshold:RATE, automatic, the references lfu, reactive, best-static, oracle, or all "
          "(= static, kernel, kernel:rate=16, kernel:target=16, threshold:4, automatic, lfu, "
          "reactive, best-static, oracle). Not in all: the issue-12 rule's bounds in hindsight "
          "on lfu's epochs (no more promotions than lfu, ping-pong at most 5% of moves, only "
          "pages already accessed move): rule-hindsight (a schedule within them, found "
          "greedily) and rule-bound (no schedule within them has more hits; seconds); and "
          "topk[:decay=D/margin=M/add=A/back=B/residency=E], exact counts with swap margins "
          "(sim/reference.hpp: TopKMargins).");
ABSL_FLAG(std::string, trace, "",
          "Replay a valgrind lackey trace (valgrind --tool=lackey --trace-mem=yes), plain or "
          "gzip; '-' reads stdin. Replaces --workload.");
ABSL_FLAG(std::string, llc, "",
          "Filter --trace through a last-level-cache model first, SIZE[,WAYS] (64 B lines, LRU, "
          "e.g. 4M or 4M,16): only misses reach memory, so raw lackey output replays directly. "
          "Empty = none (the trace is already memory-level, like tests/traces/*).");
ABSL_FLAG(std::string, write_trace, "",
          "With --trace and --llc: write the LLC-filtered trace (lackey format, gzip when the "
          "name ends in .gz; '-' = stdout) and exit without simulating.");
ABSL_FLAG(std::string, max_trace_accesses, "0",
          "Stop loading the trace after this many page accesses (0 = all; suffixes k, M, G). "
          "Not with --write_trace, which writes the whole trace.");
ABSL_FLAG(std::string, footprint, "256M",
          "Built-in workloads: memory footprint in bytes (64K, 512M, 1G).");
ABSL_FLAG(std::string, fast, "25%",
          "Fast-tier (DRAM) capacity: bytes (256M) or a percentage of the footprint (25%). "
          "Without this flag, TIERKIT_FAST_BUDGET (bytes) sets it when not 0.");
ABSL_FLAG(std::string, accesses, "30M",
          "Built-in workloads: accesses per run (suffixes k, M, G = 10^3, 10^6, 10^9).");
ABSL_FLAG(std::string, seed, "1", "Seed of the built-in workloads.");
ABSL_FLAG(std::string, epoch_ms, "100", "Engine epoch (and oracle window), virtual ms.");
ABSL_FLAG(std::string, fast_ns, "80", "Fast-tier access latency, ns.");
ABSL_FLAG(std::string, slow_ns, "250", "Slow-tier (CXL) access latency, ns.");
ABSL_FLAG(std::string, gap_ns, "5000",
          "Compute time between two accesses, ns: spreads the run over virtual minutes so the "
          "kernel model's 1 s scan and 60 s threshold adjustment play out.");
ABSL_FLAG(std::string, migrate_page_ns, "2000",
          "Fixed cost per migrated page (unmap, TLB "
          "shootdown, remap), ns.");
ABSL_FLAG(std::string, copy_gbps, "8", "Page copy bandwidth (the slower tier's), GB/s.");
ABSL_FLAG(std::string, move_call_ns, "5000",
          "Application stall per migration call, ns, for every move (background ones too): "
          "TLB-shootdown IPIs and LRU drain. A synchronous promotion is one call per page.");
ABSL_FLAG(std::string, move_page_ns, "1000",
          "Application stall per page moved by another thread, ns: TLB refill and the copy's "
          "memory bandwidth.");
ABSL_FLAG(std::string, rate_limit_mbps, "256", "tierkit's migration rate limit, MiB/s.");
ABSL_FLAG(std::string, burst, "auto",
          "tierkit's rate-limiter burst, bytes; auto = one epoch's worth at the rate limit (at "
          "least the engine's 16 MiB default), since the engine draws once per epoch.");
ABSL_FLAG(std::string, half_life_epochs, "4", "Engine heat half-life, epochs.");
ABSL_FLAG(std::string, idle, "0",
          "Memory the engine tracks but the workload never touches (a cold table: slow tier, "
          "registered after the footprint): bytes (1G) or a percentage of the footprint (400%). "
          "Engine policies only.");
ABSL_FLAG(std::string, all_slow, "false",
          "Initial placement: every page on the slow tier (default: first touch fills the fast "
          "tier in first-touch order).");
ABSL_FLAG(std::string, place_at_access, "false",
          "Engine policies: place each page at its first access, on the fast tier while it holds "
          "fewer pages than --fast (so room that demotions freed takes newborns, as first touch "
          "in a kernel does), not all before the run; the engine learns where newborns landed. "
          "The references keep the placement before the run.");
ABSL_FLAG(std::string, zipf_s, "1.0", "zipf: skew s (popularity ~ 1/rank^s).");
ABSL_FLAG(std::string, hot_fraction, "0.1", "hotshift, scan: hot set size / footprint.");
ABSL_FLAG(std::string, hot_share, "0.9",
          "hotshift, scan, churn: share of accesses to the hot part.");
ABSL_FLAG(std::string, phases, "6", "hotshift: phases (the hot set moves phases - 1 times).");
ABSL_FLAG(std::string, scans, "6", "scan: full sequential scans over the run.");
ABSL_FLAG(std::string, young_fraction, "0.05", "churn: young (hot) window / footprint.");
ABSL_FLAG(std::string, churn_laps, "2", "churn: times allocation sweeps the footprint.");
ABSL_FLAG(std::string, hotness, "app",
          "Comma-separated hotness sources feeding the engine policies: app (every access "
          "through Engine::record_access), fault[:N] (as many pages per epoch as "
          "--source_cpu_fraction pays for, or N over all ranges), softdirty, "
          "uffd, births, uffd+fault[:N], births+fault[:N] (both, one budget), sampled[:N] "
          "(the first of perf, births+fault, fault, uffd, softdirty in --hotness_available, as "
          "source::make_source picks: births+fault by default). Models of include/tierkit/source/; "
          "each charges its cost (tracking_* columns).");
ABSL_FLAG(std::string, hotness_available, "fault,uffd,births,softdirty",
          "Sources --hotness=sampled may pick: what the modelled machine offers. Default: Debian "
          "12's 6.12 kernel, unprivileged (perf is blocked by perf_event_paranoid); its 6.1: "
          "fault,births,softdirty.");
ABSL_FLAG(std::string, region_bytes, "0",
          "Register the footprint with the engine as regions of this size (64M = the arenas of "
          "TierMemoryResource under ArenaRegions); 0 = one region. Sources sample per range.");
ABSL_FLAG(std::string, source_max_pages, "4096",
          "Hotness sources: pages inspected per epoch (SourceBudget::max_pages; 0 = no cap).");
ABSL_FLAG(std::string, source_max_ns, "2000000",
          "Hotness sources: collect() CPU per epoch, ns (SourceBudget::max_ns; 0 = no cap).");
ABSL_FLAG(std::string, source_cpu_fraction, "0.01",
          "Hotness sources: all their CPU per epoch (engine thread and faults on the "
          "application's), as a fraction of the epoch (SourceBudget::cpu_fraction; 0 = no such "
          "limit). Sizes the fault source's sample.");
ABSL_FLAG(std::string, source_estimator, "rate",
          "How the engine turns source observations into heat (SourceEstimator): rate (the "
          "default: the rate a fault's latency says, at most 64 per observation, plus the "
          "sampled-evidence rules of Engine::add_hotness_source), fixed (each page found adds "
          "the source's weight, 4), latency (weight times time armed / time to fault), scaled "
          "(weight divided by the chance the page was inspected this epoch, Horvitz-Thompson; "
          "capped at the tracker's maximum heat), latency+scaled.");
ABSL_FLAG(std::string, hotness_costs, "measured",
          "The sources' cost constants: measured (quiet host, docs/performance.md) or loaded "
          "(the same host at load average 5: a pessimistic what-if); the --fault_arm_ns ... "
          "flags override single constants.");
ABSL_FLAG(std::string, record_access_ns, "0",
          "Cost of one record_access call charged to the application with --hotness=app, ns "
          "(measured ~6; 0 keeps the time model of the tables made before the sources).");
ABSL_FLAG(std::string, fault_arm_ns, "", "fault source: arming one page, ns (engine thread).");
ABSL_FLAG(std::string, fault_arm_page_ns, "",
          "fault source: arming each further page of a group armed as one sample, ns (engine "
          "thread; mostly the TLB invalidation of the page).");
ABSL_FLAG(std::string, fault_fire_page_ns, "",
          "fault source: each further page of a group that its fault restores, ns "
          "(application's thread).");
ABSL_FLAG(std::string, fault_group_pages, "16",
          "fault source (budgeted, as --hotness=fault or sampled): pages per sample, armed as "
          "one (FaultSourceOptions::group_pages: a power of two in [1, 16]).");
ABSL_FLAG(std::string, fault_disarm_ns, "",
          "fault source: disarming one page that did not fire, ns (engine thread).");
ABSL_FLAG(std::string, fault_fire_ns, "",
          "fault source: one fault on an armed page (fault, handler, mprotect back), ns "
          "(application's thread).");
ABSL_FLAG(std::string, proc_maps_ns, "",
          "fault source: one /proc/self/maps read per collect, ns (engine thread).");
ABSL_FLAG(std::string, pagemap_ns, "",
          "softdirty: reading one page's pagemap entry, ns (engine thread).");
ABSL_FLAG(std::string, clear_refs_ns, "",
          "softdirty: clear_refs per present page, ns (engine thread).");
ABSL_FLAG(std::string, wp_fault_ns, "",
          "softdirty, uffd: minor fault on the first write to a write-protected page, ns "
          "(application's thread).");
ABSL_FLAG(std::string, uffd_scan_ns, "",
          "uffd: PAGEMAP_SCAN, per page scanned, ns (engine thread).");
ABSL_FLAG(std::string, uffd_protect_ns, "",
          "uffd: UFFDIO_WRITEPROTECT of a run's first page, ns (engine thread).");
ABSL_FLAG(std::string, uffd_protect_page_ns, "",
          "uffd: each further page of the same run, ns (engine thread).");
ABSL_FLAG(std::string, write_fraction, "0.25",
          "Built-in workloads: share of accesses that are writes (traces carry their own).");
ABSL_FLAG(std::string, format, "csv", "Output format: csv or markdown.");
ABSL_FLAG(std::string, plot, "",
          "Write a PNG (gnuplot) of fast-tier hit ratio and migrated bytes over virtual time.");
ABSL_FLAG(std::string, series, "",
          "Write every run's time series (hit ratio and migrated bytes per --sample_ms) to this "
          "CSV file.");
ABSL_FLAG(std::string, sample_ms, "1000",
          "Time-series interval for --plot and --series, virtual ms.");
ABSL_FLAG(std::string, jobs, "2", "Runs simulated in parallel (threads).");
ABSL_FLAG(bool, quiet, false, "No progress or summary on stderr.");

namespace {

using tierkit::sim::SimOptions;
using tierkit::sim::SimResult;

[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "tierkit-sim: " << msg << "\n(see tierkit-sim --help)\n";
  std::exit(2);
}

template <class T>
T check(absl::StatusOr<T> v) {
  if (!v.ok()) usage_error(std::string(v.status().message()));
  return *std::move(v);
}

double flag_double(const absl::Flag<std::string>& f, const char* name, double lo, double hi) {
  return check(tierkit::detail::parse_double(absl::GetFlag(f), absl::StrCat("--", name), lo, hi));
}
std::int64_t flag_int(const absl::Flag<std::string>& f, const char* name, std::int64_t lo,
                      std::int64_t hi) {
  return check(tierkit::detail::parse_int(absl::GetFlag(f), absl::StrCat("--", name), lo, hi));
}

// A count with an optional decimal suffix: 500, 30k, 24M, 1G.
std::uint64_t flag_count(const absl::Flag<std::string>& f, const char* name) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(absl::GetFlag(f)));
  double mult = 1;
  if (!t.empty() && (t.back() == 'k' || t.back() == 'm' || t.back() == 'g')) {
    mult = t.back() == 'k' ? 1e3 : t.back() == 'm' ? 1e6 : 1e9;
    t.pop_back();
  }
  // parse_double, not SimpleAtod: it refuses hexadecimal and a value that
  // underflows to 0 (1e-400), as every other number tierkit reads.
  auto v = tierkit::detail::parse_double(t, absl::StrCat("--", name), 0, 1e15 / mult);
  if (!v.ok()) usage_error(absl::StrCat(v.status().message(), " (a count: 500, 30k, 24M, 1G)"));
  return static_cast<std::uint64_t>(*v * mult + 0.5);
}

// Fast-tier pages from "25%" or a byte size, for a footprint of `pages`;
// `name` is where `spec` came from (--fast or TIERKIT_FAST_BUDGET).
std::uint64_t fast_pages(const std::string& spec, std::uint64_t pages, const std::string& name) {
  absl::string_view s = absl::StripAsciiWhitespace(spec);
  std::uint64_t fp;
  if (absl::ConsumeSuffix(&s, "%")) {
    double pct = check(tierkit::detail::parse_double(s, name + " (percent)", 0, 100));
    fp = static_cast<std::uint64_t>(pct / 100 * static_cast<double>(pages) + 0.5);
  } else {
    fp = check(tierkit::detail::parse_bytes(s, name)) / tierkit::kPageSize;
  }
  if (fp == 0) usage_error(absl::StrCat(name, "=", spec, ": the fast tier holds no page"));
  return fp;
}

// Idle tracked pages from "400%" or a byte size, for a footprint of `pages`.
std::uint64_t idle_pages(const std::string& spec, std::uint64_t pages) {
  absl::string_view s = absl::StripAsciiWhitespace(spec);
  if (!absl::ConsumeSuffix(&s, "%"))
    return check(tierkit::detail::parse_bytes(s, "--idle")) / tierkit::kPageSize;
  double pct = check(tierkit::detail::parse_double(s, "--idle (percent)", 0, 1e6));
  return static_cast<std::uint64_t>(pct / 100 * static_cast<double>(pages) + 0.5);
}

// Splits a policy list on commas, keeping "kernel:rate=1,target=2" whole.
std::vector<std::string> split_policies(const std::string& list) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    std::string p(absl::StripAsciiWhitespace(part));
    if (!out.empty() && p.find(':') == std::string::npos && p.find('=') != std::string::npos &&
        absl::StartsWith(out.back(), "kernel:"))
      absl::StrAppend(&out.back(), ",", p);
    else
      out.push_back(p);
  }
  return out;
}

bool is_help_request(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (a == "--") break;
    for (absl::string_view h : {"help", "helpfull", "helpshort", "helppackage", "version",
                                "only_check_args", "helpon", "helpmatch"}) {
      absl::string_view name = a;
      if (!absl::ConsumePrefix(&name, "--") && !absl::ConsumePrefix(&name, "-")) break;
      name = name.substr(0, name.find('='));
      if (name == h) return true;
    }
  }
  return false;
}

void set_usage() {
  absl::SetProgramUsageMessage(
      "simulates memory tiering on virtual time.\n\n"
      "  tierkit-sim [--workload=all] [--policy=all] [--format=csv|markdown] [--plot=FILE.png]\n"
      "              [--series=FILE.csv [--sample_ms=N]]\n"
      "  tierkit-sim --trace=FILE[.gz]|- [--policy=...]\n\n"
      "Each access goes through tierkit's Engine::record_access and epochs through\n"
      "Engine::step(); only the backend and the clock are simulated. An access costs its\n"
      "tier's latency plus --gap_ns; a migrated page costs --migrate_page_ns + 4 KiB at\n"
      "--copy_gbps, charged to the application for the kernel model's synchronous\n"
      "promotions and to a background account otherwise; every move also stalls the\n"
      "application --move_call_ns per call and --move_page_ns per page. The engine's\n"
      "placement queries go to the background too (1.8 us a call + 0.1 us a page, as\n"
      "measured by tierkit-bench's BM_LinuxQuery). With --hotness a\n"
      "model of a real hotness source (fault sampling, soft-dirty, userfaultfd-wp) feeds the\n"
      "engine instead of record_access: its faults are charged to the application, its\n"
      "collect() work to the background (tracking_* columns). Output: one row per\n"
      "(workload, policy, hotness). Bad flag values exit with status 2.");
  absl::FlagsUsageConfig cfg;
  cfg.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "tierkit_sim");
  };
  cfg.contains_helpshort_flags = cfg.contains_help_flags;
  cfg.normalize_filename = [](absl::string_view f) {
    auto slash = f.find_last_of('/');
    return std::string(slash == absl::string_view::npos ? f : f.substr(slash + 1));
  };
  absl::SetFlagsUsageConfig(cfg);
}

// Parses the flags; returns the names given on the command line (they win
// over the environment).
absl::flat_hash_set<std::string> parse_command_line(int argc, char** argv) {
  absl::flat_hash_set<std::string> given_flags;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (!absl::ConsumePrefix(&a, "--") && !absl::ConsumePrefix(&a, "-")) continue;
    given_flags.insert(std::string(a.substr(0, a.find('='))));
  }
  // absl's own flag errors (unknown flag, bad bool) exit 2, its help 0.
  std::vector<char*> rest = tools::parse_flags(argc, argv, is_help_request(argc, argv));
  if (rest.size() > 1) usage_error(absl::StrCat("unexpected argument '", rest[1], "'"));
  return given_flags;
}

// What the command line asks for, parsed.
struct Settings {
  absl::flat_hash_set<std::string> given_flags;
  SimOptions o;
  tierkit::sim::WorkloadOptions w;
  std::vector<std::string> hotness, policies, workloads;
  std::shared_ptr<const tierkit::sim::Trace> trace;  // with --trace
  int jobs = 1;
  bool quiet = false;
  std::string format, plot, series;  // --plot and --series: paths or empty
};

bool flag_wins(const Settings& s, const char* flag, const char* var) {
  return s.given_flags.contains(flag) || !tierkit::detail::getenv_string(var).has_value();
}

// The engine and cost model options.
void sim_options(Settings& s) {
  SimOptions& o = s.o;
  // The TIERKIT_* environment is the base (the same contract as
  // Engine::create); a flag given on the command line wins over it.
  auto env = tierkit::EngineConfig::from_env();
  if (!env.ok()) usage_error(std::string(env.status().message()));
  o.engine = *std::move(env);
  o.engine.environment = tierkit::EngineConfig::Environment::kIgnore;  // applied once, here
  if (flag_wins(s, "epoch_ms", "TIERKIT_EPOCH_MS"))
    o.engine.epoch_ms = flag_int(FLAGS_epoch_ms, "epoch_ms", 1, 3600000);
  o.fast_ns = flag_int(FLAGS_fast_ns, "fast_ns", 1, 1000000);
  o.slow_ns = flag_int(FLAGS_slow_ns, "slow_ns", 1, 1000000);
  o.gap_ns = flag_int(FLAGS_gap_ns, "gap_ns", 0, 1000000000);
  o.migrate_page_ns = flag_double(FLAGS_migrate_page_ns, "migrate_page_ns", 0, 1e9);
  o.copy_gbps = flag_double(FLAGS_copy_gbps, "copy_gbps", 1e-3, 1e6);
  o.move_call_ns = flag_double(FLAGS_move_call_ns, "move_call_ns", 0, 1e9);
  o.move_page_ns = flag_double(FLAGS_move_page_ns, "move_page_ns", 0, 1e9);
  if (flag_wins(s, "rate_limit_mbps", "TIERKIT_RATE_LIMIT_MBPS"))
    o.engine.rate_limit_mbps = flag_double(FLAGS_rate_limit_mbps, "rate_limit_mbps", 0, 1e9);
  if (flag_wins(s, "half_life_epochs", "TIERKIT_HALF_LIFE_EPOCHS"))
    o.engine.half_life_epochs = flag_double(FLAGS_half_life_epochs, "half_life_epochs", 0.1, 1000);
  if (!flag_wins(s, "burst", "TIERKIT_BURST_BYTES")) {
    // TIERKIT_BURST_BYTES stands.
  } else if (absl::GetFlag(FLAGS_burst) == "auto") {
    double per_epoch = o.engine.rate_limit_mbps * tierkit::RateLimiter::kBytesPerMB *
                       static_cast<double>(o.engine.epoch_ms) / 1000.0;
    o.engine.burst_bytes =
        std::max<std::uint64_t>(o.engine.burst_bytes, static_cast<std::uint64_t>(per_epoch));
  } else {
    o.engine.burst_bytes =
        check(tierkit::detail::parse_bytes(absl::GetFlag(FLAGS_burst), "--burst"));
  }
  o.sample_ms = flag_int(FLAGS_sample_ms, "sample_ms", 1, 1000000000);
  o.all_slow = check(tierkit::detail::parse_bool(absl::GetFlag(FLAGS_all_slow), "--all_slow"));
  o.place_at_access =
      check(tierkit::detail::parse_bool(absl::GetFlag(FLAGS_place_at_access), "--place_at_access"));
}

// The built-in workloads' options (the footprint comes with the workloads).
void workload_options(tierkit::sim::WorkloadOptions& w) {
  w.accesses = flag_count(FLAGS_accesses, "accesses");
  if (w.accesses == 0) usage_error("--accesses must be > 0");
  w.seed = static_cast<std::uint64_t>(flag_int(FLAGS_seed, "seed", 0, INT64_MAX));
  w.zipf_s = flag_double(FLAGS_zipf_s, "zipf_s", 0, 10);
  w.hot_fraction = flag_double(FLAGS_hot_fraction, "hot_fraction", 1e-9, 1);
  w.hot_share = flag_double(FLAGS_hot_share, "hot_share", 0, 1);
  w.phases = static_cast<std::uint32_t>(flag_int(FLAGS_phases, "phases", 1, 1000000));
  w.scans = static_cast<std::uint32_t>(flag_int(FLAGS_scans, "scans", 0, 1000000));
  w.young_fraction = flag_double(FLAGS_young_fraction, "young_fraction", 1e-9, 1);
  w.churn_laps = flag_double(FLAGS_churn_laps, "churn_laps", 1e-9, 1e6);
  w.write_fraction = flag_double(FLAGS_write_fraction, "write_fraction", 0, 1);
}

// Hotness sources: what the machine offers, regions, budget and estimator.
void source_options(SimOptions& o) {
  o.hotness_available.clear();
  for (absl::string_view a :
       absl::StrSplit(absl::GetFlag(FLAGS_hotness_available), ',', absl::SkipWhitespace())) {
    std::string name(absl::StripAsciiWhitespace(a));
    constexpr std::array<std::string_view, 5> kKnown = {"perf", "fault", "uffd", "births",
                                                        "softdirty"};
    if (std::find(kKnown.begin(), kKnown.end(), name) == kKnown.end())
      usage_error(absl::StrCat("--hotness_available: unknown source '", name,
                               "' (known: perf, fault, uffd, births, softdirty)"));
    o.hotness_available.push_back(name);
  }
  if (const std::string rb = absl::GetFlag(FLAGS_region_bytes); rb != "0") {
    o.region_pages = check(tierkit::detail::parse_bytes(rb, "--region_bytes")) / tierkit::kPageSize;
    if (o.region_pages == 0)
      usage_error(absl::StrCat("--region_bytes=", rb, ": a region must hold at least one page"));
  }
  o.hotness_budget.max_pages =
      static_cast<std::uint64_t>(flag_int(FLAGS_source_max_pages, "source_max_pages", 0, 1 << 30));
  o.hotness_budget.max_ns = flag_int(FLAGS_source_max_ns, "source_max_ns", 0, 3600000000000);
  o.hotness_budget.cpu_fraction =
      flag_double(FLAGS_source_cpu_fraction, "source_cpu_fraction", 0, 1);
  if (auto est = tierkit::parse_source_estimator(absl::GetFlag(FLAGS_source_estimator)); est.ok())
    o.hotness_estimator = *est;
  else
    usage_error(absl::StrCat("--source_estimator: ", est.status().message()));
}

// The sources' costs (defaults: measured, docs/performance.md).
void source_costs(SimOptions& o) {
  if (const std::string c = absl::GetFlag(FLAGS_hotness_costs); c == "loaded")
    o.hotness_costs = tierkit::sim::HotnessCosts::loaded();
  else if (c != "measured")
    usage_error(absl::StrCat("--hotness_costs: '", c, "' is neither measured nor loaded"));
  o.hotness_costs.record_access_ns =
      flag_double(FLAGS_record_access_ns, "record_access_ns", 0, 1e9);
  auto cost_flag = [&](const absl::Flag<std::string>& f, const char* name, double* field) {
    if (!absl::GetFlag(f).empty()) *field = flag_double(f, name, 0, 1e9);
  };
  cost_flag(FLAGS_fault_arm_ns, "fault_arm_ns", &o.hotness_costs.fault_arm_ns);
  cost_flag(FLAGS_fault_arm_page_ns, "fault_arm_page_ns", &o.hotness_costs.fault_arm_page_ns);
  cost_flag(FLAGS_fault_fire_page_ns, "fault_fire_page_ns", &o.hotness_costs.fault_fire_page_ns);
  o.fault_group_pages =
      static_cast<std::uint32_t>(flag_int(FLAGS_fault_group_pages, "fault_group_pages", 1, 16));
  if ((o.fault_group_pages & (o.fault_group_pages - 1)) != 0)
    usage_error(absl::StrCat("--fault_group_pages: ", o.fault_group_pages,
                             " is not a power of two (1, 2, 4, 8 or 16: groups are aligned)"));
  cost_flag(FLAGS_fault_disarm_ns, "fault_disarm_ns", &o.hotness_costs.fault_disarm_ns);
  cost_flag(FLAGS_fault_fire_ns, "fault_fire_ns", &o.hotness_costs.fault_fire_ns);
  cost_flag(FLAGS_proc_maps_ns, "proc_maps_ns", &o.hotness_costs.proc_maps_ns);
  cost_flag(FLAGS_pagemap_ns, "pagemap_ns", &o.hotness_costs.pagemap_ns_per_page);
  cost_flag(FLAGS_clear_refs_ns, "clear_refs_ns", &o.hotness_costs.clear_refs_ns_per_page);
  cost_flag(FLAGS_wp_fault_ns, "wp_fault_ns", &o.hotness_costs.wp_fault_ns);
  cost_flag(FLAGS_uffd_scan_ns, "uffd_scan_ns", &o.hotness_costs.uffd_scan_ns_per_page);
  cost_flag(FLAGS_uffd_protect_ns, "uffd_protect_ns", &o.hotness_costs.uffd_protect_ns);
  cost_flag(FLAGS_uffd_protect_page_ns, "uffd_protect_page_ns",
            &o.hotness_costs.uffd_protect_page_ns);
}

std::vector<std::string> hotness_list(const SimOptions& o) {
  std::vector<std::string> hotness;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_hotness), ',', absl::SkipWhitespace())) {
    std::string h(absl::StripAsciiWhitespace(part));
    if (auto parsed = tierkit::sim::parse_hotness(h, o.hotness_available); !parsed.ok())
      usage_error(std::string(parsed.status().message()));
    hotness.push_back(h);
  }
  if (hotness.empty()) usage_error("--hotness: no source given");
  return hotness;
}

// Reports a --plot or --series that cannot be written; returns main's exit status.
int output_error(const char* flag, const absl::Status& st) {
  std::cerr << "tierkit-sim: --" << flag << ": " << st.message() << "\n";
  return 1;
}

// --jobs, --quiet, --format, --plot and --series; false if --plot or --series
// cannot be written. Nothing is written before the runs succeed.
bool output_options(Settings& s) {
  s.jobs = static_cast<int>(flag_int(FLAGS_jobs, "jobs", 1, 256));
  s.quiet = absl::GetFlag(FLAGS_quiet);
  s.format = absl::GetFlag(FLAGS_format);
  if (s.format != "csv" && s.format != "markdown")
    usage_error(absl::StrCat("--format: '", s.format, "' is neither csv nor markdown"));
  s.plot = absl::GetFlag(FLAGS_plot);
  s.series = absl::GetFlag(FLAGS_series);
  // Checked now, so an unwritable path fails before a long run, not after.
  for (const auto& [flag, path] : {std::pair{"plot", s.plot}, std::pair{"series", s.series}}) {
    if (path.empty()) continue;
    if (absl::Status st = tierkit::sim::check_writable(path); !st.ok()) {
      output_error(flag, st);
      return false;
    }
  }
  return true;
}

std::vector<std::string> policy_list(const Settings& s) {
  std::vector<std::string> policies;
  const std::string policy_list =
      flag_wins(s, "policy", "TIERKIT_POLICY") ? absl::GetFlag(FLAGS_policy) : s.o.engine.policy;
  if (!s.quiet && !s.o.engine.from_environment.empty())
    std::cerr << "tierkit-sim: from the environment: " << s.o.engine.environment_summary()
              << " (flags given on the command line win)\n";
  for (const auto& p : split_policies(policy_list)) {
    if (p == "all") {
      policies.insert(policies.end(), std::begin(kAllPolicies), std::end(kAllPolicies));
      continue;
    }
    if (absl::Status st = tierkit::sim::validate_policy(p, s.o.engine); !st.ok())
      usage_error(absl::StrCat("--policy: ", st.message()));
    policies.push_back(p);
  }
  if (policies.empty()) usage_error("--policy: no policy given");
  return policies;
}

// Reports a failed trace read or write; returns main's exit status.
int trace_error(const absl::Status& status) {
  std::cerr << "tierkit-sim: " << status.message() << "\n";
  return status.code() == absl::StatusCode::kNotFound ? 2 : 1;
}

// A file mostly not lackey output (a log, the wrong file) whose few lines
// happen to parse would be replayed as a tiny trace: said even under
// --quiet, as the results would describe some other input.
void warn_if_not_lackey(const tierkit::sim::Trace& t) {
  const std::uint64_t data = t.loads + t.stores + t.modifies;
  if (t.malformed <= data) return;
  std::cerr << absl::StrFormat(
      "tierkit-sim: warning: %s: %u of %u lines are not lackey records (first at line %u), "
      "more than its %u data accesses: is it valgrind --tool=lackey --trace-mem=yes output?\n",
      t.name, t.malformed, t.lines, t.first_malformed_line, data);
}

// Reads --trace, or with --write_trace filters it to a file; returns main's
// exit status when it ends here.
std::optional<int> read_trace(Settings& s, const std::string& trace_path) {
  auto start = std::chrono::steady_clock::now();
  auto progress = [&](std::uint64_t lines) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!s.quiet && secs > 3 && (lines & ((1u << 24) - 1)) == 0)
      std::cerr << absl::StrFormat("tierkit-sim: reading trace: %.0fM lines, %.0f s\n",
                                   static_cast<double>(lines) / 1e6, secs);
  };
  std::optional<tierkit::sim::LlcConfig> llc;
  if (!absl::GetFlag(FLAGS_llc).empty())
    llc = check(tierkit::sim::parse_llc_spec(absl::GetFlag(FLAGS_llc)));
  if (const std::string out = absl::GetFlag(FLAGS_write_trace); !out.empty()) {
    if (!llc) usage_error("--write_trace needs --llc");
    if (flag_count(FLAGS_max_trace_accesses, "max_trace_accesses") != 0)
      usage_error(
          "--max_trace_accesses does not apply with --write_trace: the filtered trace is "
          "written whole, so it would change nothing");
    auto f = tierkit::sim::filter_lackey_trace(trace_path, out, *llc, progress);
    if (!f.ok()) return trace_error(f.status());
    if (!s.quiet) std::cerr << "tierkit-sim: " << f->summary() << "\n";
    warn_if_not_lackey(*f);
    return 0;
  }
  auto t = tierkit::sim::read_lackey_trace(
      trace_path, flag_count(FLAGS_max_trace_accesses, "max_trace_accesses"), progress, llc);
  if (!t.ok()) return trace_error(t.status());
  if (!s.quiet) std::cerr << "tierkit-sim: " << t->summary() << "\n";
  warn_if_not_lackey(*t);
  s.trace = std::make_shared<const tierkit::sim::Trace>(*std::move(t));
  s.w.pages = s.trace->pages;
  s.workloads.push_back("trace");
  return std::nullopt;
}

void builtin_workloads(Settings& s) {
  std::uint64_t bytes =
      check(tierkit::detail::parse_bytes(absl::GetFlag(FLAGS_footprint), "--footprint"));
  s.w.pages = bytes / tierkit::kPageSize;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_workload), ',', absl::SkipWhitespace())) {
    std::string name(absl::StripAsciiWhitespace(part));
    if (name == "all") {
      for (const auto& b : tierkit::sim::builtin_workloads()) s.workloads.push_back(b);
      continue;
    }
    const auto& known = tierkit::sim::builtin_workloads();
    if (std::find(known.begin(), known.end(), name) == known.end())
      usage_error(absl::StrCat("--workload: unknown workload '", name,
                               "' (known: ", absl::StrJoin(known, ", "), ", all)"));
    s.workloads.push_back(name);
  }
  if (s.workloads.empty()) usage_error("--workload: no workload given");
  if (absl::Status st = s.w.validate(); !st.ok()) usage_error(std::string(st.message()));
}

// Flags that shape one kind of workload only. Given with the other kind they
// would change nothing, so a run the user believes filtered (--llc on a
// built-in workload) or skewed (--zipf_s on a trace) is refused instead.
constexpr absl::string_view kTraceOnlyFlags[] = {"llc", "max_trace_accesses"};
constexpr absl::string_view kBuiltinOnlyFlags[] = {
    "workload", "footprint", "accesses",       "seed",       "write_fraction", "zipf_s",
    "phases",   "scans",     "young_fraction", "churn_laps", "hot_fraction",   "hot_share"};
void reject_inapplicable_flags(const Settings& s, bool trace) {
  auto refuse = [&](absl::string_view flag, absl::string_view only) {
    if (s.given_flags.contains(flag))
      usage_error(
          absl::StrCat("--", flag, " applies only ", only, ": here it would change nothing"));
  };
  if (trace) {
    for (absl::string_view f : kBuiltinOnlyFlags)
      refuse(f, "to the built-in workloads, not with --trace");
  } else {
    for (absl::string_view f : kTraceOnlyFlags) refuse(f, "with --trace");
  }
}

// --fast, and its name. TIERKIT_FAST_BUDGET sizes the simulated fast tier as
// it sizes the engine's budget unless --fast is given; its 0 (the fast
// nodes' total) leaves --fast's default: the simulated node is what --fast says.
std::pair<std::string, std::string> fast_spec(const Settings& s) {
  if (!flag_wins(s, "fast", "TIERKIT_FAST_BUDGET") && s.o.engine.fast_budget_bytes > 0)
    return {*tierkit::detail::getenv_string("TIERKIT_FAST_BUDGET"), "TIERKIT_FAST_BUDGET"};
  return {absl::GetFlag(FLAGS_fast), "--fast"};
}

// The trace or the built-in workloads, and the tiers sized for their
// footprint; returns main's exit status when it ends here.
std::optional<int> load_workloads(Settings& s) {
  const std::string trace_path = absl::GetFlag(FLAGS_trace);
  if (trace_path.empty() && !absl::GetFlag(FLAGS_write_trace).empty())
    usage_error("--write_trace needs --trace (and --llc)");
  reject_inapplicable_flags(s, !trace_path.empty());
  if (!trace_path.empty()) {
    if (std::optional<int> rc = read_trace(s, trace_path)) return rc;
  } else {
    builtin_workloads(s);
  }
  const auto [fast, fast_name] = fast_spec(s);
  s.o.fast_pages = fast_pages(fast, s.w.pages, fast_name);
  s.o.idle_pages = idle_pages(absl::GetFlag(FLAGS_idle), s.w.pages);
  if (absl::Status st = s.o.validate(); !st.ok()) usage_error(std::string(st.message()));
  return std::nullopt;
}

struct Task {
  std::string workload, policy, hotness;
};

// One task per (workload, policy, hotness), in table order.
std::vector<Task> make_tasks(const Settings& s) {
  std::vector<Task> tasks;
  for (const auto& wl : s.workloads)
    for (const auto& p : s.policies) {
      // The references and the oracle see every access: one run each.
      if (tierkit::sim::is_oracle(p) || tierkit::sim::is_reference_policy(p)) {
        tasks.push_back({wl, p, "app"});
        continue;
      }
      for (const auto& h : s.hotness) tasks.push_back({wl, p, h});
    }
  return tasks;
}

// Simulates one task into `result`; returns an error message, empty if none.
// `err_mu` serializes the progress lines of parallel runs.
std::string run_task(const Settings& s, const Task& task, std::mutex& err_mu, SimResult& result) {
  std::unique_ptr<tierkit::sim::Workload> wl;
  if (s.trace) {
    wl = std::make_unique<tierkit::sim::TraceWorkload>(s.trace);
  } else {
    auto m = tierkit::sim::make_workload(task.workload, s.w);
    if (!m.ok()) return std::string(m.status().message());
    wl = *std::move(m);
  }
  SimOptions run = s.o;
  run.hotness = task.hotness;
  auto run_start = std::chrono::steady_clock::now();
  auto last = run_start;
  const std::string label =
      absl::StrCat(wl->name(), "/", task.policy,
                   s.hotness.size() > 1 || s.hotness[0] != "app" ? "/" + task.hotness : "");
  run.progress = [&](std::uint64_t done, std::uint64_t total, std::int64_t vt) {
    auto now = std::chrono::steady_clock::now();
    if (s.quiet || now - run_start < std::chrono::seconds(3) ||
        now - last < std::chrono::seconds(2))
      return;
    last = now;
    std::lock_guard<std::mutex> lock(err_mu);
    std::cerr << absl::StrFormat(
        "tierkit-sim: %-28s %3.0f%%  %.1fM of %.1fM accesses, %.1f s virtual\n", label,
        100.0 * static_cast<double>(done) / static_cast<double>(total),
        static_cast<double>(done) / 1e6, static_cast<double>(total) / 1e6,
        static_cast<double>(vt) / 1e9);
  };
  auto r = tierkit::sim::simulate(*wl, task.policy, run);
  if (!r.ok()) return absl::StrCat(label, ": ", r.status().message());
  result = *std::move(r);
  if (!s.quiet) {
    std::lock_guard<std::mutex> lock(err_mu);
    std::cerr << absl::StrFormat("tierkit-sim: %-28s done in %.1f s (%.1fM accesses/s)\n", label,
                                 result.wall_s,
                                 static_cast<double>(result.accesses) / result.wall_s / 1e6);
  }
  return "";
}

struct Runs {
  std::vector<SimResult> results;
  std::vector<std::string> errors;  // per task, empty if none
  double wall_s = 0;
};

// Runs the tasks, `s.jobs` at a time; results keep table order.
Runs run_tasks(const Settings& s, const std::vector<Task>& tasks) {
  Runs runs;
  runs.results.resize(tasks.size());
  runs.errors.resize(tasks.size());
  std::atomic<std::size_t> next{0};
  std::mutex err_mu;
  auto t0 = std::chrono::steady_clock::now();
  auto worker = [&]() {
    for (std::size_t i; (i = next.fetch_add(1)) < tasks.size();)
      runs.errors[i] = run_task(s, tasks[i], err_mu, runs.results[i]);
  };
  std::vector<std::thread> pool;
  for (int j = 1; j < std::min<int>(s.jobs, static_cast<int>(tasks.size())); ++j)
    pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  runs.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return runs;
}

int report_errors(const std::vector<std::string>& errors) {
  int rc = 0;
  for (const auto& e : errors)
    if (!e.empty()) {
      std::cerr << "tierkit-sim: " << e << "\n";
      rc = 1;
    }
  return rc;
}

// Renders the time series to `plot` through gnuplot.
absl::Status write_plot(const std::vector<SimResult>& results, const std::string& plot) {
  auto out = tierkit::sim::OutputFile::create(plot);
  if (!out.ok()) return out.status();
  const std::string script = tierkit::sim::gnuplot_script(results, out->temp_path());
  // Our stdout holds the table: when gnuplot cannot open its output it draws
  // to its stdout. If gnuplot is missing or dies, writes fail, not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  FILE* gp = ::popen("gnuplot >/dev/null", "w");
  if (gp == nullptr) return absl::ErrnoToStatus(errno, "cannot start gnuplot");
  std::fwrite(script.data(), 1, script.size(), gp);
  const int st = ::pclose(gp);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
    return absl::FailedPreconditionError("gnuplot is not installed (not found on PATH)");
  if (st != 0)
    return absl::InternalError(
        absl::StrCat("gnuplot failed (wait status ", st, "); its messages, if any, are above"));
  return out->commit();
}

absl::Status write_series(const std::vector<SimResult>& results, const std::string& path) {
  auto out = tierkit::sim::OutputFile::create(path);
  if (!out.ok()) return out.status();
  if (absl::Status st = out->write(tierkit::sim::series_csv(results)); !st.ok()) return st;
  return out->commit();
}

// The table on stdout, the summary on stderr, then --series and --plot;
// returns main's exit status.
int write_outputs(Settings& s, const Runs& runs) {
  const std::vector<SimResult>& results = runs.results;
  std::cout << (s.format == "csv" ? tierkit::sim::to_csv(results)
                                  : tierkit::sim::to_markdown(results));
  std::cout.flush();

  if (!s.quiet) {
    std::uint64_t acc = 0;
    double busy = 0;
    for (const auto& r : results) {
      acc += r.accesses;
      busy += r.wall_s;
    }
    std::cerr << absl::StrFormat(
        "tierkit-sim: %d runs, %.0fM simulated accesses in %.1f s wall (%d jobs); %.1fM "
        "accesses/s per core\n",
        static_cast<int>(results.size()), static_cast<double>(acc) / 1e6, runs.wall_s, s.jobs,
        static_cast<double>(acc) / busy / 1e6);
  }

  if (!s.series.empty()) {
    if (absl::Status st = write_series(results, s.series); !st.ok())
      return output_error("series", st);
  }
  if (!s.plot.empty()) {
    if (absl::Status st = write_plot(results, s.plot); !st.ok()) return output_error("plot", st);
    if (!s.quiet) std::cerr << "tierkit-sim: wrote " << s.plot << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  set_usage();
  Settings s;
  s.given_flags = parse_command_line(argc, argv);
  sim_options(s);
  workload_options(s.w);
  source_options(s.o);
  source_costs(s.o);
  s.hotness = hotness_list(s.o);
  if (!output_options(s)) return 1;
  s.policies = policy_list(s);
  if (std::optional<int> rc = load_workloads(s)) return *rc;

  const Runs runs = run_tasks(s, make_tasks(s));
  if (int rc = report_errors(runs.errors)) return rc;
  return write_outputs(s, runs);
}
