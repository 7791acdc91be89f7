// kv_cache: an in-memory key-value cache whose values live in a hash map
// (absl::flat_hash_map with tiered_allocator) that starts on the slow tier.
// Zipf-distributed GETs record accesses; the engine, running on its own
// thread, promotes the pages of hot values into a fast-tier budget. Every
// second it prints GET throughput, the measured fast-tier hit ratio (sampled
// placement queries), promotions, demotions, deferrals and the threshold.
// Flags choose the policy, threshold, rate limit, key count, skew, duration.
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "example_support.hpp"

ABSL_FLAG(std::string, policy, "automatic", "automatic | threshold[:RATE] | kernel | static");
ABSL_FLAG(double, threshold, 0,
          "if > 0: use the threshold policy with this promotion threshold (accesses/epoch); "
          "the same as --policy=threshold:N, so not with another --policy");
ABSL_FLAG(double, rate_limit_mbps, 256, "migration rate limit, MiB/s");
ABSL_FLAG(int, keys, 100000, "number of keys (256-byte values)");
ABSL_FLAG(double, skew, 0.99, "Zipf exponent of key popularity");
ABSL_FLAG(double, seconds, 5, "how long to serve GETs");
ABSL_FLAG(double, fast_fraction, 0.2, "fast-tier budget as a fraction of the table");
ABSL_FLAG(int, epoch_ms, 100, "engine epoch length, ms");
ABSL_FLAG(bool, simulate, false, "use the simulated machine even on a two-tier machine");

namespace {

struct Value {
  std::array<char, 248> bytes{};  // with the 8-byte key: 256 bytes per slot
};
using Slot = std::pair<const std::uint64_t, Value>;
using Map = absl::flat_hash_map<std::uint64_t, Value, absl::Hash<std::uint64_t>,
                                std::equal_to<std::uint64_t>, tierkit::tiered_allocator<Slot>>;

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("kv_cache: a tiered key-value cache under Zipf GETs");
  absl::ParseCommandLine(argc, argv);
  examples::require(absl::GetFlag(FLAGS_keys) >= 1, "--keys must be >= 1");
  examples::require(
      absl::GetFlag(FLAGS_fast_fraction) > 0 && absl::GetFlag(FLAGS_fast_fraction) <= 1,
      "--fast_fraction must be in (0, 1]");
  examples::require_skew(absl::GetFlag(FLAGS_skew));
  // A day at most: far from overflowing the clock's nanoseconds (292 years).
  examples::require(absl::GetFlag(FLAGS_seconds) > 0 && absl::GetFlag(FLAGS_seconds) <= 86400,
                    "--seconds must be in (0, 86400]");
  examples::require(
      std::isfinite(absl::GetFlag(FLAGS_threshold)) && absl::GetFlag(FLAGS_threshold) >= 0,
      "--threshold must be a finite number >= 0 (0, the default: --policy decides)");
  // --threshold N is --policy=threshold:N: with another --policy one of the
  // two would be dropped without a word.
  examples::require(
      absl::GetFlag(FLAGS_threshold) <= 0 || absl::GetFlag(FLAGS_policy) == "automatic",
      "--threshold N is --policy=threshold:N; give one of them, not both");
  const auto keys = static_cast<std::size_t>(absl::GetFlag(FLAGS_keys));
  // flat_hash_map keeps its load at most 7/8 with a power-of-two capacity.
  std::size_t capacity = 1;
  while (capacity * 7 / 8 < keys) capacity *= 2;
  const auto budget = static_cast<std::uint64_t>(static_cast<double>(capacity * sizeof(Slot)) *
                                                 absl::GetFlag(FLAGS_fast_fraction));
  // The slots and the Zipf sampler over the keys.
  const examples::Demand demand{
      static_cast<double>(capacity * sizeof(Slot) + keys * examples::Zipf::kBytesPerItem),
      absl::StrCat("--keys=", keys)};
  examples::require_fits(demand);
  return examples::run(demand, [&] {
    auto machine = examples::Machine::pick(budget, absl::GetFlag(FLAGS_simulate));

    tierkit::EngineConfig config = machine->config();
    config.policy = absl::GetFlag(FLAGS_threshold) > 0
                        ? absl::StrCat("threshold:", absl::GetFlag(FLAGS_threshold))
                        : absl::GetFlag(FLAGS_policy);
    config.rate_limit_mbps = absl::GetFlag(FLAGS_rate_limit_mbps);
    config.epoch_ms = absl::GetFlag(FLAGS_epoch_ms);
    auto engine = machine->make_engine(config);
    if (engine == nullptr) return 2;
    auto heap = examples::SlowHeap::create(*machine, *engine, "kv values");
    if (heap == nullptr) return 1;
    {
      Map cache(0, absl::Hash<std::uint64_t>(), std::equal_to<std::uint64_t>(),
                heap->allocator<Slot>());
      cache.reserve(keys);
      for (std::uint64_t k = 0; k < keys; ++k) cache[k].bytes[0] = static_cast<char>(k);
      std::printf(
          "%zu keys, %s of slots on the slow tier; fast-tier budget %s; policy %s, "
          "rate limit %g MiB/s\n",
          keys, examples::Machine::mib(capacity * sizeof(Slot)).c_str(),
          examples::Machine::mib(budget).c_str(), engine->policy_name().c_str(),
          config.rate_limit_mbps);

      examples::Zipf zipf(keys, absl::GetFlag(FLAGS_skew));
      examples::HitRatio hits(*machine);
      (void)engine->start();
      using Clock = std::chrono::steady_clock;
      const auto start = Clock::now();
      auto next = start + std::chrono::seconds(1);
      const auto end = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(absl::GetFlag(FLAGS_seconds)));
      std::uint64_t gets = 0, sum = 0, last_p = 0, last_d = 0, last_def = 0;
      for (int sec = 1;; ++sec) {
        const auto stop = std::min(next, end);
        std::uint64_t n = 0;
        while ((n & 1023) != 0 || Clock::now() < stop) {
          auto it = cache.find(zipf());
          engine->record_access(&it->second);
          hits.sample(&it->second);
          sum += static_cast<unsigned char>(it->second.bytes[0]);
          ++n;
        }
        gets += n;
        double secs =
            std::chrono::duration<double>(Clock::now() - (next - std::chrono::seconds(1))).count();
        tierkit::EngineStats s = engine->stats();
        std::printf(
            "t=%2ds  %6.2f M GET/s  fast-tier hits %5.1f%%  promoted %6llu  demoted %6llu  "
            "deferred %6llu  threshold %s\n",
            sec, static_cast<double>(n) / secs / 1e6, hits.take(),
            static_cast<unsigned long long>(s.promoted_pages - last_p),
            static_cast<unsigned long long>(s.demoted_pages - last_d),
            static_cast<unsigned long long>(s.deferred_pages - last_def),
            s.threshold_text().c_str());
        std::fflush(stdout);
        last_p = s.promoted_pages, last_d = s.demoted_pages, last_def = s.deferred_pages;
        if (stop == end) break;
        next += std::chrono::seconds(1);
      }
      engine->stop();
      std::printf("\n%llu GETs (checksum %llu)\n%s", static_cast<unsigned long long>(gets),
                  static_cast<unsigned long long>(sum), engine->stats().to_table().c_str());
    }
    return 0;
  });
}
