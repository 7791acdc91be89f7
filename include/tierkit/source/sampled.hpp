// tierkit/source/sampled.hpp: builds a hotness source from a spec string and
// picks the best one the running kernel offers ("sampled"), saying which and
// why. Layer 3 (above the sources): source/*.hpp.
//
// Specs:
//   "fault" or "fault:N"   fault sampling: as many groups of 16 pages per
//                          epoch as SourceBudget::cpu_fraction pays for
//                          (fault), or N single pages per epoch over all
//                          ranges whatever they cost (fault:N)
//   "softdirty"            soft-dirty bits (writes only)
//   "uffd"                 userfaultfd async write-protect + PAGEMAP_SCAN
//                          (writes only; Linux 6.7+)
//   "uffd+fault[:N]"       both, sharing one budget (source/combined.hpp):
//                          uffd sees every page born and a budgeted sample
//                          of rewrites, fault sees reads
//   "births"               pages born since the last look (pagemap; any kernel)
//   "births+fault[:N]"     both, sharing one budget
//   "perf"                 PEBS / IBS data-address sampling (probe only today)
//   "sampled" or "sampled:N"  the first of perf, births+fault, fault, uffd,
//                          softdirty whose probe() passes (N: fault:N in
//                          place of the budgeted fault). births+fault first:
//                          pages born are the hot data of programs that
//                          build it as they run, at almost no cost, and the
//                          engine lets a page promoted on its birth alone
//                          give way to what fault finds (docs/
//                          performance.md, session 9). fault comes before
//                          the write-only sources because it also sees
//                          reads, which decide most placements; choose
//                          "softdirty" explicitly for programs that pass
//                          tracked memory to system calls (see the NOTE in
//                          source/fault.hpp).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tierkit/hotness_source.hpp"
#include "tierkit/source/births.hpp"
#include "tierkit/source/combined.hpp"
#include "tierkit/source/fault.hpp"
#include "tierkit/source/perf_mem.hpp"
#include "tierkit/source/softdirty.hpp"
#include "tierkit/source/uffd.hpp"

namespace tierkit::source {

// The order "sampled" tries the sources in; the first whose probe() passes
// is taken ("a+b" passes when both do). tierkit-sim's model of "sampled"
// (sim/hotness_model.hpp) walks the same list.
inline constexpr std::array<std::string_view, 5> kSampledOrder = {"perf", "births+fault", "fault",
                                                                  "uffd", "softdirty"};

struct PickedSource {
  std::unique_ptr<HotnessSource> source;
  // Which source and why the ones before it were not taken, for humans.
  std::string explanation;
};

namespace sampled_detail {
// One source by name, not probed: fault[:N], softdirty, uffd, perf, or
// uffd+fault[:N].
inline absl::StatusOr<std::unique_ptr<HotnessSource>> make_one(absl::string_view s) {
  if (s == "fault" || absl::StartsWith(s, "fault:")) {
    FaultSourceOptions o;
    if (s.size() > 5) {
      std::uint32_t n = 0;
      if (!absl::SimpleAtoi(s.substr(6), &n) || n == 0 || n > 4096)
        return absl::InvalidArgumentError(
            absl::StrCat("hotness source '", s, "': N in fault:N must be an integer in [1, 4096]"));
      o = FaultSourceOptions::fixed(n);
    }
    return std::unique_ptr<HotnessSource>(new FaultSamplingSource(o));
  }
  for (absl::string_view first : {"uffd+", "births+"}) {
    if (!absl::StartsWith(s, first) || !absl::StartsWith(s.substr(first.size()), "fault")) continue;
    auto f = make_one(s.substr(first.size()));
    if (!f.ok()) return f.status();
    std::vector<std::unique_ptr<HotnessSource>> parts;
    if (first == "uffd+")
      parts.push_back(std::make_unique<UffdWpSource>());
    else
      parts.push_back(std::make_unique<BirthSource>());
    parts.push_back(*std::move(f));
    return std::unique_ptr<HotnessSource>(new CombinedSource(std::move(parts)));
  }
  if (s == "births") return std::unique_ptr<HotnessSource>(new BirthSource());
  if (s == "softdirty") return std::unique_ptr<HotnessSource>(new SoftDirtySource());
  if (s == "uffd") return std::unique_ptr<HotnessSource>(new UffdWpSource());
  if (s == "perf") return std::unique_ptr<HotnessSource>(new PerfMemSource());
  return absl::InvalidArgumentError(
      absl::StrCat("unknown hotness source '", s,
                   "' (known: sampled, sampled:N, fault, fault:N, softdirty, uffd, "
                   "uffd+fault, uffd+fault:N, births, births+fault, births+fault:N, perf)"));
}
}  // namespace sampled_detail

// Builds the source `spec` names (see the banner), probed. Errors:
// InvalidArgument for an unknown spec; the probe's error when the named
// source (or, for "sampled", every source) is unavailable, with every
// reason. Cost: the probes (well under a millisecond; softdirty's clears the
// process's soft-dirty bits).
inline absl::StatusOr<PickedSource> make_source(absl::string_view spec) {
  using sampled_detail::make_one;
  std::string fault_spec = "fault";
  if (absl::StartsWith(spec, "sampled:")) {
    fault_spec = absl::StrCat("fault:", spec.substr(8));
    if (auto f = make_one(fault_spec); !f.ok()) return f.status();
  } else if (spec != "sampled") {
    auto src = make_one(spec);
    if (!src.ok()) return src.status();
    if (absl::Status s = (*src)->probe(); !s.ok()) return s;
    std::string why = absl::StrCat(std::string((*src)->name()), ": chosen by name");
    return PickedSource{std::move(*src), std::move(why)};
  }
  std::string why;
  for (std::string_view candidate : kSampledOrder) {
    std::string name(candidate);
    if (absl::EndsWith(absl::string_view(candidate.data(), candidate.size()), "fault"))
      name = absl::StrCat(std::string(candidate.substr(0, candidate.size() - 5)), fault_spec);
    auto src = make_one(name);
    absl::Status s = (*src)->probe();
    if (s.ok()) {
      std::string expl =
          absl::StrCat(name, ": the best available here", why.empty() ? "" : " (not taken: ", why,
                       why.empty() ? "" : ")");
      return PickedSource{std::move(*src), std::move(expl)};
    }
    absl::StrAppend(&why, why.empty() ? "" : "; ", name, ": ", s.message());
  }
  return absl::UnavailableError(absl::StrCat("no sampled hotness source works here: ", why));
}

}  // namespace tierkit::source
