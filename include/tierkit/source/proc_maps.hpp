// tierkit/source/proc_maps.hpp: a snapshot of /proc/self/maps (address
// ranges and protections), for the sampled hotness sources that must know a
// page's protection before changing it. Layer 1 (beside the backends): std,
// Abseil, POSIX.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tierkit::source {

struct Vma {
  std::uintptr_t begin = 0, end = 0;
  int prot = PROT_NONE;  // PROT_READ | PROT_WRITE | PROT_EXEC
  bool shared = false;
};

// The mappings of this process, sorted by address. Cost: one read of
// /proc/self/maps, about 1 us per mapping (measured: see benchmarks).
class ProcMaps {
 public:
  absl::Status read() {
    vmas_.clear();
    int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return absl::UnavailableError(
          absl::StrCat("open /proc/self/maps: ", std::strerror(errno), " (is /proc mounted?)"));
    buf_.resize(1 << 16);
    std::size_t used = 0;
    for (;;) {
      if (buf_.size() - used < 4096) buf_.resize(buf_.size() * 2);
      ssize_t n = ::read(fd, buf_.data() + used, buf_.size() - used);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int e = errno;
        ::close(fd);
        return absl::UnavailableError(absl::StrCat("read /proc/self/maps: ", std::strerror(e)));
      }
      if (n == 0) break;
      used += static_cast<std::size_t>(n);
    }
    ::close(fd);
    // Lines: "begin-end rwxp offset dev inode path".
    const char* p = buf_.data();
    const char* end = p + used;
    while (p < end) {
      const char* eol = static_cast<const char*>(std::memchr(p, '\n', end - p));
      if (eol == nullptr) eol = end;
      char* q = nullptr;
      Vma v;
      v.begin = std::strtoull(p, &q, 16);
      if (q != nullptr && *q == '-') {
        v.end = std::strtoull(q + 1, &q, 16);
        if (q != nullptr && q + 5 <= eol && *q == ' ') {
          v.prot = (q[1] == 'r' ? PROT_READ : 0) | (q[2] == 'w' ? PROT_WRITE : 0) |
                   (q[3] == 'x' ? PROT_EXEC : 0);
          v.shared = q[4] == 's';
          vmas_.push_back(v);
        }
      }
      p = eol + 1;
    }
    std::sort(vmas_.begin(), vmas_.end(),
              [](const Vma& a, const Vma& b) { return a.begin < b.begin; });
    return absl::OkStatus();
  }

  // The mapping holding `addr`, or null (unmapped).
  const Vma* find(std::uintptr_t addr) const {
    auto it = std::upper_bound(vmas_.begin(), vmas_.end(), addr,
                               [](std::uintptr_t a, const Vma& v) { return a < v.begin; });
    if (it == vmas_.begin()) return nullptr;
    --it;
    return addr < it->end ? &*it : nullptr;
  }

  std::size_t size() const { return vmas_.size(); }

 private:
  std::vector<Vma> vmas_;
  std::vector<char> buf_;
};

// vm.max_map_count (65530 on stock kernels), or 65530 if unreadable.
inline long max_map_count() {
  int fd = ::open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 65530;
  char b[32] = {};
  ssize_t n = ::read(fd, b, sizeof b - 1);
  ::close(fd);
  long v = n > 0 ? std::strtol(b, nullptr, 10) : 0;
  return v > 0 ? v : 65530;
}

}  // namespace tierkit::source
