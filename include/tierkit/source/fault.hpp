// tierkit/source/fault.hpp: fault sampling, the user-space analogue of the
// kernel's NUMA hint faults. Each epoch a few randomly chosen 4 KiB pages of
// every tracked range are made PROT_NONE ("armed"); the first read or write
// of an armed page raises SIGSEGV, which an opt-in handler catches, records
// and undoes (mprotect back), and the access proceeds. At the next collect()
// the fired pages are reported as accessed (on x86-64 also whether the access
// was a write: the FIRST access after arming, so a read-modify-write counts
// as a read), and the ones that did not fire are disarmed.
// Layer 1 (beside the backends: it makes syscalls): hotness_source.hpp,
// source/proc_maps.hpp, std, Abseil, POSIX.
//
// When to choose it: any kernel, no privileges, sees reads and writes. Its
// cost lands on the application's threads (one fault per sampled page that is
// touched, measured 7-11 us here with arming, see benchmarks/) and on the
// engine's thread (one mprotect per armed page, one read of /proc/self/maps
// per epoch). Sampling is stratified and random: in every tracked range of
// n pages, k = pages_per_range pages are drawn, one uniformly in each of k
// equal strata, so a page's chance of being sampled is k/n whatever its
// address, and the number of fired pages times n/k is an unbiased estimate
// of the pages touched per epoch. A page is reported with weight `weight`.
//
// The SIGSEGV handler (installed at the first collect(), never before):
//  - is chained: faults that are not on an armed page go to the handler that
//    was installed before ours, unchanged (SA_SIGINFO or plain handler); when
//    that was SIG_DFL or SIG_IGN, ours resets SIGSEGV to SIG_DFL and returns,
//    so the faulting instruction re-executes and the process dies as it
//    would have (a SIGSEGV sent with kill(2) is re-raised).
//  - is async-signal-safe: a fixed table of armed pages (open addressing,
//    one atomic word per slot, no lock, no allocation); the handler only
//    loads, compare-exchanges, calls mprotect and process_vm_readv.
//  - works with any number of threads: the first thread to fault on an armed
//    page restores it; others faulting meanwhile retry the access.
//  - never restores a protection the application changed: before restoring a
//    page (in the handler or when disarming) it checks, with
//    process_vm_readv, that the page is still inaccessible; if the
//    application made it accessible meanwhile, the page is left alone and
//    counted as skipped. Unmapped pages (mprotect fails with ENOMEM) are
//    skipped too. Only what this source set is ever undone.
//  - NOTE: if the application installs its own SIGSEGV handler after ours,
//    faults on armed pages reach the application's handler first. collect()
//    detects this (sigaction query), disarms every page, stops and returns
//    FailedPrecondition saying so. Install your handler before the first
//    collect() and chain to the previous one, or do not use this source.
//  - NOTE: the application's own SIGSEGV faults cost one extra retry (a
//    fault that is not on an armed page is retried once before being
//    forwarded, to tell it from a late fault on a page another thread has
//    just restored).
//  - NOTE: a system call that reads or writes an armed page (read(2) into a
//    buffer, write(2) from one, futexes) fails with EFAULT instead of
//    faulting. Do not use this source on regions passed to system calls;
//    soft-dirty has no such hazard.
//
// VMA budget: each armed page in the middle of a mapping splits it in three,
// and vm.max_map_count (65530 by default) bounds the mappings of a process.
// collect() arms at most min(max_armed, budget.max_pages,
// (max_map_count - current mappings - 1024) / 2) pages per epoch.
// In 2 MiB-granularity ranges the sampled unit is a whole 2 MiB chunk:
// mprotect of one 4 KiB page would split the huge page's mapping, while an
// aligned 2 MiB mprotect changes the huge page's entry as one.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tierkit/hotness_source.hpp"
#include "tierkit/source/proc_maps.hpp"

namespace tierkit::source {

namespace fault_detail {

// Slot word: unit address | state (bits 0-2) | saved prot (bits 3-5) |
// written (bit 6) | 2 MiB unit (bit 7). 0 = empty.
enum : std::uintptr_t {
  kArmed = 1,
  kFiring = 2,  // a handler owns it and is restoring the protection
  kFired = 3,
  kDisarming = 4,  // collect() owns it and is restoring the protection
  kDead = 5,       // not armed (mprotect failed, or the application changed it)
  kStateMask = 7,
  kProtShift = 3,
  kProtMask = 7u << kProtShift,
  kWritten = 1u << 6,
  kHuge = 1u << 7,
  kPageMask = ~std::uintptr_t{4095},
  kHugeMask = ~std::uintptr_t{(2u << 20) - 1},
};

inline std::size_t unit_size(std::uintptr_t v) noexcept {
  return (v & kHuge) != 0 ? std::size_t{2} << 20 : 4096;
}

struct Table {
  static constexpr std::size_t kSlots = std::size_t{1} << 14;  // armed pages <= kSlots / 4
  std::atomic<std::uintptr_t> slot[kSlots];
  struct sigaction prev;  // written before our handler is installed
  std::atomic<bool> installed{false};
  std::atomic<bool> can_check{true};  // process_vm_readv works
  std::atomic<const void*> owner{nullptr};
  std::atomic<std::uint64_t> handler_ns{0}, fired{0}, forwarded{0}, app_changed{0};
};
inline Table g_table;

inline std::size_t hash(std::uintptr_t page) noexcept {
  return static_cast<std::size_t>(((page >> 12) * 0x9E3779B97F4A7C15ull) >> 50) &
         (Table::kSlots - 1);
}

// The slot holding unit `page` (a page, or a 2 MiB unit's base), or null.
// Async-signal-safe.
inline std::atomic<std::uintptr_t>* find(std::uintptr_t page) noexcept {
  for (std::size_t i = hash(page), n = 0; n < Table::kSlots;
       i = (i + 1) & (Table::kSlots - 1), ++n) {
    std::uintptr_t v = g_table.slot[i].load(std::memory_order_acquire);
    if (v == 0) return nullptr;
    if ((v & kPageMask) == page) return &g_table.slot[i];
  }
  return nullptr;
}

// True when `page` can be read (so the application, not us, set its
// protection). Async-signal-safe: one process_vm_readv of one byte.
inline bool readable(std::uintptr_t page) noexcept {
  if (!g_table.can_check.load(std::memory_order_relaxed)) return false;
  char b;
  iovec local{&b, 1}, remote{reinterpret_cast<void*>(page), 1};
  return ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) == 1;
}

inline std::int64_t mono_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline void forward(int sig, siginfo_t* info, void* uctx) noexcept {
  g_table.forwarded.fetch_add(1, std::memory_order_relaxed);
  const struct sigaction& p = g_table.prev;
  if ((p.sa_flags & SA_SIGINFO) != 0 && p.sa_sigaction != nullptr) {
    p.sa_sigaction(sig, info, uctx);
    return;
  }
  if (p.sa_handler == SIG_DFL || p.sa_handler == SIG_IGN) {
    // Default action: reset and let the access fault again (or re-raise a
    // SIGSEGV that was sent, not caused by a fault).
    struct sigaction d {};
    d.sa_handler = SIG_DFL;
    sigemptyset(&d.sa_mask);
    ::sigaction(sig, &d, nullptr);
    g_table.installed.store(false, std::memory_order_relaxed);
    if (info == nullptr || info->si_code <= 0) ::raise(sig);
    return;
  }
  p.sa_handler(sig);
}

inline void handler(int sig, siginfo_t* info, void* uctx) noexcept {
  int saved_errno = errno;
  if (info != nullptr && info->si_code == SEGV_ACCERR) {
    std::int64_t t0 = mono_ns();
    auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
    std::uintptr_t page = addr & kPageMask;
    std::atomic<std::uintptr_t>* s = find(page);
    if (s == nullptr || (s->load(std::memory_order_acquire) & kHuge) != 0) {
      // A page of an armed 2 MiB unit (keyed by its base)?
      std::atomic<std::uintptr_t>* h = find(addr & kHugeMask);
      if (h != nullptr && (h->load(std::memory_order_acquire) & kHuge) != 0) s = h;
    }
    if (s != nullptr) {
      std::uintptr_t v = s->load(std::memory_order_acquire);
      std::uintptr_t state = v & kStateMask;
      if (state == kArmed) {
        std::uintptr_t written = 0;
#if defined(__x86_64__)
        // Page-fault error code: bit 1 = write access.
        if (uctx != nullptr &&
            (static_cast<ucontext_t*>(uctx)->uc_mcontext.gregs[REG_ERR] & 2) != 0)
          written = kWritten;
#endif
        if (s->compare_exchange_strong(v, (v & ~kStateMask) | kFiring | written,
                                       std::memory_order_acq_rel)) {
          if (readable(page)) {
            // The application changed the protection: not ours to restore.
            g_table.app_changed.fetch_add(1, std::memory_order_relaxed);
            s->store((v & ~kStateMask) | kDead, std::memory_order_release);
            errno = saved_errno;
            forward(sig, info, uctx);
            return;
          }
          int prot = static_cast<int>((v & kProtMask) >> kProtShift);
          ::mprotect(reinterpret_cast<void*>(v & kPageMask), unit_size(v), prot);
          s->store((v & ~kStateMask) | kFired | written, std::memory_order_release);
          g_table.fired.fetch_add(1, std::memory_order_relaxed);
          g_table.handler_ns.fetch_add(static_cast<std::uint64_t>(mono_ns() - t0),
                                       std::memory_order_relaxed);
          errno = saved_errno;
          return;
        }
        state = v & kStateMask;
      }
      if (state == kFiring || state == kDisarming) {  // another thread is restoring it
        errno = saved_errno;
        return;
      }
    }
    // Not (or no longer) armed: retry once, in case another thread restored
    // the page after this fault was taken; a second fault at the same
    // address is the application's.
    static thread_local std::uintptr_t last_retry = 0;
    if (last_retry != addr) {
      last_retry = addr;
      errno = saved_errno;
      return;
    }
    last_retry = 0;
  }
  errno = saved_errno;
  forward(sig, info, uctx);
}

}  // namespace fault_detail

struct FaultSourceOptions {
  std::uint32_t pages_per_range = 8;  // pages armed per tracked range per epoch
  std::uint32_t max_armed = 1024;     // cap per epoch (VMA budget; <= 4096)
  std::uint32_t weight = 4;           // heat added per fired page
  std::uint64_t seed = 0x7157;        // page choice
};

class FaultSamplingSource final : public HotnessSource {
 public:
  explicit FaultSamplingSource(FaultSourceOptions o = {}) : opt_(o), rng_(o.seed) {
    opt_.max_armed = std::min<std::uint32_t>(opt_.max_armed, fault_detail::Table::kSlots / 4);
    stats_.name = "fault";
  }
  FaultSamplingSource(const FaultSamplingSource&) = delete;
  FaultSamplingSource& operator=(const FaultSamplingSource&) = delete;
  // Disarms every page; uninstalls the handler if it is still the current one.
  ~FaultSamplingSource() override {
    disarm();
    auto& g = fault_detail::g_table;
    if (installed_ && g.owner.load() == this) {
      if (handler_is_ours()) ::sigaction(SIGSEGV, &g.prev, nullptr);
      g.installed.store(false);
      g.owner.store(nullptr);
    }
  }

  std::string_view name() const override { return "fault"; }

  // OK unless another FaultSamplingSource is active in this process (the
  // handler and its table are per process) or mprotect does not work.
  // Checks that process_vm_readv works (used to detect protections the
  // application changed); if not, that check is off and the message of
  // stats().last_error says so. ~20 us.
  absl::Status probe() override {
    const void* cur = fault_detail::g_table.owner.load();
    if (cur != nullptr && cur != this)
      return absl::FailedPreconditionError(
          "fault sampling: another FaultSamplingSource is active in this process (one SIGSEGV "
          "handler per process)");
    void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
      return absl::UnavailableError(absl::StrCat("fault sampling: mmap: ", std::strerror(errno)));
    absl::Status s;
    if (::mprotect(p, 4096, PROT_NONE) != 0)
      s = absl::UnavailableError(
          absl::StrCat("fault sampling: mprotect(PROT_NONE): ", std::strerror(errno)));
    char b;
    iovec local{&b, 1}, remote{p, 1};
    if (s.ok() && ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) == 1)
      s = absl::UnavailableError("fault sampling: a PROT_NONE page is readable by the kernel");
    int e = errno;
    if (s.ok() && e != EFAULT) {
      fault_detail::g_table.can_check.store(false);
      absl::MutexLock l(&mu_);
      stats_.last_error =
          absl::StrCat("process_vm_readv unavailable (", std::strerror(e),
                       "): protections changed by the application cannot be detected");
    }
    ::munmap(p, 4096);
    return s;
  }

  absl::Status collect(absl::Span<const TrackedRange> ranges, HotnessSink& sink,
                       const SourceBudget& budget) override {
    std::int64_t t0 = detail::thread_cpu_ns();
    if (stopped_) return stopped_status_;
    if (!installed_) {
      if (absl::Status s = install(); !s.ok()) return stop(s);
    } else if (!handler_is_ours()) {
      return stop(absl::FailedPreconditionError(
          "fault sampling: another SIGSEGV handler was installed after ours; faults on armed "
          "pages would reach it first, so every page was disarmed and fault sampling stopped"));
    }
    std::uint64_t found = 0, written = 0, skipped = 0, errors = 0, sampled = 0;
    std::string err;
    harvest(&sink, found, written, skipped, errors, err);

    // Arm the next sample.
    if (absl::Status s = maps_.read(); !s.ok()) {
      ++errors;
      err = std::string(s.message());
    } else if (!ranges.empty()) {
      long room = (max_maps_ - static_cast<long>(maps_.size()) - 1024) / 2;
      std::uint64_t cap = std::min<std::uint64_t>(
          opt_.max_armed, budget.max_pages ? budget.max_pages : opt_.max_armed);
      cap = std::min<std::uint64_t>(cap, room > 0 ? static_cast<std::uint64_t>(room) : 0);
      std::size_t n = ranges.size();
      std::size_t start = cursor_++ % n;  // rotate which ranges go first when capped
      for (std::size_t i = 0; i < n && sampled < cap; ++i) {
        const TrackedRange& r = ranges[(start + i) % n];
        if ((r.granularity != kPageSize && r.granularity != kHugePageSize) || r.end <= r.begin) {
          ++skipped;
          continue;
        }
        const bool huge = r.granularity == kHugePageSize;
        const std::size_t unit = huge ? kHugePageSize : kPageSize;
        std::uint64_t units = (r.end - r.begin) / unit;
        std::uint64_t k = std::min<std::uint64_t>(opt_.pages_per_range, units);
        for (std::uint64_t j = 0; j < k && sampled < cap; ++j) {
          std::uint64_t lo = j * units / k, hi = (j + 1) * units / k;
          std::uint64_t pick =
              lo + std::uniform_int_distribution<std::uint64_t>(0, hi - lo - 1)(rng_);
          std::uintptr_t page = r.begin + pick * unit;
          const Vma* v = maps_.find(page);
          if (v == nullptr || v->prot == PROT_NONE || (v->prot & PROT_READ) == 0) {
            ++skipped;  // unmapped, or already inaccessible (the application's)
            continue;
          }
          if (huge && (v->begin > page || v->end < page + unit)) {
            ++skipped;  // the unit spans mappings: not one huge page
            continue;
          }
          if (fault_detail::find(page) != nullptr) continue;  // drawn twice
          if (!insert(page, v->prot, huge)) break;
          if (::mprotect(reinterpret_cast<void*>(page), unit, PROT_NONE) != 0) {
            ++errors;
            err = absl::StrCat("mprotect(PROT_NONE) of page 0x", absl::Hex(page), ": ",
                               std::strerror(errno));
            kill(page);
            continue;
          }
          armed_.push_back(page);
          ++sampled;
          if (budget.max_ns > 0 && (sampled & 63) == 0 &&
              detail::thread_cpu_ns() - t0 > budget.max_ns)
            break;
        }
      }
    }
    std::int64_t dt = detail::thread_cpu_ns() - t0;
    absl::MutexLock l(&mu_);
    stats_.add_collect(dt,
                       {.sampled = sampled,
                        .found = found,
                        .written = written,
                        .skipped = skipped,
                        .errors = errors},
                       err);
    return absl::OkStatus();
  }

  // Restores every armed page that has not fired (unless the application
  // changed or unmapped it) and forgets the fired ones without reporting.
  void disarm() override {
    std::uint64_t found = 0, written = 0, skipped = 0, errors = 0;
    std::string err;
    harvest(nullptr, found, written, skipped, errors, err);
    absl::MutexLock l(&mu_);
    stats_.skipped += skipped;
    stats_.errors += errors;
    if (!err.empty()) stats_.last_error = err;
  }

  HotnessSourceStats stats() const override {
    absl::MutexLock l(&mu_);
    HotnessSourceStats s = stats_;
    auto h = fault_detail::g_table.handler_ns.load(std::memory_order_relaxed);
    s.handler_ns = h;
    s.cpu_ns += h;
    return s;
  }

  // Pages armed now, and which (for tests and benchmarks; collecting thread).
  std::size_t armed() const { return armed_.size(); }
  const std::vector<std::uintptr_t>& armed_pages() const { return armed_; }
  // SIGSEGVs that were not ours and went to the previous handler.
  static std::uint64_t forwarded() { return fault_detail::g_table.forwarded.load(); }

 private:
  static bool handler_is_ours() {
    struct sigaction cur {};
    if (::sigaction(SIGSEGV, nullptr, &cur) != 0) return false;
    return (cur.sa_flags & SA_SIGINFO) != 0 && cur.sa_sigaction == &fault_detail::handler;
  }

  absl::Status install() {
    auto& g = fault_detail::g_table;
    const void* expected = nullptr;
    if (!g.owner.compare_exchange_strong(expected, this) && expected != this)
      return absl::FailedPreconditionError(
          "fault sampling: another FaultSamplingSource is active in this process");
    max_maps_ = max_map_count();
    struct sigaction sa {};
    sa.sa_sigaction = &fault_detail::handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSEGV, nullptr, &g.prev) != 0 || ::sigaction(SIGSEGV, &sa, nullptr) != 0)
      return absl::InternalError(
          absl::StrCat("fault sampling: sigaction(SIGSEGV): ", std::strerror(errno)));
    g.installed.store(true);
    installed_ = true;
    return absl::OkStatus();
  }

  absl::Status stop(absl::Status why) {
    disarm();
    stopped_ = true;
    stopped_status_ = why;
    absl::MutexLock l(&mu_);
    ++stats_.errors;
    stats_.last_error = std::string(why.message());
    return why;
  }

  bool insert(std::uintptr_t page, int prot, bool huge) {
    for (std::size_t i = fault_detail::hash(page), n = 0; n < fault_detail::Table::kSlots;
         i = (i + 1) & (fault_detail::Table::kSlots - 1), ++n) {
      auto& s = fault_detail::g_table.slot[i];
      if (s.load(std::memory_order_relaxed) == 0) {
        s.store(page | fault_detail::kArmed |
                    (huge ? std::uintptr_t{fault_detail::kHuge} : std::uintptr_t{0}) |
                    (static_cast<std::uintptr_t>(prot & 7) << fault_detail::kProtShift),
                std::memory_order_release);
        return true;
      }
    }
    return false;
  }
  // Marks `page`'s slot dead (kept, so probe chains stay intact until the
  // next harvest empties the table).
  void kill(std::uintptr_t page) {
    if (auto* s = fault_detail::find(page))
      s->store(
          (s->load(std::memory_order_relaxed) & ~fault_detail::kStateMask) | fault_detail::kDead,
          std::memory_order_release);
  }

  // Reports fired pages to `sink` (if any), disarms the rest, empties the
  // table. Only the collecting thread inserts, so emptying it is safe: a
  // handler that misses a slot retries its access once.
  void harvest(HotnessSink* sink, std::uint64_t& found, std::uint64_t& written,
               std::uint64_t& skipped, std::uint64_t& errors, std::string& err) {
    using namespace fault_detail;
    for (std::uintptr_t page : armed_) {
      std::atomic<std::uintptr_t>* s = find(page);
      if (s == nullptr) continue;
      std::uintptr_t v = s->load(std::memory_order_acquire);
      for (;;) {
        std::uintptr_t st = v & kStateMask;
        if (st == kFiring) {  // a handler is restoring it: wait (microseconds)
          sched_yield();
          v = s->load(std::memory_order_acquire);
          continue;
        }
        if (st == kFired) {
          ++found;
          if ((v & kWritten) != 0) ++written;
          if (sink != nullptr) sink->record(page, opt_.weight, (v & kWritten) != 0);
          break;
        }
        if (st == kArmed) {
          if (!s->compare_exchange_weak(v, (v & ~kStateMask) | kDisarming,
                                        std::memory_order_acq_rel))
            continue;
          if (readable(page)) {
            ++skipped;  // the application changed its protection: leave it
          } else if (::mprotect(reinterpret_cast<void*>(page), unit_size(v),
                                static_cast<int>((v & kProtMask) >> kProtShift)) != 0) {
            if (errno == ENOMEM) {
              ++skipped;  // unmapped by the application
            } else {
              ++errors;
              err = absl::StrCat("mprotect restoring page 0x", absl::Hex(page), ": ",
                                 std::strerror(errno));
            }
          }
        }
        break;
      }
    }
    // Empty the table (dead slots too).
    for (auto& s : g_table.slot) s.store(0, std::memory_order_release);
    armed_.clear();
  }

  FaultSourceOptions opt_;
  std::mt19937_64 rng_;
  ProcMaps maps_;
  long max_maps_ = 65530;
  std::size_t cursor_ = 0;
  std::vector<std::uintptr_t> armed_;
  bool installed_ = false;  // our handler was installed by this source
  bool stopped_ = false;
  absl::Status stopped_status_;
  mutable absl::Mutex mu_;
  HotnessSourceStats stats_;
};

}  // namespace tierkit::source
