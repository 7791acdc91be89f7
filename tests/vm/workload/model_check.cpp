// tierkit-vm-model-check: tierkit-sim's kernel model on a lackey stream (the
// VM workload's --emit output, on stdin), with the knobs tierkit-sim's
// policy spec does not reach: the scanner's rate (numa_balancing_scan_size_mb
// per scan period) and scan_period_max_ms. Used by tests/vm/model_vs_kernel.sh
// to run the model at the scan rate the emulated machine's kernel really had
// (numa_scan_seq), besides the nominal 256 MB/s. One line of key=value per
// policy.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "tierkit/sim/simulator.hpp"
#include "tierkit/sim/trace_file.hpp"
#include "tierkit/sim/workload.hpp"

ABSL_FLAG(std::string, policies, "kernel,kernel:target=1,kernel:target=64", "kernel model specs");
ABSL_FLAG(int, fast_mib, 174, "fast-tier room, MiB (every page starts slow)");
ABSL_FLAG(double, seconds, 60, "virtual length of the run: sets the gap between accesses");
ABSL_FLAG(double, scan_mb_per_s, 256, "NUMA scanner rate: scan_size_mb per 1 s scan period");
ABSL_FLAG(double, scan_period_max_ms, 60000, "numa_balancing_scan_period_max_ms");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("tierkit-vm-model-check: the kernel model on stdin's lackey stream");
  absl::ParseCommandLine(argc, argv);
  auto t = tierkit::sim::read_lackey_trace("-");
  if (!t.ok()) {
    std::fprintf(stderr, "%s\n", std::string(t.status().message()).c_str());
    return 2;
  }
  auto trace = std::make_shared<const tierkit::sim::Trace>(std::move(*t));
  const double n = static_cast<double>(trace->accesses.size());
  const std::vector<std::string> policies = absl::StrSplit(absl::GetFlag(FLAGS_policies), ',');
  for (const std::string& policy : policies) {
    tierkit::sim::TraceWorkload wl(trace);
    tierkit::sim::SimOptions o;
    o.fast_pages = static_cast<std::uint64_t>(absl::GetFlag(FLAGS_fast_mib)) * 256;
    o.all_slow = true;
    // virtual ns per access = gap + the tier's latency (80 / 250 ns)
    o.gap_ns = std::max<std::int64_t>(
        0, static_cast<std::int64_t>(absl::GetFlag(FLAGS_seconds) * 1e9 / n) - 165);
    o.engine.kernel.scan_size_mb = absl::GetFlag(FLAGS_scan_mb_per_s);
    o.engine.kernel.scan_period_ms = 1000;
    o.engine.kernel.scan_period_max_ms = absl::GetFlag(FLAGS_scan_period_max_ms);
    auto r = tierkit::sim::simulate(wl, policy, o);
    if (!r.ok()) {
      std::fprintf(stderr, "%s: %s\n", policy.c_str(), std::string(r.status().message()).c_str());
      return 1;
    }
    std::printf(
        "policy=%s scan_mb_per_s=%g accesses=%llu fast_hit=%.3f promoted=%llu demoted=%llu "
        "pingpong=%llu final_threshold=%g\n",
        policy.c_str(), absl::GetFlag(FLAGS_scan_mb_per_s),
        static_cast<unsigned long long>(r->accesses), r->hit_ratio(),
        static_cast<unsigned long long>(r->promoted_pages),
        static_cast<unsigned long long>(r->demoted_pages),
        static_cast<unsigned long long>(r->pingpong_pages), r->final_threshold);
    std::fflush(stdout);
  }
  return 0;
}
