// tierkit/sim/simulator.hpp: runs a Workload against a placement policy on
// virtual time. Layer 2 of the simulator: includes the engine.
//
// Every access of a policy run goes through Engine::record_access, and
// epochs are Engine::step() at each epoch boundary of virtual time: the code
// an application runs. Only the backend (SimulatedBackend, behind a decorator
// that mirrors placement into a flat per-page array for O(1) tier lookups)
// and the clock (ManualClock) are simulated.
//
// Time model (all virtual):
// - Each access costs its tier's latency (fast_ns / slow_ns) plus gap_ns of
//   compute; the application's time is the sum.
// - A migrated page costs migrate_page_ns + 4096 / copy_gbps of migration
//   work. Promotions of a policy with synchronous_promotion() (the kernel
//   model: the faulting task migrates) are charged to the application; every
//   other move (tierkit's background thread, kswapd's demotions, the
//   reference policies' moves) to a background account.
// - Every move also interrupts the application, wherever it runs: each
//   migration call costs the application move_call_ns (TLB-shootdown IPIs,
//   LRU drain; a synchronous promotion is one call per page, as a NUMA hint
//   fault migrates one page) and each page moved by someone else
//   move_page_ns (TLB refill, the copy's memory bandwidth). Total CPU =
//   application time + background work. See docs/performance.md for the
//   defaults' sources.
// - Hotness (SimOptions::hotness, sim/hotness_model.hpp): with "app" every
//   access goes through Engine::record_access (charged record_access_ns,
//   0 by default); with a source model the engine collects from it every
//   epoch, the faults its protections cause are charged to the application
//   at the access that takes them, and its collect() work to the background
//   account. SimResult::tracking_* hold both parts.
// - lfu, reactive and best-static (sim/reference.hpp) do not use the engine;
//   their moves pay the same costs.
// - The "oracle" policy does not use the engine: it reads each window of
//   accesses ahead (one window = the accesses one epoch holds at fast-tier
//   speed) and puts that window's most-accessed pages, up to the whole fast
//   capacity, in the fast tier at no cost. An upper bound, not a policy.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/detail/parse.hpp"
#include "tierkit/engine.hpp"
#include "tierkit/sim/bound.hpp"
#include "tierkit/sim/hotness_model.hpp"
#include "tierkit/sim/reference.hpp"
#include "tierkit/sim/workload.hpp"

namespace tierkit::sim {

inline constexpr NodeId kFastNode = 0, kSlowNode = 1;
// Synthetic base address of page 0 (never dereferenced; the tracker only
// hashes addresses into its tables).
inline constexpr std::uintptr_t kSimBase = 0x100000000000;

struct SimOptions {
  std::uint64_t fast_pages = 65536;  // fast-tier capacity
  bool all_slow = false;             // initial placement: all pages slow
  std::int64_t fast_ns = 80;         // fast-tier (DRAM) access latency
  std::int64_t slow_ns = 250;        // slow-tier (CXL) access latency
  std::int64_t gap_ns = 0;           // compute between two accesses
  double migrate_page_ns = 2000;     // fixed cost per migrated page
  double copy_gbps = 8;              // copy bandwidth (the slower tier's), GB/s
  double move_call_ns = 5000;        // application stall per migration call
  double move_page_ns = 1000;        // application stall per page moved by others
  // The engine's placement queries (move_pages(2) with no nodes: at
  // registration, Engine::learn_placement, the 2 MiB checks), on its own
  // thread: background. tierkit-bench's BM_LinuxQuery on the development
  // host: 1.8 us for 1 page, 106 us for 1,024 (~0.1 us a page). The kernel
  // model is not charged: the kernel knows where its pages are.
  double query_call_ns = 1800;
  double query_page_ns = 100;
  std::int64_t sample_ms = 1000;  // time-series interval (virtual)
  // Engine policies: each page is placed at its first access, fast while the
  // fast tier holds fewer than fast_pages (first touch in a kernel: room
  // that demotions freed takes newborns), not all before the run in
  // first-touch order. The engine learns where a newborn landed
  // (Engine::learn_placement). References keep the placement before the run.
  bool place_at_access = false;
  // Pages the engine tracks that the workload never touches (a cold table
  // loaded once): on the slow tier, registered after the footprint as one
  // region. tierkit's policies judge accesses and are unmoved by them
  // (docs/performance.md, "Session 19"); the kernel model's scanner walks
  // them. Engine policies only: the references and the oracle see accesses.
  std::uint64_t idle_pages = 0;
  // Who feeds the engine's page words (sim/hotness_model.hpp): "app" (every
  // access goes through Engine::record_access), "fault:N", "softdirty",
  // "uffd", or "sampled[:N]" (the first of source::kSampledOrder in
  // hotness_available). Engine policies only; the references and the oracle
  // see every access.
  std::string hotness = "app";
  std::vector<std::string> hotness_available = debian12_6_12_sources();
  // What each source's operations cost. record_access_ns is 0 by default, so
  // "app" runs keep the time model of the tables before the sources existed
  // (docs/performance.md); set it to charge record_access (~6 ns measured).
  HotnessCosts hotness_costs = HotnessCosts::measured_with_free_record_access();
  SourceBudget hotness_budget;  // per collect(), as Engine::add_hotness_source
  // Register the footprint as regions of this many pages (0 = one region):
  // 16384 = the 64 MiB arenas of TierMemoryResource under ArenaRegions.
  std::uint64_t region_pages = 0;
  // How the engine turns the source's observations into heat.
  SourceEstimator hotness_estimator = SourceEstimator::kRate;
  // The budgeted fault source's pages per sample (FaultSourceOptions::group_pages).
  std::uint32_t fault_group_pages = source::FaultSourceOptions{}.group_pages;
  // Engine settings (policy, epoch_ms, rate limit, ...). The simulator sets
  // fast_nodes, slow_nodes and fast_budget_bytes.
  EngineConfig engine;
  // Called about every 2^22 accesses: (accesses done, total, virtual ns).
  std::function<void(std::uint64_t, std::uint64_t, std::int64_t)> progress;

  double page_cost_ns() const {
    return migrate_page_ns + static_cast<double>(kPageSize) / copy_gbps;
  }
  absl::Status validate() const {
    if (fast_pages == 0) return absl::InvalidArgumentError("fast tier: must hold at least 1 page");
    if (idle_pages > (std::uint64_t{1} << 28))  // ~53 bytes each here: 1 TiB takes ~14 GB
      return absl::InvalidArgumentError(
          "idle pages: at most 2^28 (1 TiB); the simulator keeps ~53 bytes per page");
    if (fast_ns <= 0 || slow_ns <= 0 || gap_ns < 0)
      return absl::InvalidArgumentError("latencies must be > 0 ns and the gap >= 0 ns");
    if (!(migrate_page_ns >= 0) || !(copy_gbps > 0))
      return absl::InvalidArgumentError("migration cost: need page cost >= 0 and bandwidth > 0");
    if (!(move_call_ns >= 0) || !(move_page_ns >= 0) || move_call_ns > 1e12 || move_page_ns > 1e12)
      return absl::InvalidArgumentError(
          "application move cost: need move_call_ns and move_page_ns in [0, 1e12]");
    if (!(query_call_ns >= 0) || !(query_page_ns >= 0) || query_call_ns > 1e12 ||
        query_page_ns > 1e12)
      return absl::InvalidArgumentError(
          "placement query cost: need query_call_ns and query_page_ns in [0, 1e12]");
    if (sample_ms <= 0) return absl::InvalidArgumentError("sample interval must be > 0 ms");
    if (absl::Status s = hotness_costs.validate(); !s.ok()) return s;
    if (absl::Status s = hotness_budget.validate(); !s.ok()) return s;
    if (fault_group_pages < 1 || fault_group_pages > 16)
      return absl::InvalidArgumentError("fault_group_pages: must be in [1, 16]");
    if (auto h = parse_hotness(hotness, hotness_available); !h.ok()) return h.status();
    return absl::OkStatus();
  }
};

// One point of the time series: over [previous t, t).
struct SimSample {
  double t_s = 0;                    // virtual time at the end of the interval
  double hit_ratio = 0;              // fast-tier hits / accesses in the interval
  std::uint64_t migrated_bytes = 0;  // cumulative
};

struct SimResult {
  std::string workload, policy;
  std::string hotness = "app";        // the source that fed the engine ("-": references, oracle)
  double tracking_app_ns = 0;         // part of app_ns: the source's cost on the app's threads
  double tracking_background_ns = 0;  // part of background_ns: the source's collect()
  std::uint64_t source_faults = 0;    // faults the source made the application take
  std::uint64_t source_sampled = 0, source_found = 0;  // pages inspected / found accessed
  std::uint64_t pages = 0, fast_pages = 0;
  std::uint64_t accesses = 0, fast_hits = 0;
  double mean_latency_ns = 0;  // memory latency per access (no gap, no stalls)
  std::uint64_t promoted_pages = 0, demoted_pages = 0, migrated_bytes = 0, pingpong_pages = 0;
  std::int64_t app_ns = 0;        // application time: accesses + gaps + sync stalls
  double background_ns = 0;       // background work: migrations, placement queries
  double query_ns = 0;            // part of background_ns: the engine's placement queries
  std::uint64_t query_pages = 0;  // pages those queries asked about
  double sync_migration_ns = 0;   // part of app_ns spent migrating in the faulting task
  double app_move_ns = 0;         // part of app_ns: interruptions by moves (calls, pages)
  std::uint64_t move_calls = 0;   // migration calls charged move_call_ns
  double final_threshold = 0;
  std::string threshold_unit;
  std::uint64_t epochs = 0;  // engine epochs (oracle: windows)
  double wall_s = 0;         // real time of the run
  std::vector<SimSample> series;

  // Application time plus background work (migration, the source's collect()).
  double total_cpu_ns() const { return static_cast<double>(app_ns) + background_ns; }
  // What tracking hotness cost, wherever it ran.
  double tracking_ns() const { return tracking_app_ns + tracking_background_ns; }
  double hit_ratio() const {
    return accesses ? static_cast<double>(fast_hits) / static_cast<double>(accesses) : 0;
  }
};

// A Backend decorator that mirrors every placement change into a flat
// page -> node array (the simulator's O(1) tier lookup) and counts moves.
class MirrorBackend final : public ForwardingBackend {
 public:
  MirrorBackend(SimulatedBackend* inner, std::vector<std::uint8_t>* node, std::uintptr_t base)
      : ForwardingBackend(*inner), inner_(inner), node_(node), base_(base) {}
  absl::Status bind(void* addr, std::size_t bytes, const NodeSet& nodes, BindMode mode,
                    bool move) override {
    absl::Status s = inner_->bind(addr, bytes, nodes, mode, move);
    auto b = reinterpret_cast<std::uintptr_t>(addr);
    for (std::uintptr_t a = align_down(b, kPageSize); a < b + bytes; a += kPageSize) mirror(a);
    return s;
  }
  absl::Status query(absl::Span<void* const> pages, absl::Span<int> status) override {
    ++query_calls_;
    query_pages_ += pages.size();
    return inner_->query(pages, status);
  }
  // NOTE: a move that fails may have moved a prefix (Backend::move), so
  // every page is mirrored from where the inner backend has it, whatever
  // the outcome.
  absl::Status move(absl::Span<void* const> pages, absl::Span<const NodeId> nodes,
                    absl::Span<int> status) override {
    // The engine moves only pages it saw accessed (the kernel would answer
    // -ENOENT for one never touched): a move of another is a bug here.
    for (std::size_t i = 0; i < pages.size(); ++i)
      if (unplaced(reinterpret_cast<std::uintptr_t>(pages[i])))
        return absl::FailedPreconditionError("sim: a move of a page never touched");
    absl::Status s = inner_->move(pages, nodes, status);
    const std::uint64_t up = to_fast_, down = to_slow_;
    for (void* p : pages) mirror(reinterpret_cast<std::uintptr_t>(p));
    calls_up_ += to_fast_ != up;
    calls_down_ += to_slow_ != down;
    return s;
  }

  // Pages moved to the fast / slow node since the last call.
  std::pair<std::uint64_t, std::uint64_t> take_moves() {
    return {std::exchange(to_fast_, 0), std::exchange(to_slow_, 0)};
  }
  // query() calls and the pages they asked about since the last call.
  std::pair<std::uint64_t, std::uint64_t> take_queries() {
    return {std::exchange(query_calls_, 0), std::exchange(query_pages_, 0)};
  }
  // move() calls that moved a page to the fast / slow node since the last call.
  std::pair<std::uint64_t, std::uint64_t> take_calls() {
    return {std::exchange(calls_up_, 0), std::exchange(calls_down_, 0)};
  }

 private:
  bool unplaced(std::uintptr_t a) const {
    const std::uint64_t i = (a - base_) / kPageSize;
    return a >= base_ && i < node_->size() && (*node_)[i] > 1;
  }
  // Copies where the inner backend has page `a` (nothing if not present).
  void mirror(std::uintptr_t a) {
    if (NodeId n = inner_->node_of(a); n != kNoNode) set(a, n);
  }
  void set(std::uintptr_t a, NodeId n) {
    if (a < base_) return;
    std::uint64_t i = (a - base_) / kPageSize;
    if (i >= node_->size()) return;
    auto v = static_cast<std::uint8_t>(n);
    std::uint8_t& cur = (*node_)[i];
    if (cur == v) return;
    (n == kFastNode ? to_fast_ : to_slow_) += 1;
    cur = v;
  }

  SimulatedBackend* inner_;
  std::vector<std::uint8_t>* node_;
  std::uintptr_t base_;
  std::uint64_t to_fast_ = 0, to_slow_ = 0, calls_up_ = 0, calls_down_ = 0;
  std::uint64_t query_calls_ = 0, query_pages_ = 0;
};

inline bool is_oracle(absl::string_view policy) { return policy == "oracle"; }
// The issue-12 rule's bounds in hindsight (detail::run_rule_bound).
inline bool is_rule_bound(absl::string_view policy) {
  return policy == "rule-bound" || policy == "rule-hindsight";
}

// "topk[:decay=D/margin=M/add=A/back=B/residency=E]" (sim/reference.hpp's
// TopKMargins; knobs separated by '/', as the engine policies').
inline absl::StatusOr<TopKMargins> parse_topk(absl::string_view spec) {
  static constexpr tierkit::detail::SpecKnob<TopKMargins> kTopKKnobs[] = {
      {"decay", &TopKMargins::decay, nullptr, 0, 1},
      {"margin", &TopKMargins::margin, nullptr, 0, 1e6},
      {"add", &TopKMargins::add, nullptr, 0, 1e9},
      {"back", &TopKMargins::back, nullptr, 1, 1e6},
      {"residency", nullptr, &TopKMargins::residency, 0, 1e6},
  };
  std::pair<absl::string_view, absl::string_view> kv =
      absl::StrSplit(spec, absl::MaxSplits(':', 1));
  if (kv.first != "topk")
    return absl::InvalidArgumentError(absl::StrCat("policy '", spec, "' is not topk"));
  TopKMargins k;
  if (absl::Status s = tierkit::detail::parse_knobs(kv.second, kTopKKnobs, spec, "topk", k);
      !s.ok())
    return s;
  return k;
}

// Checks a policy spec ("oracle", a reference policy or any
// EngineConfig::policy spec).
inline absl::Status validate_policy(const std::string& spec, EngineConfig base = {}) {
  if (is_topk(spec)) return parse_topk(spec).status();
  if (is_oracle(spec) || is_reference_policy(spec) || is_rule_bound(spec)) return absl::OkStatus();
  base.policy = spec;
  auto p = EngineConfig::make_policy(base);
  if (!p.ok())
    return absl::Status(
        p.status().code(),
        absl::StrCat(p.status().message(),
                     " (or: oracle, lfu, reactive, best-static, topk[:knob=V/...], rule-bound, "
                     "rule-hindsight)"));
  return absl::OkStatus();
}

namespace detail {

class Timeline {
 public:
  Timeline(SimResult* r, std::int64_t interval_ns) : r_(r), interval_(interval_ns) {
    next_ = interval_;
  }
  // Records samples for every interval boundary <= t_ns.
  void at(std::int64_t t_ns, std::uint64_t accesses, std::uint64_t hits, std::uint64_t migrated,
          bool final = false) {
    if (t_ns < next_ && !final) return;
    std::uint64_t da = accesses - acc_;
    if (da == 0 && final) return;
    r_->series.push_back({static_cast<double>(t_ns) / 1e9,
                          da ? static_cast<double>(hits - hits_) / static_cast<double>(da) : 0,
                          migrated});
    acc_ = accesses;
    hits_ = hits;
    while (next_ <= t_ns) next_ += interval_;
  }

 private:
  SimResult* r_;
  std::int64_t interval_, next_;
  std::uint64_t acc_ = 0, hits_ = 0;
};

// The application's stall for `calls` migration calls moving `pages` pages
// it did not migrate itself.
inline double move_interrupt_ns(const SimOptions& o, std::uint64_t calls, std::uint64_t pages) {
  return static_cast<double>(calls) * o.move_call_ns + static_cast<double>(pages) * o.move_page_ns;
}

inline void report_progress(const SimOptions& o, const Workload& wl, std::int64_t t) {
  if (o.progress) o.progress(wl.done(), wl.total(), t);
}

inline absl::Status run_oracle(Workload& wl, const SimOptions& o, SimResult& r) {
  const std::uint64_t n = wl.pages(), cap = std::min(o.fast_pages, n);
  const std::int64_t epoch_ns = o.engine.epoch_ms * kNsPerMs;
  const std::int64_t cost[2] = {o.fast_ns + o.gap_ns, o.slow_ns + o.gap_ns};
  // An epoch's worth of fast accesses, but never more than the run holds:
  // the window is buffered (a long epoch of 1 ns accesses is 10^11).
  const auto window = static_cast<std::size_t>(std::max<std::uint64_t>(
      1, std::min(static_cast<std::uint64_t>(epoch_ns / cost[0]), wl.total())));
  std::vector<std::uint32_t> buf(window), count(n, 0), touched;
  std::vector<std::uint8_t> fast(n, 0);
  Timeline tl(&r, o.sample_ms * kNsPerMs);
  std::int64_t t = 0;
  std::uint64_t acc = 0, hits = 0, next_progress = 1u << 22;
  for (;;) {
    std::size_t got = 0;
    while (got < window) {
      std::size_t k = wl.next(absl::MakeSpan(buf.data() + got, window - got));
      if (k == 0) break;
      got += k;
    }
    if (got == 0) break;
    for (std::size_t i = 0; i < got; ++i)
      if (count[buf[i]]++ == 0) touched.push_back(buf[i]);
    if (touched.size() > cap) {
      std::nth_element(touched.begin(), touched.begin() + static_cast<std::ptrdiff_t>(cap) - 1,
                       touched.end(), [&](std::uint32_t a, std::uint32_t b) {
                         return count[a] != count[b] ? count[a] > count[b] : a < b;
                       });
    }
    for (std::size_t i = 0; i < std::min<std::size_t>(cap, touched.size()); ++i)
      fast[touched[i]] = 1;
    for (std::size_t i = 0; i < got; ++i) {
      std::uint8_t f = fast[buf[i]];
      hits += f;
      t += cost[f ? 0 : 1];
    }
    acc += got;
    for (std::uint32_t p : touched) count[p] = fast[p] = 0;
    touched.clear();
    ++r.epochs;
    tl.at(t, acc, hits, 0);
    if (acc >= next_progress) {
      report_progress(o, wl, t);
      next_progress += 1u << 22;
    }
  }
  tl.at(t, acc, hits, 0, /*final=*/true);
  r.accesses = acc;
  r.fast_hits = hits;
  r.app_ns = t;
  r.final_threshold = 0;
  r.threshold_unit.assign(1, '-');  // not = "-": GCC 12 -Wrestrict false positive
  return absl::OkStatus();
}

// Drains the workload into memory (4 bytes per access) for `policy`;
// ResourceExhausted when that memory cannot be allocated.
inline absl::StatusOr<std::vector<std::uint32_t>> drain(Workload& wl, absl::string_view policy) {
  try {
    std::vector<std::uint32_t> all;
    all.reserve(static_cast<std::size_t>(wl.total()));
    std::vector<std::uint32_t> buf(1 << 16);
    while (std::size_t k = wl.next(absl::MakeSpan(buf)))
      all.insert(all.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(k));
    return all;
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(
        policy, " keeps every access in memory: ", wl.total(), " accesses need ",
        wl.total() * 4 / 1000000, " MB, which cannot be allocated; use a shorter run"));
  }
}

// lfu, reactive, best-static, topk (sim/reference.hpp) on the simulator's clock:
// epochs every epoch_ms of virtual time, moves charged like the engine's
// background moves (one call per direction per epoch).
// `ends`, when given, receives the index of the first access after each
// epoch boundary, the first `max_ends` of them (r.epochs counts them all).
inline absl::Status run_reference(Workload& wl, const std::vector<std::uint32_t>& all,
                                  const std::string& policy, const SimOptions& o, SimResult& r,
                                  std::vector<std::uint64_t>* ends = nullptr,
                                  std::uint64_t max_ends = ~std::uint64_t{0}) {
  const std::uint64_t n = wl.pages(), cap = std::min(o.fast_pages, n);
  const bool fixed = policy == "best-static";
  absl::StatusOr<TopKMargins> margins = is_topk(policy) ? parse_topk(policy) : TopKMargins{};
  if (!margins.ok()) return margins.status();
  TopKPlacement sel = is_topk(policy) ? TopKPlacement(n, cap, *margins)
                                      : TopKPlacement(n, fixed ? 0 : cap, policy == "reactive");
  if (fixed) {
    std::vector<std::uint8_t> best = best_static_placement(all, n, cap);
    for (std::uint32_t p = 0; p < n; ++p) sel.place(p, best[p] != 0);
  } else {
    for (std::uint32_t p = 0; p < n; ++p) sel.place(p, !o.all_slow && wl.first_touch_rank(p) < cap);
  }
  const std::int64_t epoch_ns = o.engine.epoch_ms * kNsPerMs;
  const std::int64_t cost[2] = {o.slow_ns + o.gap_ns, o.fast_ns + o.gap_ns};
  const double page_cost = o.page_cost_ns();
  Timeline tl(&r, o.sample_ms * kNsPerMs);
  std::int64_t t = 0, next_epoch = epoch_ns;
  std::uint64_t acc = 0, hits = 0, moved = 0;
  double carry = 0;
  for (std::uint32_t p : all) {
    sel.access(p);
    const bool f = sel.fast(p);
    hits += f;
    t += cost[f];
    ++acc;
    while (!fixed && t >= next_epoch) {
      TopKPlacement::Moves m = sel.end_epoch();
      const std::uint64_t pages = m.promoted + m.demoted;
      const std::uint64_t calls = (m.promoted > 0) + (m.demoted > 0);
      moved += pages;
      r.background_ns += static_cast<double>(pages) * page_cost;
      const double stall = move_interrupt_ns(o, calls, pages);
      r.app_move_ns += stall;
      r.move_calls += calls;
      carry += stall;
      auto whole = static_cast<std::int64_t>(carry);
      t += whole;
      carry -= static_cast<double>(whole);
      ++r.epochs;
      if (ends != nullptr && ends->size() < max_ends) ends->push_back(acc);
      tl.at(next_epoch, acc, hits, moved * kPageSize);
      next_epoch += epoch_ns;
    }
  }
  tl.at(t, acc, hits, moved * kPageSize, /*final=*/true);
  r.accesses = acc;
  r.fast_hits = hits;
  r.app_ns = t;
  r.promoted_pages = sel.promoted();
  r.demoted_pages = sel.demoted();
  r.migrated_bytes = moved * kPageSize;
  r.pingpong_pages = sel.pingpong();
  r.threshold_unit.assign(1, '-');
  return absl::OkStatus();
}

// rule-bound and rule-hindsight (sim/bound.hpp) on lfu's epochs: the most
// hits any schedule of moves at those boundaries can reach with no more
// promotions than lfu made and ping-pong at most 5% of its moves (the
// issue-12 rule's limits), and one such schedule found in hindsight. The
// rows carry those hits; rule-bound's promotions are lfu's (the budget),
// rule-hindsight's moves its schedule's. Neither is a run: no time, no
// cost columns. rule-bound: O(400 * pages * epochs); rule-hindsight:
// O(42 * epochs * pages * log pages).
inline absl::Status run_rule_bound(Workload& wl, const std::string& policy, const SimOptions& o,
                                   SimResult& r) {
  const absl::StatusOr<std::vector<std::uint32_t>> drained = drain(wl, policy);
  if (!drained.ok()) return drained.status();
  const std::vector<std::uint32_t>& all = *drained;
  SimResult lfu;
  std::vector<std::uint64_t> ends;
  constexpr std::uint64_t kMaxPageEpochs = std::uint64_t{1} << 25;  // 128 MiB of counts
  // Epochs past the limit are counted, not kept: a long run of short
  // epochs would otherwise fill memory with boundaries before the refusal.
  const std::uint64_t max_epochs = kMaxPageEpochs / std::max<std::uint64_t>(1, wl.pages());
  if (absl::Status s = run_reference(wl, all, "lfu", o, lfu, &ends, max_epochs); !s.ok()) return s;
  if (lfu.epochs + 1 > max_epochs)
    return absl::InvalidArgumentError(absl::StrCat(
        wl.pages(), " pages x ", lfu.epochs + 1,
        " epochs is more than 2^25 page-epochs (it keeps a count per page and epoch, and "
        "its time grows with them); use a shorter run, a smaller footprint or a longer "
        "--epoch_ms"));
  RuleBoundProblem pb;
  pb.pages = static_cast<std::uint32_t>(wl.pages());
  pb.cap = std::min(o.fast_pages, wl.pages());
  pb.epochs = static_cast<std::uint32_t>(ends.size() + 1);
  pb.counts.assign(std::uint64_t{pb.epochs} * pb.pages, 0);
  std::uint64_t t = 0;
  for (std::uint64_t i = 0; i < all.size(); ++i) {
    while (t < ends.size() && i >= ends[t]) ++t;
    ++pb.counts[t * pb.pages + all[i]];
  }
  pb.initial.resize(pb.pages);
  for (std::uint32_t p = 0; p < pb.pages; ++p)
    pb.initial[p] = !o.all_slow && wl.first_touch_rank(p) < pb.cap;
  pb.promotion_budget = lfu.promoted_pages;
  pb.window = o.engine.pingpong_window_epochs;
  pb.upper = policy == "rule-bound";
  const RuleBound b = rule_bound(pb);
  r.accesses = all.size();
  r.fast_hits = pb.upper ? static_cast<std::uint64_t>(std::floor(b.upper)) : b.lower;
  r.promoted_pages = pb.upper ? lfu.promoted_pages : b.found.promotions;
  r.demoted_pages = pb.upper ? 0 : b.found.demotions;
  r.pingpong_pages = pb.upper ? 0 : b.found.pingpong;
  r.migrated_bytes = (r.demoted_pages + (pb.upper ? 0 : r.promoted_pages)) * kPageSize;
  r.epochs = ends.size();
  r.threshold_unit.assign(1, '-');
  return absl::OkStatus();
}

// One run of the engine on simulated time: the machine (a simulated backend
// mirrored into a page -> node map, a manual clock), the engine with its
// regions and hotness source, and the accounts that become the SimResult.
// Only the backend and the clock are simulated: each access goes through
// Engine::record_access (or the source) and each epoch through Engine::step.
class EngineRun {
 public:
  EngineRun(Workload& wl, const SimOptions& o, SimResult& r)
      : wl_(wl),
        o_(o),
        r_(r),
        n_(wl.pages()),
        cap_(o.fast_pages),
        // Idle pages are a mapping of their own, from the next 2 MiB boundary
        // on: they share no chunk (nor 8-page group) with the footprint.
        idle_first_(o.idle_pages ? align_up(n_, kHugePageSize / kPageSize) : n_),
        tracked_(idle_first_ + o.idle_pages),
        sim_({{kFastNode, node_pages() * kPageSize}, {kSlowNode, (tracked_ + 1) * kPageSize}}),
        node_(tracked_, kSlowNode),
        be_(&sim_, &node_, kSimBase),
        tl_(&r, o.sample_ms * kNsPerMs) {}

  // The engine, the first-touch placement, the regions and the source.
  absl::Status set_up() {
    if (o_.place_at_access && !wl_.touches_at_first_access())
      return absl::InvalidArgumentError(absl::StrCat(
          "--place_at_access: ", wl_.name(),
          " initialises its footprint before the run; only a --trace holds first touches"));
    if (absl::Status s = create_engine(); !s.ok()) return s;
    place();
    if (absl::Status s = register_regions(); !s.ok()) return s;
    return add_source();
  }

  // Every access of the workload, with the epochs that fall due between them.
  absl::Status replay() {
    std::vector<std::uint32_t> buf(4096);
    std::vector<std::uint8_t> writes(buf.size());
    for (;;) {
      std::size_t got =
          source_ ? wl_.next(absl::MakeSpan(buf), writes.data()) : wl_.next(absl::MakeSpan(buf));
      if (got == 0) break;
      for (std::size_t i = 0; i < got; ++i) {
        access(buf[i], writes[i] != 0);
        if (t_ >= next_epoch_) {
          acc_ += i + 1;
          absl::Status s = run_epochs();
          acc_ -= i + 1;
          if (!s.ok()) return s;
        }
      }
      acc_ += got;
      if (acc_ >= next_progress_) {
        report_progress(o_, wl_, t_);
        next_progress_ += 1u << 22;
      }
    }
    tl_.at(t_, acc_, hits_, moved_pages_ * kPageSize, /*final=*/true);
    charge_queries();
    return absl::OkStatus();
  }

  // The result: the run's accounts and the engine's stats.
  void finish() {
    EngineStats s = engine_->stats();
    r_.accesses = acc_;
    r_.fast_hits = hits_;
    r_.app_ns = t_;
    r_.sync_migration_ns = sync_ns_;
    r_.app_move_ns = move_ns_;
    r_.move_calls = calls_;
    r_.background_ns = bg_ns_;
    r_.query_ns = query_ns_;
    r_.query_pages = query_pages_;
    r_.tracking_app_ns = tracking_app_;
    if (source_) {
      r_.tracking_background_ns = tracking_engine_seen_;
      r_.source_faults = source_->faults();
      HotnessSourceStats hs = source_->stats();
      r_.source_sampled = hs.pages_sampled;
      r_.source_found = hs.pages_found;
    }
    r_.promoted_pages = s.promoted_pages;
    r_.demoted_pages = s.demoted_pages;
    r_.migrated_bytes = s.promoted_bytes + s.demoted_bytes;
    r_.pingpong_pages = s.pingpong_pages;
    r_.final_threshold = s.promotion_threshold;
    r_.threshold_unit = s.threshold_unit;
    r_.epochs = s.epochs;
  }

 private:
  static constexpr std::uint8_t kUnplaced = 2;  // place_at_access: not touched yet

  // The fast tier is the engine's budget (`cap_` pages, what every policy
  // gets); the node holds the engine's node reserve (1 - high watermark) on
  // top, as a real DRAM node holds more than the budget given to tiering.
  std::uint64_t node_pages() const {
    return static_cast<std::uint64_t>(
        std::ceil(static_cast<double>(cap_) / std::max(0.5, o_.engine.high_watermark)));
  }

  absl::Status create_engine() {
    EngineConfig cfg = o_.engine;
    cfg.fast_nodes = {kFastNode};
    cfg.slow_nodes = {kSlowNode};
    cfg.fast_budget_bytes = cap_ * kPageSize;
    auto created = Engine::create(cfg, &be_, &clock_);
    if (!created.ok()) return created.status();
    engine_ = *std::move(created);
    sync_ = engine_->policy_unsafe().synchronous_promotion();
    page_cost_ = o_.page_cost_ns();
    epoch_ns_ = cfg.epoch_ms * kNsPerMs;
    next_epoch_ = epoch_ns_;
    cost_[0] = o_.fast_ns + o_.gap_ns;
    cost_[1] = o_.slow_ns + o_.gap_ns;
    return absl::OkStatus();
  }

  // First touch, in the workload's first-touch order: fast until full (or
  // each page at its first access, with place_at_access). Idle pages: slow.
  void place() {
    for (std::uint64_t p = 0; p < n_ && o_.place_at_access; ++p) node_[p] = kUnplaced;
    for (std::uint64_t p = 0; p < n_ && !o_.place_at_access; ++p) {
      NodeId want = !o_.all_slow && wl_.first_touch_rank(static_cast<std::uint32_t>(p)) < cap_
                        ? kFastNode
                        : kSlowNode;
      node_[p] = static_cast<std::uint8_t>(sim_.touch(kSimBase + p * kPageSize, want));
    }
    for (std::uint64_t p = idle_first_; p < tracked_; ++p)
      node_[p] = static_cast<std::uint8_t>(sim_.touch(kSimBase + p * kPageSize, kSlowNode));
  }

  // One region over the footprint, or one per region_pages (as ArenaRegions
  // registers each arena of a TierMemoryResource): a source samples per range.
  absl::Status register_regions() {
    const std::uint64_t per_region = o_.region_pages ? o_.region_pages : n_;
    for (std::uint64_t first = 0; first < n_; first += per_region) {
      const std::uint64_t len = std::min(per_region, n_ - first);
      // Placed at access: untouched pages are believed slow, so the engine
      // counts only what it learnt is fast against its budget.
      auto handle = engine_->register_region(reinterpret_cast<void*>(kSimBase + first * kPageSize),
                                             len * kPageSize, RegionOptions().with_name(wl_.name()),
                                             /*initially_fast=*/!o_.place_at_access);
      if (!handle.ok()) return handle.status();
      handles_.push_back(*std::move(handle));
    }
    if (o_.idle_pages == 0) return absl::OkStatus();
    auto handle =
        engine_->register_region(reinterpret_cast<void*>(kSimBase + idle_first_ * kPageSize),
                                 o_.idle_pages * kPageSize, RegionOptions().with_name("idle"));
    if (!handle.ok()) return handle.status();
    handles_.push_back(*std::move(handle));
    return absl::OkStatus();
  }

  // The hotness source: the application itself (record_access), or a model
  // of a real source that the engine collects from at every epoch.
  absl::Status add_source() {
    auto spec = parse_hotness(o_.hotness, o_.hotness_available);
    if (!spec.ok()) return spec.status();
    r_.hotness = spec->label();
    if (auto m =
            make_source_model(*spec, kSimBase, tracked_, o_.hotness_costs, o_.fault_group_pages)) {
      source_ = m.get();
      if (absl::Status st =
              engine_->add_hotness_source(std::move(m), o_.hotness_budget, o_.hotness_estimator);
          !st.ok())
        return st;
    }
    record_ns_ = source_ ? 0 : o_.hotness_costs.record_access_ns;
    return absl::OkStatus();
  }

  // One access to page `p`: what tracking it costs the application's thread
  // (the record_access call, or the fault the source's protection causes),
  // its placement if it is the page's first, and its tier's latency.
  void access(std::uint32_t p, bool write) {
    double track;
    if (source_ == nullptr) {
      engine_->record_access(reinterpret_cast<const void*>(kSimBase + (std::uintptr_t{p} << 12)));
      track = record_ns_;
    } else {
      track = source_->on_access(p, write, t_);
    }
    if (track > 0) {
      tracking_app_ += track;
      track_carry_ += track;
      auto whole = static_cast<std::int64_t>(track_carry_);
      t_ += whole;
      track_carry_ -= static_cast<double>(whole);
    }
    if (node_[p] == kUnplaced) {
      const bool room = sim_.used_bytes(kFastNode) < cap_ * kPageSize;
      node_[p] = static_cast<std::uint8_t>(
          sim_.touch(kSimBase + (std::uintptr_t{p} << 12), room ? kFastNode : kSlowNode));
    }
    const std::uint8_t nd = node_[p];
    hits_ += nd == kFastNode;
    t_ += cost_[nd];
  }

  // Every epoch due by now, each followed by what its moves cost.
  absl::Status run_epochs() {
    while (t_ >= next_epoch_) {
      clock_.set_ns(next_epoch_);
      if (source_) source_->set_now(next_epoch_);
      if (absl::Status s = engine_->step(); !s.ok()) return s;
      if (source_) {  // collect() ran on the engine's thread: background
        bg_ns_ += source_->engine_ns() - tracking_engine_seen_;
        tracking_engine_seen_ = source_->engine_ns();
      }
      charge_queries();
      charge_moves();
      tl_.at(next_epoch_, acc_, hits_, moved_pages_ * kPageSize);
      next_epoch_ += epoch_ns_;
    }
    return absl::OkStatus();
  }

  // The engine's placement queries, to the background (the kernel model
  // pays none: the kernel knows where its pages are).
  void charge_queries() {
    auto [q_calls, q_pages] = be_.take_queries();
    if (sync_) return;
    const double q = static_cast<double>(q_calls) * o_.query_call_ns +
                     static_cast<double>(q_pages) * o_.query_page_ns;
    bg_ns_ += q;
    query_ns_ += q;
    query_pages_ += q_pages;
  }

  // The epoch's moves: copies to the background, or to the application for
  // the kernel model's synchronous promotions; every move call also stalls
  // the application (move_interrupt_ns).
  void charge_moves() {
    auto [up, down] = be_.take_moves();
    auto [calls_up, calls_down] = be_.take_calls();
    moved_pages_ += up + down;
    double stall = 0;
    if (sync_) {
      stall = static_cast<double>(up) * page_cost_;
      sync_ns_ += stall;
      bg_ns_ += static_cast<double>(down) * page_cost_;
      calls_up = up;  // one hint fault, one migration, one flush per page
    } else {
      bg_ns_ += static_cast<double>(up + down) * page_cost_;
    }
    const double interrupt = move_interrupt_ns(o_, calls_up + calls_down, sync_ ? down : up + down);
    calls_ += calls_up + calls_down;
    move_ns_ += interrupt;
    stall_carry_ += stall + interrupt;
    auto whole = static_cast<std::int64_t>(stall_carry_);
    t_ += whole;
    stall_carry_ -= static_cast<double>(whole);
  }

  Workload& wl_;
  const SimOptions& o_;
  SimResult& r_;
  const std::uint64_t n_, cap_, idle_first_, tracked_;
  SimulatedBackend sim_;
  std::vector<std::uint8_t> node_;  // each page's node, mirrored from sim_
  MirrorBackend be_;
  ManualClock clock_{0};
  std::unique_ptr<Engine> engine_;
  std::vector<RegionHandle> handles_;  // destroyed before the engine
  SourceModel* source_ = nullptr;      // owned by the engine
  Timeline tl_;

  bool sync_ = false;  // the kernel model: promotions stall the application
  double page_cost_ = 0, record_ns_ = 0;
  std::int64_t epoch_ns_ = 0, cost_[2] = {0, 0};
  // Virtual time and the accounts.
  std::int64_t t_ = 0, next_epoch_ = 0;
  std::uint64_t acc_ = 0, hits_ = 0, moved_pages_ = 0, next_progress_ = 1u << 22, calls_ = 0;
  std::uint64_t query_pages_ = 0;
  double sync_ns_ = 0, bg_ns_ = 0, stall_carry_ = 0, move_ns_ = 0, query_ns_ = 0;
  double tracking_app_ = 0, tracking_engine_seen_ = 0, track_carry_ = 0;
};

inline absl::Status run_engine(Workload& wl, const SimOptions& o, SimResult& r) {
  EngineRun run(wl, o, r);
  if (absl::Status s = run.set_up(); !s.ok()) return s;
  if (absl::Status s = run.replay(); !s.ok()) return s;
  run.finish();
  return absl::OkStatus();
}

}  // namespace detail

// Runs `wl` (fresh: nothing consumed yet) under `policy` ("oracle", "lfu",
// "reactive", "best-static" or an engine policy spec). O(accesses + epochs * pages).
inline absl::StatusOr<SimResult> simulate(Workload& wl, const std::string& policy, SimOptions o) {
  if (absl::Status s = o.validate(); !s.ok()) return s;
  if (absl::Status s = validate_policy(policy, o.engine); !s.ok()) return s;
  o.engine.policy = policy;
  SimResult r;
  r.workload = wl.name();
  r.policy = policy;
  r.pages = wl.pages();
  r.fast_pages = std::min(o.fast_pages, wl.pages());
  if (is_oracle(policy) || is_reference_policy(policy) || is_rule_bound(policy))
    r.hotness.assign(1, '-');  // see all
  auto start = std::chrono::steady_clock::now();
  auto reference = [&]() -> absl::Status {
    absl::StatusOr<std::vector<std::uint32_t>> all = detail::drain(wl, policy);
    if (!all.ok()) return all.status();
    return detail::run_reference(wl, *all, policy, o, r);
  };
  absl::Status s = is_oracle(policy)             ? detail::run_oracle(wl, o, r)
                   : is_rule_bound(policy)       ? detail::run_rule_bound(wl, policy, o, r)
                   : is_reference_policy(policy) ? reference()
                                                 : detail::run_engine(wl, o, r);
  if (!s.ok()) return s;
  r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (r.accesses)
    r.mean_latency_ns =
        (static_cast<double>(r.fast_hits) * static_cast<double>(o.fast_ns) +
         static_cast<double>(r.accesses - r.fast_hits) * static_cast<double>(o.slow_ns)) /
        static_cast<double>(r.accesses);
  return r;
}

}  // namespace tierkit::sim

namespace tierkit::sim {

// Dominance: `other` dominates `x` when it reaches a fast-tier hit ratio at
// least x's + hit_margin with no more promotions, and is better in one of
// the two (Pareto: a policy that did exactly what x did, such as first
// touch where x moved nothing, is a tie, not a better choice). Hindsight
// bounds (oracle, best-static) are not online policies and never count.
inline bool dominates(const SimResult& other, const SimResult& x, double hit_margin = 0) {
  if (is_oracle(other.policy) || other.policy == "best-static" || is_rule_bound(other.policy) ||
      other.policy == x.policy || other.workload != x.workload)
    return false;
  const bool better = other.hit_ratio() > x.hit_ratio() || other.promoted_pages < x.promoted_pages;
  return other.hit_ratio() >= x.hit_ratio() + hit_margin &&
         other.promoted_pages <= x.promoted_pages && better;
}

// The policies among `rs` that dominate policy `x` on `workload` (empty
// when none does, or when `x` did not run there).
inline std::vector<std::string> dominators(const std::vector<SimResult>& rs,
                                           const std::string& workload, const std::string& x,
                                           double hit_margin = 0) {
  std::vector<std::string> out;
  auto it = std::find_if(rs.begin(), rs.end(), [&](const SimResult& r) {
    return r.workload == workload && r.policy == x && r.hotness == "app";
  });
  if (it == rs.end()) return out;
  for (const auto& r : rs)
    if (dominates(r, *it, hit_margin)) out.push_back(r.policy);
  return out;
}

inline bool is_dominated(const std::vector<SimResult>& rs, const std::string& workload,
                         const std::string& x, double hit_margin = 0) {
  return !dominators(rs, workload, x, hit_margin).empty();
}

}  // namespace tierkit::sim
