// tierkit/sim/workload.hpp: access-stream generators for the simulator. A
// Workload yields page indices in [0, pages()) in batches; it is a
// deterministic function of its options (seed included), so every policy
// replays exactly the same stream. Layer 1 of the simulator.
//
//   zipf      stationary: page popularity ~ 1/rank^s, ranks scattered over
//             the footprint by a seeded permutation.
//   hotshift  a hot set (hot_fraction of the pages, hot_share of accesses)
//             that jumps to other pages at each of `phases` phases.
//   scan      the hot set of hotshift that never moves, plus `scans` full
//             sequential scans (one access per page) spread over the run.
//   uniform   every page equally likely: nothing to gain from tiering.
//   churn     allocation sweeps the footprint `churn_laps` times; the newest
//             young_fraction of pages gets hot_share of the accesses (the
//             youngest most), so data is hot while young, then cold.
//   trace     a lackey trace (trace_file.hpp), replayed as is.
//
// Each access also has a write bit (next() with a `writes` buffer): a
// trace's own (S and M records are writes); a generator's is drawn with
// probability write_fraction from a hash of (seed, position), so the page
// stream is the same whether or not writes are asked for.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tierkit/sim/trace_file.hpp"

namespace tierkit::sim {

// xoshiro256** seeded with splitmix64: fast, good enough, reproducible.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (auto& w : s_) {
      seed += 0x9e3779b97f4a7c15ull;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      w = z ^ (z >> 31);
    }
  }
  std::uint64_t next() {
    std::uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  // Uniform in [0, n) for n <= 2^32 (multiply-shift; bias < n / 2^32).
  static std::uint32_t scale(std::uint32_t r32, std::uint64_t n) {
    return static_cast<std::uint32_t>((static_cast<std::uint64_t>(r32) * n) >> 32);
  }
  std::uint32_t below(std::uint64_t n) {
    return scale(static_cast<std::uint32_t>(next() >> 32), n);
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

struct WorkloadOptions {
  std::uint64_t pages = 262144;       // footprint, 4 KiB pages
  std::uint64_t accesses = 30000000;  // length of the stream
  std::uint64_t seed = 1;
  double zipf_s = 1.0;           // zipf skew
  double hot_fraction = 0.10;    // hotshift, scan: hot set / footprint
  double hot_share = 0.90;       // hotshift, scan, churn: accesses to the hot part
  std::uint32_t phases = 6;      // hotshift: the hot set moves phases - 1 times
  std::uint32_t scans = 6;       // scan: full scans over the run
  double young_fraction = 0.05;  // churn: the young (hot) window / footprint
  double churn_laps = 2;         // churn: sweeps of the footprint by allocation
  double write_fraction = 0.25;  // generators: share of accesses that are writes

  absl::Status validate() const {
    if (pages < 2 || pages > (1ull << 32) - 1)
      return absl::InvalidArgumentError(
          absl::StrCat("footprint: ", pages, " pages must be in [2, 2^32)"));
    if (accesses == 0) return absl::InvalidArgumentError("accesses must be > 0");
    if (!(zipf_s >= 0 && zipf_s <= 10))
      return absl::InvalidArgumentError(absl::StrCat("zipf_s = ", zipf_s, " must be in [0, 10]"));
    if (!(hot_fraction > 0 && hot_fraction <= 1))
      return absl::InvalidArgumentError(
          absl::StrCat("hot_fraction = ", hot_fraction, " must be in (0, 1]"));
    if (!(hot_share >= 0 && hot_share <= 1))
      return absl::InvalidArgumentError(
          absl::StrCat("hot_share = ", hot_share, " must be in [0, 1]"));
    if (phases < 1) return absl::InvalidArgumentError("phases must be >= 1");
    if (!(young_fraction > 0 && young_fraction <= 1))
      return absl::InvalidArgumentError(
          absl::StrCat("young_fraction = ", young_fraction, " must be in (0, 1]"));
    if (!(churn_laps > 0 && churn_laps <= 1e6))
      return absl::InvalidArgumentError(
          absl::StrCat("churn_laps = ", churn_laps, " must be in (0, 1e6]"));
    if (!(write_fraction >= 0 && write_fraction <= 1))
      return absl::InvalidArgumentError(
          absl::StrCat("write_fraction = ", write_fraction, " must be in [0, 1]"));
    return absl::OkStatus();
  }
};

class Workload {
 public:
  Workload(std::uint64_t pages, std::uint64_t total) : pages_(pages), total_(total) {}
  virtual ~Workload() = default;
  virtual std::string name() const = 0;

  std::uint64_t pages() const { return pages_; }
  std::uint64_t total() const { return total_; }
  std::uint64_t done() const { return done_; }

  // Fills `out` with the next accesses; returns how many (0 at the end).
  std::size_t next(absl::Span<std::uint32_t> out) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), total_ - done_));
    if (n) generate(out.data(), n);
    done_ += n;
    return n;
  }
  // The same, and writes[i] = 1 when access i is a write, else 0 (`writes`
  // holds at least out.size() bytes).
  std::size_t next(absl::Span<std::uint32_t> out, std::uint8_t* writes) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), total_ - done_));
    if (n) {
      generate_writes(writes, n);
      generate(out.data(), n);
    }
    done_ += n;
    return n;
  }

  // The page's rank in first-touch order: initial placement puts pages in the
  // fast tier while rank < fast pages. Generators touch pages in address order.
  virtual std::uint64_t first_touch_rank(std::uint32_t page) const { return page; }
  // Whether the stream holds each page's first touch (a recorded program),
  // so a page can be placed when it is first accessed. Generators model a
  // footprint initialised before the run, in first-touch order.
  virtual bool touches_at_first_access() const { return false; }

 protected:
  // Writes accesses done() .. done() + n - 1.
  virtual void generate(std::uint32_t* out, std::size_t n) = 0;
  // Write bits of accesses done() .. done() + n - 1 (called before generate):
  // set with probability write_fraction, from a hash of (seed, position).
  virtual void generate_writes(std::uint8_t* out, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint64_t z = (write_seed_ ^ (done_ + i)) * 0x9e3779b97f4a7c15ull;
      z = (z ^ (z >> 31)) * 0xbf58476d1ce4e5b9ull;
      out[i] = (z >> 32) < write_threshold_;
    }
  }

 public:
  // Generators: writes with probability `fraction`, hashed from `seed`.
  void set_writes(std::uint64_t seed, double fraction) {
    write_seed_ = seed * 0xd1b54a32d192ed03ull + 1;
    write_threshold_ = static_cast<std::uint64_t>(std::clamp(fraction, 0.0, 1.0) * 4294967296.0);
  }

 protected:
  const std::uint64_t pages_, total_;
  std::uint64_t done_ = 0;
  std::uint64_t write_seed_ = 1, write_threshold_ = 1073741824;  // 1/4
};

namespace detail {
inline std::vector<std::uint32_t> permutation(std::uint64_t n, Rng& rng) {
  std::vector<std::uint32_t> p(n);
  std::iota(p.begin(), p.end(), 0u);
  for (std::uint64_t i = n - 1; i > 0; --i) std::swap(p[i], p[rng.below(i + 1)]);
  return p;
}
}  // namespace detail

// Zipf via Vose's alias method over pre-permuted pages: one 12-byte table
// entry per page, O(1) per sample.
class ZipfWorkload final : public Workload {
 public:
  explicit ZipfWorkload(const WorkloadOptions& o) : Workload(o.pages, o.accesses), rng_(o.seed) {
    const std::uint64_t n = o.pages;
    std::vector<std::uint32_t> page_of_rank = detail::permutation(n, rng_);
    std::vector<double> q(n);
    double sum = 0;
    for (std::uint64_t r = 0; r < n; ++r)
      sum += q[r] = std::pow(static_cast<double>(r + 1), -o.zipf_s);
    for (auto& x : q) x *= static_cast<double>(n) / sum;
    table_.resize(n);
    std::vector<std::uint32_t> small, large;
    for (std::uint32_t r = 0; r < n; ++r) (q[r] < 1 ? small : large).push_back(r);
    auto set = [&](std::uint32_t r, double p, std::uint32_t alias) {
      double scaled = std::min(p, 1.0) * 4294967296.0;
      table_[r] = {scaled >= 4294967295.0 ? 0xffffffffu : static_cast<std::uint32_t>(scaled),
                   page_of_rank[r], page_of_rank[alias]};
    };
    while (!small.empty() && !large.empty()) {
      std::uint32_t s = small.back(), l = large.back();
      small.pop_back();
      set(s, q[s], l);
      q[l] -= 1 - q[s];
      if (q[l] < 1) {
        large.pop_back();
        small.push_back(l);
      }
    }
    for (auto r : large) set(r, 1, r);
    for (auto r : small) set(r, 1, r);  // rounding leftovers
  }
  std::string name() const override { return "zipf"; }

 protected:
  void generate(std::uint32_t* out, std::size_t n) override {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint64_t r = rng_.next();
      const Entry& e = table_[Rng::scale(static_cast<std::uint32_t>(r >> 32), pages_)];
      out[i] = static_cast<std::uint32_t>(r) < e.threshold ? e.page : e.alias;
    }
  }

 private:
  struct Entry {
    std::uint32_t threshold, page, alias;
  };
  Rng rng_;
  std::vector<Entry> table_;
};

// hotshift (moving = true) and the hot part of scan (moving = false).
class HotSetWorkload : public Workload {
 public:
  HotSetWorkload(const WorkloadOptions& o, bool moving)
      : Workload(o.pages, o.accesses),
        rng_(o.seed),
        perm_(detail::permutation(o.pages, rng_)),
        hot_(std::max<std::uint64_t>(
            1, static_cast<std::uint64_t>(o.hot_fraction * static_cast<double>(o.pages)))),
        hot_share32_(
            static_cast<std::uint32_t>(std::min(o.hot_share * 4294967296.0, 4294967295.0))),
        phases_(moving ? o.phases : 1) {}

  // The hot set during phase k: perm[(k*hot + j) % pages], j < hot.
  std::uint64_t hot_pages() const { return hot_; }
  std::uint32_t phase_of(std::uint64_t access) const {
    return static_cast<std::uint32_t>(access * phases_ / total_);
  }
  std::uint32_t hot_page(std::uint32_t phase, std::uint64_t j) const {
    return perm_[(static_cast<std::uint64_t>(phase) * hot_ + j) % pages_];
  }

 protected:
  std::uint32_t hot_access(std::uint64_t pos) {
    std::uint64_t r = rng_.next();
    if (static_cast<std::uint32_t>(r) < hot_share32_)
      return hot_page(phase_of(pos), Rng::scale(static_cast<std::uint32_t>(r >> 32), hot_));
    return Rng::scale(static_cast<std::uint32_t>(r >> 32), pages_);
  }
  void generate(std::uint32_t* out, std::size_t n) override {
    for (std::size_t i = 0; i < n; ++i) out[i] = hot_access(done_ + i);
  }

  Rng rng_;
  std::vector<std::uint32_t> perm_;
  const std::uint64_t hot_;
  const std::uint32_t hot_share32_;
  const std::uint32_t phases_;
};

class HotShiftWorkload final : public HotSetWorkload {
 public:
  explicit HotShiftWorkload(const WorkloadOptions& o) : HotSetWorkload(o, true) {}
  std::string name() const override { return "hotshift"; }
};

// A stationary hot set; each of `scans` cycles ends with a sequential pass
// over every page (address order, one access each).
class ScanWorkload final : public HotSetWorkload {
 public:
  explicit ScanWorkload(const WorkloadOptions& o)
      : HotSetWorkload(o, false),
        cycle_(std::max<std::uint64_t>(1, o.accesses / std::max<std::uint32_t>(1, o.scans))),
        scan_len_(o.scans == 0 ? 0 : std::min<std::uint64_t>(o.pages, cycle_)) {}
  std::string name() const override { return "scan"; }
  // Whether access `pos` belongs to a scan, and which page it reads.
  bool in_scan(std::uint64_t pos, std::uint32_t* page) const {
    std::uint64_t off = pos % cycle_;
    if (scan_len_ == 0 || off < cycle_ - scan_len_) return false;
    *page = static_cast<std::uint32_t>(off - (cycle_ - scan_len_));
    return true;
  }

 protected:
  void generate(std::uint32_t* out, std::size_t n) override {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint32_t p;
      out[i] = in_scan(done_ + i, &p) ? p : hot_access(done_ + i);
    }
  }

 private:
  const std::uint64_t cycle_, scan_len_;
};

class UniformWorkload final : public Workload {
 public:
  explicit UniformWorkload(const WorkloadOptions& o)
      : Workload(o.pages, o.accesses), rng_(o.seed) {}
  std::string name() const override { return "uniform"; }

 protected:
  void generate(std::uint32_t* out, std::size_t n) override {
    for (std::size_t i = 0; i < n; ++i) out[i] = rng_.below(pages_);
  }

 private:
  Rng rng_;
};

// Allocation head h moves through the footprint (wrapping); accesses go to
// page h - age with age = young * u^2 (youngest hottest) with hot_share, else
// anywhere.
class ChurnWorkload final : public Workload {
 public:
  explicit ChurnWorkload(const WorkloadOptions& o)
      : Workload(o.pages, o.accesses),
        rng_(o.seed),
        young_(std::max<std::uint64_t>(
            1, static_cast<std::uint64_t>(o.young_fraction * static_cast<double>(o.pages)))),
        pages_per_access_(o.churn_laps * static_cast<double>(o.pages) /
                          static_cast<double>(o.accesses)),
        hot_share32_(
            static_cast<std::uint32_t>(std::min(o.hot_share * 4294967296.0, 4294967295.0))) {}
  std::string name() const override { return "churn"; }
  // The newest page at access `pos`.
  std::uint64_t head(std::uint64_t pos) const {
    return static_cast<std::uint64_t>(static_cast<double>(pos) * pages_per_access_) % pages_;
  }
  std::uint64_t young_pages() const { return young_; }

 protected:
  void generate(std::uint32_t* out, std::size_t n) override {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint64_t r = rng_.next();
      if (static_cast<std::uint32_t>(r) < hot_share32_) {
        double u = static_cast<double>(r >> 32) * 0x1.0p-32;
        auto age = static_cast<std::uint64_t>(u * u * static_cast<double>(young_));
        out[i] = static_cast<std::uint32_t>((head(done_ + i) + pages_ - age % pages_) % pages_);
      } else {
        out[i] = Rng::scale(static_cast<std::uint32_t>(r >> 32), pages_);
      }
    }
  }

 private:
  Rng rng_;
  const std::uint64_t young_;
  const double pages_per_access_;
  const std::uint32_t hot_share32_;
};

// Replays a loaded trace (shared, read-only), at most `limit` accesses (0 = all).
class TraceWorkload final : public Workload {
 public:
  explicit TraceWorkload(std::shared_ptr<const Trace> t, std::uint64_t limit = 0)
      : Workload(t->pages,
                 limit ? std::min<std::uint64_t>(limit, t->accesses.size()) : t->accesses.size()),
        trace_(std::move(t)) {}
  std::string name() const override { return absl::StrCat("trace:", trace_->name); }
  std::uint64_t first_touch_rank(std::uint32_t page) const override {
    return trace_->first_touch[page];
  }
  bool touches_at_first_access() const override { return true; }

 protected:
  void generate(std::uint32_t* out, std::size_t n) override {
    std::copy_n(trace_->accesses.data() + done_, n, out);
  }
  void generate_writes(std::uint8_t* out, std::size_t n) override {
    for (std::size_t i = 0; i < n; ++i) out[i] = trace_->is_write(done_ + i);
  }

 private:
  std::shared_ptr<const Trace> trace_;
};

inline const std::vector<std::string>& builtin_workloads() {
  static const std::vector<std::string> names = {"zipf", "hotshift", "scan", "uniform", "churn"};
  return names;
}

// Builds a built-in workload by name. O(pages) setup.
inline absl::StatusOr<std::unique_ptr<Workload>> make_workload(absl::string_view name,
                                                               const WorkloadOptions& o) {
  if (absl::Status s = o.validate(); !s.ok()) return s;
  std::unique_ptr<Workload> w;
  if (name == "zipf") w.reset(new ZipfWorkload(o));
  if (name == "hotshift") w.reset(new HotShiftWorkload(o));
  if (name == "scan") w.reset(new ScanWorkload(o));
  if (name == "uniform") w.reset(new UniformWorkload(o));
  if (name == "churn") w.reset(new ChurnWorkload(o));
  if (w) {
    w->set_writes(o.seed, o.write_fraction);
    return w;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown workload '", name, "' (known: ", absl::StrJoin(builtin_workloads(), ", "),
      ", all; or --trace=FILE)"));
}

}  // namespace tierkit::sim
