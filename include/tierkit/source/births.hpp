// tierkit/source/births.hpp: pages born since the last look, from the
// present and exclusively-mapped bits of /proc/self/pagemap. Layer 1
// (syscalls): hotness_source.hpp, source/watched.hpp, std, Abseil, POSIX.
//
// When to choose it: on kernels without asynchronous userfaultfd (Debian
// 12's 6.1), as the cheap half of "sampled" (births+fault): a program that
// builds its hot data as it runs (hash nodes appended, values built) shows
// them as pages born, at no cost to the program. It sees a page's birth by a
// write (or the copy-on-write of a zero page it read first) and nothing
// after: rewrites and reads of old pages are the fault source's part. On
// 6.7+ source/uffd.hpp sees births the same way and samples rewrites too.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tierkit/hotness_source.hpp"
#include "tierkit/source/watched.hpp"

namespace tierkit::source {

struct BirthSourceOptions {
  // Heat added per page born: 16, as UffdWpOptions::weight: the engine's
  // evidence factor (Engine::kEvidenceFactor) times one access, so a birth
  // may displace a resident whose sampled value is at most one access per
  // epoch and nothing busier.
  std::uint32_t weight = 16;
};

// Reads the tracked ranges' /proc/self/pagemap entries in a budgeted
// rotating pass (SourceBudget::max_pages entries per collect()) and reports
// each page that is present and exclusively mapped now (bits 63 and 56) and
// was not at its last reading: a page born since, by a write or by the
// copy-on-write of the shared zero page (which is never "exclusive", so a
// page only read is not reported). Pages present when watch() first sees
// a range count as seen. No fault, no protection, no privileges.
//
// Cost: 8 bytes of pagemap per page per pass (about 5 ms CPU per GiB here,
// BM_PagemapRead), on the engine's thread; 1 bit of memory per tracked page.
// NOTE: after fork() every page is shared until written, so the written
// ones are reported again as they are copied. On kernels whose read faults
// allocate a page (no zero page), a page born by a read is reported too.
class BirthSource final : public HotnessSource {
 public:
  static constexpr std::uint64_t kPresentBit = std::uint64_t{1} << 63;
  static constexpr std::uint64_t kExclusiveBit = std::uint64_t{1} << 56;

  explicit BirthSource(BirthSourceOptions o = {}) : opt_(o) { stats_.name = "births"; }
  BirthSource(const BirthSource&) = delete;
  BirthSource& operator=(const BirthSource&) = delete;
  ~BirthSource() override {
    if (pagemap_ >= 0) ::close(pagemap_);
  }

  std::string_view name() const override { return "births"; }

  // OK when /proc/self/pagemap opens and a page this thread wrote reads as
  // present and exclusive. A few syscalls.
  absl::Status probe() override {
    if (absl::Status s = open(); !s.ok()) return s;
    void* m =
        ::mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
      return absl::UnavailableError(absl::StrCat("births: mmap: ", std::strerror(errno)));
    *static_cast<volatile char*>(m) = 1;
    std::uint64_t e = 0;
    const ssize_t got = ::pread(
        pagemap_, &e, 8, static_cast<off_t>(reinterpret_cast<std::uintptr_t>(m) / kPageSize * 8));
    const int err = errno;
    ::munmap(m, kPageSize);
    if (got != 8)
      return absl::UnavailableError(
          absl::StrCat("births: pread /proc/self/pagemap: ", std::strerror(err)));
    if ((e & (kPresentBit | kExclusiveBit)) != (kPresentBit | kExclusiveBit))
      return absl::UnavailableError(
          "births: /proc/self/pagemap does not show a written page as present and exclusively "
          "mapped (bits 63 and 56; Linux 4.2+)");
    return absl::OkStatus();
  }

  // Takes in the ranges not watched yet: their present pages count as seen.
  // Cost: one pagemap read of each new range.
  void watch(absl::Span<const TrackedRange> ranges) override {
    std::int64_t t0 = detail::thread_cpu_ns();
    Tally t;
    if (open().ok()) sync(ranges, t);
    absl::MutexLock l(&mu_);
    stats_.add_watch(detail::thread_cpu_ns() - t0, t.errors, t.err);
  }

  absl::Status collect(absl::Span<const TrackedRange> ranges, HotnessSink& sink,
                       const SourceBudget& budget) override {
    std::int64_t t0 = detail::thread_cpu_ns();
    Tally t;
    absl::Status status = open();
    if (status.ok()) {
      sync(ranges, t);
      pass(sink, budget, t0, t);
    }
    std::int64_t dt = detail::thread_cpu_ns() - t0;
    absl::MutexLock l(&mu_);
    stats_.add_collect(dt,
                       {.sampled = t.sampled,
                        .found = t.found,
                        .written = t.found,
                        .skipped = 0,
                        .errors = t.errors},
                       t.err, status);
    stats_.last_sampled = t.sampled;
    return status;
  }

  void disarm() override {
    watched_.clear();
    next_ = 0;
  }

  HotnessSourceStats stats() const override {
    absl::MutexLock l(&mu_);
    return stats_;
  }

 private:
  struct Tally {
    std::uint64_t sampled = 0, found = 0, errors = 0;
    std::string err;
  };
  static constexpr std::uint64_t kBatch = 4096;  // entries per pread (32 KiB)

  absl::Status open() {
    if (pagemap_ >= 0) return absl::OkStatus();
    if (opt_.weight == 0)
      return absl::InvalidArgumentError("births: BirthSourceOptions::weight must be > 0");
    pagemap_ = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap_ < 0)
      return absl::UnavailableError(
          absl::StrCat("births: open /proc/self/pagemap: ", std::strerror(errno)));
    return absl::OkStatus();
  }

  // New ranges: their present pages count as seen (one read of each).
  void sync(absl::Span<const TrackedRange> ranges, Tally& t) {
    sync_watched(
        watched_, ranges, 1,
        [&](WatchedRange& w) {
          for (std::uintptr_t a = w.begin; a < w.end;) a = read(w, a, w.end, nullptr, t);
          return true;
        },
        [](WatchedRange&) {});
  }

  void pass(HotnessSink& sink, const SourceBudget& budget, std::int64_t t0, Tally& t) {
    budgeted_watched_pass(watched_, next_, budget, t0, t.sampled, kBatch,
                          [&](WatchedRange& w, std::uintptr_t a, std::uintptr_t stop) {
                            return read(w, a, stop, &sink, t);
                          });
  }

  // Reads [a, stop) of `w` (at most kBatch entries), updates its bits and
  // reports births through `sink` when not null. Returns where it stopped.
  std::uintptr_t read(WatchedRange& w, std::uintptr_t a, std::uintptr_t stop, HotnessSink* sink,
                      Tally& t) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>((stop - a) / kPageSize, kBatch));
    buf_.resize(n);
    const ssize_t got =
        ::pread(pagemap_, buf_.data(), n * 8, static_cast<off_t>(a / kPageSize * 8));
    if (got < 0) {
      ++t.errors;
      t.err = absl::StrCat("births: pread /proc/self/pagemap: ", std::strerror(errno));
      return a + n * kPageSize;
    }
    PageBits& seen = w.bits[0];  // present and exclusive at the last reading
    std::uintptr_t last_unit = ~std::uintptr_t{0};
    const std::size_t m = static_cast<std::size_t>(got) / 8;
    for (std::size_t i = 0; i < m; ++i) {
      const std::uintptr_t p = a + i * kPageSize;
      const bool live = (buf_[i] & (kPresentBit | kExclusiveBit)) == (kPresentBit | kExclusiveBit);
      const bool was = seen.test(w.page(p));
      seen.put(w.page(p), live);
      const std::uintptr_t unit = p & ~(w.unit - 1);
      if (live && !was && sink != nullptr && unit != last_unit) {
        ++t.found;
        SourceObservation o;
        o.page = unit;
        o.accessed = o.written = true;
        o.weight = opt_.weight;
        o.birth = true;
        sink->observe(o);
        last_unit = unit;
      }
    }
    return a + std::max<std::size_t>(m, 1) * kPageSize;
  }

  BirthSourceOptions opt_;
  int pagemap_ = -1;
  std::vector<WatchedRange> watched_;
  std::vector<std::uint64_t> buf_;
  std::uintptr_t next_ = 0;
  mutable absl::Mutex mu_;
  HotnessSourceStats stats_;
};

}  // namespace tierkit::source
