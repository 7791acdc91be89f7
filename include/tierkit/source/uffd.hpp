// tierkit/source/uffd.hpp: written pages from userfaultfd asynchronous
// write-protect and the PAGEMAP_SCAN ioctl (Linux 6.7+), and probe_uffd(),
// which reports what the running kernel offers (userfaultfd at all,
// UFFD_USER_MODE_ONLY when vm.unprivileged_userfaultfd is 0, write-protect,
// async write-protect, PAGEMAP_SCAN). Layer 2 (syscalls): hotness_source.hpp,
// source/watched.hpp, std, Abseil, POSIX.
//
// When to choose it: on 6.7+ kernels, over soft-dirty: write-protection is
// per registered range (not process-wide), pages born after registration
// are seen for free, and PAGEMAP_SCAN returns only the written runs. It sees
// writes only; source/sampled.hpp runs it with the fault source, which sees
// reads. Debian 12's 6.1 kernel lacks WP_ASYNC and PAGEMAP_SCAN (probe()
// says so).
#pragma once

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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
#include "tierkit/source/watched.hpp"

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
constexpr std::uint64_t kPageIsWritten = 1 << 1, kPageIsPresent = 1 << 3, kPageIsPfnZero = 1 << 5;
constexpr std::uint64_t kFeatureWpAsync = std::uint64_t{1} << 15;

// Whether the unit at `unit` is in round `round`'s re-protection sample of
// fraction f: a hash, so the model (sim/hotness_model.hpp) draws the same.
inline bool chosen(std::uintptr_t unit, std::uint64_t round, double f) {
  if (f >= 1) return true;
  std::uint64_t z = (unit >> 12) * 0x9e3779b97f4a7c15ull + round * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53 < f;
}
}  // namespace uffd_detail

// UffdReprotect
//
// How many written pages a scan write-protects again, sized to the budget:
// a protected page costs the application one minor fault when it is next
// written, so protecting every written page of a program that rewrites its
// memory costs a fault per page per epoch (far over a 1% budget on python3
// or sqlite3, docs/performance.md). Like source::FaultBudget it plans from
// what it measured: q, the fraction of the protected pages written per epoch
// (a moving average, starting at 1: every protected page is assumed to be
// rewritten until shown otherwise), predicts the next epoch's cost as
//   scan + (pages protected) x q x fault + (pages added) x (protect + q x fault)
// and `quota` is the most pages the next scan may add within the allowance,
// and such that all the pages protected, if written at once, cost at most
// one epoch's allowance; f = quota / (written pages this scan) spreads them
// over the scan. O(1).
struct UffdReprotect {
  static constexpr double kStart = 0.01;
  double f = kStart;  // the next scan protects a written unit with this probability
  std::uint64_t quota = ~std::uint64_t{0};  // ... and at most this many pages
  double q = 1;                             // protected pages rewritten per epoch (fraction)
  double protect_ns = 0;                    // one page's protection, measured (moving average)
  std::uint64_t protected_pages = 0;        // protected by the source, not yet found written
  double planned_ns = 0;                    // the next epoch's expected cost (after settle())
  bool settled = false;                     // settle() has run with an allowance

  // Before the first settle(): a quota from the allowance alone, each page
  // assumed to cost a fault and a protection no dearer than a fault.
  void start(double fault_ns, double allowance_ns) {
    if (settled || !(allowance_ns > 0) || !(fault_ns > 0)) return;
    quota = static_cast<std::uint64_t>(allowance_ns / (2 * fault_ns));
  }

  // One scan: of `at_risk` protected pages in its window it found `faulted`
  // written (each one fault); it saw `written` written pages, protected
  // `added` of them for `added_ns`, and cost `scan_ns` in all. Sizes the next
  // scan from `allowance_ns` per epoch and one fault's cost `fault_ns`; with
  // no allowance (0) f and the quota stay.
  void settle(std::uint64_t faulted, std::uint64_t at_risk, std::uint64_t written,
              std::uint64_t added, double added_ns, double scan_ns, double fault_ns,
              double allowance_ns) {
    if (at_risk > 0)
      q += 0.5 * (std::min(1.0, static_cast<double>(faulted) / static_cast<double>(at_risk)) - q);
    if (added > 0) {
      const double per = added_ns / static_cast<double>(added);
      protect_ns = protect_ns > 0 ? protect_ns + 0.25 * (per - protect_ns) : per;
    }
    protected_pages -= std::min(protected_pages, faulted);
    protected_pages += added;
    const double keep = static_cast<double>(protected_pages) * q * fault_ns;
    planned_ns = (scan_ns - added_ns) + keep;
    if (!(allowance_ns > 0) || !(fault_ns > 0)) return;
    settled = true;
    const double left = allowance_ns - (scan_ns - added_ns) - keep;
    // A phase change can rewrite every protected page at once (q jumps from
    // ~0 to 1): never hold more than one epoch's allowance in faults.
    const double stock = allowance_ns / fault_ns - static_cast<double>(protected_pages);
    quota = left > 0 && stock > 0
                ? static_cast<std::uint64_t>(std::min(left / (protect_ns + q * fault_ns), stock))
                : 0;
    f = std::min(1.0, static_cast<double>(quota) / std::max(1.0, static_cast<double>(written)));
  }
};

struct UffdWpOptions {
  // Heat added per page found written. 16 = Engine::kEvidenceFactor: one
  // write seen may displace a resident seen idle, as a fault observation of
  // rate 16 may; a lower weight ranks written pages below the tracker's noise.
  std::uint32_t weight = 16;
  // Fraction of the written pages each scan protects again, in (0, 1]; 0
  // (the default) sizes it to SourceBudget::cpu_fraction (UffdReprotect).
  double reprotect = 0;
  // CPU time of one write fault on a protected page, ns, for the budget; 0
  // (the default) measures it once, when the source opens.
  double fault_ns = 0;
};

// Written pages from userfaultfd asynchronous write-protect (Linux 6.7+):
// each tracked range is registered for write-protect as soon as the engine
// learns of it (watch()). A write to a protected page is resolved by the
// kernel itself (a minor fault on the writing thread, no event, no handler)
// and leaves it unprotected; PAGEMAP_SCAN finds the unprotected pages that
// are present and not the shared zero page. The source remembers which of
// those it saw unprotected at its last scan, so each collect() reports:
//  - pages born since (a write fault, or the copy-on-write of a zero page
//    the program read first): free, the program takes that fault anyway;
//  - pages it protected that were written since: each cost one fault.
// After the report, a sample of the written pages (whole units, fraction
// UffdReprotect::f or UffdWpOptions::reprotect) is protected again, one
// UFFDIO_WRITEPROTECT per run; the rest stay unprotected and are not
// reported again. So births are seen for free and rewrites as a budgeted
// sample. A budgeted pass that stops early resumes from its cursor.
//
// Cost: one PAGEMAP_SCAN per range per epoch plus 24 bytes per written run;
// one ioctl per re-protected run; 2 bits of memory per tracked page (32 MiB
// per TiB); on the application's side one minor fault per re-protected page
// written. NOTE: a mapping already registered with another userfaultfd
// (EBUSY), or not anonymous / shmem / hugetlbfs (EINVAL), is skipped and the
// error counted. On kernels whose read faults allocate a page (no zero page,
// e.g. mm_forbids_zeropage), a page born by a read is reported written.
class UffdWpSource final : public HotnessSource {
 public:
  explicit UffdWpSource(UffdWpOptions o = {}) : opt_(o) {
    stats_.name = "uffd-wp";
    if (opt_.reprotect > 0) control_.f = std::min(1.0, opt_.reprotect);
  }
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

  // Registers the ranges not registered yet, so births from now on are
  // seen. Pages already present count as seen (not reported); a sample of
  // them is protected. Cost: per new range two ioctls and a PAGEMAP_SCAN of
  // its present pages (about 5 ms per populated GiB here).
  void watch(absl::Span<const TrackedRange> ranges) override {
    std::int64_t t0 = detail::thread_cpu_ns();
    Tally t;
    if (open().ok()) sync(ranges, t);
    control_.protected_pages += t.added;
    absl::MutexLock l(&mu_);
    stats_.add_watch(detail::thread_cpu_ns() - t0, t.errors, t.err);
  }

  absl::Status collect(absl::Span<const TrackedRange> ranges, HotnessSink& sink,
                       const SourceBudget& budget) override {
    std::int64_t t0 = detail::thread_cpu_ns();
    Tally t;
    absl::Status status = open();
    if (status.ok()) {
      const double allowance =
          budget.cpu_fraction * static_cast<double>(std::max<std::int64_t>(0, budget.epoch_ns));
      if (opt_.reprotect <= 0) control_.start(fault_ns_, allowance);
      sync(ranges, t);
      pass(sink, budget, t0, t);
      ++round_;
      const double f = control_.f;
      control_.settle(t.faulted, t.at_risk, t.written, t.added, t.added_ns,
                      static_cast<double>(detail::thread_cpu_ns() - t0), fault_ns_, allowance);
      if (opt_.reprotect > 0) control_.f = f, control_.quota = ~std::uint64_t{0};  // fixed
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
    stats_.app_ns += static_cast<std::uint64_t>(static_cast<double>(t.faulted) * fault_ns_);
    stats_.last_sampled = t.sampled;
    stats_.budget_ns = static_cast<std::uint64_t>(
        budget.cpu_fraction * static_cast<double>(std::max<std::int64_t>(0, budget.epoch_ns)));
    stats_.ns_per_sample = static_cast<std::uint64_t>(fault_ns_);
    stats_.planned_ns = static_cast<std::uint64_t>(std::max(0.0, control_.planned_ns));
    return status;
  }

  // Unregisters every range (writes are no longer tracked until watch() or
  // collect()); what it knew of them is dropped.
  void disarm() override {
    for (const WatchedRange& w : watched_) {
      uffdio_range ur{w.begin, w.end - w.begin};
      (void)::ioctl(uffd_, UFFDIO_UNREGISTER, &ur);
    }
    watched_.clear();
    next_ = 0;
  }

  HotnessSourceStats stats() const override {
    absl::MutexLock l(&mu_);
    return stats_;
  }

  // The current re-protection fraction (tests, stats).
  double reprotect_fraction() const { return control_.f; }
  // The write-fault cost the budget uses, ns (measured when the source opened).
  double fault_ns() const { return fault_ns_; }

 private:
  struct Tally {
    std::uint64_t sampled = 0, found = 0, faulted = 0, at_risk = 0, written = 0, added = 0,
                  errors = 0;
    double added_ns = 0;
    std::string err;
  };

  absl::Status open() {
    if (uffd_ >= 0) return absl::OkStatus();
    if (!open_error_.ok()) return open_error_;
    if (!(opt_.reprotect >= 0 && opt_.reprotect <= 1) || !(opt_.fault_ns >= 0) || opt_.weight == 0)
      return open_error_ = absl::InvalidArgumentError(
                 "uffd-wp: UffdWpOptions needs reprotect in [0, 1], fault_ns >= 0 and weight > 0");
    if (absl::Status s = probe(); !s.ok()) return open_error_ = s;
#ifdef SYS_userfaultfd
    long fd = ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fd = ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /*USER_MODE_ONLY*/);
    if (fd < 0)
      return open_error_ = absl::UnavailableError(
                 absl::StrCat("uffd-wp: userfaultfd: ", std::strerror(errno)));
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = uffd_detail::kFeatureWpAsync;  // not WP_UNPOPULATED: births stay free
    if (::ioctl(static_cast<int>(fd), UFFDIO_API, &api) != 0) {
      int e = errno;
      ::close(static_cast<int>(fd));
      return open_error_ = absl::UnavailableError(
                 absl::StrCat("uffd-wp: UFFDIO_API with WP_ASYNC: ", std::strerror(e)));
    }
    pagemap_ = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap_ < 0) {
      int e = errno;
      ::close(static_cast<int>(fd));
      return open_error_ = absl::UnavailableError(
                 absl::StrCat("uffd-wp: open /proc/self/pagemap: ", std::strerror(e)));
    }
    uffd_ = static_cast<int>(fd);
    fault_ns_ = opt_.fault_ns > 0 ? opt_.fault_ns : measure_fault_ns();
    return absl::OkStatus();
#else
    return open_error_ = absl::UnavailableError("uffd-wp: no SYS_userfaultfd on this platform");
#endif
  }

  // The CPU time of one write fault on a protected page: 32 pages of a
  // scratch mapping, protected, written. About 32 faults, once.
  double measure_fault_ns() {
    constexpr std::size_t kPages = 32;
    const std::size_t len = kPages * kPageSize;
    void* m = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    constexpr double kFallback = 20000;  // the development host's figure (README)
    if (m == MAP_FAILED) return kFallback;
    auto* p = static_cast<volatile unsigned char*>(m);
    for (std::size_t i = 0; i < len; i += kPageSize) p[i] = 1;
    double ns = kFallback;
    const auto a = reinterpret_cast<std::uintptr_t>(m);
    uffdio_register reg{};
    reg.range = {a, len};
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    if (::ioctl(uffd_, UFFDIO_REGISTER, &reg) == 0) {
      if (protect(a, a + len)) {
        std::int64_t t0 = detail::thread_cpu_ns();
        for (std::size_t i = 0; i < len; i += kPageSize) p[i] = 2;
        ns = std::max(1.0, static_cast<double>(detail::thread_cpu_ns() - t0) / kPages);
      }
      uffdio_range ur{a, len};
      (void)::ioctl(uffd_, UFFDIO_UNREGISTER, &ur);
    }
    ::munmap(m, len);
    return ns;
  }

  // Registrations follow `ranges`: gone ones are unregistered, new ones
  // registered and their present pages taken in (a scan that reports
  // nothing). Bits: 0 = seen unprotected at the last scan, 1 = protected by
  // this source.
  void sync(absl::Span<const TrackedRange> ranges, Tally& t) {
    sync_watched(
        watched_, ranges, 2,
        [&](WatchedRange& w) {
          uffdio_register reg{};
          reg.range = {w.begin, w.end - w.begin};
          reg.mode = UFFDIO_REGISTER_MODE_WP;
          if (::ioctl(uffd_, UFFDIO_REGISTER, &reg) != 0) {
            ++t.errors;
            t.err = absl::StrCat("UFFDIO_REGISTER of [0x", absl::Hex(w.begin), ", 0x",
                                 absl::Hex(w.end), "): ", std::strerror(errno));
            return false;
          }
          Tally quiet;
          for (std::uintptr_t a = w.begin; a < w.end;) a = scan_window(w, a, w.end, nullptr, quiet);
          t.added += quiet.added;
          t.errors += quiet.errors;
          if (!quiet.err.empty()) t.err = quiet.err;
          return true;
        },
        [&](WatchedRange& w) {  // no longer tracked
          uffdio_range ur{w.begin, w.end - w.begin};
          (void)::ioctl(uffd_, UFFDIO_UNREGISTER, &ur);  // may be unmapped already
        });
  }

  // Scans from the cursor within the budget.
  void pass(HotnessSink& sink, const SourceBudget& budget, std::int64_t t0, Tally& t) {
    budgeted_watched_pass(watched_, next_, budget, t0, t.sampled, ~std::uint64_t{0},
                          [&](WatchedRange& w, std::uintptr_t a, std::uintptr_t stop) {
                            return scan_window(w, a, stop, &sink, t);
                          });
  }

  // One PAGEMAP_SCAN of [a, stop) in `w`: the written runs, then each
  // page's state updated (and reported through `sink` when not null).
  // Returns where the scan stopped (stop, or earlier when vec_ filled up).
  std::uintptr_t scan_window(WatchedRange& w, std::uintptr_t a, std::uintptr_t stop,
                             HotnessSink* sink, Tally& t) {
    PageBits &seen = w.bits[0], &prot = w.bits[1];
    vec_.resize(512);
    uffd_detail::PmScanArg arg{};
    arg.size = sizeof arg;
    arg.start = a;
    arg.end = stop;
    arg.vec = reinterpret_cast<std::uint64_t>(vec_.data());
    arg.vec_len = vec_.size();
    // Present, not write-protected, not the zero page. (An unpopulated page
    // counts as "written" to PAGEMAP_SCAN: nothing protects it.)
    arg.category_inverted = uffd_detail::kPageIsPfnZero;
    arg.category_mask =
        uffd_detail::kPageIsWritten | uffd_detail::kPageIsPresent | uffd_detail::kPageIsPfnZero;
    arg.return_mask = uffd_detail::kPageIsWritten;
    const long n = ::ioctl(pagemap_, uffd_detail::kPagemapScan, &arg);
    if (n < 0) {
      ++t.errors;
      t.err = absl::StrCat("PAGEMAP_SCAN of [0x", absl::Hex(a), ", 0x", absl::Hex(stop),
                           "): ", std::strerror(errno));
      return stop;
    }
    std::uintptr_t end = arg.walk_end > a && arg.walk_end <= stop ? arg.walk_end : stop;
    std::uintptr_t p = a, last_unit = ~std::uintptr_t{0}, last_added_unit = ~std::uintptr_t{0},
                   run = 0, run_end = 0;
    auto flush = [&] {
      const std::int64_t t0 = detail::thread_cpu_ns();
      if (run_end > run && !protect(run, run_end)) {
        ++t.errors;
        t.err = absl::StrCat("UFFDIO_WRITEPROTECT: ", std::strerror(errno));
      }
      t.added_ns += static_cast<double>(detail::thread_cpu_ns() - t0);
      run = run_end = 0;
    };
    t.at_risk += prot.count(w.page(a), w.page(end));
    auto clear_to = [&](std::uintptr_t q) {  // not written: neither seen nor ours-and-written
      for (; p < q; p += kPageSize) seen.put(w.page(p), false);
    };
    for (long i = 0; i < n; ++i) {
      const auto& r = vec_[static_cast<std::size_t>(i)];
      clear_to(std::max<std::uintptr_t>(p, r.start));
      for (p = std::max<std::uintptr_t>(p, r.start); p < r.end && p < end; p += kPageSize) {
        const std::uint64_t i_page = w.page(p);
        const std::uintptr_t unit = p & ~(w.unit - 1);
        ++t.written;
        if (!seen.test(i_page)) {
          if (prot.test(i_page)) ++t.faulted;
          if (sink != nullptr && unit != last_unit) {
            ++t.found;
            SourceObservation o;
            o.page = unit;
            o.accessed = o.written = true;
            o.weight = opt_.weight;
            o.birth = !prot.test(i_page);  // not a rewrite of a page we protected
            sink->observe(o);
            last_unit = unit;
          }
        }
        const bool again = uffd_detail::chosen(unit, round_, control_.f) &&
                           (t.added < control_.quota || unit == last_added_unit);
        if (again) last_added_unit = unit;
        seen.put(i_page, !again);
        prot.put(i_page, again);
        if (!again) continue;
        ++t.added;
        if (run_end != p) flush(), run = p;
        run_end = p + kPageSize;
      }
    }
    clear_to(end);
    flush();
    return end;
  }

  // Write-protects [b, e): one ioctl.
  bool protect(std::uintptr_t b, std::uintptr_t e) {
    uffdio_writeprotect wp{};
    wp.range = {b, e - b};
    wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    return ::ioctl(uffd_, UFFDIO_WRITEPROTECT, &wp) == 0;
  }

  UffdWpOptions opt_;
  int uffd_ = -1, pagemap_ = -1;
  absl::Status open_error_;
  double fault_ns_ = 0;
  std::vector<WatchedRange> watched_;
  std::vector<uffd_detail::PageRegion> vec_;
  std::uintptr_t next_ = 0;
  std::uint64_t round_ = 0;
  UffdReprotect control_;
  mutable absl::Mutex mu_;
  HotnessSourceStats stats_;
};

}  // namespace tierkit::source
