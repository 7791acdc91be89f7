// Stress: many threads record accesses and register/unregister regions while
// the engine's background thread runs epochs every millisecond, knobs change
// concurrently, and the engine is started and stopped 1000 times. Passes when
// nothing deadlocks or crashes (run it under TSan and ASan) and memory stays
// bounded. Iteration counts are fixed; a watchdog aborts a hang.
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tierkit/backend/fault_injection.hpp"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/engine.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TIERKIT_SANITIZED 1
#else
#define TIERKIT_SANITIZED 0
#endif

namespace tierkit {
namespace {

constexpr std::uintptr_t kBase = 0x100000000000;  // synthetic: never dereferenced
constexpr int kSlots = 16;                        // region slots, 64 pages each
constexpr std::size_t kSlotPages = 64;
constexpr int kStartStops = 1000;

std::uintptr_t SlotAddr(int slot) {
  return kBase + static_cast<std::uintptr_t>(slot) * kSlotPages * kPageSize;
}

// Aborts the process if the test does not finish in time (a deadlock).
class Watchdog {
 public:
  explicit Watchdog(int seconds)
      : thread_([this, seconds] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, std::chrono::seconds(seconds), [this] { return done_; })) {
            std::fprintf(stderr, "stress_test: no progress in %d s: deadlock?\n", seconds);
            std::abort();
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

TEST(Stress, EverythingAtOnceWhileTheEngineStartsAndStops) {
  Watchdog watchdog(240);
  SimulatedBackend sim({{0, 256 * kPageSize}, {1, 1ull << 32}});
  FaultInjectionBackend fi(
      sim, FaultInjectionOptions().with_seed(2).with_ebusy(0.05).with_partial(0.05));
  EngineConfig c;
  c.epoch_ms = 1;
  c.policy = "threshold:1";
  c.fast_nodes = {0};
  c.slow_nodes = {1};
  auto created = Engine::create(c, &fi);
  ASSERT_TRUE(created.ok()) << created.status();
  Engine& engine = **created;
  for (std::size_t i = 0; i < kSlots * kSlotPages; ++i) sim.touch(kBase + i * kPageSize, 1);

  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> accesses{0}, registrations{0}, knob_changes{0}, start_stops{0};
  std::vector<std::thread> threads;

  // Recorders: inside and outside the region slots.
  for (int t = 0; t < 3; ++t)
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(static_cast<unsigned>(t));
      std::uint64_t n = 0;
      while (!done.load(std::memory_order_relaxed)) {
        std::uintptr_t a = kBase + rng() % ((kSlots + 4) * kSlotPages * kPageSize);
        if (rng() % 8 == 0)
          engine.record_access(reinterpret_cast<void*>(a), 3 * kPageSize, 2);
        else
          engine.record_access(reinterpret_cast<void*>(a));
        ++n;
      }
      accesses += n;
    });

  // Region churn: each thread owns half the slots and re-registers the same
  // addresses over and over, with random tags, sizes and granularity.
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(100 + t));
      std::vector<RegionHandle> handles(kSlots / 2);
      std::uint64_t n = 0;
      while (!done.load(std::memory_order_relaxed)) {
        int i = static_cast<int>(rng() % handles.size());
        int slot = t * (kSlots / 2) + i;
        if (handles[static_cast<std::size_t>(i)].valid()) {
          if (rng() % 3 == 0)
            (void)engine.regions().set_tag(handles[static_cast<std::size_t>(i)].id(),
                                           static_cast<RegionTag>(rng() % 4));
          handles[static_cast<std::size_t>(i)].reset();
          continue;
        }
        auto h = engine.register_region(
            reinterpret_cast<void*>(SlotAddr(slot)), (1 + rng() % kSlotPages) * kPageSize,
            RegionOptions().with_tag(static_cast<RegionTag>(rng() % 4)).with_name("churn"),
            rng() % 2 == 0);
        ASSERT_TRUE(h.ok()) << h.status();
        handles[static_cast<std::size_t>(i)] = std::move(*h);
        ++n;
        // Real memory too: map, register, unregister, unmap.
        if (rng() % 16 == 0) {
          auto m = engine.backend().map(16 * kPageSize);
          ASSERT_TRUE(m.ok());
          auto rh = engine.register_region(*m, 16 * kPageSize);
          ASSERT_TRUE(rh.ok()) << rh.status();
          engine.record_access(*m);
          rh->reset();
          ASSERT_TRUE(engine.backend().unmap(*m, 16 * kPageSize).ok());
        }
      }
      registrations += n;
    });

  // Knobs, policy switches and readers.
  threads.emplace_back([&] {
    std::mt19937 rng(7);
    const char* policies[] = {"threshold:2", "automatic", "kernel", "static", "threshold:0.5"};
    std::uint64_t n = 0;
    while (!done.load(std::memory_order_relaxed)) {
      switch (rng() % 8) {
        case 0:
          (void)engine.set_policy(policies[rng() % 5]);
          break;
        case 1:
          (void)engine.set_promotion_threshold(0.5 + rng() % 10);
          break;
        case 2:
          (void)engine.set_demotion_threshold(rng() % 3 * 0.1);
          break;
        case 3:
          (void)engine.set_rate_limit_mbps(rng() % 2 ? 0.0 : 1000.0);
          break;
        case 4:
          EXPECT_TRUE(engine.set_fast_budget_bytes(rng() % 2 ? 0 : (rng() % 300) * kPageSize).ok());
          break;
        case 5:
          engine.rate_limiter().set_burst_bytes((rng() % 64) * kPageSize);
          break;
        case 6:
          (void)engine.running();
          break;
        default: {
          EngineStats s = engine.stats();
          (void)s.to_json();
        }
      }
      ++n;
    }
    knob_changes += n;
  });

  // Start and stop the background thread, from two threads at once.
  std::vector<std::thread> starters;
  for (int t = 0; t < 2; ++t)
    starters.emplace_back([&] {
      for (int k = 0; k < kStartStops / 2; ++k) {
        (void)engine.start();
        std::this_thread::yield();
        (void)engine.running();
        engine.stop();
        ++start_stops;
      }
    });
  // And step() from the test thread now and then.
  for (int k = 0; k < 200; ++k) {
    ASSERT_TRUE(engine.step().ok());
    std::this_thread::yield();
  }
  for (auto& s : starters) s.join();
  // Let the background thread run a few epochs with everything going on.
  ASSERT_TRUE(engine.start().ok());
  std::uint64_t e0 = engine.stats().epochs;
  while (engine.stats().epochs < e0 + 20) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  engine.stop();
  done = true;
  for (auto& th : threads) th.join();
  EXPECT_FALSE(engine.running());
  EXPECT_EQ(start_stops.load(), static_cast<std::uint64_t>(kStartStops));
  EXPECT_GT(registrations.load(), 0u);
  EXPECT_GT(accesses.load(), 0u);
  EXPECT_EQ(engine.regions().size(), 0u);  // every handle was dropped by its thread
  EXPECT_EQ(engine.regions().tracked_bytes(), 0u);
  std::printf(
      "stress: %d start/stop, %llu epochs, %llu registrations, %llu accesses, "
      "%llu knob changes, %llu faults\n",
      kStartStops, static_cast<unsigned long long>(engine.stats().epochs),
      static_cast<unsigned long long>(registrations.load()),
      static_cast<unsigned long long>(accesses.load()),
      static_cast<unsigned long long>(knob_changes.load()),
      static_cast<unsigned long long>(fi.counts().faults()));
}

TEST(Stress, ReRegisteringTheSameAddressesDoesNotGrowMemory) {
  SimulatedBackend sim({{0, 1 << 20}, {1, 1ull << 32}});
  EngineConfig c;
  c.policy = "threshold:1";
  c.slow_nodes = {1};
  ManualClock clock(1);
  auto e = Engine::create(c, &sim, &clock);
  ASSERT_TRUE(e.ok());
  Engine& engine = **e;
  for (std::size_t i = 0; i < 512; ++i) sim.touch(kBase + i * kPageSize, 1);
  auto cycle = [&](int rounds) {
    for (int r = 0; r < rounds; ++r) {
      auto h = engine.register_region(reinterpret_cast<void*>(kBase), 512 * kPageSize);
      ASSERT_TRUE(h.ok());
      for (std::size_t i = 0; i < 512; i += 7)
        engine.record_access(reinterpret_cast<void*>(kBase + i * kPageSize), kPageSize, 5);
      clock.advance_ns(100 * kNsPerMs);
      ASSERT_TRUE(engine.step().ok());
    }
  };
  cycle(50);  // warm up: tracker blocks, history map, histogram
  auto* word = engine.tracker().word(kBase);
  ASSERT_NE(word, nullptr);
#if !TIERKIT_SANITIZED
  struct mallinfo2 before = mallinfo2();
#endif
  cycle(2000);
  // The tracker reuses its blocks: same word address, nothing new allocated.
  EXPECT_EQ(engine.tracker().word(kBase), word);
  EXPECT_EQ(engine.regions().size(), 0u);
#if !TIERKIT_SANITIZED
  struct mallinfo2 after = mallinfo2();
  EXPECT_LT(after.uordblks, before.uordblks + (256u << 10))
      << "heap grew from " << before.uordblks << " to " << after.uordblks;
#endif
}

}  // namespace
}  // namespace tierkit
