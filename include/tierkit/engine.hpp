// tierkit/engine.hpp: the tiering engine. It owns the region registry, the
// hotness tracker, the policy, the rate limiter and a Backend, and runs
// epochs: age heat, pick promotions (hottest first) and, past the high
// watermark, demotions (coldest first, down to the low watermark), then move
// pages under the rate limit. step() runs one epoch synchronously; start()
// runs them on a background thread. Layer 4: includes everything below.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tierkit/backend.hpp"
#include "tierkit/backend/linux.hpp"
#include "tierkit/config.hpp"
#include "tierkit/detail/mutex.hpp"
#include "tierkit/detail/parse.hpp"
#include "tierkit/hotness.hpp"
#include "tierkit/hotness_source.hpp"
#include "tierkit/memory_resource.hpp"
#include "tierkit/policy.hpp"
#include "tierkit/rate_limiter.hpp"
#include "tierkit/region.hpp"
#include "tierkit/stats.hpp"
#include "tierkit/topology.hpp"

namespace tierkit {

// Engine
//
// Owns the region registry, the hotness tracker, the policy, the rate
// limiter and talks to one Backend; runs epochs (see the stages below).
// Choose it when the application wants pages moved for it; use
// TierMemoryResource / tiered_allocator alone for fixed placement.
//
// Cost: record_access() is the tracker's hot path (no lock, no syscall). An
// epoch costs O(pages touched recently + pages moved + the fast-tier clock's
// budget), independent of untouched tracked memory, except under a policy
// that visits every page (the kernel model). Thread safety: every public
// member is thread-safe; step() and the background thread serialise.
//
// Example:
//   auto engine = Engine::create(config);          // applies TIERKIT_*
//   auto region = (*engine)->register_region(p, bytes);
//   (*engine)->start();                            // epochs every epoch_ms
//   (*engine)->record_access(p + i);               // from the hot path
class Engine {
 public:
  // Validates `config` and builds an engine over `backend` (null: the Linux
  // backend) and `clock` (null: the steady clock); both must outlive it.
  static absl::StatusOr<std::unique_ptr<Engine>> create(EngineConfig config,
                                                        Backend* backend = nullptr,
                                                        const Clock* clock = nullptr) {
    if (config.environment == EngineConfig::Environment::kApply) {
      auto applied = EngineConfig::from_env(std::move(config));
      if (!applied.ok()) return applied.status();
      config = std::move(*applied);
    }
    if (absl::Status s = config.validate(); !s.ok()) return s;
    if (backend == nullptr) backend = &LinuxBackend::instance();
    if (absl::Status s = check_nodes(config, *backend); !s.ok()) return s;
    auto policy = EngineConfig::make_policy(config);
    if (!policy.ok()) return policy.status();
    return std::unique_ptr<Engine>(new Engine(std::move(config), std::move(*policy), backend,
                                              clock ? clock : &SteadyClock::instance()));
  }

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  // Stops the background thread. Region handles still alive then
  // unregister nothing (see RegionHandle).
  ~Engine() { stop(); }

  // Registers a region and learns where its pages are (one placement query
  // of all its pages: O(pages) in the kernel). Pages not present yet are
  // assumed where `initially_fast` says (default: the fast tier, where first
  // touch on a CPU node puts them, as many as the fast node(s) have free; the
  // rest the slow tier). Epochs move none of its pages until that query is
  // done; their heat recorded meanwhile is kept. See RegionRegistry::add for
  // errors.
  // With 2 MiB units (the default where THP is enabled, see
  // RegionOptions::granularity) it advises those chunks MADV_HUGEPAGE: one
  // madvise, best effort. With kernel_balancing "exclude" (the default) it
  // keeps the kernel's NUMA balancing away from the range
  // (Backend::exclude_from_numa_balancing: on Linux, MPOL_BIND over every
  // allowed node on the parts that are private with the default memory
  // policy, after one read of /proc/self/maps); a failure there is counted
  // in stats(), not returned. InvalidArgument if
  // options.home_node is a node the backend cannot use, or if
  // options.promotion_threshold is set outside (0, 1e6] (the range of
  // threshold.promotion_threshold).
  absl::StatusOr<RegionHandle> register_region(const void* ptr, std::size_t bytes,
                                               RegionOptions options = {},
                                               bool initially_fast = true) {
    constexpr std::size_t kThreshold = detail::knob_index("threshold.promotion_threshold");
    static_assert(kThreshold < std::size(kKnobs));
    const Knob& k = kKnobs[kThreshold];
    if (const std::optional<double> t = options.promotion_threshold;
        t && !(*t > 0 && *t <= k.hi))  // NaN too: it meant "no override"
      return absl::InvalidArgumentError(
          absl::StrCat("register_region '", options.name, "': promotion_threshold ", *t,
                       " must be in (0, ", k.hi, "] ", k.unit, " (as ", k.field, ")"));
    if (options.home_node != kNoNode)
      if (auto m = backend_->node_memory(options.home_node); !m.ok())
        return absl::InvalidArgumentError(
            absl::StrCat("register_region: home_node ", options.home_node, " is not a node the ",
                         backend_->name(), " backend can use: ", m.status().message()));
    if (options.granularity == kAutoGranularity) registry_.set_auto_huge(prefers_huge_units());
    auto h = registry_.add(ptr, bytes, options, initially_fast);
    if (!h.ok()) return h;
    auto r = registry_.find(h->id());
    if (!r) return h;
    if (r->huge_end > r->huge_begin)
      (void)backend_->advise_huge(reinterpret_cast<void*>(r->huge_begin),
                                  r->huge_end - r->huge_begin);
    if (options.granularity == kAutoGranularity) advise_base_units(*r);
    exclude_from_numa_balancing(const_cast<void*>(ptr), bytes);
    refresh_placement(*r, initially_fast);
    watch_ranges();
    note_room_baseline();
    return h;
  }

  // Hot path: see HotnessTracker::record_access. No lock, no syscall.
  void record_access(const void* p) noexcept { tracker_.record_access(p); }
  void record_access(const void* p, std::size_t bytes, std::uint32_t weight = 1) noexcept {
    tracker_.record_access(p, bytes, weight);
  }

  // Adds a hotness source (see hotness_source.hpp and source/*.hpp): at the
  // start of every epoch the engine calls its collect() with the registered
  // ranges and `budget` (its epoch_ns set from epoch_ms), and turns what it
  // observed into heat with `estimator` (SourceEstimator; a record()ed page
  // adds its weight exactly as record_access(page, 1, weight) would);
  // application calls keep working alongside. Its CPU time and counts appear
  // in stats().hotness_sources. A source that fails is reported there
  // (last_error) and kept; it decides itself whether to stop. Any thread;
  // effective from the next epoch. InvalidArgument for a null source or a
  // budget out of range.
  //
  // Sampled evidence (kRate): a page watched and found accessed gets the
  // rate its latency says; a page watched and not accessed gets heat 0 and
  // is remembered as seen cold for kColdEvidenceEpochs. When the plan swaps
  // a newcomer in, a resident with no heat that no source saw cold is valued
  // at the fast tier's mean sampled rate (a moving average over the fast
  // pages the sources watched), not 0; one seen cold is offered first, at 0.
  // And since one observation's rate is a single draw of a heavy-tailed
  // estimate (the first access of a page of rate r comes within 1 / n of the
  // watch, so that it shows rate n or more, with probability about r / n),
  // the newcomer must reach kEvidenceFactor (16) times the resident's value:
  // a newcomer no hotter than the resident then passes with probability
  // about 1 / 16. That rule replaces the policy's should_swap(), whose
  // margins model heat as Poisson counts (variance = mean), which sampled
  // heat is not: with both, a full fast tier never took what a source found
  // (docs/performance.md, session 9).
  //
  // Births (SourceObservation::birth): a page promoted on a birth alone is
  // not held by the residency rule (EngineConfig / the policy's
  // min_residency_epochs) until a source sees it accessed again: one write
  // is not evidence of reuse, and pages born together (a bulk fill) must be
  // able to give way to what the sources find next.
  absl::Status add_hotness_source(std::unique_ptr<HotnessSource> source, SourceBudget budget = {},
                                  SourceEstimator estimator = SourceEstimator::kRate) {
    if (source == nullptr) return absl::InvalidArgumentError("add_hotness_source: null source");
    if (absl::Status s = budget.validate(); !s.ok())
      return absl::InvalidArgumentError(absl::StrCat("add_hotness_source: ", s.message()));
    detail::MutexLock lock(&mu_);
    source->watch(tracked_ranges());
    sources_.push_back({std::move(source), budget, estimator});
    has_sources_.store(true, std::memory_order_release);
    return absl::OkStatus();
  }

  // Sampled evidence: how many epochs a page seen cold stays known cold, and
  // the factor a newcomer's heat must reach over a resident's value.
  static constexpr std::uint64_t kColdEvidenceEpochs = 16;
  // Epochs after a move in which its use is reported to the policy
  // (observe_moves): half of min_residency_epochs' default, so a verdict
  // comes while the page still cannot move back.
  static constexpr std::uint64_t kPayoffEpochs = 4;
  static constexpr double kEvidenceFactor = 16;

  // Runs one epoch now, on the calling thread, then the epoch callback (see
  // set_epoch_callback). Serialised with the background thread and the
  // setters.
  absl::Status step() {
    std::shared_ptr<const EpochCallback> cb;
    EngineStats stats;
    {
      detail::MutexLock lock(&mu_);
      if (absl::Status s = run_epoch(); !s.ok()) return s;
      cb = callback_;
      if (cb != nullptr) stats = stats_;
    }
    if (cb != nullptr) (*cb)(stats);  // unlocked: it may call back into the engine
    return absl::OkStatus();
  }

  // Runs epochs every epoch_ms on a background thread until stop().
  // FailedPrecondition if it runs already (also when called from its own
  // epoch callback).
  absl::Status start() {
    if (on_engine_thread())
      return absl::FailedPreconditionError("engine already started (start() from its own thread)");
    std::lock_guard<std::mutex> life(lifecycle_mu_);
    if (thread_.joinable()) {
      if (!stop_requested()) return absl::FailedPreconditionError("engine already started");
      thread_.join();  // stopped from its own epoch callback: it has ended, or ends now
    }
    {
      std::lock_guard<std::mutex> l(thread_mu_);
      stopping_ = false;
    }
    thread_ = std::thread([this] { loop(); });
    return absl::OkStatus();
  }
  // Stops and joins the background thread: wakes it at once, so this returns
  // within one epoch's work.
  // NOTE: called on the background thread itself (from the epoch callback),
  // it only asks the thread to end, which it does when the callback
  // returns; running() is then false, and the next start(), stop() or the
  // destructor joins it.
  void stop() {
    if (on_engine_thread()) return request_stop();  // joining itself would throw
    std::lock_guard<std::mutex> life(lifecycle_mu_);
    if (!thread_.joinable()) return;
    request_stop();
    thread_.join();
  }
  // Whether the background thread runs and no stop() was asked of it.
  bool running() const {
    if (on_engine_thread()) return !stop_requested();
    std::lock_guard<std::mutex> life(lifecycle_mu_);
    return thread_.joinable() && !stop_requested();
  }

  // Runtime setters: thread-safe, effective from the next epoch. Each
  // checks config() with the new value as create() checks a config (kKnobs'
  // ranges, the cross-field rules) and changes nothing on error, so
  // config() always describes the running engine and passes validate().

  // set_promotion_threshold(), set_demotion_threshold()
  //
  // The threshold policy's thresholds (accesses per page per epoch, in
  // threshold.*'s range; demotion below promotion). Fails unless that
  // policy is active (say set_policy("threshold:V")). config() then holds
  // both thresholds as the policy does, and its policy is "threshold".
  // NOTE: a promotion threshold at or below the demotion threshold lowers
  // the latter to half the new value. A policy of your own (see set_policy)
  // answers for itself, and config() does not change.
  absl::Status set_promotion_threshold(double rate) {
    return set_threshold(&Policy::set_promotion_threshold, rate, "set_promotion_threshold");
  }
  absl::Status set_demotion_threshold(double rate) {
    return set_threshold(&Policy::set_demotion_threshold, rate, "set_demotion_threshold");
  }
  // The migration rate limit, in MiB/s (rate_limit_mbps's range).
  absl::Status set_rate_limit_mbps(double mbps) {
    if (absl::Status s = RateLimiter::check_rate(mbps); !s.ok()) return s;
    detail::MutexLock lock(&mu_);
    EngineConfig c = config_;
    c.rate_limit_mbps = mbps;
    if (absl::Status s = check_change(c, "set_rate_limit_mbps"); !s.ok()) return s;
    if (absl::Status s = limiter_.set_rate_mbps(mbps); !s.ok()) return s;
    config_ = std::move(c);
    return absl::OkStatus();
  }
  // set_fast_budget_bytes()
  //
  // The most fast-tier memory the engine's pages may hold; 0 = the fast
  // nodes' total memory, else at least one page (whole pages count: the
  // rest of the last one is not used). Lowered below what they
  // hold, the next epochs demote the excess, coldest first, in use or not
  // (at the rate limit).
  absl::Status set_fast_budget_bytes(std::uint64_t bytes) {
    detail::MutexLock lock(&mu_);
    EngineConfig c = config_;
    c.fast_budget_bytes = bytes;
    if (absl::Status s = check_change(c, "set_fast_budget_bytes"); !s.ok()) return s;
    config_ = std::move(c);
    return absl::OkStatus();
  }
  // Switches policy by spec (see EngineConfig::policy). Page history is kept.
  absl::Status set_policy(absl::string_view spec) {
    detail::MutexLock lock(&mu_);
    EngineConfig c = config_;
    c.policy = std::string(spec);
    auto p = EngineConfig::make_policy(c);
    if (!p.ok()) return p.status();
    policy_ = std::move(*p);
    config_ = std::move(c);
    own_policy_ = false;
    return absl::OkStatus();
  }

  // Switches to a policy of your own (a Policy subclass). Fails on null.
  absl::Status set_policy(std::unique_ptr<Policy> policy) {
    if (policy == nullptr) return absl::InvalidArgumentError("set_policy: the policy is null");
    detail::MutexLock lock(&mu_);
    config_.policy = policy->name();
    policy_ = std::move(policy);
    own_policy_ = true;
    return absl::OkStatus();
  }

  using EpochCallback = std::function<void(const EngineStats&)>;
  // set_epoch_callback()
  //
  // `cb` is called after every epoch with a copy of that epoch's stats, on
  // the thread that ran it (step()'s caller, or the background thread), with
  // no engine lock held: it may call any member (stats(), the setters,
  // register_region(), step(), which runs another epoch and calls it again,
  // and stop(), see there) but must not destroy the engine. An empty `cb`
  // removes it. Cost: one copy of EngineStats per epoch while one is set.
  // NOTE: calls are not serialised with each other: with step() called on
  // several threads (or beside start()), two may overlap or arrive out of
  // epoch order (EngineStats::epochs says which).
  void set_epoch_callback(EpochCallback cb) {
    auto shared = cb ? std::make_shared<const EpochCallback>(std::move(cb)) : nullptr;
    detail::MutexLock lock(&mu_);
    callback_ = std::move(shared);
  }

  // kVerifyBatch
  //
  // After the kernel moved pages on its own (Backend::kernel_moved_pages),
  // the most units an epoch asks the placement of among those the epoch
  // visits, and again among the idle fast ones: a page the kernel demotes
  // while it stays hot is otherwise believed fast for ever, and so never
  // promoted again, and idle ones it demotes keep their place in the fast
  // budget. At most about 1.6 ms of move_pages(2) queries an epoch
  // (tierkit-bench's BM_LinuxQuery: 0.1 us a page, 1.8 us a call), and only
  // while the kernel is moving pages.
  static constexpr std::size_t kVerifyBatch = 8192;
  // kKernelMovesPeriodMs
  //
  // Backend::kernel_moved_pages() is read at most once per this many
  // milliseconds of the engine's clock: a read (of /proc/vmstat or a
  // cgroup's memory.stat) costs about 30 us, 3% of a 1 ms epoch. Every
  // epoch from 10 ms up.
  static constexpr std::int64_t kKernelMovesPeriodMs = 10;
  // kMaxUnlocated, kRelocateEpochs
  //
  // Units whose placement a failed move() left unknown, because the query
  // after it failed too (some may have moved before the error), are asked
  // again at the start of the next epochs, in one query. At most
  // kMaxUnlocated are kept (as many as learn_placement() asks an epoch):
  // the oldest beyond it are given up, having had the most tries. Each is
  // given up after kRelocateEpochs failed queries: a backend whose query
  // fails that long is failing for good, and each try costs a query. A unit
  // given up counts as failed and keeps its belief until a placement check
  // or a move finds it (stats().placement_given_up).
  static constexpr std::size_t kMaxUnlocated = std::size_t{1} << 16;
  // Chunks whose carry check waits for a query (check_open_carries): each
  // costs a query of its 512 pages.
  static constexpr std::size_t kMaxOpenCarries = 1024;
  static constexpr std::uint64_t kRelocateEpochs = 4;

  EngineStats stats() const {
    detail::MutexLock lock(&mu_);
    EngineStats s = stats_;
    s.outside_accesses = tracker_.outside_accesses();
    s.regions = registry_.size();
    for (const Unlocated& u : unlocated_) s.unlocated_pages += u.pages;
    return s;
  }
  EngineConfig config() const {
    detail::MutexLock lock(&mu_);
    return config_;
  }
  std::string policy_name() const {
    detail::MutexLock lock(&mu_);
    return policy_->name();
  }
  // Direct access to the policy for inspection (e.g. the kernel model's
  // threshold); only between epochs, on the thread that calls step().
  Policy& policy_unsafe() { return *policy_; }

  // prefers_huge_units()
  //
  // Whether regions with default granularity get 2 MiB units: THP is on
  // (Backend::thp_mode) and the fast budget (fast_budget_bytes, or the fast
  // nodes' total) is at least huge_min_budget_bytes. Decided per
  // registration; one node_memory call per fast node.
  bool prefers_huge_units() {
    if (backend_->thp_mode() == ThpMode::kNever) return false;
    std::uint64_t budget = 0, min = 0;
    NodeSet fast;
    {
      detail::MutexLock lock(&mu_);
      budget = config_.fast_budget_bytes;
      min = config_.huge_min_budget_bytes;
      fast = config_.fast_nodes;
    }
    if (budget == 0)
      for (NodeId n : fast.to_vector())
        if (auto m = backend_->node_memory(n); m.ok()) budget += m->total_bytes;
    return budget >= min;
  }

  HotnessTracker& tracker() { return tracker_; }
  RegionRegistry& regions() { return registry_; }
  Backend& backend() { return *backend_; }
  RateLimiter& rate_limiter() { return limiter_; }
  const Clock& clock() const { return *clock_; }

 private:
  struct MoveRecord {
    std::uint64_t epoch;
    bool to_fast;
    bool on_birth = false;  // promoted on a birth alone (recently_moved)
  };
  // A unit whose placement is asked (learn_placement), as the visit saw it.
  struct Unplaced {
    std::uintptr_t addr;
    std::uint32_t heat;  // as the histogram counted it
    std::uint32_t pages;
    bool fast;  // the belief
  };
  // A unit whose placement a failed move() left unknown: the epoch of that
  // move, the node it was moved to and in which direction, and whether its
  // bytes were taken from the rate limiter (relocate_unlocated).
  struct Unlocated {
    std::uintptr_t addr;
    std::uint64_t epoch;
    std::uint32_t pages;
    NodeId target;
    bool to_fast;
    bool charged;
  };
  // A chunk whose carry check (account_carried) a failed query left open.
  struct OpenCarry {
    std::uintptr_t chunk;
    std::uint64_t epoch;
    NodeId target;
    bool to_fast;
    std::uint32_t tries = 0;
  };
  struct Candidate {
    std::uint32_t priority;
    std::uint32_t heat;
    std::uintptr_t addr;
    std::uint32_t pages;     // 1, or 512 for a 2 MiB unit
    std::uint32_t idle = 0;  // epochs since its last access (fast units)
  };

  Engine(EngineConfig config, std::unique_ptr<Policy> policy, Backend* backend, const Clock* clock)
      : config_(std::move(config)),
        policy_(std::move(policy)),
        backend_(backend),
        clock_(clock),
        registry_(tracker_),
        limiter_(config_.rate_limit_mbps, config_.burst_bytes, clock) {
    tracker_.set_sampling(config_.sampling);
    stats_.backend = std::string(backend_->name());
    stats_.environment = config_.environment_summary();
  }

  // `c`, config_ with one runtime change, checked as create() checks a
  // config; the error starts with `what`. A policy of the application's own
  // has a name but no spec: then only the fields are checked.
  absl::Status check_change(const EngineConfig& c, absl::string_view what) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::Status s = own_policy_ ? detail::validate_fields(c) : c.validate();
    if (s.ok()) return s;
    return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
  }

  // set_promotion_threshold() and set_demotion_threshold(): `set` on a copy
  // of the threshold policy gives both thresholds as the policy will hold
  // them; those are checked as config_ before the policy takes them.
  absl::Status set_threshold(absl::Status (Policy::*set)(double), double rate,
                             absl::string_view what) {
    detail::MutexLock lock(&mu_);
    auto* threshold = dynamic_cast<ThresholdPolicy*>(policy_.get());
    if (threshold == nullptr) return (policy_.get()->*set)(rate);  // not threshold: its own answer
    ThresholdPolicy probe({threshold->current_threshold(), threshold->demotion_threshold()});
    if (absl::Status s = (probe.*set)(rate); !s.ok()) return s;
    EngineConfig c = config_;
    c.policy = "threshold";  // a spec's rate ("threshold:8") would be stale
    c.threshold.promotion_threshold = probe.current_threshold();
    c.threshold.demotion_threshold = probe.demotion_threshold();
    if (absl::Status s = check_change(c, what); !s.ok()) return s;
    if (absl::Status s = (threshold->*set)(rate); !s.ok()) return s;
    config_ = std::move(c);
    return absl::OkStatus();
  }

  void loop() {
    engine_thread_ = this;
    for (;;) {
      std::int64_t ms;
      {
        detail::MutexLock l(&mu_);
        ms = config_.epoch_ms;
      }
      {
        std::unique_lock<std::mutex> l(thread_mu_);
        if (thread_cv_.wait_for(l, std::chrono::milliseconds(ms), [this] { return stopping_; }))
          return;
      }
      (void)step();
    }
  }

  // Asks the backend where the region's pages are and updates the page words
  // (one query per unit: a 2 MiB unit by its first page). In batches of
  // 64 Ki units, so a terabyte region needs no gigabyte of scratch. Units not
  // present yet keep the belief the registry gave them (`initially_fast`),
  // except that no more of them are believed fast than the fast node(s) have
  // free, in address order: first touch cannot put more there. A region
  // larger than the fast tier registered before use (a buffer pool, an
  // embedding table) otherwise read as all fast, in stats().fast_pages and in
  // the policy's budget, and its untouched pages were tried as demotion
  // victims one by one (each an -ENOENT).
  // Regions registered one after another before any is touched share the
  // free memory: what earlier ones were believed to take of it since the
  // last epoch (unborn_fast_pages_) is not offered again. Each epoch starts
  // from the node's free memory anew.
  // The queries run outside mu_, so epochs go on meanwhile, but they move
  // none of the region's units (placing_): a move between a unit's query and
  // its set_fast would be overwritten with the stale answer. Holding them is
  // simpler than finding the units moved and asking again, and only delays
  // their first moves until the query is done. If a query fails, the units
  // not yet asked keep the belief register_region() gave them, and a round
  // of checks (start_verify_round) corrects those that are active or
  // believed fast; an idle unit believed slow but on the fast tier is not
  // asked, as after the kernel's own moves.
  void refresh_placement(const Region& r, bool initially_fast) {
    constexpr std::size_t kBatch = std::size_t{1} << 16;
    std::vector<void*> pages;
    std::vector<int> status;
    NodeSet fast;
    std::uint64_t room = begin_placement(r.id, initially_fast, fast);
    const std::uint64_t offered = room;
    bool unknown = false;
    for (std::uintptr_t next = r.begin; next < r.end;) {
      pages.clear();
      for (; next < r.end && pages.size() < kBatch; next += tracker_.unit_bytes(next))
        pages.push_back(reinterpret_cast<void*>(next));
      status.assign(pages.size(), 0);
      if (!backend_->query(pages, absl::MakeSpan(status)).ok()) {
        unknown = true;
        break;
      }
      for (std::size_t i = 0; i < pages.size(); ++i) {
        const auto a = reinterpret_cast<std::uintptr_t>(pages[i]);
        if (status[i] >= 0) {
          tracker_.set_fast(a, fast.contains(status[i]));
        } else if (initially_fast) {
          const std::uint64_t n = tracker_.unit_bytes(a) / kPageSize;
          if (room >= n)
            room -= n;
          else
            tracker_.set_fast(a, false);
        }
      }
    }
    detail::MutexLock l(&mu_);
    unborn_fast_pages_ += offered - room;
    placing_.erase(r.id);
    if (unknown) start_verify_round();
  }

  // refresh_placement()'s start, under mu_ (so an epoch that planned moves
  // of the region has made them before the first query): holds the region's
  // units still (placing_), sets `fast` to the fast nodes and returns the
  // room for its unborn pages: the fast node(s)' free pages (unbounded if
  // none reports it) less what regions registered before took of it.
  std::uint64_t begin_placement(RegionId id, bool initially_fast, NodeSet& fast) {
    detail::MutexLock lock(&mu_);
    placing_.insert(id);
    fast = config_.fast_nodes;
    if (!initially_fast) return 0;
    Epoch e;
    fast_memory(e);
    const std::uint64_t free =
        e.node_total > 0 ? e.node_free / kPageSize : std::numeric_limits<std::uint64_t>::max();
    return free - std::min(free, unborn_fast_pages_);
  }

  // The engine's sink: turns one source's observations into heat
  // (SourceEstimator) and keeps the sampled evidence (see
  // add_hotness_source). Lives for one collect(), under mu_.
  class EstimatingSink final : public HotnessSink {
   public:
    EstimatingSink(Engine& e, SourceEstimator est) : e_(e), est_(est) {}
    void record(std::uintptr_t page, std::uint32_t weight, bool) override {
      e_.tracker_.record_access(reinterpret_cast<const void*>(page), 1, weight);
    }
    void observe(const SourceObservation& seen) override ABSL_NO_THREAD_SAFETY_ANALYSIS {
      SourceObservation o = seen;
      // A 4 KiB page of a chunk the engine made one 2 MiB unit after the
      // source began to watch it in pages (merge_carried): it stands for
      // its unit, and one page not accessed says little of the other 511.
      const std::uintptr_t unit = align_down(o.page, e_.tracker_.unit_bytes(o.page));
      if (unit != o.page) {
        o.page = unit;
        o.watch_cut = o.watch_cut || !o.accessed;
      }
      const bool timed = est_ == SourceEstimator::kRate && o.watched_ns > 0;
      if (!o.accessed) {
        if (!timed) return;
        // Not the first of its group to be accessed: counts as 0 in the
        // fast tier's mean (the group's first takes the whole group's rate),
        // says nothing alone.
        if (o.watch_cut) {
          e_.evidence_ = true;
          std::atomic<std::uint16_t>* w = e_.tracker_.word(o.page);
          if (w != nullptr && PageWord::fast(w->load(std::memory_order_relaxed))) ++fast_seen_;
          return;
        }
        e_.evidence_ = true;
        std::atomic<std::uint16_t>* w = e_.tracker_.word(o.page);
        if (w == nullptr) return;
        std::uint16_t old = w->load(std::memory_order_relaxed);
        if (!PageWord::tracked(old)) return;
        // Watched a whole epoch and not touched: its rate is below one access
        // per watch, and the heat it holds is history.
        const auto cold =
            static_cast<std::uint16_t>(PageWord::with_heat(old, 0) & ~PageWord::kSeasoned);
        if (cold != old) w->compare_exchange_strong(old, cold, std::memory_order_relaxed);
        e_.seen_hot_.erase(o.page);
        if (PageWord::fast(old)) {  // a victim worth knowing (add_seen_cold)
          e_.seen_cold_[o.page] = e_.epoch_;
          ++fast_seen_;
        }
        return;
      }
      const std::uint32_t h = observation_heat(o, est_, PageWord::kMaxHeat);
      e_.tracker_.record_access(reinterpret_cast<const void*>(o.page), 1, h);
      if (o.birth) e_.born_[o.page] = e_.epoch_;
      if (!timed || o.latency_ns < 0) return;
      e_.evidence_ = true;
      e_.born_.erase(o.page);
      e_.seen_cold_.erase(o.page);
      e_.seen_hot_[o.page] = e_.epoch_;
      // A rate, not a burst: the burst rule must not discount it.
      std::atomic<std::uint16_t>* w = e_.tracker_.word(o.page);
      if (w == nullptr) return;
      std::uint16_t old = w->load(std::memory_order_relaxed);
      if (PageWord::tracked(old) && PageWord::heat(old) > 0 && !PageWord::seasoned(old))
        w->compare_exchange_strong(old, static_cast<std::uint16_t>(old | PageWord::kSeasoned),
                                   std::memory_order_relaxed);
      if (PageWord::fast(old)) {
        ++fast_seen_;
        fast_heat_ += h;
      }
    }
    // Fast pages watched and their heat sum (kRate observations).
    std::uint64_t fast_seen_ = 0;
    double fast_heat_ = 0;

   private:
    Engine& e_;
    SourceEstimator est_;
  };

  // The registered ranges, as sources see them: each region's spans in the
  // units the tracker has now. A chunk whose unit changed since registration
  // (reshaped_: a 2 MiB unit that fell back to 4 KiB, 4 KiB units merged
  // into one) is cut out at its size, so a source watches what moves: one
  // watched 2 MiB unit over 512 pages would credit what it sees to the
  // first. O(regions + reshaped chunks).
  std::vector<TrackedRange> tracked_ranges() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<TrackedRange> ranges;
    for (const auto& r : registry_.snapshot()) {
      const std::size_t first = ranges.size();
      auto add = [&](std::uintptr_t b, std::uintptr_t e, std::size_t unit) {
        if (ranges.size() > first && ranges.back().end == b && ranges.back().granularity == unit)
          ranges.back().end = e;
        else
          ranges.push_back({b, e, unit});
      };
      r->for_each_span([&](std::uintptr_t b, std::uintptr_t e, std::size_t unit) {
        for (auto c = reshaped_.lower_bound(b); c != reshaped_.end() && *c + kHugePageSize <= e;
             ++c) {
          const std::size_t now = tracker_.unit_bytes(*c);
          if (now == unit) continue;
          if (b < *c) add(b, *c, unit);
          add(*c, *c + kHugePageSize, now);
          b = *c + kHugePageSize;
        }
        if (b < e) add(b, e, unit);
      });
    }
    return ranges;
  }
  // Runs source i's collect() into `sink` (null: the engine's own, for a
  // source just added: it has nothing to report and starts watching) and
  // copies its counters into the stats.
  void collect_source(std::size_t i, EstimatingSink* sink, const std::vector<TrackedRange>& ranges)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EstimatingSink own(*this, sources_[i].estimator);
    SourceBudget budget = sources_[i].budget;
    budget.epoch_ns = config_.epoch_ms * kNsPerMs;
    absl::Status st = sources_[i].source->collect(ranges, sink ? *sink : own, budget);
    HotnessSourceStats h = sources_[i].source->stats();
    stats_.hotness_sources.resize(sources_.size());
    HotnessSourceCounters& c = stats_.hotness_sources[i];
    c = {std::move(h.name), h.cpu_ns,        h.handler_ns,   h.pages_sampled,
         h.pages_found,     h.pages_written, h.errors,       std::move(h.last_error),
         h.budget_ns,       h.ns_per_sample, h.last_sampled, h.app_ns};
    if (!st.ok() && c.last_error.empty()) c.last_error = std::string(st.message());
  }
  void collect_source(std::size_t i, EstimatingSink* sink) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    collect_source(i, sink, tracked_ranges());
  }

  // Tells every hotness source the ranges grew (HotnessSource::watch).
  void watch_ranges() {
    if (!has_sources_.load(std::memory_order_acquire)) return;
    detail::MutexLock lock(&mu_);
    const std::vector<TrackedRange> ranges = tracked_ranges();
    for (SourceEntry& s : sources_) s.source->watch(ranges);
  }

  // Lets every hotness source report what it saw since the last epoch.
  void collect_sources() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (sources_.empty()) return;
    stats_.tracking_cpu_ns = 0;
    std::uint64_t fast_seen = 0;
    double fast_heat = 0;
    std::vector<TrackedRange> ranges = tracked_ranges();
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      EstimatingSink sink(*this, sources_[i].estimator);
      collect_source(i, &sink, ranges);
      fast_seen += sink.fast_seen_;
      fast_heat += sink.fast_heat_;
      stats_.tracking_cpu_ns += stats_.hotness_sources[i].cpu_ns;
    }
    // The fast tier's mean sampled rate, a moving average over epochs.
    if (fast_seen > 0) {
      const double m = fast_heat / static_cast<double>(fast_seen);
      fast_rate_ = fast_rate_seen_ ? fast_rate_ + 0.25 * (m - fast_rate_) : m;
      fast_rate_seen_ = true;
    }
    stats_.sampled_fast_rate = fast_rate_;
    if (epoch_ % 16 == 0) {
      auto old = [&](const auto& kv) { return epoch_ - kv.second > kColdEvidenceEpochs; };
      absl::erase_if(seen_cold_, old);
      absl::erase_if(seen_hot_, old);
      absl::erase_if(born_, old);
    }
  }

  // --- The epoch, as named stages. Each runs under mu_, in this order:
  //   forget       per-page state of regions unregistered since (forget_removed)
  //   relocate     where units a failed move() left unknown are (relocate_unlocated)
  //   sources      hotness sources report what they saw (collect_sources)
  //   begin_epoch  the context: budget, the fast nodes' memory, thresholds
  //   collect      candidates and the heat histogram from what changed
  //   plan         demotions (watermarks, tags), promotions, swaps
  //   limit        the rate limit keeps or defers each step whole
  //   apply        migrate, accounting for every page
  //   account      stats, move history, the epoch counter
  // Scratch vectors live in scratch_ and are reused: an epoch allocates
  // nothing once they have grown.

  struct Step {
    const Candidate* out = nullptr;  // demotion
    const Candidate* in = nullptr;   // promotion
    std::uint64_t pages() const { return (out ? out->pages : 0) + (in ? in->pages : 0); }
  };
  struct EpochScratch {
    std::vector<Candidate> promote, demote, demote_now, promote_now;
    std::vector<Step> plan;
    std::vector<std::shared_ptr<Region>> regions;
    std::vector<void*> pages, tails;
    std::vector<std::uint32_t> unit_pages;
    std::vector<std::size_t> tail_of;
    std::vector<NodeId> nodes;
    std::vector<int> status, tail_before, tail_status;
    std::vector<Candidate> rest;  // pages of 2 MiB units that fell back
    // Huge pages: a page beside each 4 KiB unit's (query_buddies), the unit
    // it is beside, where it was before the move and after.
    std::vector<void*> buddies;
    std::vector<std::size_t> buddy_of;
    std::vector<int> buddy_before, buddy_after;
    // Units held until Policy::refine_thresholds() sets the thresholds.
    std::vector<Candidate> held_promote, held_demote;
  };
  struct Epoch {
    std::int64_t t0 = 0;
    std::uint64_t number = 0;
    double decay = 0.5;
    std::uint32_t decay_num = 128;  // decay * 256
    EpochContext ctx;
    Thresholds th;
    std::uint64_t budget = 0, node_total = 0, node_free = 0;
    double node_reserve = 0;  // bytes promotions leave free (reserve_bytes)
    bool visits = false, moves = true;
    bool refine = false;          // thresholds set after collect() (Policy::refines_thresholds)
    int verify_stripe = -1;       // asked this epoch (begin_verify); -1: none
    std::size_t verify_left = 0;  // units it may still ask
    std::uint32_t residency = 0;
    std::uint32_t burst_heat = 0;      // bursts sampled above it (PolicyTraits::burst_heat)
    double reversals_left = INFINITY;  // pages (Policy::max_reversal_share)
    double reversal_margin = 1;        // Policy::reversal_margin
    double want_demote = 0, room = 0;
    double over_budget = 0;  // pages believed fast beyond the budget: these go, in use or not
    bool idle_room = false;  // the other demotions make a policy's room: idle units only
    std::uint64_t deferred = 0;
    std::uint32_t aged(std::uint32_t h) const { return (h * decay_num) >> 8; }
  };

  absl::Status run_epoch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    forget_removed();
    relocate_unlocated();
    check_open_carries();
    collect_sources();
    Epoch e = begin_epoch();
    collect(e);
    policy_->end_epoch(e.ctx, *hist_);
    if (e.refine) refine(e);
    plan(e);
    limit(e);
    apply(e);
    account(e);
    return absl::OkStatus();
  }

  // Drops the per-page state (move history, evidence, births, units a
  // failed move() left unknown, which count as failed, the policy's) of
  // regions unregistered since the last epoch: it would leak under map/unmap
  // churn, and a region registered later at the same address would inherit
  // it (a reversal counted as ping-pong). O(that state), only after an
  // unregistration.
  void forget_removed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    RegionRegistry::Removed gone = registry_.take_removed();
    if (gone.ranges.empty() && !gone.overflowed) return;
    std::sort(gone.ranges.begin(), gone.ranges.end());
    // Merged: a range removed, re-registered in part and removed again is
    // listed twice, overlapping.
    std::size_t n = 0;
    for (const auto& r : gone.ranges) {
      if (n > 0 && r.first <= gone.ranges[n - 1].second)
        gone.ranges[n - 1].second = std::max(gone.ranges[n - 1].second, r.second);
      else
        gone.ranges[n++] = r;
    }
    gone.ranges.resize(n);
    auto is_gone = [&](std::uintptr_t a) {
      if (gone.overflowed) {  // every page no longer tracked
        const std::atomic<std::uint16_t>* w = tracker_.word(a);
        return w == nullptr || !PageWord::tracked(w->load(std::memory_order_relaxed));
      }
      auto it = std::upper_bound(gone.ranges.begin(), gone.ranges.end(),
                                 std::make_pair(a, std::numeric_limits<std::uintptr_t>::max()));
      return it != gone.ranges.begin() && a < std::prev(it)->second;
    };
    auto by_key = [&](const auto& kv) { return is_gone(kv.first); };
    absl::erase_if(history_, by_key);
    absl::erase_if(seen_cold_, by_key);
    absl::erase_if(seen_hot_, by_key);
    absl::erase_if(born_, by_key);
    fail_unlocated_if([&](const Unlocated& u) { return is_gone(u.addr); });
    absl::erase_if(reshaped_, is_gone);
    std::erase_if(open_carries_, [&](const OpenCarry& c) {
      for (std::size_t p = 0; p < HotnessTracker::kPagesPerChunk; ++p)
        if (is_gone(c.chunk + p * kPageSize)) return true;
      return false;
    });
    policy_->forget_pages(is_gone);
  }

  Epoch begin_epoch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    unborn_fast_pages_ = 0;
    Epoch e;
    e.t0 = clock_->now_ns();
    e.number = epoch_;
    e.decay = config_.decay();
    e.decay_num = static_cast<std::uint32_t>(std::lround(e.decay * 256));
    fast_memory(e);
    EpochContext& ctx = e.ctx;
    ctx.epoch = e.number;
    ctx.now_ns = e.t0;
    ctx.epoch_ns = config_.epoch_ms * kNsPerMs;
    ctx.fast_budget_pages = e.budget / kPageSize;
    ctx.fast_used_pages = epoch_ > 0 ? last_hist_->fast_pages : 0;
    ctx.fast_free_pages =
        std::min(e.node_free / kPageSize,
                 ctx.fast_budget_pages - std::min(ctx.fast_budget_pages, ctx.fast_used_pages));
    ctx.decay = e.decay;
    ctx.last = epoch_ > 0 ? last_hist_.get() : nullptr;
    ctx.seen_pages = tracker_.seen_pages();
    ctx.heat_is_counts = !has_sources_.load(std::memory_order_relaxed);
    const double free_now = static_cast<double>(e.node_free / kPageSize);
    if (free_after_ > free_now)
      ctx.taken_fast_pages = static_cast<std::uint64_t>(free_after_ - free_now);
    if (free_after_ > reserve_pages(e))
      ctx.offered_room_pages = static_cast<std::uint64_t>(free_after_ - reserve_pages(e));
    observe_moves(e);
    e.th = policy_->begin_epoch(ctx);
    // The policy may age by something other than time (automatic cools by
    // access volume); the histogram and thresholds stay in heat units.
    e.decay_num = static_cast<std::uint32_t>(std::lround(policy_->aging(ctx) * 256));
    e.visits = policy_->visits_pages();
    e.moves = policy_->moves_untagged_pages() && !config_.slow_nodes.empty();
    e.residency = policy_->min_residency_epochs();
    e.burst_heat = policy_->traits().burst_heat;
    // Policy::max_reversal_share: the pages that may still undo a recent
    // move, from every move so far (those planned now are not counted yet).
    if (const double share = policy_->max_reversal_share(); share < 1)
      e.reversals_left = share * static_cast<double>(stats_.promoted_pages + stats_.demoted_pages) -
                         static_cast<double>(stats_.pingpong_pages);
    e.reversal_margin = policy_->reversal_margin();
    e.refine = !e.visits && policy_->refines_thresholds();
    if (epoch_ > 0) demote_over_budget(e, *last_hist_);
    return e;
  }

  // The fast-tier pages the engine's units hold: believed fast, but at most
  // what the fast node(s) really hold (pages registered and not yet touched
  // are believed fast and hold nothing, and demoting for them took hot
  // pages once the absent ones ran out).
  static double fast_used(const Epoch& e, const HeatHistogram& h) {
    return std::min(static_cast<double>(h.fast_pages),
                    static_cast<double>((e.node_total - e.node_free) / kPageSize));
  }
  // A fast tier over its budget (the kernel promoted pages of a region that
  // shares NUMA balancing, or the budget was lowered) is brought back to it
  // even where no resident is cold: the demotion threshold rises until the
  // fast pages at or below it cover the excess, so the coldest go first.
  // Policies demote only residents colder than their own threshold, and
  // warm pages over the budget stayed there for ever. O(kBuckets).
  static void demote_over_budget(Epoch& e, const HeatHistogram& h) {
    if (e.visits) return;
    const double excess = fast_used(e, h) - static_cast<double>(e.budget / kPageSize);
    double below = 0;
    for (std::uint32_t t = 0; excess > 0 && t < HeatHistogram::kBuckets; ++t) {
      below += static_cast<double>(h.fast[t]);
      if (below < excess) continue;
      e.th.demote_heat = std::max(e.th.demote_heat, t);
      return;
    }
  }

  // Policy::refine_thresholds: the epoch's thresholds from the histogram
  // collect() just built; the held units they pass become candidates.
  void refine(Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EpochScratch& s = scratch_;
    e.th = policy_->refine_thresholds(e.ctx, *hist_, e.th);
    demote_over_budget(e, *hist_);
    for (const auto& c : s.held_promote)
      if (c.heat >= e.th.promote_heat) s.promote.push_back(c);
    for (const auto& c : s.held_demote)
      if (c.heat <= e.th.demote_heat) s.demote.push_back(c);
  }

  // Finds the region of an address in the epoch's snapshot: the last one
  // found is cached, so a chunk's units cost one comparison each.
  class RegionCursor {
   public:
    explicit RegionCursor(const std::vector<std::shared_ptr<Region>>& r) : r_(r) {}
    const Region* find(std::uintptr_t a) {
      if (last_ && a >= last_->begin && a < last_->end) return last_;
      auto it = std::upper_bound(r_.begin(), r_.end(), a,
                                 [](std::uintptr_t x, const auto& r) { return x < r->begin; });
      if (it == r_.begin()) return nullptr;
      const Region* r = std::prev(it)->get();
      return a < r->end ? (last_ = r) : nullptr;
    }

   private:
    const std::vector<std::shared_ptr<Region>>& r_;
    const Region* last_ = nullptr;
  };

  // Candidates and the histogram. Policies that visit pages (the kernel
  // model's scanner) see every tracked unit; the others see what changed
  // (HotnessTracker::collect_warm) plus the units of hot- and cold-tagged
  // regions. Cold fast pages are found later, by plan(), only as many as
  // needed.
  void collect(Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EpochScratch& s = scratch_;
    s.promote.clear();
    s.demote.clear();
    s.held_promote.clear();
    s.held_demote.clear();
    *hist_ = HeatHistogram();
    registry_.snapshot(s.regions);
    // Units of regions still being placed are candidates of no list: every
    // move is planned from a unit's region in this snapshot.
    if (!placing_.empty())
      std::erase_if(s.regions, [&](const auto& r) { return placing_.contains(r->id); });
    RegionCursor regions(s.regions);
    begin_verify(e);
    // Aged from the judged heat: a burst keeps only what the policy grants
    // it, and the seasoned bit records that heat is left.
    auto aged = [&](std::uint32_t h, bool seasoned) {
      return e.aged(std::min(h, policy_->judged_heat(h, seasoned, 0)));
    };
    check_bursts(e);
    if (e.visits) {
      for (const auto& r : s.regions) {
        tracker_.sweep(
            r->begin, r->end,
            [&](std::uintptr_t a, std::uint16_t w, std::uint32_t pages) {
              note_unplaced(w, a, PageWord::heat(w), pages);
              note_verify(e, w, a, PageWord::heat(w), pages);
              if (PageWord::heat(w) > 0) hist_->add(PageWord::heat(w), PageWord::fast(w), pages);
              if (!tagged_candidate(*r, a, w, pages) && e.moves &&
                  r->tag.load(std::memory_order_relaxed) == RegionTag::automatic)
                policy_candidate(e, a, w, pages);
            },
            aged);
      }
    } else {
      tracker_.collect_warm(
          [&](std::uintptr_t a, std::uint16_t w, std::uint32_t pages) {
            const std::uint32_t h = judged_heat(e, a, w);
            if (h > 0) hist_->add(h, PageWord::fast(w), pages);
            if (!PageWord::seasoned(w) && PageWord::heat(w) > e.burst_heat)
              sample_burst(a, PageWord::heat(w));
            note_unplaced(w, a, h, pages);
            note_verify(e, w, a, h, pages);
            const Region* r = regions.find(a);
            if (r != nullptr && e.moves &&
                r->tag.load(std::memory_order_relaxed) == RegionTag::automatic)
              threshold_candidate(e, *r, a, w, h, pages);
          },
          aged);
      for (const auto& r : s.regions) {
        RegionTag tag = r->tag.load(std::memory_order_relaxed);
        if (tag != RegionTag::hot && tag != RegionTag::cold) continue;
        tracker_.sweep(
            r->begin, r->end,
            [&](std::uintptr_t a, std::uint16_t w, std::uint32_t pages) {
              tagged_candidate(*r, a, w, pages);
            },
            HotnessTracker::kNoAging);
      }
    }
    verify_cold(e);
    end_verify(e);
    learn_placement(e);
    hist_->finalize(tracker_.fast_pages(), tracker_.slow_pages());
    const std::uint64_t seen = tracker_.seen_pages();
    e.ctx.born_pages = seen > seen_last_ ? seen - seen_last_ : 0;
    seen_last_ = seen;
  }

  // Tells the policy what the moves of the last kPayoffEpochs epochs won
  // and lost in the epoch just ended, and how many of that epoch's moves
  // undid an earlier one (Policy::observe_moves). Costs O(moves in the
  // ping-pong window), the size of history_.
  void observe_moves(const Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::uint64_t up = 0, up_used = 0, down = 0, down_used = 0;
    for (const auto& [a, m] : history_) {
      if (e.number <= m.epoch || e.number - m.epoch > kPayoffEpochs) continue;
      const std::atomic<std::uint16_t>* w = tracker_.word(a);
      const std::uint16_t v = w != nullptr ? w->load(std::memory_order_relaxed) : 0;
      if (!PageWord::tracked(v) || PageWord::fast(v) != m.to_fast) continue;  // moved again
      const bool used = PageWord::touched(v, static_cast<std::uint32_t>(e.number));
      (m.to_fast ? up : down) += 1;
      (m.to_fast ? up_used : down_used) += used ? 1 : 0;
    }
    policy_->observe_moves(up, up_used, down, down_used, reversed_);
    reversed_ = 0;
  }

  // Units whose heat is all from this epoch: touched for the first time,
  // or again after going cold. The kernel placed them at that touch (in a
  // full fast node a newborn lands slow; a region's untouched pages are
  // only assumed where register_region says) or may have moved them since
  // (its own demotion), so the belief may be wrong. learn_placement() asks
  // where they are, at most kPlacementBatch units an epoch.
  void note_unplaced(std::uint16_t w, std::uintptr_t a, std::uint32_t h, std::uint32_t pages)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (PageWord::seasoned(w) || PageWord::heat(w) == 0 || config_.slow_nodes.empty()) return;
    if (unplaced_.size() >= kPlacementBatch) return;
    unplaced_.push_back(reinterpret_cast<void*>(a));
    unplaced_info_.push_back({a, h, pages, PageWord::fast(w)});
  }
  // The kernel's own moves (Backend::kernel_moved_pages): after they rise,
  // collect() asks where its units are, for one round of them after the
  // last rise: of the units it visits, fast or slow, one stripe an epoch (at
  // most kVerifyBatch), a different one each epoch; of the idle units
  // believed fast, up to kVerifyBatch from the fast tier's clock
  // (verify_cold). note_unplaced() asks only about units that just became
  // active: a hot page the kernel demoted is never one, and an idle one it
  // demoted (what its reclaim takes first) kept its place in the budget, so
  // warm pages waited for swaps. Active slow ones are asked too: the kernel
  // promotes them where a region shares NUMA balancing, and believed slow
  // they took fast memory the budget did not count. Idle slow ones are not:
  // the kernel promotes only what is accessed. Stripes by a hash of the
  // address: the tracker visits units in no fixed order. O(1) here.
  void begin_verify(Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::optional<std::uint64_t> moved;
    if (!kernel_read_ns_ || e.t0 - *kernel_read_ns_ >= kKernelMovesPeriodMs * kNsPerMs) {
      moved = backend_->kernel_moved_pages();
      kernel_read_ns_ = e.t0;
    }
    if (moved && kernel_moved_ && *moved > *kernel_moved_) {
      stats_.kernel_moved_pages += *moved - *kernel_moved_;
      start_verify_round();
    }
    if (moved) kernel_moved_ = moved;
    // A round, plus one epoch: the first sizes the stripes.
    if (verifying_ && verify_next_ - verify_from_ > verify_rounds_) verifying_ = false;
    if (!verifying_ || config_.slow_nodes.empty()) return;
    e.verify_stripe = static_cast<int>(verify_next_++ % verify_stripes_);
    e.verify_left = kVerifyBatch;
    verify_seen_ = 0;
  }
  // Beliefs may be wrong where nobody looked: the kernel moved pages, or a
  // registration's placement query failed. From the next epoch, a round of
  // checks (begin_verify).
  void start_verify_round() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    verify_from_ = verify_next_;
    verifying_ = true;
  }
  // A visited unit of the epoch's stripe joins the query, unless
  // note_unplaced() took it (heat all from this epoch).
  void note_verify(Epoch& e, std::uint16_t w, std::uintptr_t a, std::uint32_t h,
                   std::uint32_t pages) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (e.verify_stripe < 0 || (!PageWord::seasoned(w) && PageWord::heat(w) > 0)) return;
    ++verify_seen_;
    const std::uint64_t stripe = (a / kPageSize * 0x9e3779b97f4a7c15ULL >> 32) % verify_stripes_;
    if (stripe != static_cast<std::uint64_t>(e.verify_stripe) || e.verify_left == 0 ||
        unplaced_.size() >= kPlacementBatch)
      return;
    --e.verify_left;
    ++stats_.placement_verified;
    unplaced_.push_back(reinterpret_cast<void*>(a));
    unplaced_info_.push_back({a, h, pages, PageWord::fast(w)});
  }
  // The idle units believed fast that collect() did not visit, from the
  // fast tier's clock (HotnessTracker::scan_fast_cold): kVerifyBatch looked
  // at an epoch, so a round of the check goes once round the fast tier.
  void verify_cold(Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (e.verify_stripe < 0 || e.visits) return;
    tracker_.scan_fast_cold(kVerifyBatch,
                            [&](std::uintptr_t a, std::uint16_t, std::uint32_t pages) {
                              if (unplaced_.size() >= kPlacementBatch) return false;
                              ++stats_.placement_verified;
                              unplaced_.push_back(reinterpret_cast<void*>(a));
                              unplaced_info_.push_back({a, 0, pages, true});
                              return true;
                            });
  }
  // Stripes for the next epochs: each holds half of kVerifyBatch of the
  // units seen this one on average, so the hash's uneven stripes still fit;
  // and a round: the stripes, or the clock's laps over the fast tier.
  void end_verify(const Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (e.verify_stripe < 0) return;
    verify_stripes_ =
        std::max<std::uint64_t>(1, (2 * verify_seen_ + kVerifyBatch - 1) / kVerifyBatch);
    const std::uint64_t laps =
        e.visits ? 0 : (tracker_.fast_units() + kVerifyBatch - 1) / kVerifyBatch;
    verify_rounds_ = std::max(verify_stripes_, laps);
  }

  // One placement query (as refresh_placement) for the units
  // note_unplaced() kept, after the epoch's visit. Each belief found wrong
  // is corrected in the tracker and the histogram, and the unit's candidacy
  // is judged again where it is (a newborn believed fast that landed slow
  // may be promoted, one believed slow that landed fast may give way), so a
  // newborn counts where it is from its first epoch. O(units kept), plus
  // O(candidates) when a belief was wrong. A failed query changes nothing.
  // NOTE: policies that visit every unit (the kernel model) see a corrected
  // unit as a candidate from the next epoch: their visit is not repeated.
  void learn_placement(const Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (unplaced_.empty()) return;
    placed_.assign(unplaced_.size(), -1);
    std::vector<Unplaced>& wrong = unplaced_info_;  // reused for the corrected ones
    std::size_t corrected = 0;
    if (backend_->query(unplaced_, absl::MakeSpan(placed_)).ok()) {
      for (std::size_t i = 0; i < unplaced_.size(); ++i) {
        const Unplaced u = wrong[i];
        const bool fast = placed_[i] >= 0 && config_.fast_nodes.contains(placed_[i]);
        if (placed_[i] < 0 || fast == u.fast || !tracker_.set_fast(u.addr, fast)) continue;
        wrong[corrected++] = u;
        if (u.heat == 0) continue;  // not in the histogram's buckets
        (fast ? hist_->slow : hist_->fast)[u.heat] -= u.pages;
        (fast ? hist_->fast : hist_->slow)[u.heat] += u.pages;
      }
    }
    wrong.resize(corrected);
    unplaced_.clear();
    if (corrected > 0) recandidate(e, wrong);
    wrong.clear();
  }
  // learn_placement()'s second half: drops the moves planned on wrong
  // beliefs (a promotion of a fast unit, a demotion of a slow one), then
  // judges the corrected units again.
  void recandidate(const Epoch& e, const std::vector<Unplaced>& corrected)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stats_.placement_corrected += corrected.size();
    EpochScratch& s = scratch_;
    auto word = [&](std::uintptr_t a) {
      const std::atomic<std::uint16_t>* w = tracker_.word(a);
      return w != nullptr ? w->load(std::memory_order_relaxed) : std::uint16_t{0};
    };
    auto slow = [&](const Candidate& c) { return !PageWord::fast(word(c.addr)); };
    auto fast = [&](const Candidate& c) { return PageWord::fast(word(c.addr)); };
    std::erase_if(s.promote, fast);
    std::erase_if(s.held_promote, fast);
    std::erase_if(s.demote, slow);
    std::erase_if(s.held_demote, slow);
    if (e.visits) return;
    RegionCursor regions(s.regions);
    for (const Unplaced& c : corrected) {
      const Region* r = regions.find(c.addr);
      if (r == nullptr) continue;
      const std::uint16_t w = word(c.addr);
      if (tagged_candidate(*r, c.addr, w, c.pages) || !e.moves) continue;
      threshold_candidate(e, *r, c.addr, w, c.heat, c.pages);
    }
  }

  // Reservoir-samples units whose heat is all from this epoch (bursts);
  // check_bursts() asks next epoch which were touched again.
  void sample_burst(std::uintptr_t a, std::uint32_t heat) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++bursts_seen_;
    if (bursts_.size() < kBurstSample) {
      bursts_.push_back({a, heat});
      return;
    }
    burst_rng_ = burst_rng_ * 6364136223846793005ULL + 1442695040888963407ULL;
    const std::uint64_t k = (burst_rng_ >> 33) % bursts_seen_;
    if (k < kBurstSample) bursts_[k] = {a, heat};
  }
  void check_bursts(const Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (bursts_.empty()) return;
    outcomes_.clear();
    for (const auto& [a, heat] : bursts_) {
      const std::atomic<std::uint16_t>* w = tracker_.word(a);
      const std::uint16_t v = w != nullptr ? w->load(std::memory_order_relaxed) : 0;
      outcomes_.push_back({heat, PageWord::tracked(v) &&
                                     PageWord::touched(v, static_cast<std::uint32_t>(e.number))});
    }
    policy_->observe_bursts(outcomes_);
    bursts_.clear();
    bursts_seen_ = 0;
  }

  // Region tags override every policy: hot promotes, cold demotes, pinned
  // never moves. Returns whether the region's tag decided.
  bool tagged_candidate(const Region& r, std::uintptr_t a, std::uint16_t w, std::uint32_t pages)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    RegionTag tag = r.tag.load(std::memory_order_relaxed);
    if (tag == RegionTag::automatic) return false;
    if (config_.slow_nodes.empty()) return true;
    const bool fast = PageWord::fast(w);
    const std::uint32_t h = PageWord::heat(w);
    if (tag == RegionTag::hot && !fast)
      scratch_.promote.push_back({PageWord::kMaxHeat + 1 + h, h, a, pages});
    else if (tag == RegionTag::cold && fast)
      scratch_.demote.push_back({PageWord::kMaxHeat + 1, h, a, pages});
    return true;
  }

  // An untagged unit, by its judged heat `h`, against the heat thresholds
  // (the region's own promotion threshold first).
  void threshold_candidate(const Epoch& e, const Region& r, std::uintptr_t a, std::uint16_t w,
                           std::uint32_t h, std::uint32_t pages)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const bool fast = PageWord::fast(w);
    double ovr = r.threshold_override.load(std::memory_order_relaxed);
    if (e.refine && ovr < 0) {  // judged by refine() once the thresholds are set
      if (!fast && h > 0)
        scratch_.held_promote.push_back({h, h, a, pages});
      else if (fast && !(h == 0 && seen_cold(e, a)))
        scratch_.held_demote.push_back({PageWord::kMaxHeat - h, h, a, pages, idle_epochs(e, a, w)});
      return;
    }
    std::uint32_t promote_heat = ovr >= 0 ? heat_for_rate(ovr, e.decay) : e.th.promote_heat;
    if (!fast && h >= promote_heat && h > 0)
      scratch_.promote.push_back({h, h, a, pages});
    else if (fast && h <= e.th.demote_heat && !(h == 0 && seen_cold(e, a)))
      scratch_.demote.push_back({PageWord::kMaxHeat - h, h, a, pages, idle_epochs(e, a, w)});
  }

  // Whole epochs since the unit's last access, from its word's stamp: 14 or
  // 15 means at least 14 (PageWord::held_idle).
  static std::uint32_t idle_epochs(const Epoch& e, std::uint16_t w) {
    return PageWord::idle(w, static_cast<std::uint32_t>(e.number));
  }
  // The same for unit `a`, except that a unit whose heat is sampled evidence
  // (seen hot within kColdEvidenceEpochs, not seen cold since) is not idle:
  // nobody watched it since, so its silence says nothing (a source that sees
  // it cold takes its heat).
  std::uint32_t idle_epochs(const Epoch& e, std::uintptr_t a, std::uint16_t w) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (evidence_ && !seen_hot_.empty()) {
      auto it = seen_hot_.find(a);
      if (it != seen_hot_.end() && e.number - it->second <= kColdEvidenceEpochs) return 0;
    }
    return idle_epochs(e, w);
  }
  // A unit's heat as the policy judges it (Policy::judged_heat), never
  // above the heat counted.
  std::uint32_t judged_heat(const Epoch& e, std::uintptr_t a, std::uint16_t w) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return std::min(
        PageWord::heat(w),
        policy_->judged_heat(PageWord::heat(w), PageWord::seasoned(w), idle_epochs(e, a, w)));
  }

  // An untagged unit as the visiting policy judges it.
  void policy_candidate(const Epoch& e, std::uintptr_t a, std::uint16_t w, std::uint32_t pages)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    PageVerdict v = policy_->visit(a, w, e.ctx);
    const std::uint32_t h = PageWord::heat(w);
    if (v.action == PageVerdict::kPromote)
      scratch_.promote.push_back({v.priority, h, a, pages});
    else if (v.action == PageVerdict::kDemoteCandidate)
      scratch_.demote.push_back({v.priority, h, a, pages});
  }

  // Whether moving `a` towards `to_fast` would undo its last move within the
  // ping-pong window.
  bool reverses(const Epoch& e, std::uintptr_t a, bool to_fast) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = history_.find(a);
    return it != history_.end() && it->second.to_fast != to_fast &&
           e.number - it->second.epoch <= config_.pingpong_window_epochs;
  }
  // Whether untagged `c` stays where it is this epoch: held by residency, or
  // moving it would undo a recent move and the reversal budget has no room.
  bool held(const Epoch& e, const Candidate& c, bool to_fast) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return recently_moved(e, c.addr) ||
           (e.reversals_left < c.pages && reverses(e, c.addr, to_fast));
  }
  // The newcomer's heat as its swap for `victim` is judged: divided by
  // Policy::reversal_margin when demoting the victim would undo its
  // promotion within the ping-pong window.
  std::uint32_t swap_heat(const Epoch& e, const Candidate& newcomer, const Candidate& victim) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (e.reversal_margin <= 1 || !reverses(e, victim.addr, false)) return newcomer.heat;
    return static_cast<std::uint32_t>(newcomer.heat / e.reversal_margin);
  }
  // Charges a planned move of untagged `c` to the reversal budget.
  void spend_reversal(Epoch& e, const Candidate& c, bool to_fast) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (e.reversals_left < INFINITY && reverses(e, c.addr, to_fast)) e.reversals_left -= c.pages;
  }
  bool recently_moved(const Epoch& e, std::uintptr_t a) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (e.residency == 0) return false;
    auto it = history_.find(a);
    if (it == history_.end() || e.number - it->second.epoch >= e.residency) return false;
    return !it->second.on_birth || seen_hot_since(a, it->second.epoch);
  }
  // Whether a source saw `a` accessed (a timed observation) after `epoch`.
  bool seen_hot_since(std::uintptr_t a, std::uint64_t epoch) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = seen_hot_.find(a);
    return it != seen_hot_.end() && it->second > epoch;
  }
  static bool tagged(const Candidate& c) { return c.priority > PageWord::kMaxHeat; }

  // How much to demote (watermarks, the fast nodes' real free memory) and
  // the room left for promotions, in pages.
  void size_demotion(Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const double used = fast_used(e, *hist_);
    const double bpages = static_cast<double>(e.budget / kPageSize);
    // A policy that swaps for every promotion needs no free headroom in its
    // budget: it fills it (the watermarks then only guard the node below),
    // or keeps the room it asks for (Policy::kept_room).
    const double band_share = config_.high_watermark - config_.low_watermark;
    const std::optional<double> share = policy_->kept_room();
    const double top =
        share ? 1 - std::clamp(*share, 0.0, 1 - config_.low_watermark) : config_.high_watermark;
    const double high = bpages * top,
                 low = bpages * (top - (share ? std::min(1 - top, band_share) : band_share));
    // The fast nodes' free memory: promotions keep it above the reserve (the
    // node's 1 - high watermark). Other memory use on the node (and the lag
    // of the kernel's free count behind our own moves) makes it wobble, so
    // demotions for the node start only a band below the reserve and stop at
    // it, and the room they make is not refilled in the same epoch: it was
    // made for someone else. (Demoting a band at the reserve and refilling it
    // at once churned a band's worth of pages every epoch.)
    const double band = bpages * (config_.high_watermark - config_.low_watermark);
    const double node_room = static_cast<double>(e.node_free / kPageSize) - reserve_pages(e);
    e.want_demote = 0;
    e.over_budget = std::max(0.0, used - bpages);
    e.idle_room = share && *share > 0 && !fast_full_;
    if (used > high || fast_full_) e.want_demote = std::max(used - low, -node_room + band);
    if (node_room < -band) e.want_demote = std::max(e.want_demote, -node_room);
    // Within the band below the reserve: no room, but no debt either (swaps
    // stay one for one).
    e.room = std::min(high - used, node_room < -band ? node_room : std::max(0.0, node_room));
    stats_.epoch_room_pages = static_cast<std::uint64_t>(bpages - high);
    stats_.room_epochs += stats_.epoch_room_pages > 0;
  }

  // Adds cold fast units (heat 0, untagged, not seen by collect) from the
  // tracker's fast-tier clock until the list holds `need` untagged ones.
  // NOTE: warm candidates count toward `need`, so while collect() found
  // enough of them the clock does not run, and a warm resident may give way
  // while a heat-0 one goes unseen. Counting only heat-0 candidates was
  // measured as a trade, not a gain (docs/performance.md, "Session 17").
  // Over the budget, though, only heat-0 ones count: demote_over_budget()
  // makes every resident up to the excess a candidate, and hot ones went
  // while idle ones were not looked for.
  void add_cold_fast(const Epoch& e, std::size_t need) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Candidate>& demote = scratch_.demote;
    std::size_t have = 0;
    for (const auto& c : demote) have += !tagged(c) && (e.over_budget == 0 || c.heat == 0);
    if (have >= need || e.visits || !e.moves) return;
    RegionCursor regions(scratch_.regions);
    tracker_.scan_fast_cold(
        config_.scan_pages_per_epoch, [&](std::uintptr_t a, std::uint16_t w, std::uint32_t pages) {
          const Region* r = regions.find(a);
          if (r == nullptr || r->tag.load(std::memory_order_relaxed) != RegionTag::automatic)
            return true;
          const std::uint32_t h = judged_heat(e, a, w);
          if (h == 0 && seen_cold(e, a)) return true;  // add_seen_cold's
          demote.push_back({PageWord::kMaxHeat - h, h, a, pages, idle_epochs(e, a, w)});
          return ++have < need;
        });
  }

  // The epoch's plan, in priority order: each step demotes a unit, promotes
  // one, or both (a swap), so the rate limiter keeps or defers a swap whole
  // instead of demoting a page for a newcomer it then holds back.
  void plan(Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    order_candidates(e);
    scratch_.plan.clear();
    std::size_t di = 0;  // the next demotion candidate not yet looked at
    const double d_pages = plan_demotions(e, di);
    plan_promotions(e, di, e.room + d_pages);
  }

  // Promotion candidates by priority, then the demotion candidates found and
  // the head of their list ordered: only that head is used, the tagged ones,
  // the watermark's share and at most one victim per promoted page (a 2 MiB
  // newcomer may need 512 victims of 4 KiB). That head is ordered as a full
  // sort would order it.
  void order_candidates(Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Candidate>& promote = scratch_.promote;
    std::vector<Candidate>& demote = scratch_.demote;
    auto by_priority = [](const Candidate& a, const Candidate& b) {
      return a.priority != b.priority ? a.priority > b.priority : a.addr < b.addr;
    };
    std::sort(promote.begin(), promote.end(), by_priority);
    size_demotion(e);
    std::size_t need = static_cast<std::size_t>(std::max(0.0, std::ceil(e.want_demote))) + 1;
    for (const auto& c : promote) need += c.pages;
    add_cold_fast(e, need);
    add_seen_cold(e);
    if (!e.visits)
      for (const auto& c : demote) need += tagged(c);
    if (need < demote.size()) {
      auto mid = demote.begin() + static_cast<std::ptrdiff_t>(need);
      std::nth_element(demote.begin(), mid, demote.end(), by_priority);
      std::sort(demote.begin(), mid, by_priority);
    } else {
      std::sort(demote.begin(), demote.end(), by_priority);
    }
  }

  // Watermark demotions (and every tagged one) first, coldest first; `di`
  // ends at the first candidate left for swaps. Minimum residency is checked
  // here, on the few pages chosen. Returns the pages planned to go (tagged
  // ones further down the list not counted).
  double plan_demotions(Epoch& e, std::size_t& di) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Candidate>& demote = scratch_.demote;
    double d_pages = 0;
    for (; di < demote.size(); ++di) {
      bool tag = tagged(demote[di]) && !e.visits;
      if (!tag && d_pages >= e.want_demote) break;
      if (!tag && e.idle_room && demote[di].heat > 0 && d_pages >= e.over_budget)
        break;  // Policy::kept_room
      if (!tag && held(e, demote[di], false)) continue;
      if (!tag) spend_reversal(e, demote[di], false);
      scratch_.plan.push_back({&demote[di], nullptr});
      d_pages += demote[di].pages;
    }
    for (std::size_t k = di; k < demote.size(); ++k)  // tagged ones further down the list
      if (tagged(demote[k]) && !e.visits) scratch_.plan.push_back({&demote[k], nullptr});
    return d_pages;
  }

  // Promotions, hottest first, into `room` pages; with swapping, a colder
  // resident gives way to each newcomer the policy finds worth it
  // (should_swap). A policy that reclaims for promotions (the kernel model:
  // a promotion refused at the watermark wakes kswapd, which demotes in LRU
  // order) gives up the next demotion candidate for each newcomer.
  void plan_promotions(Epoch& e, std::size_t di, double room) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::vector<Candidate>& demote = scratch_.demote;
    const bool swap = policy_->swap_for_promotions();
    const bool reclaim = policy_->reclaims_for_promotions();
    double p_pages = 0;
    for (const auto& c : scratch_.promote) {
      if (!tagged(c) && held(e, c, true)) continue;
      const Candidate* victim = nullptr;
      if (p_pages + c.pages > room) {
        if (tagged(c)) continue;  // tagged hot: wait for room
        if (!swap && !reclaim) break;
        // Untagged victims not already chosen, coldest first, until the
        // newcomer fits (a 2 MiB newcomer may take 512 victims of 4 KiB; the
        // last one shares its step). Victims found for a newcomer that still
        // does not fit stay planned: they make room for the next epoch.
        for (;;) {
          while (di < demote.size() &&
                 ((tagged(demote[di]) && !e.visits) || held(e, demote[di], false)))
            ++di;
          if (di >= demote.size() || (swap && !swap_allowed(swap_heat(e, c, demote[di]),
                                                            demote[di].heat, demote[di].idle)))
            break;
          victim = &demote[di];
          spend_reversal(e, *victim, false);
          room += demote[di++].pages;
          if (p_pages + c.pages <= room) break;
          scratch_.plan.push_back({victim, nullptr});
          victim = nullptr;
        }
        if (p_pages + c.pages > room) break;
      }
      if (!tagged(c)) spend_reversal(e, c, true);
      scratch_.plan.push_back({victim, &c});
      p_pages += c.pages;
    }
  }

  // Sampled evidence (see add_hotness_source): whether a source saw `a` not
  // accessed within kColdEvidenceEpochs.
  bool seen_cold(const Epoch& e, std::uintptr_t a) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!evidence_ || seen_cold_.empty()) return false;
    auto it = seen_cold_.find(a);
    return it != seen_cold_.end() && e.number - it->second <= kColdEvidenceEpochs;
  }
  // The value of a resident with no heat that no source saw cold: the fast
  // tier's mean sampled rate, rounded up.
  std::uint32_t unseen_resident_heat() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<std::uint32_t>(std::ceil(std::min<double>(fast_rate_, PageWord::kMaxHeat)));
  }
  // Adds the fast units seen cold (untagged, not moved recently, still with
  // no heat) to the demotion candidates, coldest first; the other heat-0
  // candidates are valued at unseen_resident_heat(). Before sorting.
  void add_seen_cold(const Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!evidence_ || !e.moves) return;
    std::vector<Candidate>& demote = scratch_.demote;
    const std::uint32_t unseen = unseen_resident_heat();
    if (unseen > 0)
      for (auto& c : demote)
        if (!tagged(c) && c.heat == 0) {
          c.heat = unseen;
          c.priority = PageWord::kMaxHeat - unseen;
        }
    RegionCursor regions(scratch_.regions);
    for (const auto& [a, epoch] : seen_cold_) {
      if (e.number - epoch > kColdEvidenceEpochs) continue;
      const auto pages = static_cast<std::uint32_t>(tracker_.unit_bytes(a) / kPageSize);
      if (a % (std::uintptr_t{pages} * kPageSize) != 0) continue;  // a page of a merged unit
      const std::atomic<std::uint16_t>* w = tracker_.word(a);
      const std::uint16_t v = w != nullptr ? w->load(std::memory_order_relaxed) : 0;
      if (!PageWord::tracked(v) || !PageWord::fast(v) || PageWord::heat(v) != 0) continue;
      const Region* r = regions.find(a);
      if (r == nullptr || r->tag.load(std::memory_order_relaxed) != RegionTag::automatic) continue;
      demote.push_back({PageWord::kMaxHeat, 0, a, pages, idle_epochs(e, v)});
    }
  }

  // Whether a newcomer may take a resident's place: with sampled evidence,
  // when it reaches kEvidenceFactor times the resident's value; without,
  // when the policy's should_swap() says so (see add_hotness_source).
  bool swap_allowed(std::uint32_t newcomer, std::uint32_t resident, std::uint32_t idle) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!evidence_) return policy_->should_swap(newcomer, resident, idle);
    return static_cast<double>(newcomer) >= kEvidenceFactor * static_cast<double>(resident);
  }

  // Rate limit: the plan's steps in order, each whole or not at all. A
  // first step bigger than the whole bucket (a 2 MiB unit, or a swap of two,
  // under a smaller burst) would never fit: it goes alone once the bucket is
  // full, and the bucket owes the rest (RateLimiter::try_acquire_whole).
  // Otherwise it held back itself and every step behind it for ever.
  void limit(Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EpochScratch& s = scratch_;
    std::size_t keep = s.plan.size();
    e.deferred = 0;
    if (policy_->uses_rate_limiter()) {
      std::uint64_t bytes = 0;
      for (const auto& st : s.plan) bytes += st.pages() * kPageSize;
      std::uint64_t granted = limiter_.acquire_up_to(bytes, kPageSize), spent = 0;
      keep = 0;
      while (keep < s.plan.size() && spent + s.plan[keep].pages() * kPageSize <= granted)
        spent += s.plan[keep++].pages() * kPageSize;
      if (keep == 0 && !s.plan.empty() && s.plan[0].pages() * kPageSize > limiter_.burst_bytes()) {
        limiter_.refund(granted);
        granted = spent = 0;
        if (limiter_.try_acquire_whole(s.plan[0].pages() * kPageSize)) keep = 1;
      }
      limiter_.refund(granted - spent);
      for (std::size_t i = keep; i < s.plan.size(); ++i) e.deferred += s.plan[i].pages();
    }
    s.demote_now.clear();
    s.promote_now.clear();
    for (std::size_t i = 0; i < keep; ++i) {
      if (s.plan[i].out) s.demote_now.push_back(*s.plan[i].out);
      if (s.plan[i].in) s.promote_now.push_back(*s.plan[i].in);
    }
  }

  void apply(const Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stats_.epoch_promoted = stats_.epoch_demoted = 0;
    fast_full_ = false;
    if (config_.slow_nodes.empty()) return;
    detail::ReaderMutexLock move_lock(&registry_.move_mutex());
    const std::uint64_t absent = stats_.absent_pages;
    migrate(scratch_.demote_now, config_.slow_nodes, config_.fast_nodes, false, e.number);
    drop_promotions(stats_.absent_pages - absent);
    migrate(scratch_.promote_now, config_.fast_nodes, config_.slow_nodes, true, e.number);
  }
  // A victim found absent (registered, never touched: believed fast, held
  // nothing) made no room: the last promotions, `pages` of them, wait for
  // the next epoch (their rate-limit tokens refunded), or each such swap
  // would grow the fast tier past its budget.
  void drop_promotions(std::uint64_t pages) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Candidate>& in = scratch_.promote_now;
    std::uint64_t dropped = 0;
    while (dropped < pages && !in.empty()) {
      dropped += in.back().pages;
      in.pop_back();
    }
    if (dropped > 0 && policy_->uses_rate_limiter()) limiter_.refund(dropped * kPageSize);
  }

  void account(const Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Forget history older than both windows.
    std::uint64_t keep_epochs =
        std::max<std::uint64_t>(config_.pingpong_window_epochs, e.residency);
    if (e.number % 16 == 0)
      absl::erase_if(history_,
                     [&](const auto& kv) { return e.number - kv.second.epoch > keep_epochs; });
    stats_.policy = policy_->name();
    stats_.epochs = e.number + 1;
    stats_.tracked_pages = hist_->fast_pages + hist_->slow_pages;
    stats_.seen_pages = tracker_.seen_pages();
    stats_.fast_pages = hist_->fast_pages + stats_.epoch_promoted - stats_.epoch_demoted;
    stats_.slow_pages = stats_.tracked_pages - std::min(stats_.tracked_pages, stats_.fast_pages);
    note_room(e);
    stats_.promotion_candidates += scratch_.promote.size();
    stats_.demotion_candidates += scratch_.demote_now.size();
    stats_.deferred_pages += e.deferred;
    stats_.epoch_deferred = e.deferred;
    stats_.promotion_threshold = policy_->current_threshold();
    stats_.threshold_unit = policy_->threshold_unit();
    stats_.fast_heat_share = hist_->fast_heat_share();
    stats_.last_epoch_ns = clock_->now_ns() - e.t0;
    stats_.total_epoch_ns += stats_.last_epoch_ns;
    std::swap(hist_, last_hist_);
    epoch_ = e.number + 1;
    tracker_.set_epoch(static_cast<std::uint32_t>(epoch_));
  }

  // create()'s check that the backend can use every configured node (one
  // node_memory call each): a node that does not exist, is offline, or is
  // outside the process's cpuset would fail every move to it (ENODEV,
  // EACCES), epoch after epoch.
  static absl::Status check_nodes(const EngineConfig& c, Backend& backend) {
    for (const auto& [field, nodes] :
         {std::pair<const char*, const NodeSet*>{"fast_nodes", &c.fast_nodes},
          {"slow_nodes", &c.slow_nodes}})
      for (NodeId n : nodes->to_vector())
        if (absl::StatusOr<NodeMemory> m = backend.node_memory(n); !m.ok())
          return absl::InvalidArgumentError(
              absl::StrCat(field, " contains node ", n, ", which the ", backend.name(),
                           " backend cannot use: ", m.status().message()));
    return absl::OkStatus();
  }

  // The 4 KiB units of a region whose granularity the engine chose (all of
  // it without 2 MiB units, else its ragged ends), under THP "always":
  // advised MADV_NOHUGEPAGE, so the kernel forms no huge page over them. A
  // 4 KiB move inside one would move it whole, found only after the move
  // (account_carried; RegionOptions::granularity); ArenaRegions advises its
  // arenas so. Huge pages formed before the registration stay. An explicit
  // kPageSize is left alone (RegionOptions::with_base_pages: memory that
  // must not be advised). Each advice may split a mapping: they share the
  // bound of fall_back_to_base_pages().
  void advise_base_units(const Region& r) {
    if (backend_->thp_mode() != ThpMode::kAlways) return;
    for (auto [b, e] : {std::pair{r.begin, r.huge_begin}, std::pair{r.huge_end, r.end}}) {
      if (b >= e) continue;
      {
        detail::MutexLock l(&mu_);
        if (base_page_advice_ >= kMaxBasePageAdvice) return;
        ++base_page_advice_;
      }
      (void)backend_->advise_base_pages(reinterpret_cast<void*>(b), e - b);
    }
  }

  // register_region's step for kernel_balancing "exclude".
  void exclude_from_numa_balancing(void* ptr, std::size_t bytes) {
    {
      detail::MutexLock l(&mu_);  // set_config() may replace config_ meanwhile
      if (config_.kernel_balancing != "exclude") return;
    }
    absl::StatusOr<bool> done = backend_->exclude_from_numa_balancing(ptr, bytes);
    detail::MutexLock l(&mu_);
    if (!done.ok()) {
      ++stats_.numa_balancing_errors;
      stats_.numa_balancing_error = std::string(done.status().message());
    }
    stats_.regions_kept_from_numa_balancing += done.ok() && *done;
  }

  // The fast node(s)' total, free and reserved memory, and the budget, into
  // `e`.
  void fast_memory(Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::uint64_t kernel = 0;
    for (NodeId n : config_.fast_nodes.to_vector()) {
      if (auto m = backend_->node_memory(n); m.ok()) {
        e.node_total += m->total_bytes;
        e.node_free += m->free_bytes;
        e.node_reserve += reserve_bytes(*m, true);
        kernel += m->kernel_reserve_bytes;
      }
    }
    e.budget = config_.fast_budget_bytes ? config_.fast_budget_bytes : e.node_total;
    stats_.reserve_pages = static_cast<std::uint64_t>(e.node_reserve) / kPageSize;
    stats_.kernel_reserve_pages = kernel / kPageSize;
  }
  // The free memory moves into a node leave there: on a fast node the
  // larger of its 1 - high_watermark and the kernel's own reserve (below
  // which kswapd reclaims, and with demotion on demotes what we promoted),
  // on a slow node the kernel's reserve.
  double reserve_bytes(const NodeMemory& m, bool fast) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const double kernel = static_cast<double>(m.kernel_reserve_bytes);
    return fast
               ? std::max(kernel, (1 - config_.high_watermark) * static_cast<double>(m.total_bytes))
               : kernel;
  }
  // Before the first epoch: the fast node(s)' free memory when the first
  // region is registered, so the first epoch sees what births took of it.
  void note_room_baseline() {
    detail::MutexLock l(&mu_);
    if (free_after_ >= 0 || epoch_ > 0) return;
    Epoch e;
    fast_memory(e);
    stats_.epoch_promoted = stats_.epoch_demoted = 0;
    note_room(e);
  }
  // What the fast node(s) had free after this epoch's moves, for the next
  // epoch to see what births took of it and had on offer above the reserve
  // (EpochContext::taken_fast_pages, offered_room_pages): estimated from the
  // free memory at the epoch's start and the pages moved, with no second
  // query. The node's memory, not the budget's belief: pages registered but
  // not yet touched are believed fast, and births take free memory whatever
  // the budget.
  void note_room(const Epoch& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    free_after_ = static_cast<double>(e.node_free / kPageSize) +
                  static_cast<double>(stats_.epoch_demoted) -
                  static_cast<double>(stats_.epoch_promoted);
  }
  // The fast node(s)' reserve in pages, kept free by promotions
  // (reserve_bytes).
  double reserve_pages(const Epoch& e) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return e.node_reserve / kPageSize;
  }

  // Moves `list` from the tier `from` to the tier `to` (each unit to a node
  // choose_targets() picks) and accounts for every page. A 2 MiB unit
  // moves by its first page, which carries the whole transparent huge page;
  // its last page, queried after the move, says whether the rest came
  // along. If not (THP never formed there, or the kernel split it: under
  // memory pressure, a partial mprotect or munmap), the chunk falls back to
  // 4 KiB units (HotnessTracker::split) and its other 511 pages move now,
  // one by one; the rate limiter has already charged them. After a move()
  // that failed, each unit is accounted where a query finds it
  // (locate_after_failed_move).
  void migrate(const std::vector<Candidate>& list, const NodeSet& to, const NodeSet& from,
               bool to_fast, std::uint64_t epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (list.empty()) return;
    EpochScratch& s = scratch_;
    s.pages.clear();
    s.unit_pages.clear();
    for (const auto& c : list) {
      // Skip units unregistered since the sweep, or merged (merge_carried).
      if (!tracks_unit(c.addr, c.pages)) continue;
      s.pages.push_back(reinterpret_cast<void*>(c.addr));
      s.unit_pages.push_back(c.pages);
    }
    if (s.pages.empty()) return;
    if (const std::uint64_t there = drop_already_there(to);
        there > 0 && policy_->uses_rate_limiter())
      limiter_.refund(there);
    if (s.pages.empty()) return;
    query_huge_tails();  // where each 2 MiB unit's last page is before the move
    query_buddies();     // and a page beside each 4 KiB unit's, under THP
    choose_targets(to, from, to_fast);
    s.status.assign(s.pages.size(), 0);
    const bool call_failed = !backend_->move(s.pages, s.nodes, absl::MakeSpan(s.status)).ok();
    if (call_failed && !locate_after_failed_move()) {
      keep_open_carries(/*moved_only=*/false, epoch);
      return remember_unlocated(to_fast);
    }
    check_huge_units();
    std::uint64_t failed_bytes = 0;
    for (std::size_t i = 0; i < s.pages.size(); ++i) {
      const auto a = reinterpret_cast<std::uintptr_t>(s.pages[i]);
      failed_bytes +=
          call_failed && s.status[i] >= 0 && s.status[i] != s.nodes[i]
              ? account_unmoved(a, s.unit_pages[i], s.status[i])
              : account_move(a, s.unit_pages[i], s.status[i], s.nodes[i], to_fast, epoch);
    }
    failed_bytes += keep_rest_to_move(to);
    if (policy_->uses_rate_limiter() && failed_bytes) limiter_.refund(failed_bytes);
    account_carried(to_fast, epoch);
    if (s.rest.empty()) return;
    // The pages of units that fell back: 4 KiB units now, so this second
    // pass finds no 2 MiB unit and does not recurse again.
    std::vector<Candidate> rest;
    rest.swap(s.rest);
    migrate(rest, to, from, to_fast, epoch);
    rest.clear();
    s.rest.swap(rest);  // keep the capacity
  }

  // While beliefs are in doubt (a round of checks after the kernel moved
  // pages, or after a registration's query failed: begin_verify), asks
  // where the units about to move are (one query: each one's first page,
  // and a 2 MiB unit's last) and drops those already in the tier `to`,
  // believed there now (placement_corrected): move_pages reports a page
  // already on its target node as moved, so they would count as moves.
  // Returns their bytes, to refund. A failed query drops none.
  std::uint64_t drop_already_there(const NodeSet& to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EpochScratch& s = scratch_;
    if (!verifying_) return 0;
    s.tails.assign(s.pages.begin(), s.pages.end());
    for (std::size_t i = 0; i < s.pages.size(); ++i)
      if (s.unit_pages[i] > 1)
        s.tails.push_back(static_cast<char*>(s.pages[i]) + kHugePageSize - kPageSize);
    s.tail_status.assign(s.tails.size(), -1);
    if (!backend_->query(s.tails, absl::MakeSpan(s.tail_status)).ok()) return 0;
    std::uint64_t bytes = 0;
    std::size_t kept = 0, tail = s.pages.size();
    for (std::size_t i = 0; i < s.pages.size(); ++i) {
      const int head = s.tail_status[i];
      const int last = s.unit_pages[i] > 1 ? s.tail_status[tail++] : head;
      if (head < 0 || !to.contains(head) || last < 0 || !to.contains(last)) {
        s.pages[kept] = s.pages[i];
        s.unit_pages[kept++] = s.unit_pages[i];
        continue;
      }
      if (tracker_.set_fast(reinterpret_cast<std::uintptr_t>(s.pages[i]),
                            config_.fast_nodes.contains(head)))
        ++stats_.placement_corrected;
      bytes += std::uint64_t{s.unit_pages[i]} * kPageSize;
    }
    s.pages.resize(kept);
    s.unit_pages.resize(kept);
    return bytes;
  }

  // Which node of the tier `to` each unit of scratch_.pages moves to, into
  // scratch_.nodes: the nearest (Backend::distance) to the node it is on,
  // or to its region's home node (RegionOptions::home_node), among those
  // with room for it, ties to the one with more room. As the
  // kernel: it demotes to the nearest lower-tier node
  // (establish_demotion_targets, mm/memory-tiers.c) and promotes only into a
  // node with free pages above its high watermark (migrate_balanced_pgdat,
  // mm/migrate.c); a node's room is its free memory above its reserve
  // (reserve_bytes). Where no node has room, the one with the most
  // (the move may then fail: ENOMEM). One node: no choice, no cost; the
  // units' nodes are asked (one query) only when `from` has several.
  void choose_targets(const NodeSet& to, const NodeSet& from, bool to_fast)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EpochScratch& s = scratch_;
    s.nodes.assign(s.pages.size(), to.first());
    if (to.size() < 2) return;
    const std::vector<NodeId> dst = to.to_vector();
    std::vector<std::int64_t> room(dst.size(), 0);
    for (std::size_t d = 0; d < dst.size(); ++d)
      if (auto m = backend_->node_memory(dst[d]); m.ok())
        room[d] = static_cast<std::int64_t>(m->free_bytes / kPageSize) -
                  static_cast<std::int64_t>(reserve_bytes(*m, to_fast) / kPageSize);
    s.status.assign(s.pages.size(), from.size() == 1 ? from.first() : -1);
    if (from.size() > 1 && !backend_->query(s.pages, absl::MakeSpan(s.status)).ok())
      s.status.assign(s.pages.size(), -1);
    absl::flat_hash_map<int, std::vector<int>> near;  // source node -> distance to each of dst
    RegionCursor regions(s.regions);
    for (std::size_t i = 0; i < s.pages.size(); ++i) {
      const Region* r = regions.find(reinterpret_cast<std::uintptr_t>(s.pages[i]));
      const int source =
          r != nullptr && r->options.home_node != kNoNode ? r->options.home_node : s.status[i];
      auto [it, fresh] = near.try_emplace(source, dst.size(), 0);
      if (fresh && source >= 0)
        for (std::size_t d = 0; d < dst.size(); ++d)
          it->second[d] = backend_->distance(source, dst[d]);
      const std::vector<int>& dist = it->second;
      std::size_t best = dst.size(), most = 0;
      for (std::size_t d = 0; d < dst.size(); ++d) {
        if (room[d] > room[most]) most = d;
        if (room[d] < static_cast<std::int64_t>(s.unit_pages[i])) continue;
        if (best == dst.size() || dist[d] < dist[best] ||
            (dist[d] == dist[best] && room[d] > room[best]))
          best = d;
      }
      if (best == dst.size()) best = most;
      s.nodes[i] = dst[best];
      room[best] -= s.unit_pages[i];
    }
  }

  // Drops from scratch_.rest the pages that are absent (never touched) or
  // already in the tier `to` (one query); returns their bytes, charged to
  // the rate limiter but not to be moved. If the query fails, all stay.
  std::uint64_t keep_rest_to_move(const NodeSet& to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EpochScratch& s = scratch_;
    if (s.rest.empty()) return 0;
    s.tails.clear();
    for (const auto& c : s.rest) s.tails.push_back(reinterpret_cast<void*>(c.addr));
    s.tail_status.assign(s.tails.size(), 0);
    if (!backend_->query(s.tails, absl::MakeSpan(s.tail_status)).ok()) return 0;
    std::size_t kept = 0;
    for (std::size_t k = 0; k < s.rest.size(); ++k)
      if (s.tail_status[k] >= 0 && !to.contains(s.tail_status[k])) s.rest[kept++] = s.rest[k];
    const std::uint64_t dropped = s.rest.size() - kept;
    s.rest.resize(kept);
    return dropped * kPageSize;
  }

  // Asks where the last page of each 2 MiB unit in scratch_.pages is (one
  // query; -1 for every unit if it fails).
  void query_huge_tails() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EpochScratch& s = scratch_;
    s.tails.clear();
    s.tail_of.clear();
    for (std::size_t i = 0; i < s.pages.size(); ++i)
      if (s.unit_pages[i] > 1) {
        s.tails.push_back(static_cast<char*>(s.pages[i]) + kHugePageSize - kPageSize);
        s.tail_of.push_back(i);
      }
    s.tail_before.assign(s.tails.size(), -1);
    if (!s.tails.empty() && !backend_->query(s.tails, absl::MakeSpan(s.tail_before)).ok())
      s.tail_before.assign(s.tails.size(), -1);
  }

  // After the move: a 2 MiB unit moved whole (one huge page) when its first
  // page reached its target and its last page, elsewhere before the move, is
  // there now (one query for all). Otherwise, or when its first page was
  // absent and its last one present, it was not one huge page (THP never
  // formed there, or the kernel split it): it becomes 4 KiB units
  // (HotnessTracker::split), its first page is accounted as one page (moved
  // or absent), and its other pages go to scratch_.rest. When a query fails
  // nothing is known: the unit stays 2 MiB but its other pages go to
  // scratch_.rest too, so the whole range ends in the tier either way.
  void check_huge_units() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EpochScratch& s = scratch_;
    if (s.tails.empty()) return;
    s.tail_status.assign(s.tails.size(), -1);
    const bool known = backend_->query(s.tails, absl::MakeSpan(s.tail_status)).ok();
    for (std::size_t k = 0; k < s.tails.size(); ++k) {
      const std::size_t i = s.tail_of[k];
      const NodeId target = s.nodes[i];
      const bool before = s.tail_before[k] >= 0;
      // First page absent: absent as a whole if the last page is too, else
      // not one huge page (its present pages go as 4 KiB units).
      const bool head_absent = s.status[i] == -ENOENT && before;
      if (s.status[i] != target && !head_absent) continue;  // did not move: nothing to check
      if (!head_absent && known && before && s.tail_before[k] != target &&
          s.tail_status[k] == target) {
        ++stats_.huge_units_moved;
        continue;
      }
      const auto a = reinterpret_cast<std::uintptr_t>(s.pages[i]);
      if (known && before) fall_back_to_base_pages(a);
      s.unit_pages[i] = 1;
      for (std::size_t p = 1; p < HotnessTracker::kPagesPerChunk; ++p)
        s.rest.push_back({0, 0, a + p * kPageSize, 1});
    }
  }

  // A 4 KiB move of a page inside a huge page moves all 512 of its pages,
  // and says so nowhere: the status is the target's, as for a plain move
  // (measured on 6.1 and 6.12, THP PMD- or PTE-mapped, and hugetlbfs;
  // Backend::move). So asks (one query) where one other page of each 4 KiB
  // unit's chunk is before the move: the first from the other half of the
  // chunk on that is not itself in the move (none if all 512 are: then
  // nothing is carried). account_carried() asks again after. A chunk's
  // pages are looked at until one is not moving: O(pages moved + chunks).
  // NOTE: also under THP "never": hugetlbfs memory (MAP_HUGETLB, often
  // used with THP off) is huge whatever the THP mode. The two queries cost
  // a few percent of the moves (vm_huge_test's query_per_move).
  void query_buddies() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EpochScratch& s = scratch_;
    s.buddies.clear();
    s.buddy_of.clear();
    absl::flat_hash_set<std::uintptr_t> moving, chunks;
    for (std::size_t i = 0; i < s.pages.size(); ++i)
      if (s.unit_pages[i] == 1) moving.insert(reinterpret_cast<std::uintptr_t>(s.pages[i]));
    for (std::size_t i = 0; i < s.pages.size(); ++i) {
      const auto a = reinterpret_cast<std::uintptr_t>(s.pages[i]);
      const std::uintptr_t chunk = align_down(a, kHugePageSize);
      if (s.unit_pages[i] != 1 || !chunks.insert(chunk).second) continue;
      const std::size_t half = HotnessTracker::kPagesPerChunk / 2;
      for (std::size_t j = 0, p = (a - chunk) / kPageSize + half;
           j < HotnessTracker::kPagesPerChunk; ++j) {
        const std::uintptr_t b = chunk + (p + j) % HotnessTracker::kPagesPerChunk * kPageSize;
        if (moving.contains(b)) continue;
        s.buddies.push_back(reinterpret_cast<void*>(b));
        s.buddy_of.push_back(i);
        break;
      }
    }
    s.buddy_before.assign(s.buddies.size(), kNotAsked);
    if (!s.buddies.empty() && !backend_->query(s.buddies, absl::MakeSpan(s.buddy_before)).ok())
      s.buddy_before.assign(s.buddies.size(), kNotAsked);
  }
  // A buddy's node before the move when the query failed: it may have been
  // anywhere.
  static constexpr int kNotAsked = std::numeric_limits<int>::min();
  // Whether buddy k may have been off its unit's target before the move.
  bool buddy_was_off_target(std::size_t k) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const EpochScratch& s = scratch_;
    const int before = s.buddy_before[k];
    return before == kNotAsked || (before >= 0 && before != s.nodes[s.buddy_of[k]]);
  }

  // After the move: a 4 KiB unit that reached its target while its buddy,
  // elsewhere before, is there now carried its huge page. For those chunks
  // (one query of their pages) every tracked page found moved to the
  // target is accounted as moved and charged to the rate limiter (it was
  // copied), and a chunk all on the target, wholly in one region of default
  // granularity, becomes one 2 MiB unit (merge_carried), so that later
  // moves are of what the kernel moves. When a query fails (this one or
  // the one before the move), the chunks that may have been carried wait
  // for a later epoch (check_open_carries).
  void account_carried(bool to_fast, std::uint64_t epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EpochScratch& s = scratch_;
    if (s.buddies.empty()) return;
    s.buddy_after.assign(s.buddies.size(), -1);
    const bool before_known = s.buddy_before.front() != kNotAsked;
    if (!before_known || !backend_->query(s.buddies, absl::MakeSpan(s.buddy_after)).ok())
      return keep_open_carries(/*moved_only=*/true, epoch);
    std::vector<OpenCarry> carried;
    for (std::size_t k = 0; k < s.buddies.size(); ++k) {
      const std::size_t i = s.buddy_of[k];
      if (s.status[i] == s.nodes[i] && buddy_was_off_target(k) && s.buddy_after[k] == s.nodes[i])
        carried.push_back({chunk_of(s.pages[i]), epoch, s.nodes[i], to_fast});
    }
    std::vector<int> where;
    if (!query_chunks(carried, where)) {
      for (const OpenCarry& c : carried) open_carry(c);
      return;
    }
    for (std::size_t c = 0; c < carried.size(); ++c) {
      ++stats_.huge_pages_carried;
      const std::uint64_t moved = account_carried_chunk(carried[c], chunk_span(where, c));
      (to_fast ? stats_.epoch_promoted : stats_.epoch_demoted) += moved;
    }
  }

  // After a query of account_carried() failed: keeps for check_open_carries
  // the chunks whose buddy was off the target before the move, of units
  // that reached it (`moved_only`) or of every unit (a move() that failed
  // with its re-query: nothing is known).
  void keep_open_carries(bool moved_only, std::uint64_t epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const EpochScratch& s = scratch_;
    for (std::size_t k = 0; k < s.buddies.size(); ++k) {
      const std::size_t i = s.buddy_of[k];
      if (buddy_was_off_target(k) && (!moved_only || s.status[i] == s.nodes[i]))
        open_carry(
            {chunk_of(s.pages[i]), epoch, s.nodes[i], config_.fast_nodes.contains(s.nodes[i])});
    }
  }
  void open_carry(const OpenCarry& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (open_carries_.size() >= kMaxOpenCarries) open_carries_.erase(open_carries_.begin());
    open_carries_.push_back(c);
  }

  // At the start of an epoch: asks where the pages of each open chunk are
  // (one query). A chunk all on its target was carried by that move, if any
  // of its tracked pages is believed elsewhere (accounted as in
  // account_carried, as moves of its epoch). When the query fails, each
  // chunk is asked again, kRelocateEpochs times at most.
  void check_open_carries() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (open_carries_.empty()) return;
    std::vector<int> where;
    if (!query_chunks(open_carries_, where)) {
      std::erase_if(open_carries_, [](OpenCarry& c) { return ++c.tries >= kRelocateEpochs; });
      return;
    }
    for (std::size_t c = 0; c < open_carries_.size(); ++c) {
      const OpenCarry& o = open_carries_[c];
      const absl::Span<const int> pages = chunk_span(where, c);
      if (!std::all_of(pages.begin(), pages.end(), [&](int n) { return n == o.target; })) continue;
      const std::uint64_t moved = account_carried_chunk(o, pages);
      if (moved > 0) ++stats_.huge_pages_carried;
      note_room_moved(o.epoch, o.to_fast, static_cast<std::uint32_t>(moved));
    }
    open_carries_.clear();
  }

  static std::uintptr_t chunk_of(const void* p) {
    return align_down(reinterpret_cast<std::uintptr_t>(p), kHugePageSize);
  }
  // Where every page of each chunk is (one query, into `where`, 512 entries
  // a chunk); false if the query fails.
  bool query_chunks(const std::vector<OpenCarry>& chunks, std::vector<int>& where)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (chunks.empty()) return true;
    std::vector<void*> pages;
    pages.reserve(chunks.size() * HotnessTracker::kPagesPerChunk);
    for (const OpenCarry& c : chunks)
      for (std::size_t p = 0; p < HotnessTracker::kPagesPerChunk; ++p)
        pages.push_back(reinterpret_cast<void*>(c.chunk + p * kPageSize));
    where.assign(pages.size(), -1);
    return backend_->query(pages, absl::MakeSpan(where)).ok();
  }
  static absl::Span<const int> chunk_span(const std::vector<int>& where, std::size_t c) {
    return absl::MakeConstSpan(where).subspan(c * HotnessTracker::kPagesPerChunk,
                                              HotnessTracker::kPagesPerChunk);
  }

  // One chunk found carried to its target; `where` holds the node of each
  // of its pages. Every tracked 4 KiB unit of it found moved there counts as
  // moved in the carry's epoch, charged to the rate limiter; a chunk all on
  // the target may merge (merge_carried). Returns the pages moved.
  std::uint64_t account_carried_chunk(const OpenCarry& c, absl::Span<const int> where)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::uint64_t moved = 0;
    bool whole = true;
    for (std::size_t p = 0; p < where.size(); ++p) {
      whole = whole && where[p] == c.target;
      const std::uintptr_t a = c.chunk + p * kPageSize;
      if (where[p] < 0 || !tracks_unit(a, 1)) continue;
      const bool fast = config_.fast_nodes.contains(where[p]);
      if (!tracker_.set_fast(a, fast) || fast != c.to_fast) continue;
      ++moved;
      account_moved(a, 1, c.to_fast, c.epoch);
    }
    if (moved > 0 && policy_->uses_rate_limiter()) limiter_.charge(moved * kPageSize);
    if (whole) merge_carried(c.chunk, c.to_fast);
    return moved;
  }

  // A chunk found to be one huge page on one tier becomes one 2 MiB unit
  // (HotnessTracker::merge) if it lies wholly in one region of default
  // granularity; an explicit with_base_pages() region keeps its 4 KiB units.
  void merge_carried(std::uintptr_t chunk, bool fast) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::shared_ptr<Region> r = registry_.lookup(reinterpret_cast<void*>(chunk));
    if (r == nullptr || r->end < chunk + kHugePageSize ||
        r->options.granularity != kAutoGranularity)
      return;
    if (!tracker_.merge(chunk, fast)) return;
    ++stats_.huge_units_merged;
    reshaped_.insert(chunk);
  }

  // The 2 MiB unit at `a` turned out not to be one huge page: it becomes
  // 4 KiB units (HotnessTracker::split). False if it is not a 2 MiB unit.
  bool fall_back_to_base_pages(std::uintptr_t a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!tracker_.split(a)) return false;
    ++stats_.huge_units_split;
    reshaped_.insert(a);
    // Keep khugepaged from collapsing it again behind the 4 KiB units
    // (each advice may split a VMA: bounded, under vm.max_map_count).
    if (base_page_advice_ < kMaxBasePageAdvice) {
      ++base_page_advice_;
      (void)backend_->advise_base_pages(reinterpret_cast<void*>(a), kHugePageSize);
    }
    return true;
  }

  // After a move() that failed: asks where each unit of scratch_.pages is
  // (one query, into scratch_.status), whatever the error: some may have
  // moved before it (Backend::move), and LinuxBackend's earlier batches may
  // have moved even under InvalidArgument (a node gone offline since its
  // check). The failure counts once, as EINVAL. False when the query fails.
  bool locate_after_failed_move() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stats_.failures_by_errno.add(EINVAL);
    return backend_->query(scratch_.pages, absl::MakeSpan(scratch_.status)).ok();
  }

  // When nothing is known after a failed move(): keeps scratch_.pages' units
  // (moving `to_fast`) for relocate_unlocated(); beyond kMaxUnlocated the
  // oldest are given up. Until a query answers, a unit counts neither as
  // moved nor as failed, and its rate-limit tokens stay spent: one found on
  // its target was copied, and is accounted as a move of that epoch; any
  // other counts as failed and is refunded then (fail_unlocated). Refunding
  // all now and charging the moved ones back later would let the bucket
  // grant those bytes again meanwhile, then owe them. Deferred, the refund
  // of units that did not move comes up to kRelocateEpochs epochs late, and
  // capped at the burst then: the limiter errs on the side of granting less.
  void remember_unlocated(bool to_fast) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const EpochScratch& s = scratch_;
    const bool charged = policy_->uses_rate_limiter();
    for (std::size_t i = 0; i < s.pages.size(); ++i)
      unlocated_.push_back({reinterpret_cast<std::uintptr_t>(s.pages[i]), epoch_, s.unit_pages[i],
                            s.nodes[i], to_fast, charged});
    if (unlocated_.size() <= kMaxUnlocated) return;
    const std::size_t excess = unlocated_.size() - kMaxUnlocated;
    stats_.placement_given_up += fail_unlocated_if(
        [&, k = std::size_t{0}](const Unlocated&) mutable { return k++ < excess; });
  }

  // Before the policy plans: one query for the units remember_unlocated()
  // kept (and the last page of each 2 MiB one). Each one present is
  // believed where it is (a 2 MiB unit by its first page, as
  // refresh_placement); an absent one keeps its belief. One found on its
  // target node (a 2 MiB unit: its last page too, one huge page moved
  // whole) is accounted as the move it was, from the epoch of that move
  // (account_moved: stats, residency and ping-pong history, the policy's
  // bookkeeping), unless a later move of it was accounted already; the
  // newest first, so a unit kept by several failed moves counts as moved
  // once. A 2 MiB unit whose first page reached its target and whose last
  // page did not was not one huge page (split_relocated). Every other unit
  // counts as failed (fail_unlocated), also one no longer tracked as it was
  // (its region unregistered, the unit split), which is not counted as
  // relocated. If the query fails they wait for the next epoch, within
  // kRelocateEpochs. Uses scratch_.tails, tail_of and tail_status, free
  // until migrate().
  void relocate_unlocated() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (unlocated_.empty()) return;
    EpochScratch& s = scratch_;
    const std::size_t n = unlocated_.size();
    s.tails.clear();
    s.tail_of.assign(n, n);  // n: a 4 KiB unit, no last page asked
    for (const Unlocated& u : unlocated_) s.tails.push_back(reinterpret_cast<void*>(u.addr));
    for (std::size_t i = 0; i < n; ++i)
      if (unlocated_[i].pages > 1) {
        s.tail_of[i] = s.tails.size();
        s.tails.push_back(reinterpret_cast<void*>(unlocated_[i].addr + kHugePageSize - kPageSize));
      }
    s.tail_status.assign(s.tails.size(), -1);
    if (!backend_->query(s.tails, absl::MakeSpan(s.tail_status)).ok()) return give_up_unlocated();
    std::uint64_t refund = 0;
    for (std::size_t i = n; i-- > 0;) {
      const Unlocated& u = unlocated_[i];
      if (!tracks_unit(u.addr, u.pages)) {
        refund += fail_unlocated(u);
        continue;
      }
      ++stats_.placement_relocated;
      const int st = s.tail_status[i];
      if (st >= 0) tracker_.set_fast(u.addr, config_.fast_nodes.contains(st));
      auto it = history_.find(u.addr);
      if (st != u.target || (it != history_.end() && it->second.epoch >= u.epoch)) {
        refund += fail_unlocated(u);
        continue;
      }
      if (u.pages > 1 && s.tail_status[s.tail_of[i]] != u.target) {
        refund += split_relocated(u);
        continue;
      }
      if (u.pages > 1) ++stats_.huge_units_moved;
      account_moved(u.addr, u.pages, u.to_fast, u.epoch);
      note_room_moved(u.epoch, u.to_fast, u.pages);
    }
    unlocated_.clear();
    if (refund > 0) limiter_.refund(refund);
  }
  // A unit relocate_unlocated() found moved by the last epoch: the room that
  // epoch left (note_room) did not count it, so this epoch would read the
  // fast memory it took or gave back as births. From an older epoch, the
  // epochs between already saw it so.
  void note_room_moved(std::uint64_t epoch, bool to_fast, std::uint32_t pages)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (free_after_ < 0 || epoch + 1 != epoch_) return;
    free_after_ += to_fast ? -static_cast<double>(pages) : static_cast<double>(pages);
  }
  // A 2 MiB unit of unlocated_ whose first page is on its target and whose
  // last page is not: not one huge page (THP never formed there, or the
  // kernel split it). As check_huge_units does, it becomes 4 KiB units; its
  // first page counts as moved, the other pages as failed (a failed move()
  // moved no other page of it), each believed where one query finds it.
  // Before, the unit counted as failed whole and stayed believed on the
  // target, its other 511 pages too. If that query fails, a round of checks
  // (start_verify_round) asks again. Returns the bytes to refund.
  std::uint64_t split_relocated(const Unlocated& u) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!fall_back_to_base_pages(u.addr)) return fail_unlocated(u);
    account_moved(u.addr, 1, u.to_fast, u.epoch);
    note_room_moved(u.epoch, u.to_fast, 1);
    stats_.failed_pages += u.pages - 1;
    std::vector<void*> rest;
    for (std::uint32_t p = 1; p < u.pages; ++p)
      rest.push_back(reinterpret_cast<void*>(u.addr + std::uintptr_t{p} * kPageSize));
    std::vector<int> status(rest.size(), -1);
    if (!backend_->query(rest, absl::MakeSpan(status)).ok()) start_verify_round();
    for (std::size_t p = 0; p < rest.size(); ++p)
      if (status[p] >= 0)
        tracker_.set_fast(reinterpret_cast<std::uintptr_t>(rest[p]),
                          config_.fast_nodes.contains(status[p]));
    return u.charged ? std::uint64_t{u.pages - 1} * kPageSize : 0;
  }
  // After relocate_unlocated()'s query failed: gives up the units it has
  // asked about kRelocateEpochs times.
  void give_up_unlocated() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stats_.placement_given_up +=
        fail_unlocated_if([&](const Unlocated& u) { return epoch_ - u.epoch >= kRelocateEpochs; });
  }
  // A unit of unlocated_ not known to have moved: failed; returns its bytes
  // to refund (none if the rate limiter did not charge it).
  std::uint64_t fail_unlocated(const Unlocated& u) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stats_.failed_pages += u.pages;
    return u.charged ? std::uint64_t{u.pages} * kPageSize : 0;
  }
  // Takes the units `pred` picks out of unlocated_ (called once each, in
  // order), failed and refunded; returns how many.
  template <typename Pred>
  std::size_t fail_unlocated_if(Pred pred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::size_t kept = 0;
    std::uint64_t refund = 0;
    for (const Unlocated& u : unlocated_) {
      if (pred(u))
        refund += fail_unlocated(u);
      else
        unlocated_[kept++] = u;
    }
    const std::size_t failed = unlocated_.size() - kept;
    unlocated_.resize(kept);
    if (refund > 0) limiter_.refund(refund);
    return failed;
  }
  // Whether the tracker still has a unit of `pages` pages at `a`.
  bool tracks_unit(std::uintptr_t a, std::uint32_t pages) const {
    const std::atomic<std::uint16_t>* w = tracker_.word(a);
    return w != nullptr && PageWord::tracked(w->load(std::memory_order_relaxed)) &&
           tracker_.unit_bytes(a) == std::size_t{pages} * kPageSize;
  }

  // A unit that a failed move() left on `node`: failed, believed where it
  // is; returns its bytes to refund.
  std::uint64_t account_unmoved(std::uintptr_t a, std::uint32_t pages, NodeId node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    tracker_.set_fast(a, config_.fast_nodes.contains(node));
    stats_.failed_pages += pages;
    return std::uint64_t{pages} * kPageSize;
  }

  // Accounts one unit's move outcome; returns the bytes to refund to the
  // rate limiter.
  std::uint64_t account_move(std::uintptr_t a, std::uint32_t pages, int st, NodeId target,
                             bool to_fast, std::uint64_t epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (st >= 0) {
      tracker_.set_fast(a, config_.fast_nodes.contains(st));
      if (st != target) return 0;  // ended elsewhere
      (to_fast ? stats_.epoch_promoted : stats_.epoch_demoted) += pages;
      account_moved(a, pages, to_fast, epoch);
      return 0;
    }
    const std::uint64_t bytes = std::uint64_t{pages} * kPageSize;
    stats_.failures_by_errno.add(-st);
    switch (-st) {
      case EBUSY:
        ++stats_.busy_retries;
        break;  // still a candidate next epoch
      case ENOMEM:
        stats_.failed_pages += pages;
        if (to_fast) fast_full_ = true;  // demote first next epoch
        break;
      case ENOENT:  // not present (never touched, or freed): holds no fast memory
        stats_.absent_pages += pages;
        tracker_.set_fast(a, false);
        return bytes;
      case EFAULT:
        stats_.dropped_pages += pages;
        tracker_.untrack(a, a + bytes);
        break;
      default:
        stats_.failed_pages += pages;
        break;
    }
    return bytes;
  }

  // A unit that reached its target in a move of `epoch` (this one, or an
  // earlier one relocate_unlocated() found had moved): the move's stats, a
  // reversal within the ping-pong window, its history (residency and
  // ping-pong count from `epoch`) and the policy's bookkeeping.
  void account_moved(std::uintptr_t a, std::uint32_t pages, bool to_fast, std::uint64_t epoch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    (to_fast ? stats_.promoted_pages : stats_.demoted_pages) += pages;
    (to_fast ? stats_.promoted_bytes : stats_.demoted_bytes) += pages * kPageSize;
    auto it = history_.find(a);
    if (it != history_.end() && it->second.to_fast != to_fast &&
        epoch - it->second.epoch <= config_.pingpong_window_epochs) {
      stats_.pingpong_pages += pages;
      reversed_ += pages;
    }
    history_[a] = {epoch, to_fast, to_fast && born_.erase(a) > 0};
    policy_->on_moved(a);
  }

  static constexpr std::uint64_t kMaxBasePageAdvice = 4096;

  mutable detail::Mutex mu_;
  EngineConfig config_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Policy> policy_ ABSL_GUARDED_BY(mu_);
  bool own_policy_ ABSL_GUARDED_BY(mu_) = false;  // set_policy(unique_ptr): no spec
  Backend* backend_;
  const Clock* clock_;
  HotnessTracker tracker_;
  RegionRegistry registry_;
  RateLimiter limiter_;
  EngineStats stats_ ABSL_GUARDED_BY(mu_);
  // This epoch's and the last epoch's histograms, swapped each epoch.
  std::unique_ptr<HeatHistogram> hist_ ABSL_GUARDED_BY(mu_) = std::make_unique<HeatHistogram>();
  std::unique_ptr<HeatHistogram> last_hist_ ABSL_GUARDED_BY(mu_) =
      std::make_unique<HeatHistogram>();
  EpochScratch scratch_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::uintptr_t, MoveRecord> history_ ABSL_GUARDED_BY(mu_);
  static constexpr std::size_t kBurstSample = 256;
  // Last epoch's bursts, sampled: (address, heat).
  std::vector<std::pair<std::uintptr_t, std::uint32_t>> bursts_ ABSL_GUARDED_BY(mu_);
  std::vector<Policy::BurstOutcome> outcomes_ ABSL_GUARDED_BY(mu_);  // what check_bursts() found
  std::uint64_t bursts_seen_ ABSL_GUARDED_BY(mu_) = 0;
  // Units whose placement learn_placement() asks after the epoch's visit.
  static constexpr std::size_t kPlacementBatch = std::size_t{1} << 16;
  std::vector<void*> unplaced_ ABSL_GUARDED_BY(mu_);
  std::vector<Unplaced> unplaced_info_ ABSL_GUARDED_BY(mu_);  // the same units
  std::vector<int> placed_ ABSL_GUARDED_BY(mu_);              // the query's answers
  // Units relocate_unlocated() asks about, oldest first.
  std::vector<Unlocated> unlocated_ ABSL_GUARDED_BY(mu_);
  // Chunks check_open_carries() asks about, oldest first.
  std::vector<OpenCarry> open_carries_ ABSL_GUARDED_BY(mu_);
  // Chunks split or merged since registration (fall_back_to_base_pages,
  // merge_carried), for tracked_ranges(); forgotten with their region.
  absl::btree_set<std::uintptr_t> reshaped_ ABSL_GUARDED_BY(mu_);
  // begin_verify(): the kernel's count of its own moves when last read;
  // whether a check runs, and the stripe it began with; the stripes, the
  // epochs of a round and the next stripe; the units seen by the last epoch
  // that checked.
  std::optional<std::uint64_t> kernel_moved_ ABSL_GUARDED_BY(mu_);
  std::optional<std::int64_t> kernel_read_ns_ ABSL_GUARDED_BY(mu_);  // when it was read
  bool verifying_ ABSL_GUARDED_BY(mu_) = false;
  std::uint64_t verify_from_ ABSL_GUARDED_BY(mu_) = 0, verify_stripes_ ABSL_GUARDED_BY(mu_) = 1;
  std::uint64_t verify_rounds_ ABSL_GUARDED_BY(mu_) = 1;
  std::uint64_t verify_next_ ABSL_GUARDED_BY(mu_) = 0, verify_seen_ ABSL_GUARDED_BY(mu_) = 0;
  // Pages whose move since the last observe_moves() undid an earlier one.
  std::uint64_t reversed_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t burst_rng_ ABSL_GUARDED_BY(mu_) = 0x9e3779b97f4a7c15ULL;
  std::uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  bool fast_full_ ABSL_GUARDED_BY(mu_) = false;
  // note_room(): free fast pages after the last moves (-1: none yet); and
  // seen_pages at the last sweep.
  double free_after_ ABSL_GUARDED_BY(mu_) = -1;
  // Pages of regions registered since the epoch began that are believed
  // fast but not there yet (refresh_placement).
  std::uint64_t unborn_fast_pages_ ABSL_GUARDED_BY(mu_) = 0;
  // Regions whose placement refresh_placement() is learning: not moved.
  absl::flat_hash_set<RegionId> placing_ ABSL_GUARDED_BY(mu_);
  std::uint64_t seen_last_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t base_page_advice_ ABSL_GUARDED_BY(mu_) = 0;
  // Shared, so step() takes it out of mu_ with no allocation.
  std::shared_ptr<const EpochCallback> callback_ ABSL_GUARDED_BY(mu_);
  struct SourceEntry {
    std::unique_ptr<HotnessSource> source;
    SourceBudget budget;
    SourceEstimator estimator = SourceEstimator::kRate;
  };
  std::vector<SourceEntry> sources_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> has_sources_{false};  // sources_ is not empty
  // Sampled evidence (add_hotness_source): on once a kRate source reported
  // a timed observation; fast units seen cold and when; the fast tier's mean
  // sampled rate.
  bool evidence_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::uintptr_t, std::uint64_t> seen_cold_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::uintptr_t, std::uint64_t> seen_hot_ ABSL_GUARDED_BY(mu_);
  // Units a source saw born (SourceObservation::birth) and not accessed
  // since, by epoch: promoted, they are not held by residency.
  absl::flat_hash_map<std::uintptr_t, std::uint64_t> born_ ABSL_GUARDED_BY(mu_);
  double fast_rate_ ABSL_GUARDED_BY(mu_) = 0;
  bool fast_rate_seen_ ABSL_GUARDED_BY(mu_) = false;

  // Background thread: lifecycle_mu_ serialises start/stop; thread_mu_ and
  // thread_cv_ wake the loop.
  void request_stop() {
    {
      std::lock_guard<std::mutex> l(thread_mu_);
      stopping_ = true;
    }
    thread_cv_.notify_all();
  }
  bool stop_requested() const {
    std::lock_guard<std::mutex> l(thread_mu_);
    return stopping_;
  }
  // Whether the caller is this engine's background thread (its callback
  // must not wait for that thread, nor for lifecycle_mu_ held by a stop()
  // joining it).
  bool on_engine_thread() const { return engine_thread_ == this; }
  static inline thread_local const Engine* engine_thread_ = nullptr;

  mutable std::mutex lifecycle_mu_;
  mutable std::mutex thread_mu_;
  std::condition_variable thread_cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// Keeps a TierMemoryResource's arenas registered with an engine as regions:
// every arena mapped now or later becomes a region (automatic tag unless
// `options` says otherwise; arenas bound to slow nodes start as slow), and
// each is unregistered when its arena is unmapped. Declare it after the
// engine and the resource, so it is destroyed first: its destructor detaches
// from the resource and unregisters every arena. Thread-safe.
//
//   auto heap = TierMemoryResource::create(options);
//   ArenaRegions tracked(*engine, **heap);   // arenas are now tracked
class ArenaRegions final : public ArenaObserver {
 public:
  ArenaRegions(Engine& engine, TierMemoryResource& resource,
               RegionOptions options = RegionOptions().with_name("arena"))
      : engine_(engine),
        resource_(resource),
        options_(std::move(options)),
        fast_nodes_(engine.config().fast_nodes) {
    // Arenas are 2 MiB aligned: track them in the unit they are backed by,
    // 2 MiB where the resource advises huge pages and the engine's budget
    // suits 2 MiB units; otherwise 4 KiB, and then a huge-advised arena is
    // advised back to base pages before any use (on_arena_mapped), or a
    // 4 KiB move would carry a whole huge page.
    if (options_.granularity == kAutoGranularity)
      options_.granularity =
          resource_.huge_pages() && engine.prefers_huge_units() ? kHugePageSize : kPageSize;
    base_pages_over_huge_ = resource_.huge_pages() && options_.granularity == kPageSize;
    resource_.set_observer(this);  // reports the arenas it already has
  }
  ArenaRegions(const ArenaRegions&) = delete;
  ArenaRegions& operator=(const ArenaRegions&) = delete;
  ~ArenaRegions() override {
    if (resource_.observer() == this) resource_.set_observer(nullptr);
    detail::MutexLock lock(&mu_);
    regions_.clear();
  }

  void on_arena_mapped(void* base, std::size_t bytes, const NodeSet& nodes) override {
    bool fast = false;
    for (NodeId n : nodes.to_vector()) fast = fast || fast_nodes_.contains(n);
    if (base_pages_over_huge_) (void)engine_.backend().advise_base_pages(base, bytes);
    auto h = engine_.register_region(base, bytes, options_, fast);
    detail::MutexLock lock(&mu_);
    if (h.ok())
      regions_[base] = std::move(*h);
    else if (status_.ok())
      status_ = h.status();
  }
  void on_arena_unmapped(void* base, std::size_t) override {
    RegionHandle h;
    {
      detail::MutexLock lock(&mu_);
      auto it = regions_.find(base);
      if (it == regions_.end()) return;
      h = std::move(it->second);
      regions_.erase(it);
    }
  }

  // Arenas registered now.
  std::size_t size() const {
    detail::MutexLock lock(&mu_);
    return regions_.size();
  }
  // The first registration error, if any (e.g. an arena overlapping a region
  // the application registered by hand).
  absl::Status status() const {
    detail::MutexLock lock(&mu_);
    return status_;
  }

 private:
  Engine& engine_;
  TierMemoryResource& resource_;
  RegionOptions options_;
  NodeSet fast_nodes_;  // copied once: an allocation must not wait for an epoch
  bool base_pages_over_huge_ = false;
  mutable detail::Mutex mu_;
  absl::flat_hash_map<void*, RegionHandle> regions_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tierkit
