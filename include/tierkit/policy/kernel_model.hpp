// tierkit/policy/kernel_model.hpp: a model of Linux AutoNUMA memory tiering
// (kernel.numa_balancing=2) with the seed's separate promotion target. Not a
// policy to run in production: a baseline for tierkit-sim and the benchmarks.
// Layer 4: includes policy.hpp only.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tierkit/policy.hpp"

namespace tierkit {

// Knobs of the kernel model, named after the kernel's.
struct KernelModelOptions {
  // /sys/kernel/debug/sched/numa_balancing/hot_threshold_ms
  double hot_threshold_ms = 1000;
  // /proc/sys/kernel/numa_balancing_promote_rate_limit_MBps: the hard cap.
  double promote_rate_limit_mbps = 65536;
  // The seed's numa_balancing_promote_throughput_MBps: the adjustment target
  // only (0 = stock kernel: the target is the hard cap).
  double promote_throughput_mbps = 0;
  // numa_balancing_scan_period_max_ms: how often the threshold is adjusted.
  double scan_period_max_ms = 60000;
  // numa_balancing_scan_size_mb per numa_balancing_scan_period_min_ms: how
  // fast task_numa_work walks the address space (fast and slow pages alike),
  // stamping the slow-tier pages it passes.
  double scan_size_mb = 256;
  double scan_period_ms = 1000;
  // pgdat_free_space_enough(): promote everything while the fast node has
  // this much above its promotion watermark (0 = max(1 GiB, node/16)).
  std::uint64_t enough_free_bytes = 0;
};

// A model of Linux 6.1-6.8 memory tiering (kernel.numa_balancing=2) at epoch
// granularity, driven by the recorded accesses instead of hint faults:
// - task_numa_work / change_prot_numa stamp slow-tier pages with the scan
//   time (xchg_page_access_time); fast-tier pages are not stamped, but the
//   scan passes over them: scan_size_mb per scan period is address space,
//   whatever tier its pages are on.
// - The first access after a stamp is the NUMA hint fault; its latency is
//   now - stamp (numa_hint_fault_latency).
// - should_numa_migrate_memory: if pgdat_free_space_enough(), promote and
//   reset the threshold; else numa_promotion_adjust_threshold(), and the page
//   is a candidate when latency < threshold; numa_promotion_rate_limit()
//   counts candidates per 1 s window and refuses beyond the rate limit.
// - numa_promotion_adjust_threshold: every scan_period_max, compare the
//   window's candidates with rate_limit * period: above 110% lower the
//   threshold by 2*th/16, below 90% raise it, clamped to [th/8, 2*th].
// - Promotion fails when the fast node is at its watermark
//   (migrate_balanced_pgdat) and kswapd demotes in LRU order
//   (demote_folio_list); demotion is not rate limited.
class KernelModelPolicy final : public Policy {
 public:
  static constexpr int kAdjustSteps = 16;  // NUMA_MIGRATION_ADJUST_STEPS

  static absl::Status validate(const KernelModelOptions& o) {
    auto bad = [](const char* what, double v) {
      return absl::InvalidArgumentError(
          absl::StrCat("kernel model: ", what, " = ", v, " must be a finite number > 0"));
    };
    if (!std::isfinite(o.hot_threshold_ms) || o.hot_threshold_ms <= 0)
      return bad("hot_threshold_ms", o.hot_threshold_ms);
    if (!std::isfinite(o.promote_rate_limit_mbps) || o.promote_rate_limit_mbps <= 0)
      return bad("promote_rate_limit_MBps", o.promote_rate_limit_mbps);
    if (!std::isfinite(o.promote_throughput_mbps) || o.promote_throughput_mbps < 0)
      return absl::InvalidArgumentError(
          absl::StrCat("kernel model: promote_throughput_MBps = ", o.promote_throughput_mbps,
                       " must be >= 0 (0 = stock kernel)"));
    if (!std::isfinite(o.scan_period_max_ms) || o.scan_period_max_ms <= 0)
      return bad("scan_period_max_ms", o.scan_period_max_ms);
    if (!std::isfinite(o.scan_size_mb) || o.scan_size_mb <= 0)
      return bad("scan_size_mb", o.scan_size_mb);
    if (!std::isfinite(o.scan_period_ms) || o.scan_period_ms <= 0)
      return bad("scan_period_ms", o.scan_period_ms);
    return absl::OkStatus();
  }

  explicit KernelModelPolicy(KernelModelOptions o = {}) : o_(o) {}

  std::string name() const override {
    if (o_.promote_throughput_mbps > 0)
      return absl::StrCat("kernel:target=", o_.promote_throughput_mbps);
    if (o_.promote_rate_limit_mbps != 65536)
      return absl::StrCat("kernel:rate=", o_.promote_rate_limit_mbps);
    return "kernel";
  }
  PolicyTraits traits() const override {
    PolicyTraits t;
    t.visits_pages = t.synchronous_promotion = t.reclaims_for_promotions = true;
    t.swap_for_promotions = t.uses_rate_limiter = false;
    return t;
  }
  double current_threshold() const override {
    return threshold_ms_.load() > 0 ? threshold_ms_.load() : o_.hot_threshold_ms;
  }
  const char* threshold_unit() const override { return "ms"; }
  // Candidates counted so far (PGPROMOTE_CANDIDATE).
  std::uint64_t candidates() const { return nr_cand_; }

  Thresholds begin_epoch(const EpochContext& ctx) override {
    // Pages task_numa_work stamps during this epoch.
    // Saturated: validate() takes any finite size and period, and a double
    // past uint64's range does not convert (undefined; 0 on x86-64).
    double pages_per_ms = o_.scan_size_mb * 256.0 / o_.scan_period_ms;
    const double budget = pages_per_ms * static_cast<double>(ctx.epoch_ns) / 1e6;
    scan_budget_ = !(budget > 0)     ? 0  // also NaN: an infinite rate over no time
                   : budget < 0x1p64 ? static_cast<std::uint64_t>(budget)
                                     : std::numeric_limits<std::uint64_t>::max();
    scanned_ = 0;
    wrapped_ = true;
    std::uint64_t enough =
        o_.enough_free_bytes
            ? o_.enough_free_bytes / kPageSize
            : std::max<std::uint64_t>((1ull << 30) / kPageSize, ctx.fast_budget_pages / 16);
    free_enough_ = ctx.fast_free_pages > enough;
    return {};
  }

  PageVerdict visit(std::uintptr_t addr, std::uint16_t word, const EpochContext& ctx) override {
    std::uint32_t age = PageWord::idle(word, static_cast<std::uint32_t>(ctx.epoch));
    bool accessed_now = PageWord::touched(word, static_cast<std::uint32_t>(ctx.epoch));
    // task_numa_work: the scan walks the address space in order, round
    // robin, scan_size_mb per scan period. Every page it passes counts, fast
    // ones and already-stamped ones too: change_prot_numa() skips their PTEs
    // (change_pte_range(): top-tier node with NUMA_BALANCING_NORMAL off;
    // pte_protnone()), yet task_numa_work() takes the whole range off its
    // budget (pages -= (end - start) >> PAGE_SHIFT once any PTE of it was
    // updated).
    const bool scanned = addr >= cursor_ && scanned_ < scan_budget_;
    if (scanned) {
      ++scanned_;
      last_scanned_ = addr;
      if (scanned_ == scan_budget_) wrapped_ = false;
    }
    if (PageWord::fast(word)) {
      // kswapd demotes in LRU order: least recently accessed first.
      std::uint32_t lru_age = PageWord::heat(word) == 0 ? PageWord::kEpochModulo : age;
      return {PageVerdict::kDemoteCandidate,
              lru_age * 2048 + (PageWord::kMaxHeat - PageWord::heat(word))};
    }
    PageVerdict v;
    auto it = stamp_.find(addr);
    if (it != stamp_.end() && accessed_now) {
      // Hint fault somewhere in this epoch: take its middle.
      std::int64_t fault_ns = ctx.now_ns - ctx.epoch_ns / 2;
      double latency_ms = std::max(0.0, static_cast<double>(fault_ns - it->second) / 1e6);
      stamp_.erase(it);
      it = stamp_.end();
      if (should_migrate(latency_ms, fault_ns)) v = {PageVerdict::kPromote, PageWord::heat(word)};
    }
    // Stamped by the scan (unless its stamp is still pending a fault).
    if (scanned && it == stamp_.end()) stamp_[addr] = ctx.now_ns;
    return v;
  }

  void end_epoch(const EpochContext&, const HeatHistogram&) override {
    cursor_ = wrapped_ ? 0 : last_scanned_ + kPageSize;
  }

  // A moved page's stamp goes with its old PTE.
  void on_moved(std::uintptr_t addr) override { stamp_.erase(addr); }
  // O(stamped pages).
  void forget_pages(absl::FunctionRef<bool(std::uintptr_t)> gone) override {
    absl::erase_if(stamp_, [&](const auto& kv) { return gone(kv.first); });
  }
  // stamped_pages()
  //
  // Pages scanned and not yet faulted: the stamps the model keeps.
  std::size_t stamped_pages() const { return stamp_.size(); }

 private:
  double target_mbps() const {
    return o_.promote_throughput_mbps > 0 ? o_.promote_throughput_mbps : o_.promote_rate_limit_mbps;
  }

  // should_numa_migrate_memory() for a slow-tier page.
  bool should_migrate(double latency_ms, std::int64_t now_ns) {
    if (free_enough_) {
      threshold_ms_.store(0);  // "workload changed, reset hot threshold"
      return true;
    }
    adjust_threshold(now_ns);
    double th = threshold_ms_.load() > 0 ? threshold_ms_.load() : o_.hot_threshold_ms;
    if (latency_ms >= th) return false;
    return !rate_limited(now_ns);
  }

  // numa_promotion_adjust_threshold()
  void adjust_threshold(std::int64_t now_ns) {
    double period_ns = o_.scan_period_max_ms * 1e6;
    if (static_cast<double>(now_ns - th_start_ns_) <= period_ns) return;
    th_start_ns_ = now_ns;
    double ref_cand = target_mbps() * 256.0 * o_.scan_period_max_ms / 1000.0;
    double diff = static_cast<double>(nr_cand_ - th_nr_cand_);
    double ref_th = o_.hot_threshold_ms;
    double unit = ref_th * 2 / kAdjustSteps;
    double th = threshold_ms_.load() > 0 ? threshold_ms_.load() : ref_th;
    if (diff > ref_cand * 11 / 10)
      th = std::max(th - unit, unit);
    else if (diff < ref_cand * 9 / 10)
      th = std::min(th + unit, ref_th * 2);
    th_nr_cand_ = nr_cand_;
    threshold_ms_.store(th);
  }

  // numa_promotion_rate_limit(): counts the candidate, true = over the limit.
  bool rate_limited(std::int64_t now_ns) {
    ++nr_cand_;
    if (now_ns - rl_start_ns_ > kNsPerSec) {
      rl_start_ns_ = now_ns;
      rl_nr_cand_ = nr_cand_ - 1;
    }
    return static_cast<double>(nr_cand_ - rl_nr_cand_) >= o_.promote_rate_limit_mbps * 256.0;
  }

  KernelModelOptions o_;
  absl::flat_hash_map<std::uintptr_t, std::int64_t> stamp_;
  std::uintptr_t cursor_ = 0, last_scanned_ = 0;
  std::uint64_t scan_budget_ = 0, scanned_ = 0;
  bool wrapped_ = true, free_enough_ = false;
  std::atomic<double> threshold_ms_{0};  // nbp_threshold (0 = default)
  std::int64_t th_start_ns_ = 0, rl_start_ns_ = 0;
  std::uint64_t nr_cand_ = 0, th_nr_cand_ = 0, rl_nr_cand_ = 0;
};

}  // namespace tierkit
