// tierkit/source/softdirty.hpp: written pages from the kernel's soft-dirty
// bits. Writing "4" to /proc/self/clear_refs clears every soft-dirty bit of
// the process (and write-protects its page-table entries); the next write to
// a page sets bit 55 of its /proc/self/pagemap entry again.
// Layer 1 (beside the backends: it makes syscalls): hotness_source.hpp, std,
// Abseil, POSIX.
//
// When to choose it: kernels built with CONFIG_MEM_SOFT_DIRTY (Debian's 6.1
// and 6.12 are; probe() says when the running one is not), no privileges,
// no signal handler, no hazard for system calls. It sees writes only: a page
// that is only read never shows up, so read-mostly hot data stays where it
// is (combine with record_access for those, or use the fault source).
//
// Cost: reading pagemap is 8 bytes per 4 KiB page (about 20 ms per GiB
// measured on the development host, see benchmarks/); clearing walks the
// whole process's page tables, and afterwards the first write to each page
// of the process (tracked or not) takes a minor fault. Because clearing is
// process-wide, the source reads the tracked ranges in budgeted slices
// (budget.max_pages per epoch), rotating through them, and clears only when
// a full pass is complete: every page is read exactly once per pass, and
// reported (weight `weight`, written) if it was written during the previous
// pass. A pass over P pages takes ceil(P / max_pages) epochs.
//
// 2 MiB units: soft-dirty bits are per 4 KiB entry unless the unit is one
// huge page, which pagemap does not tell without privileges, so every entry
// of a unit is read (512 of max_pages) and the unit is reported once if any
// is dirty. A range's end that is not page-aligned is rounded up to a page.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tierkit/hotness_source.hpp"

namespace tierkit::source {

struct SoftDirtyOptions {
  std::uint32_t weight = 4;  // heat added per written page
  // The kernel's files; tests point them at stand-ins.
  const char* pagemap_path = "/proc/self/pagemap";
  const char* clear_refs_path = "/proc/self/clear_refs";
};

class SoftDirtySource final : public HotnessSource {
 public:
  static constexpr std::uint64_t kSoftDirtyBit = std::uint64_t{1} << 55;
  static constexpr std::uint64_t kPresentBit = std::uint64_t{1} << 63;
  static constexpr std::uint64_t kSwappedBit = std::uint64_t{1} << 62;

  explicit SoftDirtySource(SoftDirtyOptions o = {}) : opt_(o) { stats_.name = "softdirty"; }
  SoftDirtySource(const SoftDirtySource&) = delete;
  SoftDirtySource& operator=(const SoftDirtySource&) = delete;
  ~SoftDirtySource() override {
    if (pagemap_ >= 0) ::close(pagemap_);
  }

  std::string_view name() const override { return "softdirty"; }

  // Checks that /proc/self/pagemap and /proc/self/clear_refs open, and that a
  // written page shows bit 55 after a clear and a write. NOTE: clears the
  // process's soft-dirty bits (as collect() does). ~50 us plus the clear.
  absl::Status probe() override {
    if (absl::Status s = open_files(); !s.ok()) return s;
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      return absl::UnavailableError(absl::StrCat("softdirty: mmap: ", std::strerror(errno)));
    auto* c = static_cast<volatile char*>(p);
    c[0] = 1;
    absl::Status s = clear();
    std::uint64_t before = 0, after = 0;
    if (s.ok()) s = read_entry(reinterpret_cast<std::uintptr_t>(p), before);
    c[0] = 2;
    if (s.ok()) s = read_entry(reinterpret_cast<std::uintptr_t>(p), after);
    ::munmap(p, 4096);
    if (!s.ok()) return s;
    if ((after & kSoftDirtyBit) == 0)
      return absl::UnavailableError(
          "softdirty: the running kernel does not set the soft-dirty bit (bit 55 of "
          "/proc/self/pagemap) on a written page: it was built without CONFIG_MEM_SOFT_DIRTY");
    if ((before & kSoftDirtyBit) != 0)
      return absl::UnavailableError(
          "softdirty: writing 4 to /proc/self/clear_refs did not clear the soft-dirty bit");
    return absl::OkStatus();
  }

  absl::Status collect(absl::Span<const TrackedRange> ranges, HotnessSink& sink,
                       const SourceBudget& budget) override {
    std::int64_t t0 = detail::thread_cpu_ns();
    std::uint64_t sampled = 0, found = 0, errors = 0, skipped = 0;
    std::string err;
    absl::Status status;
    if (absl::Status s = open_files(); !s.ok()) {
      status = s;
    } else if (!started_) {
      // The bits say "written since the page was first touched or since the
      // last clear": start with a clean slate.
      status = clear();
      started_ = true;
      next_ = 0;
    } else {
      std::uint64_t cap = budget.max_pages ? budget.max_pages : ~std::uint64_t{0};
      bool pass_done = true;
      for (const TrackedRange& r : ranges) {
        // Whole pages, so that every batch reads at least one entry.
        const std::uintptr_t begin = r.begin & ~std::uintptr_t{kPageSize - 1};
        const std::uintptr_t end = (r.end + kPageSize - 1) & ~std::uintptr_t{kPageSize - 1};
        if (end <= next_ || end <= begin) continue;
        const std::size_t unit = std::max<std::size_t>(r.granularity, kPageSize);
        std::uintptr_t a = std::max(begin, next_);
        while (a < end) {
          if (sampled >= cap ||
              (budget.max_ns > 0 && detail::thread_cpu_ns() - t0 > budget.max_ns)) {
            pass_done = false;
            break;
          }
          // A batch of consecutive 4 KiB entries.
          const auto n = static_cast<std::size_t>(
              std::min<std::uint64_t>({(end - a) / kPageSize, cap - sampled, kBatch}));
          buf_.resize(n);
          ssize_t got =
              ::pread(pagemap_, buf_.data(), n * 8, static_cast<off_t>(a / kPageSize * 8));
          if (got < 0) {
            ++errors;
            err = absl::StrCat("pread ", opt_.pagemap_path, ": ", std::strerror(errno));
            a += n * kPageSize;
            continue;
          }
          std::size_t m = static_cast<std::size_t>(got) / 8;
          for (std::size_t i = 0; i < m; ++i) {
            std::uint64_t e = buf_[i];
            if ((e & (kPresentBit | kSwappedBit)) == 0) {
              ++skipped;  // not present: not written
              continue;
            }
            if ((e & kSoftDirtyBit) == 0) continue;
            const std::uintptr_t p = std::max(r.begin, a + i * kPageSize);
            const std::uintptr_t u = r.begin + (p - r.begin) / unit * unit;
            if (u == last_unit_) continue;  // reported this pass already
            last_unit_ = u;
            ++found;
            sink.record(u, opt_.weight, true);
          }
          sampled += n;
          a += n * kPageSize;
        }
        next_ = a;
        if (!pass_done) break;
      }
      if (pass_done) {
        status = clear();
        next_ = 0;
        last_unit_ = ~std::uintptr_t{0};
        ++passes_;
      }
    }
    std::int64_t dt = detail::thread_cpu_ns() - t0;
    absl::MutexLock l(&mu_);
    stats_.add_collect(dt,
                       {.sampled = sampled,
                        .found = found,
                        .written = found,
                        .skipped = skipped,
                        .errors = errors},
                       err, status);
    return status;
  }

  HotnessSourceStats stats() const override {
    absl::MutexLock l(&mu_);
    return stats_;
  }

  // Completed passes over the tracked ranges (for tests).
  std::uint64_t passes() const { return passes_; }

 private:
  static constexpr std::uint64_t kBatch = 4096;  // entries per pread (32 KiB)

  absl::Status open_files() {
    if (pagemap_ < 0) {
      pagemap_ = ::open(opt_.pagemap_path, O_RDONLY | O_CLOEXEC);
      if (pagemap_ < 0)
        return absl::UnavailableError(
            absl::StrCat("softdirty: open ", opt_.pagemap_path, ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }

  absl::Status clear() {
    int fd = ::open(opt_.clear_refs_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      return absl::UnavailableError(
          absl::StrCat("softdirty: open ", opt_.clear_refs_path, ": ", std::strerror(errno)));
    ssize_t n = ::write(fd, "4", 1);
    int e = errno;
    ::close(fd);
    if (n != 1)
      return absl::UnavailableError(
          absl::StrCat("softdirty: write 4 to ", opt_.clear_refs_path, ": ", std::strerror(e)));
    return absl::OkStatus();
  }

  absl::Status read_entry(std::uintptr_t addr, std::uint64_t& e) {
    if (::pread(pagemap_, &e, 8, static_cast<off_t>(addr / kPageSize * 8)) != 8)
      return absl::UnavailableError(
          absl::StrCat("softdirty: pread ", opt_.pagemap_path, ": ", std::strerror(errno)));
    return absl::OkStatus();
  }

  SoftDirtyOptions opt_;
  int pagemap_ = -1;
  bool started_ = false;
  std::uintptr_t next_ = 0;                        // where the current pass continues
  std::uintptr_t last_unit_ = ~std::uintptr_t{0};  // the last unit reported this pass
  std::uint64_t passes_ = 0;
  std::vector<std::uint64_t> buf_;
  mutable absl::Mutex mu_;
  HotnessSourceStats stats_;
};

}  // namespace tierkit::source
