// examples/example_support.hpp: what the examples share.
//  - Machine: where to run. On a machine with two memory tiers, the Linux
//    backend (real mbind and move_pages); on a one-tier machine, a simulated
//    two-node machine (placement is bookkeeping, the memory is real). Says
//    which, in plain words.
//  - SlowHeap: a memory resource on the slow tier whose arenas the engine
//    tracks as regions (ArenaRegions), for tiered_allocator containers.
//  - placement(): where a range's pages are (move_pages with nodes == NULL);
//    HitRatio: the measured fast-tier hit ratio of sampled accesses.
//  - Zipf: a power-law sampler for skewed workloads.
//  - Demand, require_fits() and run(): the memory the size flags ask for,
//    refused up front beyond physical memory or the cgroup's limit, and an
//    allocation that fails anyway reported (exit 1) instead of aborting.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "tierkit/allocator.hpp"
#include "tierkit/backend/linux.hpp"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/engine.hpp"
#include "tierkit/memory_resource.hpp"
#include "tierkit/topology.hpp"

namespace examples {

using namespace tierkit;

// Exits with status 2 and `message` unless `ok` (flag validation).
inline void require(bool ok, const char* message) {
  if (ok) return;
  std::fprintf(stderr, "bad flag: %s\n", message);
  std::exit(2);
}
inline void require(bool ok, const std::string& message) { require(ok, message.c_str()); }

// "2.0 PiB": a byte count for messages. A double, so that the product of size
// flags is formed without overflow before it is checked.
inline std::string size_text(double bytes) {
  static constexpr const char* kUnit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  for (; bytes >= 1024 && u < 6; ++u) bytes /= 1024;
  return u == 0 ? absl::StrFormat("%.0f bytes", bytes)
                : absl::StrFormat("%.1f %s", bytes, kUnit[u]);
}

// The memory an example's size flags ask for: its data and samplers, and the
// flags as given ("--mib=64"), which the messages name.
struct Demand {
  double bytes;
  std::string flags;
};

// A memory limit and the file that set it.
struct MemoryLimit {
  double bytes;
  std::string file;
};

// The tightest memory limit of this process's cgroup and its ancestors
// (cgroup v2 memory.max; v1 memory.limit_in_bytes where the memory
// controller is mounted on its own), or nullopt if none is set. A process
// over it is OOM-killed with no message, so the examples check it first.
inline std::optional<MemoryLimit> cgroup_memory_limit() {
  const auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const std::string cgroup = read("/proc/self/cgroup"), mounts = read("/proc/self/mountinfo");
  std::vector<std::pair<std::string, const char*>> dirs;  // (directory, limit file)
  if (auto v2 = parse_cgroup2_dir(cgroup, mounts)) dirs.emplace_back(*v2, "memory.max");
  // v1: the "N:memory:/path" line, and the cgroup mount whose options name memory.
  std::optional<std::string> path;
  for (absl::string_view line : absl::StrSplit(cgroup, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() == 3 && absl::c_linear_search(absl::StrSplit(f[1], ','), "memory"))
      path = std::string(f[2]);
  }
  for (absl::string_view line : absl::StrSplit(mounts, '\n')) {
    std::pair<absl::string_view, absl::string_view> sides = absl::StrSplit(line, " - ");
    std::vector<absl::string_view> fs = absl::StrSplit(sides.second, ' ');
    std::vector<absl::string_view> f = absl::StrSplit(sides.first, ' ');
    if (path && fs.size() >= 3 && fs[0] == "cgroup" && f.size() >= 5 && f[3] == "/" &&
        absl::c_linear_search(absl::StrSplit(fs[2], ','), "memory"))
      dirs.emplace_back(absl::StrCat(f[4], *path == "/" ? "" : *path), "memory.limit_in_bytes");
  }
  std::optional<MemoryLimit> tightest;
  for (auto& [dir, name] : dirs)
    for (std::string d = dir; !d.empty() && d != "/"; d.resize(d.rfind('/'))) {
      std::uint64_t v = 0;  // "max" (v2) or near 2^63 (v1) means none
      const std::string file = absl::StrCat(d, "/", name);
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(read(file)), &v) && v < (1ull << 62) &&
          (!tightest || v < tightest->bytes))
        tightest = MemoryLimit{static_cast<double>(v), file};
    }
  return tightest;
}

// Exits with status 2 unless `d` fits in this machine's physical memory and
// under its cgroup's memory limit: every example writes all of its data, so
// more could only fail, swap or be OOM-killed.
inline void require_fits(const Demand& d) {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) {  // unknown: run() still reports a failure
    const double have = static_cast<double>(pages) * static_cast<double>(page);
    require(d.bytes <= have,
            absl::StrCat(d.flags, " asks for ", size_text(d.bytes),
                         ", more than this machine's physical memory (", size_text(have), ")"));
  }
  if (std::optional<MemoryLimit> limit = cgroup_memory_limit())
    require(d.bytes <= limit->bytes,
            absl::StrCat(d.flags, " asks for ", size_text(d.bytes),
                         ", more than this process's cgroup memory limit (",
                         size_text(limit->bytes), ", ", limit->file, ")"));
}

// Runs `body` (an example once its flags are checked) and returns its exit
// status. An allocation it cannot make (the mmap behind tiered_allocator
// fails: TierAllocError, a std::bad_alloc; or std::length_error) ends it with
// "cannot allocate ...: why" and status 1 rather than std::terminate's abort.
template <class Body>
int run(const Demand& d, Body&& body) {
  const auto fail = [&](const char* why) {
    std::fflush(stdout);  // what the example printed comes first
    std::fprintf(stderr, "cannot allocate the %s that %s asks for: %s\n",
                 size_text(d.bytes).c_str(), d.flags.c_str(), why);
    return 1;
  };
  try {
    return body();
  } catch (const TierAllocError& e) {
    return fail(e.what());
  } catch (const std::bad_alloc&) {
    return fail("out of memory (std::bad_alloc)");
  } catch (const std::length_error& e) {
    return fail(e.what());
  }
}

// The machine an example runs on, and the engine configuration for it.
class Machine {
 public:
  // Discovers the tiers. With two or more, uses the Linux backend (unless
  // `force_simulated`); otherwise a simulated machine whose fast node holds
  // `fast_bytes`. The engine budget is `fast_bytes` either way, so the hot
  // set has to compete for the fast tier. Prints the choice when `verbose`.
  static std::unique_ptr<Machine> pick(std::uint64_t fast_bytes, bool force_simulated = false,
                                       bool verbose = true) {
    auto m = std::unique_ptr<Machine>(new Machine);
    absl::StatusOr<Topology> topo = Topology::discover();
    if (!topo.ok() && detail::getenv_string("TIERKIT_TIERS")) {
      // An explicit override that is malformed is an error, not a fallback.
      std::fprintf(stderr, "%s\n", std::string(topo.status().message()).c_str());
      std::exit(2);
    }
    std::string why;
    if (!topo.ok())
      why = absl::StrCat("tier discovery failed (", topo.status().message(), ")");
    else if (topo->single_tier())
      why = "this machine has ONE memory tier: there is nothing to tier here";
    else if (force_simulated)
      why =
          absl::StrCat("this machine has ", topo->tier_count(), " tiers, but --simulate was given");
    if (topo.ok()) m->real_ = *topo;
    m->config_.fast_budget_bytes = fast_bytes;
    if (why.empty()) {
      m->config_.use_topology(*topo);
      m->backend_ = &LinuxBackend::instance();
      if (verbose)
        std::printf(
            "This machine has %d memory tiers (fast nodes %s, slow nodes %s).\n"
            "Using the Linux backend: real mbind(2) and move_pages(2).\n",
            topo->tier_count(), m->config_.fast_nodes.to_string().c_str(),
            m->config_.slow_nodes.to_string().c_str());
      return m;
    }
    m->sim_ = std::make_unique<SimulatedBackend>(
        std::vector<SimulatedNode>{{0, fast_bytes}, {1, std::uint64_t{64} << 30}});
    m->backend_ = m->sim_.get();
    m->config_.fast_nodes = {0};
    m->config_.slow_nodes = {1};
    if (verbose)
      std::printf(
          "Note: %s.\nUsing a SIMULATED two-tier machine instead: node 0 = fast tier "
          "(%s), node 1 = slow tier (CXL-like).\nThe data is real memory; page moves "
          "only update the simulator's placement map.\n",
          why.c_str(), mib(fast_bytes).c_str());
    return m;
  }

  // Engine::create on this machine's backend (which applies the TIERKIT_*
  // environment and says so); prints the error and returns null when the
  // configuration is invalid (e.g. an unknown --policy or TIERKIT_POLICY).
  std::unique_ptr<Engine> make_engine(const EngineConfig& config, const Clock* clock = nullptr) {
    auto e = Engine::create(config, backend_, clock);
    if (!e.ok()) {
      std::fprintf(stderr, "engine: %s\n", std::string(e.status().message()).c_str());
      return nullptr;
    }
    EngineConfig applied = (*e)->config();
    if (!applied.from_environment.empty())
      std::printf("From the environment: %s\n", applied.environment_summary().c_str());
    return std::move(*e);
  }

  bool simulated() const { return sim_ != nullptr; }
  Backend& backend() { return *backend_; }
  // The discovered topology of the real machine (nullopt if discovery failed).
  const std::optional<Topology>& real_topology() const { return real_; }
  // fast/slow nodes and the fast budget set; adjust the rest and create.
  EngineConfig config() const { return config_; }
  const char* tier_of(NodeId n) const {
    return config_.fast_nodes.contains(n) ? "fast" : config_.slow_nodes.contains(n) ? "slow" : "?";
  }

  static std::string mib(std::uint64_t bytes) {
    return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  }

 private:
  Machine() = default;
  std::optional<Topology> real_;
  std::unique_ptr<SimulatedBackend> sim_;
  Backend* backend_ = nullptr;
  EngineConfig config_;
};

// Memory on the slow tier whose arenas are registered with the engine as
// regions (assumed slow until the engine's placement query says otherwise).
// Small objects go through a pool (TierPoolResource). Destroy containers
// first, then this, then the engine.
class SlowHeap {
 public:
  static std::unique_ptr<SlowHeap> create(Machine& m, Engine& engine, std::string name) {
    TierResourceOptions o;
    o.nodes = m.config().slow_nodes;
    o.backend = &m.backend();
    o.arena_bytes = 4 << 20;  // big containers get a dedicated arena of their own size
    auto r = TierMemoryResource::create(o);
    if (!r.ok()) {
      std::fprintf(stderr, "slow-tier resource: %s\n", std::string(r.status().message()).c_str());
      return nullptr;
    }
    auto h = std::unique_ptr<SlowHeap>(new SlowHeap());
    h->arena_ = std::move(*r);
    // Every arena becomes a region of the engine, starting slow.
    h->tracked_ = std::make_unique<ArenaRegions>(engine, *h->arena_,
                                                 RegionOptions().with_name(std::move(name)));
    h->pool_ = std::make_unique<TierPoolResource>(h->arena_.get());
    return h;
  }
  ~SlowHeap() {
    pool_.reset();
    tracked_.reset();  // unregisters every arena
    arena_.reset();
  }

  template <class T>
  tiered_allocator<T> allocator() {
    return tiered_allocator<T>(pool_.get());
  }
  TierMemoryResource& arena() { return *arena_; }

 private:
  SlowHeap() = default;
  std::unique_ptr<TierMemoryResource> arena_;
  std::unique_ptr<ArenaRegions> tracked_;
  std::unique_ptr<TierPoolResource> pool_;
};

// "16384 pages on node 1 (slow)": where the pages of [p, p+bytes) are, one
// placement query (move_pages with nodes == NULL) through the backend.
inline std::string placement(Machine& m, const void* p, std::size_t bytes) {
  std::vector<void*> pages;
  for (auto a = align_down(reinterpret_cast<std::uintptr_t>(p), kPageSize);
       a < reinterpret_cast<std::uintptr_t>(p) + bytes; a += kPageSize)
    pages.push_back(reinterpret_cast<void*>(a));
  std::vector<int> status(pages.size());
  if (absl::Status s = m.backend().query(pages, absl::MakeSpan(status)); !s.ok())
    return absl::StrCat("placement unknown: ", s.message());
  std::map<int, std::size_t> count;
  for (int s : status) ++count[s];
  std::string out;
  for (auto it = count.rbegin(); it != count.rend(); ++it)
    absl::StrAppend(&out, out.empty() ? "" : ", ", it->second, " pages ",
                    it->first >= 0
                        ? absl::StrCat("on node ", it->first, " (", m.tier_of(it->first), ")")
                        : absl::StrCat("not placed (errno ", -it->first, ")"));
  return out;
}

// The measured fast-tier hit ratio: asks the backend where 1 in `every`
// accessed pages is (one move_pages query each on Linux).
class HitRatio {
 public:
  explicit HitRatio(Machine& m, unsigned every = 64)
      : m_(m), fast_nodes_(m.config().fast_nodes), every_(every) {}
  void sample(const void* p) {
    if (++n_ % every_ != 0) return;
    void* page =
        reinterpret_cast<void*>(align_down(reinterpret_cast<std::uintptr_t>(p), kPageSize));
    int node = -1;
    if (!m_.backend().query({&page, 1}, {&node, 1}).ok() || node < 0) return;
    ++total_;
    fast_ += fast_nodes_.contains(node);
  }
  // Percentage since the last call (0 when nothing was sampled).
  double take() {
    double r = total_ ? 100.0 * static_cast<double>(fast_) / static_cast<double>(total_) : 0;
    total_ = fast_ = 0;
    return r;
  }

 private:
  Machine& m_;
  NodeSet fast_nodes_;
  unsigned every_;
  std::uint64_t n_ = 0, total_ = 0, fast_ = 0;
};

// Exits with status 2 unless `s`, a --skew (Zipf exponent), is finite and
// >= 0: NaN or -inf make Zipf's CDF NaN, and its samples meaningless.
inline void require_skew(double s) {
  require(std::isfinite(s) && s >= 0, "--skew must be a finite number >= 0");
}

// Samples ranks 0..n-1 with P(k) proportional to 1 / (k+1)^s, then maps the
// rank through a fixed random permutation so popular items are scattered over
// memory rather than packed at its start. O(log n) per sample.
class Zipf {
 public:
  static constexpr std::size_t kBytesPerItem = sizeof(double) + sizeof(std::size_t);
  Zipf(std::size_t n, double s, std::uint64_t seed = 42) : cdf_(n), perm_(n), rng_(seed) {
    double sum = 0;
    for (std::size_t k = 0; k < n; ++k) cdf_[k] = sum += std::pow(static_cast<double>(k + 1), -s);
    for (auto& c : cdf_) c /= sum;
    for (std::size_t k = 0; k < n; ++k) perm_[k] = k;
    std::shuffle(perm_.begin(), perm_.end(), rng_);
  }
  std::size_t operator()() {
    double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    auto k = static_cast<std::size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
    return perm_[std::min(k, perm_.size() - 1)];
  }

 private:
  std::vector<double> cdf_;
  std::vector<std::size_t> perm_;
  std::mt19937_64 rng_;
};

}  // namespace examples
