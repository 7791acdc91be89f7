// tierkit/backend/fault_injection.hpp: a Backend that wraps another and makes
// move() misbehave the way move_pages(2) does on a busy machine: per-page
// -EBUSY (page locked or under writeback), -ENOMEM (target node full), -EFAULT
// (page unmapped under us), partial results (a page left where it is and
// reported on its current node), whole calls that fail, and calls that fail
// part way, after some pages moved (a later batch's error). Faults are drawn
// from a seeded RNG, so a run is reproducible for a given call sequence, and
// every fault injected is counted. query() can be made to fail on demand
// (fail_queries). For tests and soak runs of the engine; all other methods
// forward to the wrapped backend unchanged. Layer 1.
//
// Example:
//   SimulatedBackend sim({{0, 64 << 20}, {1, 1 << 30}});
//   FaultInjectionBackend faulty(sim, FaultInjectionOptions().with_seed(7).with_ebusy(0.2));
//   auto engine = Engine::create(config, &faulty, &clock);
#pragma once

#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tierkit/backend.hpp"
#include "tierkit/detail/mutex.hpp"

namespace tierkit {

// Fault rates of FaultInjectionBackend, each a probability in [0, 1]. The
// per-page rates are exclusive outcomes drawn once per page (their sum is
// capped at 1: later ones get what is left).
struct FaultInjectionOptions {
  std::uint64_t seed = 1;
  double call_failure_rate = 0;  // the whole move() fails; nothing is moved
  double ebusy_rate = 0;         // page reports -EBUSY and is not moved
  double enomem_rate = 0;        // page reports -ENOMEM and is not moved
  double efault_rate = 0;        // page reports -EFAULT and is not moved
  double partial_rate = 0;       // page is not moved and reports its current node
  // The call fails part way: a random prefix of the pages that drew no
  // per-page fault moves, then it returns `late_failure_code`.
  double late_failure_rate = 0;
  absl::StatusCode late_failure_code = absl::StatusCode::kInternal;

  FaultInjectionOptions& with_seed(std::uint64_t s) {
    seed = s;
    return *this;
  }
  FaultInjectionOptions& with_call_failure(double r) {
    call_failure_rate = r;
    return *this;
  }
  FaultInjectionOptions& with_ebusy(double r) {
    ebusy_rate = r;
    return *this;
  }
  FaultInjectionOptions& with_enomem(double r) {
    enomem_rate = r;
    return *this;
  }
  FaultInjectionOptions& with_efault(double r) {
    efault_rate = r;
    return *this;
  }
  FaultInjectionOptions& with_partial(double r) {
    partial_rate = r;
    return *this;
  }
  FaultInjectionOptions& with_late_failure(double r,
                                           absl::StatusCode code = absl::StatusCode::kInternal) {
    late_failure_rate = r;
    late_failure_code = code;
    return *this;
  }

  // OK when every rate is a finite number in [0, 1]; the error names the rate.
  absl::Status validate() const {
    const std::pair<const char*, double> rates[] = {{"call_failure_rate", call_failure_rate},
                                                    {"ebusy_rate", ebusy_rate},
                                                    {"enomem_rate", enomem_rate},
                                                    {"efault_rate", efault_rate},
                                                    {"partial_rate", partial_rate},
                                                    {"late_failure_rate", late_failure_rate}};
    for (const auto& [name, r] : rates)
      if (!(std::isfinite(r) && r >= 0 && r <= 1))
        return absl::InvalidArgumentError(
            absl::StrCat("fault injection: ", name, " = ", r, " must be in [0, 1]"));
    if (late_failure_code == absl::StatusCode::kOk)
      return absl::InvalidArgumentError("fault injection: late_failure_code must be an error");
    return absl::OkStatus();
  }
};

// What FaultInjectionBackend did, in pages and calls. Plain data.
struct FaultCounts {
  std::uint64_t calls = 0;                          // move() calls
  std::uint64_t failed_calls = 0;                   // injected whole-call failures
  std::uint64_t pages = 0;                          // pages passed to move(), failed calls included
  std::uint64_t failed_call_pages = 0;              // pages in injected failed calls
  std::uint64_t ebusy = 0, enomem = 0, efault = 0;  // injected per-page errors
  std::uint64_t partial = 0;                        // pages left in place, reported on their node
  std::uint64_t late_failed_calls = 0;              // injected failures after a partial move
  std::uint64_t forwarded = 0;                      // pages handed to the wrapped backend
  std::uint64_t failed_queries = 0;                 // query() calls failed (fail_queries)

  // Every fault injected: whole calls count once, pages once each.
  std::uint64_t faults() const {
    return failed_calls + late_failed_calls + ebusy + enomem + efault + partial + failed_queries;
  }
};

class FaultInjectionBackend final : public ForwardingBackend {
 public:
  // Wraps `inner`, which must outlive this backend. Invalid rates (see
  // FaultInjectionOptions::validate) are clamped into [0, 1]; NaN becomes 0;
  // an OK late_failure_code becomes kInternal.
  explicit FaultInjectionBackend(Backend& inner, FaultInjectionOptions options = {})
      : ForwardingBackend(inner),
        name_(absl::StrCat("fault-injection(", inner.name(), ")")),
        options_(clamped(options)),
        rng_(options.seed) {}

  // Replaces the rates (and reseeds when `options.seed` differs). Thread-safe;
  // effective from the next move().
  void set_options(const FaultInjectionOptions& options) {
    detail::MutexLock lock(&mu_);
    if (options.seed != options_.seed) rng_.seed(options.seed);
    options_ = clamped(options);
  }
  FaultInjectionOptions options() const {
    detail::MutexLock lock(&mu_);
    return options_;
  }
  // fail_queries()
  //
  // Makes the next `n` query() calls fail (Unavailable, the wrapped backend
  // not asked); with `after_late_failure`, only from the next late move
  // failure on (with_late_failure), so the first to fail is the caller's
  // query of where that batch's pages went. Replaces any count still armed;
  // draws nothing from the RNG, so the seeds' fault sequences are unchanged.
  void fail_queries(std::uint64_t n, bool after_late_failure = false) {
    detail::MutexLock lock(&mu_);
    queries_to_fail_ = n;
    queries_wait_for_late_failure_ = after_late_failure;
  }
  // A snapshot of the counters. One mutex acquisition.
  FaultCounts counts() const {
    detail::MutexLock lock(&mu_);
    return counts_;
  }

  absl::string_view name() const override { return name_; }
  // query() fails while fail_queries() says so; every other call goes to
  // the wrapped backend (ForwardingBackend): errno_counts() is its tally
  // (pages it really saw); injected outcomes are in counts().
  absl::Status query(absl::Span<void* const> pages, absl::Span<int> status) override {
    {
      detail::MutexLock lock(&mu_);
      if (queries_to_fail_ > 0 && !queries_wait_for_late_failure_) {
        --queries_to_fail_;
        ++counts_.failed_queries;
        return absl::UnavailableError(
            absl::StrCat("move_pages query failed: injected fault (", pages.size(), " pages)"));
      }
    }
    return inner().query(pages, status);
  }

  // Draws one outcome per page; forwards the pages that draw "no fault" to the
  // wrapped backend in one move() call, and asks it (one query() call) where
  // the "partial" pages are. A late failure forwards only a prefix of them
  // and returns its error (`status` then undefined, as Backend::move says).
  // Costs O(pages) plus those two calls; serialised by a mutex (the RNG), so
  // concurrent callers see a reproducible sequence only if their order is
  // fixed.
  absl::Status move(absl::Span<void* const> pages, absl::Span<const NodeId> nodes,
                    absl::Span<int> status) override {
    if (nodes.size() != pages.size() || status.size() < pages.size())
      return absl::InvalidArgumentError("move: pages, nodes and status differ in length");
    detail::MutexLock lock(&mu_);
    ++counts_.calls;
    counts_.pages += pages.size();
    if (draw() < options_.call_failure_rate) {
      ++counts_.failed_calls;
      counts_.failed_call_pages += pages.size();
      return absl::InternalError(
          absl::StrCat("move_pages failed: injected fault (", pages.size(), " pages, none moved)"));
    }
    std::vector<void*> fwd_pages, part_pages;
    std::vector<NodeId> fwd_nodes;
    std::vector<std::size_t> fwd_index, part_index;
    for (std::size_t i = 0; i < pages.size(); ++i) {
      double u = draw(), edge = options_.ebusy_rate;
      if (u < edge) {
        status[i] = -EBUSY;
        ++counts_.ebusy;
      } else if (u < (edge += options_.enomem_rate)) {
        status[i] = -ENOMEM;
        ++counts_.enomem;
      } else if (u < (edge += options_.efault_rate)) {
        status[i] = -EFAULT;
        ++counts_.efault;
      } else if (u < (edge += options_.partial_rate)) {
        part_pages.push_back(pages[i]);
        part_index.push_back(i);
        ++counts_.partial;
      } else {
        fwd_pages.push_back(pages[i]);
        fwd_nodes.push_back(nodes[i]);
        fwd_index.push_back(i);
      }
    }
    if (late_failure()) return fail_late(fwd_pages, fwd_nodes, pages.size());
    if (!fwd_pages.empty()) {
      std::vector<int> st(fwd_pages.size());
      counts_.forwarded += fwd_pages.size();  // handed over, whatever the inner move says
      if (absl::Status s = inner().move(fwd_pages, fwd_nodes, absl::MakeSpan(st)); !s.ok())
        return s;
      for (std::size_t k = 0; k < st.size(); ++k) status[fwd_index[k]] = st[k];
    }
    if (!part_pages.empty()) {
      std::vector<int> st(part_pages.size());
      absl::Status s = inner().query(part_pages, absl::MakeSpan(st));
      for (std::size_t k = 0; k < st.size(); ++k) status[part_index[k]] = s.ok() ? st[k] : -EBUSY;
    }
    return absl::OkStatus();
  }

 private:
  static FaultInjectionOptions clamped(FaultInjectionOptions o) {
    for (double* r : {&o.call_failure_rate, &o.ebusy_rate, &o.enomem_rate, &o.efault_rate,
                      &o.partial_rate, &o.late_failure_rate})
      *r = std::isnan(*r) ? 0 : (*r < 0 ? 0 : (*r > 1 ? 1 : *r));
    if (o.late_failure_code == absl::StatusCode::kOk)
      o.late_failure_code = absl::StatusCode::kInternal;
    return o;
  }
  // Drawn only when the rate is set, so other options' seeds keep their
  // fault sequences.
  bool late_failure() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return options_.late_failure_rate > 0 && draw() < options_.late_failure_rate;
  }
  // Moves a random prefix (0 to all) of the forwarded pages, as
  // move_pages(2) moves the batches before a failing one, then fails.
  absl::Status fail_late(std::vector<void*>& pages, std::vector<NodeId>& nodes, std::size_t total)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++counts_.late_failed_calls;
    queries_wait_for_late_failure_ = false;  // fail_queries() armed: they fail from now
    const std::size_t moved = rng_() % (pages.size() + 1);
    pages.resize(moved);
    nodes.resize(moved);
    counts_.forwarded += moved;
    std::vector<int> st(moved);
    if (moved > 0) (void)inner().move(pages, nodes, absl::MakeSpan(st));
    return absl::Status(options_.late_failure_code,
                        absl::StrCat("move_pages failed part way: injected fault (", moved, " of ",
                                     total, " pages moved)"));
  }
  // Uniform in [0, 1).
  double draw() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  }

  const std::string name_;
  mutable detail::Mutex mu_;
  FaultInjectionOptions options_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  FaultCounts counts_ ABSL_GUARDED_BY(mu_);
  // fail_queries(): query() calls still to fail, and whether they wait for
  // a late move failure.
  std::uint64_t queries_to_fail_ ABSL_GUARDED_BY(mu_) = 0;
  bool queries_wait_for_late_failure_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tierkit
