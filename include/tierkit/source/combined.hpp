// tierkit/source/combined.hpp: several hotness sources run as one, sharing
// one budget. Layer 2 (beside the sources): hotness_source.hpp, std, Abseil.
//
// When to choose it: when no single source sees enough. source/sampled.hpp
// builds "births+fault" and "uffd+fault": pages born (or, for uffd, also a
// budgeted sample of rewrites), cheap, with fault sampling (reads too, a few
// pages per epoch).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "tierkit/hotness_source.hpp"

namespace tierkit::source {

// Runs `parts` in order at every collect(), into the same sink. The budget's
// cpu_fraction is shared: each part but the last may spend up to half of
// what is left, and the last gets the rest, where a part's share is the
// larger of what it cost in its last epoch (collect() plus its estimate of
// the faults it made the application take, HotnessSourceStats::app_ns) and
// what it plans for the next (HotnessSourceStats::planned_ns). max_pages and
// max_ns apply to each part. stats() adds the parts' counters up; the name joins
// theirs with '+'.
class CombinedSource final : public HotnessSource {
 public:
  explicit CombinedSource(std::vector<std::unique_ptr<HotnessSource>> parts)
      : parts_(std::move(parts)), spent_(parts_.size(), 0) {
    for (const auto& p : parts_)
      absl::StrAppend(&name_, name_.empty() ? "" : "+", std::string(p->name()));
  }

  std::string_view name() const override { return name_; }

  // OK when every part's probe passes; else the first failure.
  absl::Status probe() override {
    for (const auto& p : parts_)
      if (absl::Status s = p->probe(); !s.ok()) return s;
    return absl::OkStatus();
  }

  void watch(absl::Span<const TrackedRange> ranges) override {
    for (const auto& p : parts_) p->watch(ranges);
  }

  // Every part collects, even after one fails; the first error is returned.
  absl::Status collect(absl::Span<const TrackedRange> ranges, HotnessSink& sink,
                       const SourceBudget& budget) override {
    absl::Status first;
    double left = budget.cpu_fraction;
    const double epoch = static_cast<double>(budget.epoch_ns);
    for (std::size_t i = 0; i < parts_.size(); ++i) {
      SourceBudget b = budget;
      b.cpu_fraction = i + 1 < parts_.size() ? left / 2 : left;
      absl::Status s = parts_[i]->collect(ranges, sink, b);
      if (!s.ok() && first.ok()) first = s;
      const HotnessSourceStats st = parts_[i]->stats();
      const double total = cost(st);
      const double epoch_cost = std::max(total - spent_[i], static_cast<double>(st.planned_ns));
      spent_[i] = total;
      if (epoch > 0) left = std::max(0.0, left - epoch_cost / epoch);
    }
    return first;
  }

  void disarm() override {
    for (const auto& p : parts_) p->disarm();
  }

  HotnessSourceStats stats() const override {
    HotnessSourceStats all;
    all.name = name_;
    for (const auto& p : parts_) {
      HotnessSourceStats s = p->stats();
      all.collects = std::max(all.collects, s.collects);
      all.cpu_ns += s.cpu_ns;
      all.handler_ns += s.handler_ns;
      all.pages_sampled += s.pages_sampled;
      all.pages_found += s.pages_found;
      all.pages_written += s.pages_written;
      all.errors += s.errors;
      all.skipped += s.skipped;
      if (!s.last_error.empty()) all.last_error = absl::StrCat(s.name, ": ", s.last_error);
      all.budget_ns += s.budget_ns;
      all.last_sampled += s.last_sampled;
      all.app_ns += s.app_ns;
      all.planned_ns += s.planned_ns;
      all.ns_per_sample = std::max(all.ns_per_sample, s.ns_per_sample);
    }
    return all;
  }

  // The parts, in order (tests, stats).
  absl::Span<const std::unique_ptr<HotnessSource>> parts() const { return parts_; }

 private:
  // All a part has cost so far: collect() and the application's faults
  // (the handler's time is in both cpu_ns and app_ns).
  static double cost(const HotnessSourceStats& s) {
    return static_cast<double>(s.cpu_ns - std::min(s.cpu_ns, s.handler_ns) + s.app_ns);
  }

  std::vector<std::unique_ptr<HotnessSource>> parts_;
  std::vector<double> spent_;
  std::string name_;
};

}  // namespace tierkit::source
