// tierkit/sim/hotness_model.hpp: what each hotness source of source/*.hpp
// would have seen on a simulated access stream, and what it would have cost.
// Layer 2 of the simulator (beside simulator.hpp): the models are
// HotnessSources, added to the simulated Engine with add_hotness_source(),
// so the engine's own collect_sources() stage feeds the tracker's page words
// from them exactly as it does from the real sources; the simulator calls
// on_access() for every access instead of Engine::record_access.
//
// Each model follows its real source (same defaults, same choices), only
// the page-table state is simulated. Every model reports what it inspected
// through HotnessSink::observe(), as its real source does, and the engine
// turns that into heat (SourceEstimator):
//   fault[:N]  FaultSamplingSource: each collect() reports every armed page,
//              fired or not, with how long it was armed, when it fired and
//              its inclusion probability, then arms the next sample: N single
//              pages per epoch over all ranges, or (plain "fault", groups of
//              16 pages armed as one sample) as many as
//              SourceBudget::cpu_fraction of the time pays for at these
//              costs (source::FaultBudget, as the real source sizes it from
//              its own timing), drawn by draw_stratified() (one
//              uniformly in each of k equal strata of all ranges laid end to
//              end), capped by max_armed (1024), the budget's max_pages and
//              its max_ns checked every 64 pages. The first access, load or
//              store, to an armed page fires it: one fault on the
//              application's thread.
//   softdirty  SoftDirtySource: the first collect() clears; then each reads
//              up to max_pages pagemap entries from a cursor and reports the
//              pages written since the last clear (weight 4), and clears again
//              when a pass is complete. After a clear the first write to each
//              present page takes a minor fault on the application's thread.
//              Loads are not seen.
//   uffd       UffdWpSource: registered when the engine learns of the ranges
//              (HotnessSource::watch), without WP_UNPOPULATED: a page born by a
//              write, or the copy-on-write of a zero page a read mapped, is
//              reported at the next scan for free; a write to a page the
//              source protected is a minor fault on the application's
//              thread. Each collect() scans up to max_pages pages from a
//              cursor, reports the pages unprotected since its last look
//              (weight 16), and protects a budgeted sample of the written
//              pages again (source::UffdReprotect), one ioctl per run.
//              Loads are not seen.
//   uffd+fault CombinedSource of the two: uffd may spend half the budget,
//              fault what uffd left.
//   births     BirthSource: uffd's reports of pages born, read from pagemap,
//              no protection, no fault.
//   births+fault  as uffd+fault.
// The first access to a page is its allocation fault, which the program
// takes with or without a source: the models charge nothing for it.
//
// Costs (HotnessCosts, ns): what runs on the application's threads (faults)
// is charged to the application's time; what runs in collect() (mprotect,
// /proc/self/maps, pagemap reads, clear_refs, PAGEMAP_SCAN) is the engine
// thread's, background. The defaults and their measurements:
// docs/performance.md, "Hotness sources in the simulator".
//
// "sampled" resolves like source::make_source("sampled"): the first of
// source::kSampledOrder available on the modelled machine. Debian 12 (6.1 or
// 6.12), unprivileged: perf is blocked by kernel.perf_event_paranoid, births
// and fault work everywhere, so "sampled" is births+fault there.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tierkit/common.hpp"
#include "tierkit/hotness.hpp"
#include "tierkit/hotness_source.hpp"
#include "tierkit/sim/workload.hpp"
#include "tierkit/source/births.hpp"
#include "tierkit/source/combined.hpp"
#include "tierkit/source/fault.hpp"
#include "tierkit/source/sampled.hpp"
#include "tierkit/source/softdirty.hpp"
#include "tierkit/source/uffd.hpp"

namespace tierkit::sim {

// The cost of each source's operations, ns. Defaults: measured with
// tierkit-bench on the development host (see docs/performance.md).
struct HotnessCosts {
  double record_access_ns = 0;        // app: one Engine::record_access call
  double fault_arm_ns = 0;            // engine: arm one page (mprotect PROT_NONE, table insert)
  double fault_arm_page_ns = 0;       // engine: each further page of a group armed as one sample
  double fault_fire_page_ns = 0;      // app: each further page of a group its fault restores
  double fault_disarm_ns = 0;         // engine: disarm one page that did not fire
  double fault_fire_ns = 0;           // app: fault + handler + mprotect back, per fired page
  double proc_maps_ns = 0;            // engine: one /proc/self/maps read (fault, per collect)
  double pagemap_ns_per_page = 0;     // engine: softdirty's pagemap read, per page
  double clear_refs_ns_per_page = 0;  // engine: clear_refs = 4, per present page
  double wp_fault_ns = 0;             // app: minor fault on a write-protected page
  double uffd_scan_ns_per_page = 0;   // engine: PAGEMAP_SCAN, per page
  double uffd_protect_ns = 0;         // engine: UFFDIO_WRITEPROTECT of one page (one run)
  double uffd_protect_page_ns = 0;    // engine: each further page of the same run

  // The defaults: CPU times measured by tierkit-bench on the development
  // host, quiet (2026-12-02, nested virtualisation, 2 shared vCPUs, load
  // average 0.4 rising to 2.1 during the run; docs/performance.md has the
  // run, and loaded() the figures of an earlier run at load 5).
  static HotnessCosts measured() {
    HotnessCosts c;
    c.record_access_ns = 6;  // README: record_access, ~6 ns
    c.fault_arm_ns = 15900;  // BM_FaultArmAndTouch/64 collect 17.5 us/page - maps/64
    // A group of 16 pages armed as one (the budgeted source's sample): arming
    // cost 7.2x a page's (BM_FaultArmAndTouchGroup16/64 over
    // BM_FaultArmAndTouch/64 in one run: 5.7-7.7x over three runs, as raw
    // mprotect of 16 pages over 1: 7.3x), its fault 1.5x (touch_us_per_page,
    // median of 1.0-3.5x): per further page, (7.2 - 1) / 15 and (1.5 - 1) / 15
    // of the page's figure.
    c.fault_arm_page_ns = 6600;
    c.fault_fire_page_ns = 1100;
    c.fault_disarm_ns = 7500;  // BM_FaultArm/64 25.0 us/page - BM_FaultArmAndTouch/64 17.5
    // BM_FaultArmAndTouch/64 touch_us_per_page, 32.4 us, times 0.87: the
    // handler no longer checks plain reads with process_vm_readv (session
    // 11: touch 25.1-27.9 -> 22.0-23.0 us, old and new binaries alternated).
    c.fault_fire_ns = 28200;
    c.proc_maps_ns = 104000;       // BM_ProcMapsRead, 217 mappings
    c.pagemap_ns_per_page = 20;    // BM_PagemapRead: 5.25 ms CPU per GiB
    c.clear_refs_ns_per_page = 1;  // BM_ClearRefs: 0.23 ms per GiB (a floor: no soft-dirty here)
    c.wp_fault_ns = 20100;         // BM_UffdScan/64 write_us_per_page
    c.uffd_scan_ns_per_page = 20;  // BM_UffdScan/64: 5.35 ms CPU per GiB scanned
    // BM_UffdWriteProtect/1, /4, /16: 7.5 / 17.8 / 59.3 us CPU per ioctl
    // (2026-12-02, load 1.3-1.9): per further page (59.3 - 7.5) / 15.
    c.uffd_protect_ns = 7500;
    c.uffd_protect_page_ns = 3450;
    return c;
  }
  // The same host's figures under load (load average ~5, 2026-12-02): the
  // simulator's defaults before; a pessimistic what-if (--hotness_costs=loaded).
  static HotnessCosts loaded() {
    HotnessCosts c;
    c.record_access_ns = 6;
    c.fault_arm_ns = 76000;       // BM_FaultArmAndTouch/64 collect 77.6 us/page - maps/64
    c.fault_arm_page_ns = 31400;  // the quiet figures' group ratios (7.2x, 1.5x), applied
    c.fault_fire_page_ns = 2200;
    c.fault_disarm_ns = 44000;     // BM_FaultArm/64 122 us/page - BM_FaultArmAndTouch/64 77.6
    c.fault_fire_ns = 64500;       // BM_FaultArmAndTouch/64 touch_us_per_page
    c.proc_maps_ns = 103000;       // BM_ProcMapsRead, 217 mappings
    c.pagemap_ns_per_page = 40;    // BM_PagemapRead: 10.6 ms CPU per GiB
    c.clear_refs_ns_per_page = 1;  // BM_ClearRefs: 0.26 ms per GiB
    c.wp_fault_ns = 50000;         // BM_UffdScan/64 write_us_per_page
    c.uffd_scan_ns_per_page = 23;  // BM_UffdScan/64: 6.0 ms CPU per GiB scanned
    c.uffd_protect_ns = 18750;     // the quiet figures times wp_fault's ratio (2.5x)
    c.uffd_protect_page_ns = 8600;
    return c;
  }
  // The same with record_access free: the simulator's default, so "app" runs
  // keep the time model they had before the sources were modelled.
  static HotnessCosts measured_with_free_record_access() {
    HotnessCosts c = measured();
    c.record_access_ns = 0;
    return c;
  }
  absl::Status validate() const {
    for (double v :
         {record_access_ns, fault_arm_ns, fault_arm_page_ns, fault_fire_page_ns, fault_disarm_ns,
          fault_fire_ns, proc_maps_ns, pagemap_ns_per_page, clear_refs_ns_per_page, wp_fault_ns,
          uffd_scan_ns_per_page, uffd_protect_ns, uffd_protect_page_ns})
      if (!(v >= 0 && v <= 1e9))
        return absl::InvalidArgumentError(
            absl::StrCat("hotness cost ", v, " ns: every source cost must be in [0, 1e9] ns"));
    return absl::OkStatus();
  }
};

// A parsed --hotness spec.
struct HotnessSpec {
  enum Kind { kApp, kFault, kSoftDirty, kUffd, kUffdFault, kBirths, kBirthsFault } kind = kApp;
  // fault:N's N, pages per epoch over all ranges; 0 = as the CPU budget allows.
  std::uint32_t fault_pages = source::FaultSourceOptions{}.pages_per_epoch;
  std::string requested = "app";  // as given ("sampled", "fault:8", ...)

  // The source the model runs: "app", "fault[:N]", "softdirty", "uffd",
  // "uffd+fault[:N]", "births" or "births+fault[:N]".
  std::string resolved() const {
    switch (kind) {
      case kApp:
        return "app";
      case kFault:
        return fault_pages ? absl::StrCat("fault:", fault_pages) : std::string("fault");
      case kUffdFault:
        return fault_pages ? absl::StrCat("uffd+fault:", fault_pages) : std::string("uffd+fault");
      case kBirths:
        return "births";
      case kBirthsFault:
        return fault_pages ? absl::StrCat("births+fault:", fault_pages)
                           : std::string("births+fault");
      case kSoftDirty:
        return "softdirty";
      case kUffd:
        return "uffd";
    }
    return "app";
  }
  // "sampled->fault" when the spec was resolved, else the source.
  std::string label() const {
    std::string r = resolved();
    return requested == r ? r : absl::StrCat(requested, "->", r);
  }
};

// The sources available to an unprivileged process on Debian 12's 6.12
// kernel, in no particular order: fault and births (any kernel), uffd
// (6.7+: WP_ASYNC and PAGEMAP_SCAN; UFFD_USER_MODE_ONLY as
// vm.unprivileged_userfaultfd = 0), softdirty (CONFIG_MEM_SOFT_DIRTY). Not
// perf: Debian's kernel.perf_event_paranoid blocks unprivileged sampling.
inline std::vector<std::string> debian12_6_12_sources() {
  return {"fault", "uffd", "births", "softdirty"};
}
// The same on Debian 12's stock 6.1: no uffd.
inline std::vector<std::string> debian12_6_1_sources() { return {"fault", "births", "softdirty"}; }

// Parses app, fault[:N], softdirty, uffd, uffd+fault[:N], births,
// births+fault[:N], sampled[:N]; "sampled"
// picks the first of source::kSampledOrder in `available`. Errors name the
// spec and why.
inline absl::StatusOr<HotnessSpec> parse_hotness(absl::string_view spec,
                                                 const std::vector<std::string>& available) {
  HotnessSpec h;
  h.requested = std::string(spec);
  auto pages = [&](absl::string_view n) -> absl::Status {
    std::uint32_t v = 0;
    if (!absl::SimpleAtoi(n, &v) || v == 0 || v > 4096)
      return absl::InvalidArgumentError(absl::StrCat(
          "--hotness='", spec, "': N must be an integer in [1, 4096] (pages per epoch)"));
    h.fault_pages = v;
    return absl::OkStatus();
  };
  absl::string_view s = spec;
  std::string picked;  // what "sampled" resolves to; `s` may point into it
  if (s == "sampled" || absl::StartsWith(s, "sampled:")) {
    if (s.size() > 7) {
      if (absl::Status st = pages(s.substr(8)); !st.ok()) return st;
    }
    auto offered = [&](std::string_view c) {
      for (absl::string_view part : absl::StrSplit(absl::string_view(c.data(), c.size()), '+'))
        if (std::find(available.begin(), available.end(), part) == available.end()) return false;
      return true;
    };
    for (std::string_view c : source::kSampledOrder) {
      if (!offered(c)) continue;
      if (c == "perf")
        return absl::UnimplementedError(
            "--hotness=sampled: perf is available on the modelled machine, but the perf source "
            "is a probe only (source/perf_mem.hpp) and has no model");
      picked = std::string(c);
      break;
    }
    if (picked.empty())
      return absl::InvalidArgumentError(absl::StrCat(
          "--hotness=sampled: none of ",
          absl::StrJoin(
              source::kSampledOrder, ", ",
              [](std::string* out, std::string_view v) { out->append(v.data(), v.size()); }),
          " is in --hotness_available='", absl::StrJoin(available, ","), "'"));
    s = picked;
    if (!absl::EndsWith(s, "fault")) h.fault_pages = source::FaultSourceOptions{}.pages_per_epoch;
  }
  if (s == "app") {
    h.kind = HotnessSpec::kApp;
  } else if (s == "fault") {
    h.kind = HotnessSpec::kFault;
  } else if (absl::StartsWith(s, "fault:")) {
    if (absl::Status st = pages(s.substr(6)); !st.ok()) return st;
    h.kind = HotnessSpec::kFault;
  } else if (s == "uffd+fault") {
    h.kind = HotnessSpec::kUffdFault;
  } else if (absl::StartsWith(s, "uffd+fault:")) {
    if (absl::Status st = pages(s.substr(11)); !st.ok()) return st;
    h.kind = HotnessSpec::kUffdFault;
  } else if (s == "births") {
    h.kind = HotnessSpec::kBirths;
  } else if (s == "births+fault") {
    h.kind = HotnessSpec::kBirthsFault;
  } else if (absl::StartsWith(s, "births+fault:")) {
    if (absl::Status st = pages(s.substr(13)); !st.ok()) return st;
    h.kind = HotnessSpec::kBirthsFault;
  } else if (s == "softdirty") {
    h.kind = HotnessSpec::kSoftDirty;
  } else if (s == "uffd") {
    h.kind = HotnessSpec::kUffd;
  } else if (s == "perf") {
    return absl::UnimplementedError(
        "--hotness=perf: the perf source is a probe only (source/perf_mem.hpp); nothing to model");
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--hotness='", spec,
                     "': unknown source (known: app, fault, fault:N, softdirty, uffd, "
                     "uffd+fault, uffd+fault:N, births, births+fault, births+fault:N, sampled, "
                     "sampled:N)"));
  }
  return h;
}

// A modelled source: a HotnessSource for the engine, plus on_access() for
// the simulator's access loop and the cost it has accounted.
class SourceModel : public HotnessSource {
 public:
  // Pages [0, pages) live at base + page * kPageSize.
  SourceModel(std::uintptr_t base, std::uint64_t pages, const HotnessCosts& costs)
      : base_(base), pages_(pages), c_(costs), present_(pages, 0) {}

  // One access by the application: returns the ns it costs the
  // application's thread (a fault), 0 mostly.
  virtual double on_access(std::uint32_t page, bool write, std::int64_t now_ns = 0) {
    now_ = now_ns;
    if (present_[page] == 0) {
      present_[page] = 1;  // the allocation fault: taken with or without a source
      return first_touch(page, write);
    }
    double ns = access(page, write);
    app_ns_ += ns;
    return ns;
  }

  absl::Status probe() override { return absl::OkStatus(); }
  HotnessSourceStats stats() const override { return stats_; }

  // The simulator's clock: at each access (on_access) and at the next collect().
  virtual void set_now(std::int64_t ns) { now_ = ns; }

  virtual double app_ns() const { return app_ns_; }        // charged to the application so far
  virtual double engine_ns() const { return engine_ns_; }  // in collect() so far (background)
  virtual std::uint64_t faults() const { return faults_; }

 protected:
  virtual double first_touch(std::uint32_t page, bool write) = 0;
  virtual double access(std::uint32_t page, bool write) = 0;

  std::uintptr_t addr(std::uint64_t page) const { return base_ + page * kPageSize; }
  // Pages of `r` inside the model, as [first, end) page indices.
  std::pair<std::uint64_t, std::uint64_t> pages_of(const TrackedRange& r) const {
    auto idx = [&](std::uintptr_t a) {
      return a <= base_ ? 0 : std::min<std::uint64_t>(pages_, (a - base_) / kPageSize);
    };
    return {idx(r.begin), idx(r.end)};
  }
  // The budgeted rotating pass of softdirty and uffd: visits the pages of
  // `ranges` from the cursor on, `per_page_ns` each, until the budget's
  // max_pages or max_ns is spent. True when the pass reached the end (the
  // cursor is back at 0).
  template <class Visit>
  bool budgeted_pass(absl::Span<const TrackedRange> ranges, const SourceBudget& budget,
                     double per_page_ns, HotnessSourceStats::Collect& c, double& cost,
                     Visit visit) {
    const std::uint64_t cap = budget.max_pages ? budget.max_pages : ~std::uint64_t{0};
    for (const TrackedRange& r : ranges) {
      auto [first, end] = pages_of(r);
      if (end <= next_) continue;
      for (std::uint64_t p = std::max(first, next_); p < end; ++p) {
        if (c.sampled >= cap || (budget.max_ns > 0 && cost > static_cast<double>(budget.max_ns))) {
          next_ = p;
          return false;
        }
        ++c.sampled;
        cost += per_page_ns;
        visit(p);
      }
      next_ = end;
    }
    next_ = 0;
    return true;
  }
  // The inclusion probability of a page inspected by a budgeted pass: a pass
  // inspects min(max_pages, all pages) per epoch.
  double pass_inclusion(absl::Span<const TrackedRange> ranges, const SourceBudget& budget) const {
    double total = 0;
    for (const TrackedRange& r : ranges) {
      auto [first, end] = pages_of(r);
      total += static_cast<double>(end - first);
    }
    if (total <= 0) return 1;
    return budget.max_pages ? std::min(1.0, static_cast<double>(budget.max_pages) / total) : 1.0;
  }
  // Reports page `p` found written by a write-only source (`birth`: born,
  // and that is all it knows; SourceObservation::birth).
  void report_written(HotnessSink& sink, std::uint64_t p, std::uint32_t weight, double inclusion,
                      bool birth = false) {
    SourceObservation o;
    o.page = addr(p);
    o.accessed = o.written = true;
    o.birth = birth;
    o.weight = weight;
    o.inclusion = inclusion;
    sink.observe(o);
  }
  void end_collect(double cost, const HotnessSourceStats::Collect& c) {
    engine_ns_ += cost;
    stats_.add_collect(static_cast<std::int64_t>(cost), c, "");
  }

  const std::uintptr_t base_;
  const std::uint64_t pages_;
  const HotnessCosts c_;
  std::vector<std::uint8_t> present_;
  double app_ns_ = 0, engine_ns_ = 0;
  std::uint64_t faults_ = 0;
  std::uint64_t next_ = 0;  // budgeted_pass's cursor (a page index)
  std::int64_t now_ = 0;
  HotnessSourceStats stats_;
};

// fault[:N], as source::FaultSamplingSource.
class FaultModel final : public SourceModel {
 public:
  FaultModel(std::uintptr_t base, std::uint64_t pages, const HotnessCosts& costs,
             source::FaultSourceOptions o)
      : SourceModel(base, pages, costs), o_(o), rng_(o.seed), group_of_(pages, kNone) {
    o_.max_armed = std::min<std::uint32_t>(
        o_.max_armed, static_cast<std::uint32_t>(source::fault_detail::Table::kSlots / 4));
    stats_.name = "fault";
  }
  std::string_view name() const override { return "fault"; }

  // The model's costs as the real source would measure them.
  source::FaultSampleCosts sample_costs() const {
    const double group = source::fault_group_pages(o_.group_pages) - 1.0;
    return {c_.fault_arm_ns + group * c_.fault_arm_page_ns, c_.fault_disarm_ns,
            c_.fault_fire_ns + group * c_.fault_fire_page_ns, c_.proc_maps_ns};
  }

  absl::Status collect(absl::Span<const TrackedRange> ranges, HotnessSink& sink,
                       const SourceBudget& budget) override {
    HotnessSourceStats::Collect c;
    double cost = 0;
    // Harvest: report every armed page, fired or not; disarm the rest.
    SourceObservation o;
    o.weight = o_.weight;
    o.inclusion = inclusion_;
    const std::int64_t watched = std::max<std::int64_t>(1, now_ - armed_at_);
    for (const Group& g : groups_) {
      const bool fired = g.fired != kNone;
      if (fired) {
        ++c.found;
        c.written += g.written;
      } else {
        cost += c_.fault_disarm_ns;
      }
      const std::int64_t lat =
          fired ? std::clamp<std::int64_t>(g.fired_at - armed_at_, 0, watched) : -1;
      for (std::uint32_t p = g.first; p < g.first + g.pages; ++p) {
        group_of_[p] = kNone;
        o.page = addr(p);
        o.accessed = p == g.fired;
        o.written = o.accessed && g.written;
        // The group's other pages were watched until it fired, not touched.
        o.watch_cut = fired && !o.accessed;
        o.watched_ns = o.watch_cut ? std::max<std::int64_t>(1, lat) : watched;
        o.latency_ns = o.accessed ? lat : -1;
        sink.observe(o);
      }
    }
    // What the harvested sample cost in all: its arming and maps read (last
    // collect), its faults, its disarms.
    budget_.settle(groups_.size(), c.found, last_arm_ns_ + (app_ns_ - app_seen_) + cost);
    app_seen_ = app_ns_;
    groups_.clear();
    armed_at_ = now_;
    cost += c_.proc_maps_ns;
    const double maps_and_disarm = cost;
    // Size the next sample, as the real source does.
    std::uint64_t want = o_.max_armed;
    double allowance = 0;
    if (o_.pages_per_epoch > 0) {
      want = o_.pages_per_epoch;
    } else if (budget.cpu_fraction > 0 && budget.epoch_ns > 0) {
      allowance = budget.cpu_fraction * static_cast<double>(budget.epoch_ns);
      want = budget_.plan(sample_costs(), allowance);
    }
    const std::uint64_t cap = std::min<std::uint64_t>(
        {want, o_.max_armed, budget.max_pages ? budget.max_pages : o_.max_armed});
    std::vector<std::uint64_t> units(ranges.size(), 0);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < ranges.size(); ++i) {
      auto [first, end] = pages_of(ranges[i]);
      if (ranges[i].granularity != kPageSize || end <= first) {
        ++c.skipped;
        continue;
      }
      total += units[i] = end - first;
    }
    const std::uint32_t k = source::fault_group_pages(o_.group_pages);
    inclusion_ =
        total > 0 ? std::min(1.0, static_cast<double>(cap) * k / static_cast<double>(total)) : 0.0;
    start_ = source::draw_stratified(
        units, cap, start_, [&](std::uint64_t n) { return rng_.below(n); },
        [&](std::size_t ri, std::uint64_t u) {
          auto [first, end] = pages_of(ranges[ri]);
          const auto p = static_cast<std::uint32_t>(first + u);
          // The aligned group of k pages holding p, if the range holds it
          // whole (the model's pages are aligned as their addresses are).
          std::uint32_t g0 = p & ~(k - 1), len = k;
          if (g0 < first || g0 + k > end) g0 = p, len = 1;
          for (std::uint32_t q = g0; q < g0 + len; ++q)
            if (group_of_[q] != kNone) return true;  // overlaps one drawn before
          for (std::uint32_t q = g0; q < g0 + len; ++q)
            group_of_[q] = static_cast<std::uint32_t>(groups_.size());
          groups_.push_back({g0, len, kNone, 0, false});
          cost += c_.fault_arm_ns + (len - 1) * c_.fault_arm_page_ns;
          ++c.sampled;
          return !(budget.max_ns > 0 && (c.sampled & 63) == 0 &&
                   cost > static_cast<double>(budget.max_ns));
        });
    last_arm_ns_ = cost - maps_and_disarm + c_.proc_maps_ns;
    end_collect(cost, c);
    stats_.budget_ns = static_cast<std::uint64_t>(allowance);
    stats_.ns_per_sample = static_cast<std::uint64_t>(sample_costs().per_sample_ns(budget_.p_fire));
    stats_.last_sampled = c.sampled;
    stats_.app_ns = static_cast<std::uint64_t>(app_ns_);
    return absl::OkStatus();
  }

  // The first page of each group armed now (tests).
  std::vector<std::uint32_t> armed() const {
    std::vector<std::uint32_t> out;
    for (const Group& g : groups_) out.push_back(g.first);
    return out;
  }

 private:
  static constexpr std::uint32_t kNone = ~std::uint32_t{0};
  struct Group {
    std::uint32_t first, pages;
    std::uint32_t fired;  // the page whose access fired it, or kNone
    std::int64_t fired_at;
    bool written;
  };
  double first_touch(std::uint32_t page, bool write) override {
    double ns = access(page, write);  // an armed, never-touched page faults too
    app_ns_ += ns;
    return ns;
  }
  double access(std::uint32_t page, bool write) override {
    const std::uint32_t gi = group_of_[page];
    if (gi == kNone) return 0;
    Group& g = groups_[gi];
    if (g.fired != kNone) return 0;  // restored when it fired
    g.fired = page;
    g.fired_at = now_;
    g.written = write;
    ++faults_;
    return c_.fault_fire_ns + (g.pages - 1) * c_.fault_fire_page_ns;
  }

  source::FaultSourceOptions o_;
  Rng rng_;
  std::vector<std::uint32_t> group_of_;  // page -> index in groups_, or kNone
  std::vector<Group> groups_;
  std::int64_t armed_at_ = 0;
  double inclusion_ = 0;
  double start_ = 0;  // draw_stratified()'s next start
  source::FaultBudget budget_;
  double last_arm_ns_ = 0;  // the armed sample's arming and maps read
  double app_seen_ = 0;     // app_ns_ at the last harvest (its faults since)
};

// softdirty, as source::SoftDirtySource.
class SoftDirtyModel final : public SourceModel {
 public:
  SoftDirtyModel(std::uintptr_t base, std::uint64_t pages, const HotnessCosts& costs,
                 source::SoftDirtyOptions o = {})
      : SourceModel(base, pages, costs), o_(o), dirty_(pages, 0), wp_(pages, 0) {
    stats_.name = "softdirty";
  }
  std::string_view name() const override { return "softdirty"; }

  absl::Status collect(absl::Span<const TrackedRange> ranges, HotnessSink& sink,
                       const SourceBudget& budget) override {
    HotnessSourceStats::Collect c;
    double cost = 0;
    const double inclusion = pass_inclusion(ranges, budget);
    if (!started_) {
      cost += clear();
      started_ = true;
    } else if (budgeted_pass(ranges, budget, c_.pagemap_ns_per_page, c, cost, [&](std::uint64_t p) {
                 if (present_[p] == 0) {
                   ++c.skipped;  // not present: not written
                 } else if (dirty_[p] != 0) {
                   ++c.found;
                   report_written(sink, p, o_.weight, inclusion);
                 }
               })) {
      cost += clear();
      ++passes_;
    }
    c.written = c.found;
    end_collect(cost, c);
    return absl::OkStatus();
  }
  std::uint64_t passes() const { return passes_; }

 private:
  // clear_refs = 4: every present page clean and write-protected.
  double clear() {
    std::uint64_t present = 0;
    for (std::uint64_t p = 0; p < pages_; ++p) {
      dirty_[p] = 0;
      wp_[p] = present_[p];
      present += present_[p];
    }
    return static_cast<double>(present) * c_.clear_refs_ns_per_page;
  }
  double first_touch(std::uint32_t page, bool write) override {
    dirty_[page] = write;  // a page born by a write is soft-dirty
    return 0;
  }
  double access(std::uint32_t page, bool write) override {
    if (!write) return 0;
    dirty_[page] = 1;
    if (wp_[page] == 0) return 0;
    wp_[page] = 0;
    ++faults_;
    return c_.wp_fault_ns;
  }

  source::SoftDirtyOptions o_;
  std::vector<std::uint8_t> dirty_, wp_;
  bool started_ = false;
  std::uint64_t passes_ = 0;
};

// uffd, as source::UffdWpSource: registered when the engine learns of the
// ranges (watch()), without WP_UNPOPULATED, so a page's birth costs nothing
// extra; a read maps the shared zero page (Debian's kernels), whose later
// copy-on-write costs nothing extra either. A write to a page the source
// protected is one minor fault. Each scan reports the pages unprotected now
// and not at the last scan, then protects a sample of the written units again
// (source::uffd_detail::chosen, fraction source::UffdReprotect), one ioctl
// per run.
//
// With `births_only` it is source::BirthSource instead: the same reports of
// pages born, read from pagemap (pagemap_ns_per_page each), never protecting.
class UffdModel final : public SourceModel {
 public:
  UffdModel(std::uintptr_t base, std::uint64_t pages, const HotnessCosts& costs,
            source::UffdWpOptions o = {}, bool births_only = false)
      : SourceModel(base, pages, costs),
        o_(o),
        births_only_(births_only),
        wp_(pages, 0),
        seen_(pages, 0),
        zero_(pages, 0) {
    stats_.name = births_only ? "births" : "uffd-wp";
    if (o_.reprotect > 0) control_.f = std::min(1.0, o_.reprotect);
    if (births_only) o_.weight = source::BirthSourceOptions{}.weight;
  }
  std::string_view name() const override { return births_only_ ? "births" : "uffd-wp"; }

  void watch(absl::Span<const TrackedRange> ranges) override {
    if (watched_) return;  // the model's ranges are fixed once known
    watched_ = true;
    for (const TrackedRange& r : ranges) {
      auto [first, end] = pages_of(r);
      for (std::uint64_t p = first; p < end; ++p) seen_[p] = written(p);
    }
  }

  absl::Status collect(absl::Span<const TrackedRange> ranges, HotnessSink& sink,
                       const SourceBudget& budget) override {
    watch(ranges);
    const double allowance =
        budget.cpu_fraction * static_cast<double>(std::max<std::int64_t>(0, budget.epoch_ns));
    if (o_.reprotect <= 0) control_.start(c_.wp_fault_ns, allowance);
    HotnessSourceStats::Collect c;
    double cost = 0;
    std::uint64_t faulted = 0, at_risk = 0, written_now = 0, added = 0;
    std::uint64_t run_end = ~std::uint64_t{0};
    double added_ns = 0;
    const double inclusion = pass_inclusion(ranges, budget);
    const double per_page = births_only_ ? c_.pagemap_ns_per_page : c_.uffd_scan_ns_per_page;
    budgeted_pass(ranges, budget, per_page, c, cost, [&](std::uint64_t p) {
      at_risk += prot_[p];
      if (!written(p)) {
        seen_[p] = 0;
        return;
      }
      ++written_now;
      if (seen_[p] == 0) {
        faulted += prot_[p];
        ++c.found;
        report_written(sink, p, o_.weight, inclusion, prot_[p] == 0);
      }
      const bool again = !births_only_ &&
                         source::uffd_detail::chosen(addr(p), round_, control_.f) &&
                         added < control_.quota;
      seen_[p] = !again;
      prot_[p] = again;
      if (!again) return;
      ++added;
      wp_[p] = 1;
      const double ns = run_end == p ? c_.uffd_protect_page_ns : c_.uffd_protect_ns;
      cost += ns;
      added_ns += ns;
      run_end = p + 1;
    });
    ++round_;
    const double f = control_.f;
    control_.settle(faulted, at_risk, written_now, added, added_ns, cost, c_.wp_fault_ns,
                    allowance);
    if (o_.reprotect > 0) control_.f = f, control_.quota = ~std::uint64_t{0};  // fixed
    c.written = c.found;
    end_collect(cost, c);
    stats_.app_ns = static_cast<std::uint64_t>(app_ns_);
    stats_.planned_ns = static_cast<std::uint64_t>(std::max(0.0, control_.planned_ns));
    return absl::OkStatus();
  }

  double reprotect_fraction() const { return control_.f; }

 private:
  bool written(std::uint64_t p) const { return present_[p] && !zero_[p] && !wp_[p]; }
  double first_touch(std::uint32_t page, bool write) override {
    zero_[page] = !write;  // a read maps the zero page; a write, a new page
    return 0;
  }
  double access(std::uint32_t page, bool write) override {
    if (!write) return 0;
    if (zero_[page] != 0) {  // copy-on-write of the zero page: taken anyway
      zero_[page] = 0;
      return 0;
    }
    if (wp_[page] == 0) return 0;
    wp_[page] = 0;
    ++faults_;
    return c_.wp_fault_ns;
  }

  source::UffdWpOptions o_;
  bool births_only_;
  std::vector<std::uint8_t> wp_, seen_, zero_, prot_ = std::vector<std::uint8_t>(pages_, 0);
  bool watched_ = false;
  std::uint64_t round_ = 0;
  source::UffdReprotect control_;
};

// uffd+fault[:N] and births+fault[:N], as source::make_source builds them: a
// source::CombinedSource over the two models, each access shown to both.
class CombinedModel final : public SourceModel {
 public:
  CombinedModel(std::uintptr_t base, std::uint64_t pages, const HotnessCosts& costs,
                std::vector<std::unique_ptr<SourceModel>> parts)
      : SourceModel(base, pages, costs), combined_([&] {
          std::vector<std::unique_ptr<HotnessSource>> own;
          for (auto& p : parts) {
            parts_.push_back(p.get());
            own.push_back(std::move(p));
          }
          return own;
        }()) {}
  std::string_view name() const override { return combined_.name(); }
  void watch(absl::Span<const TrackedRange> ranges) override { combined_.watch(ranges); }
  absl::Status collect(absl::Span<const TrackedRange> ranges, HotnessSink& sink,
                       const SourceBudget& budget) override {
    return combined_.collect(ranges, sink, budget);
  }
  HotnessSourceStats stats() const override { return combined_.stats(); }
  double on_access(std::uint32_t page, bool write, std::int64_t now_ns = 0) override {
    double ns = 0;
    for (SourceModel* p : parts_) ns += p->on_access(page, write, now_ns);
    return ns;
  }
  void set_now(std::int64_t ns) override {
    for (SourceModel* p : parts_) p->set_now(ns);
  }
  double app_ns() const override { return sum(&SourceModel::app_ns); }
  double engine_ns() const override { return sum(&SourceModel::engine_ns); }
  std::uint64_t faults() const override {
    std::uint64_t n = 0;
    for (const SourceModel* p : parts_) n += p->faults();
    return n;
  }

 private:
  double first_touch(std::uint32_t, bool) override { return 0; }  // on_access forwards
  double access(std::uint32_t, bool) override { return 0; }
  double sum(double (SourceModel::*f)() const) const {
    double t = 0;
    for (const SourceModel* p : parts_) t += (p->*f)();
    return t;
  }
  std::vector<SourceModel*> parts_;  // owned by combined_
  source::CombinedSource combined_;
};

// The model of `spec` for pages [0, pages) at `base`; nullptr for "app".
inline std::unique_ptr<SourceModel> make_source_model(
    const HotnessSpec& spec, std::uintptr_t base, std::uint64_t pages, const HotnessCosts& costs,
    std::uint32_t group_pages = source::FaultSourceOptions{}.group_pages) {
  switch (spec.kind) {
    case HotnessSpec::kApp:
      return nullptr;
    case HotnessSpec::kFault: {
      source::FaultSourceOptions o;  // as source::make_source("fault[:N]")
      if (spec.fault_pages > 0)
        o = source::FaultSourceOptions::fixed(spec.fault_pages);
      else
        o.group_pages = group_pages;
      return std::make_unique<FaultModel>(base, pages, costs, o);
    }
    case HotnessSpec::kSoftDirty:
      return std::make_unique<SoftDirtyModel>(base, pages, costs);
    case HotnessSpec::kUffd:
      return std::make_unique<UffdModel>(base, pages, costs);
    case HotnessSpec::kBirths:
      return std::make_unique<UffdModel>(base, pages, costs, source::UffdWpOptions{}, true);
    case HotnessSpec::kUffdFault:
    case HotnessSpec::kBirthsFault: {
      HotnessSpec fault = spec;
      fault.kind = HotnessSpec::kFault;
      std::vector<std::unique_ptr<SourceModel>> parts;
      if (spec.kind == HotnessSpec::kUffdFault)
        parts.push_back(std::make_unique<UffdModel>(base, pages, costs));
      else
        parts.push_back(
            std::make_unique<UffdModel>(base, pages, costs, source::UffdWpOptions{}, true));
      parts.push_back(make_source_model(fault, base, pages, costs, group_pages));
      return std::make_unique<CombinedModel>(base, pages, costs, std::move(parts));
    }
  }
  return nullptr;
}

}  // namespace tierkit::sim
