// embedding_table: a recommendation model's embedding table (rows of floats)
// on the slow tier. Row popularity follows a power law; each step looks up a
// batch of rows and sum-pools them, recording one access per row. The engine
// promotes the pages of hot rows into a fast-tier budget: the measured
// fast-tier hit ratio climbs for a few epochs, then holds, and the ping-pong
// count (pages moved back within 32 epochs of a move) stays near zero.
// Epochs run on virtual time (a ManualClock), so the migration rate limit
// paces the climb the same way on any machine.
// Flags: --rows, --dim, --batch, --batches (per epoch), --epochs, --skew,
// --fast_fraction, --rate_limit_mbps, --half_life_epochs, --policy, --simulate.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "example_support.hpp"

ABSL_FLAG(int, rows, 100000, "rows in the table");
ABSL_FLAG(int, dim, 64, "floats per row");
ABSL_FLAG(int, batch, 256, "rows looked up per batch");
ABSL_FLAG(int, batches, 500, "batches per epoch (an epoch is 100 ms of virtual time)");
ABSL_FLAG(double, rate_limit_mbps, 8, "migration rate limit, MiB per virtual second");
ABSL_FLAG(int, epochs, 40, "engine epochs to run");
ABSL_FLAG(double, skew, 1.05, "power-law (Zipf) exponent of row popularity");
ABSL_FLAG(double, fast_fraction, 0.2, "fast-tier budget as a fraction of the table");
ABSL_FLAG(std::string, policy, "automatic", "automatic | threshold[:RATE] | kernel | static");
ABSL_FLAG(double, half_life_epochs, 8,
          "heat half-life in epochs (longer = steadier); threshold, kernel, static and "
          "automatic:cool=0 (automatic cools by access volume instead)");
ABSL_FLAG(bool, simulate, false, "use the simulated machine even on a two-tier machine");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("embedding_table: a tiered embedding table under batched lookups");
  absl::ParseCommandLine(argc, argv);
  examples::require(absl::GetFlag(FLAGS_rows) >= 1 && absl::GetFlag(FLAGS_dim) >= 1,
                    "--rows and --dim must be >= 1");
  examples::require(
      absl::GetFlag(FLAGS_fast_fraction) > 0 && absl::GetFlag(FLAGS_fast_fraction) <= 1,
      "--fast_fraction must be in (0, 1]");
  examples::require(absl::GetFlag(FLAGS_epochs) >= 1, "--epochs must be >= 1");
  examples::require(absl::GetFlag(FLAGS_batch) >= 1 && absl::GetFlag(FLAGS_batches) >= 1,
                    "--batch and --batches must be >= 1");
  examples::require_skew(absl::GetFlag(FLAGS_skew));
  const auto rows = static_cast<std::size_t>(absl::GetFlag(FLAGS_rows));
  const auto dim = static_cast<std::size_t>(absl::GetFlag(FLAGS_dim));
  // The table, the Zipf sampler over its rows and a pooled row; in double, as
  // rows * dim * 4 can overflow 64 bits.
  const auto rows_d = static_cast<double>(rows), dim_d = static_cast<double>(dim);
  const examples::Demand demand{rows_d * dim_d * sizeof(float) +
                                    rows_d * examples::Zipf::kBytesPerItem + dim_d * sizeof(float),
                                absl::StrCat("--rows=", rows, " --dim=", dim)};
  examples::require_fits(demand);
  const std::size_t bytes = rows * dim * sizeof(float);
  const auto budget =
      static_cast<std::uint64_t>(static_cast<double>(bytes) * absl::GetFlag(FLAGS_fast_fraction));
  return examples::run(demand, [&] {
    auto machine = examples::Machine::pick(budget, absl::GetFlag(FLAGS_simulate));
    tierkit::EngineConfig config = machine->config();
    config.policy = absl::GetFlag(FLAGS_policy);
    config.half_life_epochs = absl::GetFlag(FLAGS_half_life_epochs);
    config.rate_limit_mbps = absl::GetFlag(FLAGS_rate_limit_mbps);
    config.burst_bytes = 1 << 20;
    // Epochs run on virtual time (100 ms per step), so the rate limit is
    // deterministic however fast this machine is.
    tierkit::ManualClock clock(1);
    auto engine = machine->make_engine(config, &clock);
    if (engine == nullptr) return 2;
    // The policy in force (TIERKIT_POLICY may have replaced --policy) must read
    // a half-life the user chose, or the flag would change nothing.
    auto policy = tierkit::EngineConfig::make_policy(engine->config());
    examples::require(absl::GetFlag(FLAGS_half_life_epochs) == 8 ||
                          (policy.ok() && (*policy)->traits().reads_half_life),
                      "--half_life_epochs: the policy in force ages heat by access volume, not by "
                      "a half-life (use --policy=threshold or automatic:cool=0)");
    auto heap = examples::SlowHeap::create(*machine, *engine, "embeddings");
    if (heap == nullptr) return 1;
    {
      std::vector<float, tierkit::tiered_allocator<float>> table(rows * dim, 0.5f,
                                                                 heap->allocator<float>());
      std::printf(
          "%zu rows x %zu floats = %s on the slow tier (%s); fast-tier budget %s; "
          "policy %s\n",
          rows, dim, examples::Machine::mib(bytes).c_str(),
          examples::placement(*machine, table.data(), bytes).c_str(),
          examples::Machine::mib(budget).c_str(), engine->policy_name().c_str());

      examples::Zipf popularity(rows, absl::GetFlag(FLAGS_skew));
      examples::HitRatio hits(*machine, 16);
      std::vector<float> pooled(dim);
      std::vector<double> ratio;
      for (int e = 1; e <= absl::GetFlag(FLAGS_epochs); ++e) {
        for (int b = 0; b < absl::GetFlag(FLAGS_batches); ++b) {
          std::fill(pooled.begin(), pooled.end(), 0.f);
          for (int i = 0; i < absl::GetFlag(FLAGS_batch); ++i) {
            const float* row = &table[popularity() * dim];
            for (std::size_t d = 0; d < dim; ++d) pooled[d] += row[d];
            engine->record_access(row, dim * sizeof(float));
            hits.sample(row);
          }
        }
        clock.advance_ns(config.epoch_ms * tierkit::kNsPerMs);
        if (absl::Status s = engine->step(); !s.ok()) {
          std::fprintf(stderr, "epoch: %s\n", std::string(s.message()).c_str());
          return 1;
        }
        ratio.push_back(hits.take());
        tierkit::EngineStats s = engine->stats();
        std::printf(
            "epoch %3d  fast-tier hits %5.1f%%  promoted %5llu  demoted %5llu  "
            "fast pages %5llu  ping-pong %llu\n",
            e, ratio.back(), static_cast<unsigned long long>(s.epoch_promoted),
            static_cast<unsigned long long>(s.epoch_demoted),
            static_cast<unsigned long long>(s.fast_pages),
            static_cast<unsigned long long>(s.pingpong_pages));
      }
      // Summary: where it started, how it held over the last half.
      const std::size_t half = ratio.size() / 2;
      auto [lo, hi] =
          std::minmax_element(ratio.begin() + static_cast<std::ptrdiff_t>(half), ratio.end());
      tierkit::EngineStats s = engine->stats();
      std::printf(
          "\nfast-tier hit ratio: %.1f%% in epoch 1, then %.1f%% .. %.1f%% over the last "
          "%zu epochs\nping-pong pages: %llu of %llu moved (pooled[0] = %g)\n\n%s",
          ratio.front(), *lo, *hi, ratio.size() - half,
          static_cast<unsigned long long>(s.pingpong_pages),
          static_cast<unsigned long long>(s.promoted_pages + s.demoted_pages), pooled[0],
          s.to_table().c_str());
    }
    return 0;
  });
}
