// tierkit/engine.hpp: the tiering engine. It owns the region registry, the
// hotness tracker, the policy, the rate limiter and a Backend, and runs
// epochs: age heat, pick promotions (hottest first) and, past the high
// watermark, demotions (coldest first, down to the low watermark), then move
// pages under the rate limit. step() runs one epoch synchronously; start()
// runs them on a background thread. Layer 4: includes everything below.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tierkit/backend.hpp"
#include "tierkit/backend/linux.hpp"
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

// Everything the engine can be told. Defaults in comments; units in names.
struct EngineConfig {
  // "automatic" | "threshold" | "threshold:RATE" | "kernel" | "kernel:rate=MBps"
  // | "kernel:target=MBps" | "static". TIERKIT_POLICY.
  std::string policy = "automatic";
  std::int64_t epoch_ms = 100;  // TIERKIT_EPOCH_MS, 1..3600000
  // Heat halves every this many epochs. Longer = steadier heat (less noise,
  // fewer needless swaps), slower to follow a shift. TIERKIT_HALF_LIFE_EPOCHS
  double half_life_epochs = 4.0;
  double rate_limit_mbps = 256;          // migration cap, MiB/s. TIERKIT_RATE_LIMIT_MBPS
  std::uint64_t burst_bytes = 16 << 20;  // token bucket size. TIERKIT_BURST_BYTES
  std::uint64_t fast_budget_bytes = 0;   // 0 = the fast nodes' total. TIERKIT_FAST_BUDGET
  double high_watermark = 0.95;          // of the budget: above it, demote. TIERKIT_HIGH_WATERMARK
  double low_watermark = 0.90;           // demote down to this. TIERKIT_LOW_WATERMARK
  std::uint32_t pingpong_window_epochs = 32;  // a move back within this is a ping-pong
  std::uint32_t sampling = 1;                 // record 1 in N accesses. TIERKIT_SAMPLING
  ThresholdOptions threshold;  // TIERKIT_PROMOTION_THRESHOLD, TIERKIT_DEMOTION_THRESHOLD,
                               // TIERKIT_MIN_RESIDENCY_EPOCHS
  AutomaticOptions automatic;
  KernelModelOptions kernel;  // TIERKIT_KERNEL_HOT_THRESHOLD_MS, TIERKIT_KERNEL_RATE_LIMIT_MBPS,
                              // TIERKIT_KERNEL_THROUGHPUT_MBPS
  NodeSet fast_nodes{0};      // promotions go to the first; from Topology
  NodeSet slow_nodes;         // demotions go to the first; empty = nothing to move

  // Takes the nodes from a discovered topology: fast = tier 0, slow = tier 1
  // (empty on a one-tier machine: the engine then tracks but moves nothing).
  EngineConfig& use_topology(const Topology& t) {
    fast_nodes = t.fast_nodes();
    slow_nodes = t.tier_nodes(1);
    return *this;
  }

  // Heat multiplier per epoch: 2^(-1/half_life).
  double decay() const { return std::pow(0.5, 1.0 / half_life_epochs); }

  // Checks every field; the error names the field and says why.
  absl::Status validate() const {
    if (epoch_ms < 1 || epoch_ms > 3600000)
      return absl::InvalidArgumentError(
          absl::StrCat("epoch_ms = ", epoch_ms, " must be in [1, 3600000]"));
    if (!std::isfinite(half_life_epochs) || half_life_epochs < 0.1 || half_life_epochs > 1000)
      return absl::InvalidArgumentError(
          absl::StrCat("half_life_epochs = ", half_life_epochs, " must be in [0.1, 1000]"));
    if (!std::isfinite(rate_limit_mbps) || rate_limit_mbps < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("rate_limit_mbps = ", rate_limit_mbps, " must be a finite number >= 0"));
    if (!(low_watermark > 0 && low_watermark <= high_watermark && high_watermark <= 1))
      return absl::InvalidArgumentError(absl::StrCat("watermarks: need 0 < low (", low_watermark,
                                                     ") <= high (", high_watermark, ") <= 1"));
    if (sampling == 0) return absl::InvalidArgumentError("sampling must be >= 1");
    if (fast_nodes.empty()) return absl::InvalidArgumentError("fast_nodes is empty");
    for (NodeId n : slow_nodes.to_vector())
      if (fast_nodes.contains(n))
        return absl::InvalidArgumentError(
            absl::StrCat("node ", n, " is in both fast_nodes and slow_nodes"));
    if (absl::Status s =
            ThresholdPolicy::validate(threshold.promotion_threshold, threshold.demotion_threshold);
        !s.ok())
      return s;
    if (!(automatic.headroom >= 0 && automatic.headroom < 1) || !(automatic.hysteresis >= 1))
      return absl::InvalidArgumentError("automatic: need 0 <= headroom < 1 and hysteresis >= 1");
    return KernelModelPolicy::validate(kernel);
  }

  // Overrides fields from TIERKIT_* environment variables. A malformed value
  // is an error naming the variable; unset or empty variables are skipped.
  // Every variable from_env() reads, TIERKIT_POLICY first, then the numeric
  // ones (for tools, docs and tests that must cover them all).
  static constexpr const char* kEnvVariables[] = {"TIERKIT_POLICY",
                                                  "TIERKIT_EPOCH_MS",
                                                  "TIERKIT_HALF_LIFE_EPOCHS",
                                                  "TIERKIT_RATE_LIMIT_MBPS",
                                                  "TIERKIT_BURST_BYTES",
                                                  "TIERKIT_FAST_BUDGET",
                                                  "TIERKIT_HIGH_WATERMARK",
                                                  "TIERKIT_LOW_WATERMARK",
                                                  "TIERKIT_SAMPLING",
                                                  "TIERKIT_PROMOTION_THRESHOLD",
                                                  "TIERKIT_DEMOTION_THRESHOLD",
                                                  "TIERKIT_MIN_RESIDENCY_EPOCHS",
                                                  "TIERKIT_KERNEL_HOT_THRESHOLD_MS",
                                                  "TIERKIT_KERNEL_RATE_LIMIT_MBPS",
                                                  "TIERKIT_KERNEL_THROUGHPUT_MBPS"};

  static absl::StatusOr<EngineConfig> from_env();
  static absl::StatusOr<EngineConfig> from_env(EngineConfig c) {
    using detail::getenv_string;
    auto num = [](const char* var, double lo, double hi, auto& field) -> absl::Status {
      if (auto v = getenv_string(var)) {
        auto d = detail::parse_double(*v, var, lo, hi);
        if (!d.ok()) return d.status();
        field = static_cast<std::remove_reference_t<decltype(field)>>(*d);
      }
      return absl::OkStatus();
    };
    auto bytes = [](const char* var, std::uint64_t& field) -> absl::Status {
      if (auto v = getenv_string(var)) {
        auto b = detail::parse_bytes(*v, var);
        if (!b.ok()) return b.status();
        field = *b;
      }
      return absl::OkStatus();
    };
    if (auto v = getenv_string("TIERKIT_POLICY")) c.policy = *v;
    for (absl::Status s :
         {num("TIERKIT_EPOCH_MS", 1, 3600000, c.epoch_ms),
          num("TIERKIT_HALF_LIFE_EPOCHS", 0.1, 1000, c.half_life_epochs),
          num("TIERKIT_RATE_LIMIT_MBPS", 0, 1e9, c.rate_limit_mbps),
          bytes("TIERKIT_BURST_BYTES", c.burst_bytes),
          bytes("TIERKIT_FAST_BUDGET", c.fast_budget_bytes),
          num("TIERKIT_HIGH_WATERMARK", 0, 1, c.high_watermark),
          num("TIERKIT_LOW_WATERMARK", 0, 1, c.low_watermark),
          num("TIERKIT_SAMPLING", 1, 1 << 20, c.sampling),
          num("TIERKIT_PROMOTION_THRESHOLD", 0, 1e6, c.threshold.promotion_threshold),
          num("TIERKIT_DEMOTION_THRESHOLD", 0, 1e6, c.threshold.demotion_threshold),
          num("TIERKIT_MIN_RESIDENCY_EPOCHS", 0, 1e6, c.threshold.min_residency_epochs),
          num("TIERKIT_KERNEL_HOT_THRESHOLD_MS", 1, 1e7, c.kernel.hot_threshold_ms),
          num("TIERKIT_KERNEL_RATE_LIMIT_MBPS", 1, 1e9, c.kernel.promote_rate_limit_mbps),
          num("TIERKIT_KERNEL_THROUGHPUT_MBPS", 0, 1e9, c.kernel.promote_throughput_mbps)})
      if (!s.ok()) return s;
    auto p = make_policy(c);
    if (!p.ok())
      return absl::InvalidArgumentError(absl::StrCat("TIERKIT_POLICY: ", p.status().message()));
    if (absl::Status s = c.validate(); !s.ok()) return s;
    return c;
  }

  // Builds the policy named by `policy` with this config's options. Spec
  // grammar: name[:arg] where threshold:RATE sets the promotion threshold and
  // kernel:rate=MBps / kernel:target=MBps set the kernel model's knobs.
  static absl::StatusOr<std::unique_ptr<Policy>> make_policy(const EngineConfig& c) {
    std::pair<std::string, std::string> kv = absl::StrSplit(c.policy, absl::MaxSplits(':', 1));
    const std::string& name = kv.first;
    const std::string& arg = kv.second;
    if (name == "automatic" && arg.empty())
      return std::unique_ptr<Policy>(new AutomaticPolicy(c.automatic));
    if (name == "static" && arg.empty()) return std::unique_ptr<Policy>(new StaticPolicy());
    if (name == "threshold") {
      ThresholdOptions o = c.threshold;
      if (!arg.empty()) {
        auto r = detail::parse_double(arg, "threshold:RATE", 0, 1e6);
        if (!r.ok()) return r.status();
        o.promotion_threshold = *r;
        if (o.demotion_threshold >= *r) o.demotion_threshold = *r / 2;
      }
      if (absl::Status s = ThresholdPolicy::validate(o.promotion_threshold, o.demotion_threshold);
          !s.ok())
        return s;
      return std::unique_ptr<Policy>(new ThresholdPolicy(o));
    }
    if (name == "kernel") {
      KernelModelOptions o = c.kernel;
      for (absl::string_view part : absl::StrSplit(arg, ',', absl::SkipEmpty())) {
        std::pair<std::string, std::string> kv2 = absl::StrSplit(part, absl::MaxSplits('=', 1));
        auto v = detail::parse_double(kv2.second, absl::StrCat("kernel:", kv2.first), 0, 1e9);
        if (!v.ok()) return v.status();
        if (kv2.first == "rate")
          o.promote_rate_limit_mbps = *v;
        else if (kv2.first == "target")
          o.promote_throughput_mbps = *v;
        else if (kv2.first == "hot")
          o.hot_threshold_ms = *v;
        else
          return absl::InvalidArgumentError(
              absl::StrCat("policy '", c.policy, "': unknown kernel knob '", kv2.first,
                           "' (known: rate=MBps, target=MBps, hot=ms)"));
      }
      if (absl::Status s = KernelModelPolicy::validate(o); !s.ok()) return s;
      return std::unique_ptr<Policy>(new KernelModelPolicy(o));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown policy '", c.policy,
        "' (known: automatic, threshold[:RATE], kernel[:rate=MBps|target=MBps], static)"));
  }
};

inline absl::StatusOr<EngineConfig> EngineConfig::from_env() { return from_env(EngineConfig()); }

class Engine {
 public:
  // Validates `config` and builds an engine over `backend` (null: the Linux
  // backend) and `clock` (null: the steady clock); both must outlive it.
  static absl::StatusOr<std::unique_ptr<Engine>> create(EngineConfig config,
                                                        Backend* backend = nullptr,
                                                        const Clock* clock = nullptr) {
    if (absl::Status s = config.validate(); !s.ok()) return s;
    auto policy = EngineConfig::make_policy(config);
    if (!policy.ok()) return policy.status();
    return std::unique_ptr<Engine>(new Engine(std::move(config), std::move(*policy),
                                              backend ? backend : &LinuxBackend::instance(),
                                              clock ? clock : &SteadyClock::instance()));
  }

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  // Stops the background thread. Regions must be unregistered first (their
  // handles point at this engine's registry).
  ~Engine() { stop(); }

  // Registers a region and learns where its pages are (one placement query
  // of all its pages: O(pages) in the kernel). Pages not present yet are
  // assumed where `initially_fast` says (default: the fast tier, where first
  // touch on a CPU node puts them). See RegionRegistry::add for errors.
  absl::StatusOr<RegionHandle> register_region(const void* ptr, std::size_t bytes,
                                               RegionOptions options = {},
                                               bool initially_fast = true) {
    auto h = registry_.add(ptr, bytes, options, initially_fast);
    if (!h.ok()) return h;
    auto r = registry_.find(h->id());
    if (r) refresh_placement(*r);
    return h;
  }

  // Hot path: see HotnessTracker::record_access. No lock, no syscall.
  void record_access(const void* p) noexcept { tracker_.record_access(p); }
  void record_access(const void* p, std::size_t bytes, std::uint32_t weight = 1) noexcept {
    tracker_.record_access(p, bytes, weight);
  }

  // Adds a hotness source (see hotness_source.hpp and source/*.hpp): at the
  // start of every epoch the engine calls its collect() with the registered
  // ranges and `budget`, and adds the pages it reports to their heat exactly
  // as record_access(page, 1, weight) would; application calls keep working
  // alongside. Its CPU time and counts appear in stats().hotness_sources.
  // A source that fails is reported there (last_error) and kept; it decides
  // itself whether to stop. Any thread; effective from the next epoch.
  void add_hotness_source(std::unique_ptr<HotnessSource> source, SourceBudget budget = {}) {
    detail::MutexLock lock(&mu_);
    sources_.push_back({std::move(source), budget});
  }

  // Runs one epoch now, on the calling thread. Serialised with the
  // background thread and the setters.
  absl::Status step() {
    detail::MutexLock lock(&mu_);
    return run_epoch();
  }

  // Runs epochs every epoch_ms on a background thread until stop().
  absl::Status start() {
    std::lock_guard<std::mutex> life(lifecycle_mu_);
    if (thread_.joinable()) return absl::FailedPreconditionError("engine already started");
    {
      std::lock_guard<std::mutex> l(thread_mu_);
      stopping_ = false;
    }
    thread_ = std::thread([this] { loop(); });
    return absl::OkStatus();
  }
  // Stops and joins the background thread: wakes it at once, so this returns
  // within one epoch's work.
  void stop() {
    std::lock_guard<std::mutex> life(lifecycle_mu_);
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> l(thread_mu_);
      stopping_ = true;
    }
    thread_cv_.notify_all();
    thread_.join();
  }
  bool running() const {
    std::lock_guard<std::mutex> life(lifecycle_mu_);
    return thread_.joinable();
  }

  // Runtime setters: thread-safe, effective from the next epoch.

  // The threshold policy's promotion threshold (accesses per page per epoch).
  // Fails unless that policy is active (say set_policy("threshold:V")).
  absl::Status set_promotion_threshold(double rate) {
    detail::MutexLock lock(&mu_);
    auto* t = dynamic_cast<ThresholdPolicy*>(policy_.get());
    if (t == nullptr)
      return absl::FailedPreconditionError(
          absl::StrCat("set_promotion_threshold: the active policy is '", policy_->name(),
                       "'; switch with set_policy(\"threshold:", rate, "\")"));
    absl::Status s = t->set_promotion_threshold(rate);
    if (s.ok()) config_.threshold.promotion_threshold = rate;
    return s;
  }
  absl::Status set_demotion_threshold(double rate) {
    detail::MutexLock lock(&mu_);
    auto* t = dynamic_cast<ThresholdPolicy*>(policy_.get());
    if (t == nullptr)
      return absl::FailedPreconditionError(
          "set_demotion_threshold: the threshold policy is not active");
    return t->set_demotion_threshold(rate);
  }
  absl::Status set_rate_limit_mbps(double mbps) {
    absl::Status s = limiter_.set_rate_mbps(mbps);
    if (s.ok()) {
      detail::MutexLock lock(&mu_);
      config_.rate_limit_mbps = mbps;
    }
    return s;
  }
  // 0 = the fast nodes' total memory.
  void set_fast_budget_bytes(std::uint64_t bytes) {
    detail::MutexLock lock(&mu_);
    config_.fast_budget_bytes = bytes;
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
    return absl::OkStatus();
  }

  // Called after every epoch with the stats (on the epoch's thread).
  void set_epoch_callback(std::function<void(const EngineStats&)> cb) {
    detail::MutexLock lock(&mu_);
    callback_ = std::move(cb);
  }

  EngineStats stats() const {
    detail::MutexLock lock(&mu_);
    EngineStats s = stats_;
    s.outside_accesses = tracker_.outside_accesses();
    s.regions = registry_.size();
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

  HotnessTracker& tracker() { return tracker_; }
  RegionRegistry& regions() { return registry_; }
  Backend& backend() { return *backend_; }
  RateLimiter& rate_limiter() { return limiter_; }
  const Clock& clock() const { return *clock_; }

 private:
  struct MoveRecord {
    std::uint64_t epoch;
    bool to_fast;
  };
  struct Candidate {
    std::uint32_t priority;
    std::uint32_t heat;
    std::uintptr_t addr;
    std::uint32_t pages;  // 1, or 512 for a 2 MiB unit
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
  }

  void loop() {
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

  // Asks the backend where the region's pages are and updates the page words.
  void refresh_placement(const Region& r) {
    std::size_t unit = r.options.granularity;
    std::vector<void*> pages;
    pages.reserve(r.units());
    for (std::uintptr_t a = r.begin; a < r.end; a += unit)
      pages.push_back(reinterpret_cast<void*>(a));
    std::vector<int> status(pages.size());
    if (!backend_->query(pages, absl::MakeSpan(status)).ok()) return;
    NodeSet fast = fast_nodes();
    for (std::size_t i = 0; i < pages.size(); ++i)
      if (status[i] >= 0)
        tracker_.set_fast(reinterpret_cast<std::uintptr_t>(pages[i]), fast.contains(status[i]));
  }

  NodeSet fast_nodes() {
    detail::MutexLock lock(&mu_);
    return config_.fast_nodes;
  }

  // Lets every hotness source report what it saw since the last epoch.
  void collect_sources() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (sources_.empty()) return;
    std::vector<TrackedRange> ranges;
    for (const auto& r : registry_.snapshot())
      ranges.push_back({r->begin, r->end, r->options.granularity});
    auto sink = make_sink([this](std::uintptr_t page, std::uint32_t weight, bool) {
      tracker_.record_access(reinterpret_cast<const void*>(page), 1, weight);
    });
    stats_.hotness_sources.resize(sources_.size());
    stats_.tracking_cpu_ns = 0;
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      absl::Status st = sources_[i].source->collect(ranges, sink, sources_[i].budget);
      HotnessSourceStats h = sources_[i].source->stats();
      HotnessSourceCounters& c = stats_.hotness_sources[i];
      c = {std::move(h.name), h.cpu_ns,        h.handler_ns, h.pages_sampled,
           h.pages_found,     h.pages_written, h.errors,     std::move(h.last_error)};
      if (!st.ok() && c.last_error.empty()) c.last_error = std::string(st.message());
      stats_.tracking_cpu_ns += c.cpu_ns;
    }
  }

  absl::Status run_epoch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    collect_sources();
    std::int64_t t0 = clock_->now_ns();
    const std::uint64_t epoch = epoch_;
    const double decay = config_.decay();
    const auto decay_num = static_cast<std::uint32_t>(std::lround(decay * 256));
    auto aged = [decay_num](std::uint32_t h) { return (h * decay_num) >> 8; };

    // Budget and the fast nodes' real free memory.
    std::uint64_t node_total = 0, node_free = 0;
    for (NodeId n : config_.fast_nodes.to_vector()) {
      if (auto m = backend_->node_memory(n); m.ok()) {
        node_total += m->total_bytes;
        node_free += m->free_bytes;
      }
    }
    std::uint64_t budget = config_.fast_budget_bytes ? config_.fast_budget_bytes : node_total;
    EpochContext ctx;
    ctx.epoch = epoch;
    ctx.now_ns = t0;
    ctx.epoch_ns = config_.epoch_ms * kNsPerMs;
    ctx.fast_budget_pages = budget / kPageSize;
    ctx.fast_used_pages = last_hist_ ? last_hist_->fast_pages : 0;
    ctx.fast_free_pages =
        std::min(node_free / kPageSize,
                 ctx.fast_budget_pages - std::min(ctx.fast_budget_pages, ctx.fast_used_pages));
    ctx.decay = decay;
    ctx.last = last_hist_.get();
    Thresholds th = policy_->begin_epoch(ctx);
    const bool visits = policy_->visits_pages();
    const bool moves = policy_->moves_untagged_pages();
    const std::uint32_t residency = policy_->min_residency_epochs();

    // Sweep: histogram, candidates, aging.
    auto hist = std::make_unique<HeatHistogram>();
    std::vector<Candidate> promote, demote;
    auto recently_moved = [&](std::uintptr_t a) {
      if (residency == 0) return false;
      auto it = history_.find(a);
      return it != history_.end() && epoch - it->second.epoch < residency;
    };
    for (const auto& r : registry_.snapshot()) {
      RegionTag tag = r->tag.load(std::memory_order_relaxed);
      auto unit_pages = static_cast<std::uint32_t>(r->options.granularity / kPageSize);
      double ovr = r->threshold_override.load(std::memory_order_relaxed);
      std::uint32_t promote_heat = ovr >= 0 ? heat_for_rate(ovr, decay) : th.promote_heat;
      tracker_.sweep(
          r->begin, r->end,
          [&](std::uintptr_t a, std::uint16_t w) {
            bool fast = PageWord::fast(w);
            std::uint32_t h = PageWord::heat(w);
            hist->add(h, fast, unit_pages);
            if (tag == RegionTag::pinned || config_.slow_nodes.empty()) return;
            if (tag == RegionTag::hot) {
              if (!fast) promote.push_back({PageWord::kMaxHeat + 1 + h, h, a, unit_pages});
              return;
            }
            if (tag == RegionTag::cold) {
              if (fast) demote.push_back({PageWord::kMaxHeat + 1, h, a, unit_pages});
              return;
            }
            if (!moves) return;  // static: tags only
            if (visits) {
              PageVerdict v = policy_->visit(a, w, ctx);
              if (v.action == PageVerdict::kPromote)
                promote.push_back({v.priority, h, a, unit_pages});
              else if (v.action == PageVerdict::kDemoteCandidate)
                demote.push_back({v.priority, h, a, unit_pages});
              return;
            }
            if (!fast && h >= promote_heat)
              promote.push_back({h, h, a, unit_pages});
            else if (fast && h <= th.demote_heat)
              demote.push_back({PageWord::kMaxHeat - h, h, a, unit_pages});
          },
          aged);
    }
    hist->finalize();
    policy_->end_epoch(ctx, *hist);

    // How much to demote and promote (in pages).
    auto by_priority = [](const Candidate& a, const Candidate& b) {
      return a.priority != b.priority ? a.priority > b.priority : a.addr < b.addr;
    };
    std::sort(promote.begin(), promote.end(), by_priority);
    // Tagged demotions (priority > max heat) always go; the rest follow the watermarks.
    const double used = static_cast<double>(hist->fast_pages);
    const double bpages = static_cast<double>(budget / kPageSize);
    const double high = bpages * config_.high_watermark, low = bpages * config_.low_watermark;
    // The fast nodes' free memory: promotions keep it above the reserve (the
    // node's 1 - high watermark). Other memory use on the node (and the lag
    // of the kernel's free count behind our own moves) makes it wobble, so
    // demotions for the node start only a band below the reserve and stop at
    // it, and the room they make is not refilled in the same epoch: it was
    // made for someone else. (Demoting a band at the reserve and refilling it
    // at once churned a band's worth of pages every epoch.)
    const double node_reserve =
        static_cast<double>(node_total / kPageSize) * (1 - config_.high_watermark);
    const double band = bpages * (config_.high_watermark - config_.low_watermark);
    const double node_room = static_cast<double>(node_free / kPageSize) - node_reserve;
    double want_demote = 0;
    if (used > high || fast_full_) want_demote = std::max(used - low, -node_room + band);
    if (node_room < -band) want_demote = std::max(want_demote, -node_room);
    // Only the head of the demotion list is used: the tagged ones, the
    // watermark's share and at most one victim per promotion. Order just that
    // head (the same order a full sort gives it): O(n) instead of O(n log n)
    // when most fast pages are cold candidates.
    {
      std::size_t need =
          static_cast<std::size_t>(std::max(0.0, std::ceil(want_demote))) + promote.size() + 1;
      if (!visits)
        for (const auto& c : demote) need += c.priority > PageWord::kMaxHeat;
      if (need < demote.size()) {
        auto mid = demote.begin() + static_cast<std::ptrdiff_t>(need);
        std::nth_element(demote.begin(), mid, demote.end(), by_priority);
        std::sort(demote.begin(), mid, by_priority);
      } else {
        std::sort(demote.begin(), demote.end(), by_priority);
      }
    }
    // Within the band below the reserve: no room, but no debt either (swaps
    // stay one for one).
    double room = std::min(high - used, node_room < -band ? node_room : std::max(0.0, node_room));
    // The epoch's plan, in priority order: each step demotes a page, promotes
    // one, or both (a swap), so the rate limiter below keeps or defers a swap
    // whole instead of demoting a page for a newcomer it then holds back.
    struct Step {
      const Candidate* out = nullptr;  // demotion
      const Candidate* in = nullptr;   // promotion
      std::uint64_t pages() const { return (out ? out->pages : 0) + (in ? in->pages : 0); }
    };
    std::vector<Step> plan;
    double d_pages = 0;
    std::size_t di = 0;
    // Watermark demotions (and every tagged one) first, coldest first.
    // Minimum residency is checked here, on the few pages chosen, rather
    // than on every candidate during the sweep (a hash lookup each).
    for (; di < demote.size(); ++di) {
      bool tagged = demote[di].priority > PageWord::kMaxHeat && !visits;
      if (!tagged && d_pages >= want_demote) break;
      if (!tagged && recently_moved(demote[di].addr)) continue;
      plan.push_back({&demote[di], nullptr});
      d_pages += demote[di].pages;
    }
    for (std::size_t k = di; k < demote.size(); ++k)  // tagged ones further down the list
      if (demote[k].priority > PageWord::kMaxHeat && !visits) plan.push_back({&demote[k], nullptr});
    room += d_pages;
    // Promotions, hottest first, into the room; with swapping, a colder
    // resident gives way to each newcomer the policy finds worth it
    // (should_swap). A policy that reclaims for promotions (the kernel model:
    // a promotion refused at the watermark wakes kswapd, which demotes in LRU
    // order) gives up the next demotion candidate for each newcomer.
    const bool swap = policy_->swap_for_promotions();
    const bool reclaim = policy_->reclaims_for_promotions();
    double p_pages = 0;
    for (const auto& c : promote) {
      if (c.priority <= PageWord::kMaxHeat && recently_moved(c.addr)) continue;
      const Candidate* victim = nullptr;
      if (p_pages + c.pages > room) {
        if (c.priority > PageWord::kMaxHeat) continue;  // tagged hot: wait for room
        if (!swap && !reclaim) break;
        // Find the next untagged victim not already chosen.
        while (di < demote.size() && ((demote[di].priority > PageWord::kMaxHeat && !visits) ||
                                      recently_moved(demote[di].addr)))
          ++di;
        if (di >= demote.size() || (swap && !policy_->should_swap(c.heat, demote[di].heat))) break;
        victim = &demote[di];
        room += demote[di++].pages;
        if (p_pages + c.pages > room) {  // a 4 KiB victim for a 2 MiB newcomer: keep collecting
          plan.push_back({victim, nullptr});
          continue;
        }
      }
      plan.push_back({victim, &c});
      p_pages += c.pages;
    }

    // Rate limit: the plan's steps in order, each whole or not at all.
    std::uint64_t deferred = 0;
    std::size_t keep = plan.size();
    if (policy_->uses_rate_limiter()) {
      std::uint64_t bytes = 0;
      for (const auto& st : plan) bytes += st.pages() * kPageSize;
      std::uint64_t granted = limiter_.acquire_up_to(bytes, kPageSize), spent = 0;
      keep = 0;
      while (keep < plan.size() && spent + plan[keep].pages() * kPageSize <= granted)
        spent += plan[keep++].pages() * kPageSize;
      limiter_.refund(granted - spent);
      for (std::size_t i = keep; i < plan.size(); ++i) deferred += plan[i].pages();
    }
    std::vector<Candidate> demote_now, promote_now;
    for (std::size_t i = 0; i < keep; ++i) {
      if (plan[i].out) demote_now.push_back(*plan[i].out);
      if (plan[i].in) promote_now.push_back(*plan[i].in);
    }

    stats_.epoch_promoted = stats_.epoch_demoted = 0;
    fast_full_ = false;
    if (!config_.slow_nodes.empty()) {
      detail::ReaderMutexLock move_lock(&registry_.move_mutex());
      migrate(demote_now, config_.slow_nodes.first(), false, epoch);
      migrate(promote_now, config_.fast_nodes.first(), true, epoch);
    }

    // Forget history older than both windows.
    std::uint64_t keep_epochs = std::max<std::uint64_t>(config_.pingpong_window_epochs, residency);
    if (epoch % 16 == 0)
      absl::erase_if(history_,
                     [&](const auto& kv) { return epoch - kv.second.epoch > keep_epochs; });

    // Stats.
    stats_.policy = policy_->name();
    stats_.epochs = epoch + 1;
    stats_.tracked_pages = hist->fast_pages + hist->slow_pages;
    stats_.fast_pages = hist->fast_pages + stats_.epoch_promoted - stats_.epoch_demoted;
    stats_.slow_pages = stats_.tracked_pages - std::min(stats_.tracked_pages, stats_.fast_pages);
    stats_.promotion_candidates += promote.size();
    stats_.demotion_candidates += demote_now.size();
    stats_.deferred_pages += deferred;
    stats_.epoch_deferred = deferred;
    stats_.promotion_threshold = policy_->current_threshold();
    stats_.threshold_unit = policy_->threshold_unit();
    if (stats_.threshold_unit == "heat") {  // infinite (no page qualifies) stays so
      if (std::isfinite(stats_.promotion_threshold))
        stats_.promotion_threshold =
            rate_for_heat(static_cast<std::uint32_t>(stats_.promotion_threshold), decay);
      stats_.threshold_unit = "accesses/epoch";
    }
    stats_.fast_heat_share = hist->fast_heat_share();
    stats_.last_epoch_ns = clock_->now_ns() - t0;
    stats_.total_epoch_ns += stats_.last_epoch_ns;
    last_hist_ = std::move(hist);
    epoch_ = epoch + 1;
    tracker_.set_epoch(static_cast<std::uint32_t>(epoch_));
    if (callback_) callback_(stats_);
    return absl::OkStatus();
  }

  // Moves `list` to `target` and accounts for every page.
  void migrate(const std::vector<Candidate>& list, NodeId target, bool to_fast, std::uint64_t epoch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (list.empty()) return;
    std::vector<void*> pages;
    std::vector<std::uintptr_t> unit_of;
    for (const auto& c : list) {
      // Skip units unregistered since the sweep.
      auto* w = tracker_.word(c.addr);
      if (w == nullptr || !PageWord::tracked(w->load(std::memory_order_relaxed))) continue;
      for (std::uint32_t i = 0; i < c.pages; ++i) {
        pages.push_back(reinterpret_cast<void*>(c.addr + i * kPageSize));
        unit_of.push_back(c.addr);
      }
    }
    if (pages.empty()) return;
    std::vector<NodeId> nodes(pages.size(), target);
    std::vector<int> status(pages.size());
    absl::Status s = backend_->move(pages, nodes, absl::MakeSpan(status));
    if (!s.ok()) {
      stats_.failed_pages += pages.size();
      stats_.failures_by_errno.add(EINVAL);
      if (policy_->uses_rate_limiter()) limiter_.refund(pages.size() * kPageSize);
      return;
    }
    std::uint64_t failed_bytes = 0;
    for (std::size_t i = 0; i < pages.size(); ++i) {
      auto a = reinterpret_cast<std::uintptr_t>(pages[i]);
      int st = status[i];
      if (st >= 0) {
        bool now_fast = config_.fast_nodes.contains(st);
        if (unit_of[i] == a) tracker_.set_fast(a, now_fast);
        if (st != target) continue;  // already there
        (to_fast ? stats_.promoted_pages : stats_.demoted_pages) += 1;
        (to_fast ? stats_.promoted_bytes : stats_.demoted_bytes) += kPageSize;
        (to_fast ? stats_.epoch_promoted : stats_.epoch_demoted) += 1;
        if (unit_of[i] == a) {
          auto it = history_.find(a);
          if (it != history_.end() && it->second.to_fast != to_fast &&
              epoch - it->second.epoch <= config_.pingpong_window_epochs)
            ++stats_.pingpong_pages;
          history_[a] = {epoch, to_fast};
          if (auto* k = dynamic_cast<KernelModelPolicy*>(policy_.get())) k->forget(a);
        }
        continue;
      }
      failed_bytes += kPageSize;
      stats_.failures_by_errno.add(-st);
      switch (-st) {
        case EBUSY:
          ++stats_.busy_retries;
          break;  // still a candidate next epoch
        case ENOMEM:
          ++stats_.failed_pages;
          if (to_fast) fast_full_ = true;  // demote first next epoch
          break;
        case EFAULT:
          ++stats_.dropped_pages;
          tracker_.untrack(a, a + kPageSize);
          break;
        default:
          ++stats_.failed_pages;
          break;
      }
    }
    if (policy_->uses_rate_limiter() && failed_bytes) limiter_.refund(failed_bytes);
  }

  mutable detail::Mutex mu_;
  EngineConfig config_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Policy> policy_ ABSL_GUARDED_BY(mu_);
  Backend* backend_;
  const Clock* clock_;
  HotnessTracker tracker_;
  RegionRegistry registry_;
  RateLimiter limiter_;
  EngineStats stats_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<HeatHistogram> last_hist_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::uintptr_t, MoveRecord> history_ ABSL_GUARDED_BY(mu_);
  std::uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  bool fast_full_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(const EngineStats&)> callback_ ABSL_GUARDED_BY(mu_);
  struct SourceEntry {
    std::unique_ptr<HotnessSource> source;
    SourceBudget budget;
  };
  std::vector<SourceEntry> sources_ ABSL_GUARDED_BY(mu_);

  // Background thread: lifecycle_mu_ serialises start/stop; thread_mu_ and
  // thread_cv_ wake the loop.
  mutable std::mutex lifecycle_mu_;
  std::mutex thread_mu_;
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
  mutable detail::Mutex mu_;
  absl::flat_hash_map<void*, RegionHandle> regions_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tierkit
