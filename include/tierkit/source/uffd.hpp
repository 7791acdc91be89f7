// tierkit/source/uffd.hpp: written pages from userfaultfd asynchronous
// write-protect and the PAGEMAP_SCAN ioctl (Linux 6.7+), and probe_uffd(),
// which reports what the running kernel offers (userfaultfd at all,
// UFFD_USER_MODE_ONLY when vm.unprivileged_userfaultfd is 0, write-protect,
// async write-protect, PAGEMAP_SCAN). Layer 1 (syscalls): hotness_source.hpp,
// std, Abseil, POSIX.
//
// When to choose it: on 6.7+ kernels, over soft-dirty: write-protection is
// per registered range (not process-wide) and PAGEMAP_SCAN returns only the
// written runs and re-protects them in one call. It sees writes only.
// Debian 12's 6.1 kernel lacks WP_ASYNC and PAGEMAP_SCAN (probe() says so).
#pragma once

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tierkit/hotness_source.hpp"

namespace tierkit::source {

// What probe_uffd() found.
struct UffdCapabilities {
  bool userfaultfd = false;     // the syscall works for this process
  bool user_mode_only = false;  // ... only with UFFD_USER_MODE_ONLY
  bool wp = false;              // UFFD_FEATURE_PAGEFAULT_FLAG_WP
  bool wp_async = false;        // UFFD_FEATURE_WP_ASYNC (6.7+)
  bool pagemap_scan = false;    // ioctl(PAGEMAP_SCAN) on /proc/self/pagemap (6.7+)
  std::string summary;          // one line, for humans
};

// Probes userfaultfd and PAGEMAP_SCAN. A few syscalls; never crashes.
inline UffdCapabilities probe_uffd() {
  UffdCapabilities c;
  constexpr std::uint64_t kWpAsync = std::uint64_t{1} << 15;  // UFFD_FEATURE_WP_ASYNC
#ifndef UFFD_USER_MODE_ONLY
  constexpr int kUserModeOnly = 1;
#else
  constexpr int kUserModeOnly = UFFD_USER_MODE_ONLY;
#endif
  std::string why;
#ifdef SYS_userfaultfd
  long fd = ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  int e = errno;
  if (fd < 0 && (e == EPERM || e == EACCES)) {
    fd = ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | kUserModeOnly);
    e = errno;
    if (fd >= 0) c.user_mode_only = true;
  }
  if (fd < 0) {
    why = absl::StrCat("userfaultfd: ", std::strerror(e),
                       e == ENOSYS ? " (kernel without CONFIG_USERFAULTFD, or blocked by seccomp)"
                                   : " (see vm.unprivileged_userfaultfd)");
  } else {
    c.userfaultfd = true;
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = 0;  // ask for nothing: the kernel reports what it has
    if (::ioctl(static_cast<int>(fd), UFFDIO_API, &api) == 0) {
      c.wp = (api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP) != 0;
      c.wp_async = (api.features & kWpAsync) != 0;
    } else {
      why = absl::StrCat("UFFDIO_API: ", std::strerror(errno));
    }
    ::close(static_cast<int>(fd));
  }
#else
  why = "userfaultfd: no SYS_userfaultfd on this platform";
#endif
  // PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg) (96 bytes); a null
  // argument gives EFAULT where the ioctl exists and ENOTTY where it does not.
  constexpr unsigned long kPagemapScan = _IOWR('f', 16, char[96]);
  int pm = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (pm >= 0) {
    c.pagemap_scan = ::ioctl(pm, kPagemapScan, nullptr) != 0 && errno == EFAULT;
    ::close(pm);
  }
  c.summary = absl::StrCat(
      "userfaultfd ", c.userfaultfd ? (c.user_mode_only ? "yes (user mode only)" : "yes") : "no",
      ", write-protect ", c.wp ? "yes" : "no", ", async write-protect (6.7+) ",
      c.wp_async ? "yes" : "no", ", PAGEMAP_SCAN (6.7+) ", c.pagemap_scan ? "yes" : "no",
      why.empty() ? "" : "; ", why);
  return c;
}

namespace uffd_detail {
// <linux/fs.h> of Linux 6.7 (Debian 12's headers predate it).
struct PmScanArg {
  std::uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted,
      category_mask, category_anyof_mask, return_mask;
};
struct PageRegion {
  std::uint64_t start, end, categories;
};
static_assert(sizeof(PmScanArg) == 96);
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);
constexpr std::uint64_t kScanWpMatching = 1 << 0, kScanCheckWpAsync = 1 << 1;
constexpr std::uint64_t kPageIsWritten = 1 << 1;
constexpr std::uint64_t kFeatureWpAsync = std::uint64_t{1} << 15;
constexpr std::uint64_t kFeatureWpUnpopulated = std::uint64_t{1} << 13;
}  // namespace uffd_detail

struct UffdWpOptions {
  std::uint32_t weight = 4;  // heat added per written page
};

// Written pages from userfaultfd asynchronous write-protect (Linux 6.7+):
// each tracked range is registered write-protected; a write to a protected
// page is resolved by the kernel itself (a minor fault on the writing
// thread, no event, no handler) and leaves the page "written"; PAGEMAP_SCAN
// with PM_SCAN_WP_MATCHING returns the written pages and write-protects them
// again in the same call. Unlike soft-dirty the state is per page, not
// process-wide, so a budgeted scan that stops early loses nothing: the next
// epoch continues where this one stopped (rotating cursor).
//
// Cost: one ioctl per range per epoch plus 24 bytes per run of written
// pages; on the application's side one minor fault per page written per
// epoch. NOTE: a range whose mapping is already registered with another
// userfaultfd (EBUSY), or is not anonymous / shmem / hugetlbfs (EINVAL),
// is skipped and the error counted. Writes only.
class UffdWpSource final : public HotnessSource {
 public:
  explicit UffdWpSource(UffdWpOptions o = {}) : opt_(o) { stats_.name = "uffd-wp"; }
  UffdWpSource(const UffdWpSource&) = delete;
  UffdWpSource& operator=(const UffdWpSource&) = delete;
  ~UffdWpSource() override {
    if (uffd_ >= 0) ::close(uffd_);  // drops every registration
    if (pagemap_ >= 0) ::close(pagemap_);
  }

  std::string_view name() const override { return "uffd-wp"; }

  // OK when userfaultfd (possibly user-mode only) with asynchronous
  // write-protect and PAGEMAP_SCAN are available; otherwise Unavailable
  // with what is missing. A few syscalls.
  absl::Status probe() override {
    UffdCapabilities c = probe_uffd();
    if (!c.userfaultfd || !c.wp_async || !c.pagemap_scan)
      return absl::UnavailableError(
          absl::StrCat("uffd-wp needs userfaultfd with async write-protect and PAGEMAP_SCAN "
                       "(Linux 6.7+): ",
                       c.summary));
    return absl::OkStatus();
  }

  absl::Status collect(absl::Span<const TrackedRange> ranges, HotnessSink& sink,
                       const SourceBudget& budget) override {
    std::int64_t t0 = detail::thread_cpu_ns();
    std::uint64_t sampled = 0, found = 0, errors = 0, skipped = 0;
    std::string err;
    absl::Status status = open();
    if (status.ok()) {
      // Registrations follow the ranges.
      std::vector<std::pair<std::uintptr_t, std::uintptr_t>> want;
      for (const TrackedRange& r : ranges)
        if (r.end > r.begin) want.emplace_back(r.begin, r.end);
      for (const auto& [b, e] : registered_)
        if (std::find(want.begin(), want.end(), std::make_pair(b, e)) == want.end()) {
          uffdio_range ur{b, e - b};
          (void)::ioctl(uffd_, UFFDIO_UNREGISTER, &ur);  // may be unmapped already
        }
      std::vector<std::pair<std::uintptr_t, std::uintptr_t>> now;
      for (const auto& [b, e] : want) {
        if (std::find(registered_.begin(), registered_.end(), std::make_pair(b, e)) !=
            registered_.end()) {
          now.emplace_back(b, e);
          continue;
        }
        uffdio_register reg{};
        reg.range = {b, e - b};
        reg.mode = UFFDIO_REGISTER_MODE_WP;
        if (::ioctl(uffd_, UFFDIO_REGISTER, &reg) != 0) {
          ++errors;
          err = absl::StrCat("UFFDIO_REGISTER of [0x", absl::Hex(b), ", 0x", absl::Hex(e),
                             "): ", std::strerror(errno));
          continue;
        }
        // Write-protect everything now: the next scan sees this epoch's writes.
        (void)scan(b, e, nullptr, 0);
        now.emplace_back(b, e);
      }
      registered_ = std::move(now);
      // Scan, from the cursor, within the budget.
      std::uint64_t cap = budget.max_pages ? budget.max_pages : ~std::uint64_t{0};
      vec_.resize(1024);
      bool pass_done = true;
      for (const auto& [b, e] : registered_) {
        if (e <= next_) continue;
        std::uintptr_t a = std::max<std::uintptr_t>(b, next_);
        while (a < e) {
          if (sampled >= cap ||
              (budget.max_ns > 0 && detail::thread_cpu_ns() - t0 > budget.max_ns)) {
            pass_done = false;
            break;
          }
          std::uint64_t left = cap - sampled;  // > 0
          std::uintptr_t stop = left >= (e - a) / kPageSize ? e : a + left * kPageSize;
          std::uint64_t walk_end = 0;
          long n = scan(a, stop, &walk_end, vec_.size());
          if (n < 0) {
            ++errors;
            err = absl::StrCat("PAGEMAP_SCAN of [0x", absl::Hex(a), ", 0x", absl::Hex(stop),
                               "): ", std::strerror(errno));
            a = stop;
            continue;
          }
          for (long i = 0; i < n; ++i)
            for (std::uint64_t p = vec_[static_cast<std::size_t>(i)].start;
                 p < vec_[static_cast<std::size_t>(i)].end; p += kPageSize) {
              ++found;
              sink.record(p, opt_.weight, true);
            }
          if (walk_end <= a || walk_end > stop) walk_end = stop;  // no progress: skip the rest
          sampled += (walk_end - a) / kPageSize;
          a = walk_end;
        }
        next_ = a;
        if (!pass_done) break;
      }
      if (pass_done) next_ = 0;
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

  // Unregisters every range (writes are no longer tracked until collect()).
  void disarm() override {
    for (const auto& [b, e] : registered_) {
      uffdio_range ur{b, e - b};
      (void)::ioctl(uffd_, UFFDIO_UNREGISTER, &ur);
    }
    registered_.clear();
  }

  HotnessSourceStats stats() const override {
    absl::MutexLock l(&mu_);
    return stats_;
  }

 private:
  absl::Status open() {
    if (uffd_ >= 0) return absl::OkStatus();
    if (absl::Status s = probe(); !s.ok()) return s;
#ifdef SYS_userfaultfd
    long fd = ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fd = ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /*USER_MODE_ONLY*/);
    if (fd < 0)
      return absl::UnavailableError(absl::StrCat("uffd-wp: userfaultfd: ", std::strerror(errno)));
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = uffd_detail::kFeatureWpAsync | uffd_detail::kFeatureWpUnpopulated;
    if (::ioctl(static_cast<int>(fd), UFFDIO_API, &api) != 0) {
      api.features = uffd_detail::kFeatureWpAsync;  // before 6.5: no WP_UNPOPULATED
      if (::ioctl(static_cast<int>(fd), UFFDIO_API, &api) != 0) {
        int e = errno;
        ::close(static_cast<int>(fd));
        return absl::UnavailableError(
            absl::StrCat("uffd-wp: UFFDIO_API with WP_ASYNC: ", std::strerror(e)));
      }
    }
    pagemap_ = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap_ < 0) {
      ::close(static_cast<int>(fd));
      return absl::UnavailableError(
          absl::StrCat("uffd-wp: open /proc/self/pagemap: ", std::strerror(errno)));
    }
    uffd_ = static_cast<int>(fd);
    return absl::OkStatus();
#else
    return absl::UnavailableError("uffd-wp: no SYS_userfaultfd on this platform");
#endif
  }

  // PAGEMAP_SCAN of [b, e): written pages into vec_ (up to vec_len runs),
  // write-protected again. Returns the number of runs, or -1 (errno).
  long scan(std::uintptr_t b, std::uintptr_t e, std::uint64_t* walk_end, std::size_t vec_len) {
    uffd_detail::PmScanArg a{};
    a.size = sizeof a;
    a.flags = uffd_detail::kScanWpMatching | uffd_detail::kScanCheckWpAsync;
    a.start = b;
    a.end = e;
    a.vec = vec_len ? reinterpret_cast<std::uint64_t>(vec_.data()) : 0;
    a.vec_len = vec_len;
    a.category_mask = uffd_detail::kPageIsWritten;
    a.return_mask = uffd_detail::kPageIsWritten;
    long n = ::ioctl(pagemap_, uffd_detail::kPagemapScan, &a);
    if (walk_end != nullptr) *walk_end = a.walk_end;
    return n;
  }

  UffdWpOptions opt_;
  int uffd_ = -1, pagemap_ = -1;
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> registered_;
  std::vector<uffd_detail::PageRegion> vec_;
  std::uintptr_t next_ = 0;
  mutable absl::Mutex mu_;
  HotnessSourceStats stats_;
};

}  // namespace tierkit::source
