// sampled_hotness: tiering a program that never calls record_access. The
// data lives in tiered_allocator containers on the slow tier; a moving hot
// set (an eighth of the data, shifting every 8 epochs) is read and written
// by plain C++ code. The engine learns what is hot only from a sampled
// hotness source (source/sampled.hpp: fault sampling, soft-dirty, ...),
// which it runs at the start of every epoch. Prints which source it used,
// why, how much of the hot set reached the fast tier, and what tracking
// cost (CPU time on the engine's thread and in fault handlers, against the
// program's own time).
//
//   sampled_hotness [--source sampled|sampled:N|fault:N|softdirty|births+fault|...]
//                   [--epochs 24] [--mib 32] [--hot_start 0] [--simulate]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "example_support.hpp"
#include "tierkit/source/sampled.hpp"

ABSL_FLAG(std::string, source, "sampled:512",
          "hotness source: sampled[:N] (the best available; N fault-sampled pages per region "
          "per epoch), fault[:N], softdirty, uffd, perf");
ABSL_FLAG(int, epochs, 24, "epochs to run");
ABSL_FLAG(int, mib, 32, "size of the data in MiB (the fast-tier budget is a quarter of it)");
ABSL_FLAG(bool, simulate, false, "use a simulated two-tier machine even on a real one");
ABSL_FLAG(double, hot_start, 0,
          "where the hot set starts, as a fraction of the data in [0, 1) (0.5: the middle, "
          "away from where placement by address begins)");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int epochs = absl::GetFlag(FLAGS_epochs);
  const int mib = absl::GetFlag(FLAGS_mib);
  examples::require(epochs >= 1 && epochs <= 10000, "--epochs must be in [1, 10000]");
  examples::require(mib >= 4 && mib <= 4096, "--mib must be in [4, 4096]");
  const double hot_start = absl::GetFlag(FLAGS_hot_start);
  examples::require(hot_start >= 0 && hot_start < 1, "--hot_start must be in [0, 1)");
  const std::size_t bytes = static_cast<std::size_t>(mib) << 20;
  const examples::Demand demand{static_cast<double>(bytes), absl::StrCat("--mib=", mib)};
  examples::require_fits(demand);
  return examples::run(demand, [&] {
    auto machine = examples::Machine::pick(bytes / 4, absl::GetFlag(FLAGS_simulate));
    if (machine->simulated())
      std::printf(
          "What this cannot show here: real page moves and their latency benefit. The sampled "
          "source is real (real faults / kernel bits); placement is the simulator's.\n");
    auto engine = machine->make_engine(machine->config());
    if (!engine) return 2;

    auto picked = tierkit::source::make_source(absl::GetFlag(FLAGS_source));
    if (!picked.ok()) {
      std::printf(
          "No hotness source: %s\nWithout one (and without record_access) the engine "
          "cannot tell hot from cold here.\n",
          std::string(picked.status().message()).c_str());
      return 1;
    }
    std::printf("Hotness source: %s\n", picked->explanation.c_str());
    tierkit::SourceBudget budget;  // <= 4096 pages and 10 ms of CPU per epoch
    budget.max_ns = 10'000'000;
    if (absl::Status s = engine->add_hotness_source(std::move(picked->source), budget); !s.ok()) {
      std::printf("add_hotness_source: %s\n", std::string(s.message()).c_str());
      return 1;
    }

    int rc = 0;
    {
      auto heap = examples::SlowHeap::create(*machine, *engine, "data");
      if (!heap) return 1;
      const std::size_t n = bytes / sizeof(std::uint64_t);
      std::vector<std::uint64_t, tierkit::tiered_allocator<std::uint64_t>> data(
          n, 1, heap->allocator<std::uint64_t>());
      std::printf("%s of data on the slow tier (%s), zero record_access calls.\n",
                  examples::Machine::mib(bytes).c_str(),
                  examples::placement(*machine, data.data(), bytes).c_str());

      const std::size_t per_page = tierkit::kPageSize / sizeof(std::uint64_t);
      const std::size_t pages = n / per_page, hot_pages = pages / 8;
      const auto start = static_cast<std::size_t>(hot_start * static_cast<double>(pages));
      std::uint64_t sum = 0;
      double app_s = 0;
      for (int e = 0; e < epochs; ++e) {
        // The hot set: an eighth of the pages, from --hot_start, moving by a
        // sixteenth every 8 epochs.
        std::size_t first = (start + static_cast<std::size_t>(e / 8) * pages / 16) % pages;
        auto t0 = std::chrono::steady_clock::now();
        for (int rep = 0; rep < 64; ++rep)
          for (std::size_t p = 0; p < hot_pages; ++p) {
            std::size_t i = ((first + p) % pages) * per_page + static_cast<std::size_t>(rep) * 4;
            sum += data[i];
            data[i + 1] += 1;
          }
        for (std::size_t i = 0; i < n; i += 64 * per_page) sum += data[i];  // a little cold traffic
        app_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (absl::Status s = engine->step(); !s.ok()) {
          std::fprintf(stderr, "epoch: %s\n", std::string(s.message()).c_str());
          rc = 1;
          break;
        }
        // How much of the current hot set the engine believes is fast.
        std::size_t fast = 0;
        for (std::size_t p = 0; p < hot_pages; ++p) {
          auto a = reinterpret_cast<std::uintptr_t>(data.data() + ((first + p) % pages) * per_page);
          auto* w = engine->tracker().word(tierkit::align_down(a, tierkit::kPageSize));
          if (w != nullptr && tierkit::PageWord::fast(w->load())) ++fast;
        }
        tierkit::EngineStats st = engine->stats();
        const auto& src = st.hotness_sources.at(0);
        std::printf(
            "epoch %2d  hot set in fast tier %5.1f%%  source found %5llu pages (sampled %llu)  "
            "promoted %llu\n",
            e + 1, 100.0 * static_cast<double>(fast) / static_cast<double>(hot_pages),
            static_cast<unsigned long long>(src.pages_found),
            static_cast<unsigned long long>(src.pages_sampled),
            static_cast<unsigned long long>(st.promoted_pages));
      }
      tierkit::EngineStats st = engine->stats();
      const auto& src = st.hotness_sources.at(0);
      double cpu_s = static_cast<double>(src.cpu_ns) / 1e9;
      std::printf(
          "Tracking cost (source %s): %.2f ms CPU in total (%.3f ms per epoch; %.2f ms of it in "
          "fault handlers on the program's threads), %.1f%% of the program's own %.1f ms; %llu "
          "pages sampled, %llu found accessed (%llu written)%s%s\n",
          src.name.c_str(), cpu_s * 1e3, cpu_s * 1e3 / epochs,
          static_cast<double>(src.handler_ns) / 1e6, app_s > 0 ? 100 * cpu_s / app_s : 0.0,
          app_s * 1e3, static_cast<unsigned long long>(src.pages_sampled),
          static_cast<unsigned long long>(src.pages_found),
          static_cast<unsigned long long>(src.pages_written), src.last_error.empty() ? "" : "; ",
          src.last_error.c_str());
      std::printf("checksum %llu\n", static_cast<unsigned long long>(sum));
    }
    return rc;
  });
}
