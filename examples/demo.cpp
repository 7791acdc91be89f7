// demo: tierkit end to end, in one screen of output.
//  1. Discovers the memory tiers and prints them, saying plainly whether this
//     machine has anything to tier (if not, it runs on a simulated two-tier
//     machine; on a real DRAM + CXL machine it uses the Linux backend).
//  2. Puts a 64 MiB array of records on the slow tier with tiered_allocator
//     and shows where its pages are (a move_pages placement query).
//  3. Runs a skewed (Zipf) workload over the records; the engine promotes the
//     hot pages into a fast-tier budget of a quarter of the data, one live
//     line per epoch, then prints where the pages ended up and the stats.
// Flags: --epochs, --epoch_ms, --rate_limit_mbps, --mib, --fast_fraction, --skew, --policy,
// --simulate (simulate even on a two-tier machine).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "example_support.hpp"

ABSL_FLAG(int, epochs, 30, "engine epochs to run");
ABSL_FLAG(int, epoch_ms, 100, "wall-clock length of an epoch of reads, ms");
ABSL_FLAG(double, rate_limit_mbps, 32, "migration rate limit, MiB/s");
ABSL_FLAG(int, mib, 64, "size of the data, MiB");
ABSL_FLAG(double, fast_fraction, 0.25, "fast-tier budget as a fraction of the data");
ABSL_FLAG(double, skew, 1.0, "Zipf exponent of record popularity");
ABSL_FLAG(std::string, policy, "automatic", "automatic | threshold[:RATE] | kernel | static");
ABSL_FLAG(bool, simulate, false, "use the simulated machine even on a two-tier machine");

namespace {

struct Record {
  std::uint64_t field[8];  // 64 bytes: 64 records per page
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("tierkit demo: tier discovery, slow-tier allocation, tiering");
  absl::ParseCommandLine(argc, argv);
  examples::require(absl::GetFlag(FLAGS_mib) >= 1, "--mib must be >= 1");
  examples::require(absl::GetFlag(FLAGS_epochs) >= 1, "--epochs must be >= 1");
  examples::require(
      absl::GetFlag(FLAGS_fast_fraction) > 0 && absl::GetFlag(FLAGS_fast_fraction) <= 1,
      "--fast_fraction must be in (0, 1]");
  // The engine's own ranges, checked here because burst_bytes is computed
  // from both first (beyond them, or NaN, its conversion is undefined).
  examples::require(absl::GetFlag(FLAGS_epoch_ms) >= 1 && absl::GetFlag(FLAGS_epoch_ms) <= 3600000,
                    "--epoch_ms must be in [1, 3600000]");
  examples::require(
      absl::GetFlag(FLAGS_rate_limit_mbps) >= 0 && absl::GetFlag(FLAGS_rate_limit_mbps) <= 1e9,
      "--rate_limit_mbps must be in [0, 1e9]");
  examples::require_skew(absl::GetFlag(FLAGS_skew));
  const std::size_t bytes = static_cast<std::size_t>(absl::GetFlag(FLAGS_mib)) << 20;
  const auto budget =
      static_cast<std::uint64_t>(static_cast<double>(bytes) * absl::GetFlag(FLAGS_fast_fraction));
  // The records and the Zipf sampler over them.
  const examples::Demand demand{
      static_cast<double>(bytes) *
          (1 + static_cast<double>(examples::Zipf::kBytesPerItem) / sizeof(Record)),
      absl::StrCat("--mib=", absl::GetFlag(FLAGS_mib))};
  examples::require_fits(demand);
  return examples::run(demand, [&] {
    // 1. The machine.
    std::printf("== 1. Memory tiers of this machine\n");
    auto topo = tierkit::Topology::discover();
    if (topo.ok())
      std::printf("%s\n\n%s\n", topo->summary().c_str(), topo->to_table().c_str());
    else
      std::printf("tier discovery failed: %s\n\n", std::string(topo.status().message()).c_str());
    auto machine = examples::Machine::pick(budget, absl::GetFlag(FLAGS_simulate));
    if (machine->simulated())
      std::printf("\n%s", tierkit::Topology::simulated(budget, 64ull << 30).to_table().c_str());

    tierkit::EngineConfig config = machine->config();
    config.policy = absl::GetFlag(FLAGS_policy);
    config.epoch_ms = absl::GetFlag(FLAGS_epoch_ms);
    config.rate_limit_mbps = absl::GetFlag(FLAGS_rate_limit_mbps);
    // A bucket of one epoch's worth: migration is paced evenly across epochs.
    config.burst_bytes = static_cast<std::uint64_t>(config.rate_limit_mbps * (1 << 20) *
                                                    static_cast<double>(config.epoch_ms) / 1000);
    auto engine = machine->make_engine(config);
    if (engine == nullptr) return 1;
    auto heap = examples::SlowHeap::create(*machine, *engine, "records");
    if (heap == nullptr) return 1;

    // 2. Data on the slow tier.
    std::printf("\n== 2. %s of records on the slow tier (tiered_allocator)\n",
                examples::Machine::mib(bytes).c_str());
    std::vector<Record, tierkit::tiered_allocator<Record>> records(bytes / sizeof(Record), Record{},
                                                                   heap->allocator<Record>());
    std::printf("placement: %s\n", examples::placement(*machine, records.data(), bytes).c_str());

    // 3. A skewed workload; the engine moves the hot pages.
    std::printf(
        "\n== 3. Zipf(%.2f) reads for %d ms per epoch; fast-tier budget %s; policy %s; "
        "rate limit %g MiB/s\n",
        absl::GetFlag(FLAGS_skew), absl::GetFlag(FLAGS_epoch_ms),
        examples::Machine::mib(engine->config().fast_budget_bytes).c_str(),
        engine->policy_name().c_str(), engine->config().rate_limit_mbps);
    examples::Zipf zipf(records.size(), absl::GetFlag(FLAGS_skew));
    examples::HitRatio hits(*machine);
    std::uint64_t sum = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int e = 0; e < absl::GetFlag(FLAGS_epochs); ++e) {
      const auto until = std::chrono::steady_clock::now() +
                         std::chrono::milliseconds(absl::GetFlag(FLAGS_epoch_ms));
      std::uint64_t reads = 0;
      while ((reads & 1023) != 0 || std::chrono::steady_clock::now() < until) {
        Record& r = records[zipf()];
        sum += ++r.field[0];
        engine->record_access(&r);
        hits.sample(&r);
        ++reads;
      }
      if (absl::Status s = engine->step(); !s.ok()) {
        std::fprintf(stderr, "epoch: %s\n", std::string(s.message()).c_str());
        return 1;
      }
      std::printf("%s  (measured hits %.1f%%, %.1f M reads)\n", engine->stats().to_line().c_str(),
                  hits.take(), static_cast<double>(reads) / 1e6);
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    std::printf("\nplacement after %d epochs (%.1f s): %s\n", absl::GetFlag(FLAGS_epochs), secs,
                examples::placement(*machine, records.data(), bytes).c_str());
    std::printf("\n== Final engine stats\n%s", engine->stats().to_table().c_str());
    std::printf("(checksum %llu)\n", static_cast<unsigned long long>(sum));
    return 0;
  });
}
