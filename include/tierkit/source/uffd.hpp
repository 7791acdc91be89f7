// tierkit/source/uffd.hpp: userfaultfd write-protect and PAGEMAP_SCAN, as a
// hotness source. PROBE ONLY for now: probe() reports what the running
// kernel offers (userfaultfd at all, UFFD_USER_MODE_ONLY when
// vm.unprivileged_userfaultfd is 0, write-protect, asynchronous
// write-protect (UFFD_FEATURE_WP_ASYNC, 6.7+) and the PAGEMAP_SCAN ioctl
// (6.7+)), and returns Unimplemented when everything needed is there, since
// collect() is not written yet. Layer 1 (syscalls): hotness_source.hpp, std,
// Abseil, POSIX.
//
// When it is implemented, choose it over soft-dirty on 6.7+ kernels: async
// write-protect is per registered range (not process-wide) and PAGEMAP_SCAN
// returns only the written ranges, so reading back costs per written region,
// not 8 bytes per page. It sees writes only.
#pragma once

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
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

class UffdWpSource final : public HotnessSource {
 public:
  UffdWpSource() { stats_.name = "uffd-wp"; }
  std::string_view name() const override { return "uffd-wp"; }

  absl::Status probe() override {
    UffdCapabilities c = probe_uffd();
    if (!c.userfaultfd || !c.wp_async || !c.pagemap_scan)
      return absl::UnavailableError(
          absl::StrCat("uffd-wp needs userfaultfd with async write-protect and PAGEMAP_SCAN "
                       "(Linux 6.7+): ",
                       c.summary));
    return absl::UnimplementedError(
        absl::StrCat("uffd-wp: the kernel has what it needs (", c.summary,
                     ") but this source is not implemented yet; use softdirty or fault"));
  }
  absl::Status collect(absl::Span<const TrackedRange>, HotnessSink&, const SourceBudget&) override {
    return probe();
  }
  HotnessSourceStats stats() const override { return stats_; }

 private:
  HotnessSourceStats stats_;
};

}  // namespace tierkit::source
