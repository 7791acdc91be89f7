// tests/unit/trace_replay.hpp: replays a committed real trace
// (tests/traces/, how each was recorded: tests/traces/README.md) through
// tierkit-sim's simulate() at the issue-12 setting, a fast tier of a quarter
// of the trace's pages. For the simulator tests.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "tierkit/sim/simulator.hpp"
#include "tierkit/sim/trace_file.hpp"
#include "tierkit/sim/workload.hpp"

namespace tierkit::sim {

// The path of tests/traces/<name>.lackey.gz.
inline std::string committed_trace(const char* name) {
  return std::string(TIERKIT_FIXTURES_DIR) + "/../traces/" + name + ".lackey.gz";
}

// Loads the trace once; each call replays it under one policy. A trace that
// does not load, or a run that fails, is a test failure (ok() is false, a
// failed run returns an empty SimResult).
class TraceReplay {
 public:
  TraceReplay(const std::string& path, std::int64_t gap_ns) {
    auto t = read_lackey_trace(path);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return;
    trace_ = std::make_shared<const Trace>(*std::move(t));
    o_.fast_pages = trace_->pages / 4;
    o_.gap_ns = gap_ns;
    o_.engine.environment = EngineConfig::Environment::kIgnore;
  }
  bool ok() const { return trace_ != nullptr; }
  const Trace& trace() const { return *trace_; }
  // The options every replay starts from; copy and change them for a variant.
  const SimOptions& options() const { return o_; }

  SimResult operator()(const char* policy) const { return (*this)(policy, o_); }
  SimResult operator()(const char* policy, const SimOptions& o) const {
    TraceWorkload wl(trace_);
    auto r = simulate(wl, policy, o);
    EXPECT_TRUE(r.ok()) << policy << ": " << r.status();
    return r.ok() ? *std::move(r) : SimResult();
  }

 private:
  std::shared_ptr<const Trace> trace_;
  SimOptions o_;
};

}  // namespace tierkit::sim
