// tierkit/source/perf_mem.hpp: hardware memory-access sampling (Intel PEBS
// mem-loads, AMD IBS op) through perf_event_open, as a hotness source.
// PROBE ONLY for now: probe() says whether the running machine and
// kernel.perf_event_paranoid allow this process to sample data addresses,
// and returns Unimplemented when they do (collect() is not written yet).
// Layer 1 (syscalls): hotness_source.hpp, std, Abseil, POSIX.
//
// When it is implemented, it is the cheapest source that sees reads: the
// hardware samples 1 in N loads with their data address. It needs
// perf_event_paranoid <= 1 (Debian's default, 3, blocks it) or
// CAP_PERFMON, and PEBS / IBS, which virtual machines rarely expose.
#pragma once

#include <fcntl.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tierkit/hotness_source.hpp"

namespace tierkit::source {

namespace perf_detail {
inline std::string read_small(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char b[256] = {};
  ssize_t n = ::read(fd, b, sizeof b - 1);
  ::close(fd);
  std::string s(b, n > 0 ? static_cast<std::size_t>(n) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
}  // namespace perf_detail

class PerfMemSource final : public HotnessSource {
 public:
  PerfMemSource() { stats_.name = "perf-mem"; }
  std::string_view name() const override { return "perf-mem"; }

  absl::Status probe() override {
    std::string paranoid = perf_detail::read_small("/proc/sys/kernel/perf_event_paranoid");
    std::string where =
        absl::StrCat("kernel.perf_event_paranoid = ", paranoid.empty() ? "unreadable" : paranoid);
    perf_event_attr a{};
    a.size = sizeof a;
    std::string kind;
    if (std::string t = perf_detail::read_small("/sys/bus/event_source/devices/ibs_op/type");
        !t.empty()) {
      std::uint32_t type = 0;
      if (!absl::SimpleAtoi(t, &type)) return absl::UnavailableError("perf-mem: bad ibs_op type");
      a.type = type;
      kind = "AMD IBS op";
    } else if (std::string ev =
                   perf_detail::read_small("/sys/bus/event_source/devices/cpu/events/mem-loads");
               !ev.empty()) {
      // "event=0xcd,umask=0x1,ldlat=3"
      a.type = PERF_TYPE_RAW;
      for (absl::string_view kv : absl::StrSplit(ev, ',')) {
        std::pair<absl::string_view, absl::string_view> p = absl::StrSplit(kv, '=');
        std::uint64_t v = std::strtoull(std::string(p.second).c_str(), nullptr, 0);
        if (p.first == "event") a.config |= v;
        if (p.first == "umask") a.config |= v << 8;
        if (p.first == "ldlat") a.config1 = v;
      }
      kind = "Intel PEBS mem-loads";
    } else {
      return absl::UnavailableError(absl::StrCat(
          "perf-mem: this CPU exposes neither PEBS mem-loads "
          "(/sys/bus/event_source/devices/cpu/events/mem-loads) nor AMD IBS "
          "(/sys/bus/event_source/devices/ibs_op): no hardware data-address sampling here "
          "(virtual machines rarely expose it); ",
          where));
    }
    a.sample_period = 10007;
    a.sample_type = PERF_SAMPLE_ADDR | PERF_SAMPLE_DATA_SRC;
    a.precise_ip = 2;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    a.disabled = 1;
    long fd = ::syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      return absl::UnavailableError(
          absl::StrCat("perf-mem: perf_event_open(", kind, "): ", std::strerror(e), " (", where,
                       e == EACCES || e == EPERM ? "; needs <= 1 or CAP_PERFMON" : "", ")"));
    }
    ::close(static_cast<int>(fd));
    return absl::UnimplementedError(absl::StrCat("perf-mem: ", kind, " sampling is available (",
                                                 where,
                                                 ") but this source is not implemented yet"));
  }
  absl::Status collect(absl::Span<const TrackedRange>, HotnessSink&, const SourceBudget&) override {
    return probe();
  }
  HotnessSourceStats stats() const override { return stats_; }

 private:
  HotnessSourceStats stats_;
};

}  // namespace tierkit::source
