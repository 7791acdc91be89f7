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
// touched, about 28 us measured here with the handler, see benchmarks/) and on the
// engine's thread (one mprotect per armed page, one read of /proc/self/maps
// per epoch).
//
// Budget by construction: unless pages_per_epoch fixes the sample, collect()
// arms as many samples as SourceBudget::cpu_fraction of the time pays for,
// all costs included (FaultBudget: a token bucket of fraction * epoch per
// epoch; each sample's actual cost, its arming, maps read, fault or disarm,
// is taken from it; the next sample spends what is left at the expected
// cost per sample), with each cost this source's own measurement (arm and
// disarm from its collect() timing, a moving average; the fault from timed
// faults on a scratch page when the handler is installed, kept up to date by
// the handler's own timing). So the sample shrinks on a slow machine and the
// total stays within the fraction whatever the number of ranges.
//
// Sampling is stratified and random over all tracked units together: k
// units are drawn, one uniformly in each of k equal strata of the ranges
// laid end to end, so a unit's chance of being sampled is k / (all units)
// whatever its range or address (each armed with its aligned group of
// group_pages pages: see FaultSourceOptions), and the fired count times that
// inverse is an unbiased estimate of the units touched per epoch. Every armed unit is
// reported through HotnessSink::observe(): fired or not, how long it was
// armed, how long after arming it fired (the NUMA hint fault's latency) and
// its inclusion probability; the engine turns that into heat
// (SourceEstimator). A plain HotnessSink::record() sees the fired pages with
// weight `weight`.
//
// The SIGSEGV handler (installed at the first collect(), never before):
//  - stays installed for the life of the process once a source installed
//    it: a fault taken on an armed page can be delivered after the page was
//    restored (by another thread's handler, by collect() or by the
//    destructor), and must then be retried, not given to the previous
//    handler (with SIG_DFL that kills the process). With no source active
//    it passes every fault through (retries a fault on a page that is
//    accessible again, forwards the rest), and a later source reuses it.
//    Cost: nothing on the application's path unless a SIGSEGV happens,
//    then the one retry below.
//  - is chained: faults that are not on an armed page go to the handler that
//    was installed before ours, unchanged (SA_SIGINFO or plain handler); when
//    that was SIG_DFL or SIG_IGN, ours resets SIGSEGV to SIG_DFL and returns,
//    so the faulting instruction re-executes and the process dies as it
//    would have (a SIGSEGV sent with kill(2) is re-raised).
//  - is async-signal-safe: a fixed table of armed pages (open addressing,
//    one atomic word per slot, no lock, no allocation); the handler only
//    loads, compare-exchanges, calls mprotect, process_vm_readv and
//    sched_yield, and reads an initial-exec thread_local (no call).
//  - works with any number of threads: the first thread to fault on an armed
//    page restores it; others faulting meanwhile retry the access. A fault
//    on a page that is not armed is retried when this source armed or
//    restored anything since this thread last retried a fault at that
//    address (a generation counter), and forwarded otherwise.
//  - never restores a protection the application changed: before restoring a
//    page (in the handler or when disarming) it checks, with
//    process_vm_readv, that the page is still inaccessible; if the
//    application made it accessible meanwhile, the page is left alone and
//    counted as skipped. Unmapped pages (mprotect fails with ENOMEM) are
//    skipped too. Only what this source set is ever undone.
//  - NOTE: if the application installs its own SIGSEGV handler after ours
//    (which stays once installed, also when no source is left), faults on
//    armed pages reach the application's handler first. collect()
//    detects this (sigaction query), disarms every page, stops and returns
//    FailedPrecondition saying so. Install your handler before the first
//    collect() and chain to the previous one, or do not use this source.
//  - NOTE: the application's own SIGSEGV faults cost one extra retry (a
//    fault that is not on an armed page is retried once before being
//    forwarded, to tell it from a late fault on a page that was just
//    restored).
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
#include <bit>
#include <cerrno>
#include <cmath>
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
// written (bit 6) | 2 MiB unit (bit 7) | log2 of the pages of a group of
// 4 KiB pages (bits 8-11). 0 = empty.
enum : std::uintptr_t {
  kArmed = 1,
  kFiring = 2,  // a handler owns it and is restoring the protection
  kFired = 3,
  kDisarming = 4,  // collect() owns it and is restoring the protection
  kDead = 5,       // not armed (mprotect failed, or the application changed it)
  kArming = 6,     // collect() owns it and is making the unit PROT_NONE
  kStateMask = 7,
  kProtShift = 3,
  kProtMask = 7u << kProtShift,
  kWritten = 1u << 6,
  kHuge = 1u << 7,
  kGroupShift = 8,
  kGroupMask = 0xFu << kGroupShift,
  kPageMask = ~std::uintptr_t{4095},
  kHugeMask = ~std::uintptr_t{(2u << 20) - 1},
};

inline std::size_t unit_size(std::uintptr_t v) noexcept {
  return (v & kHuge) != 0 ? std::size_t{2} << 20
                          : std::size_t{4096} << ((v & kGroupMask) >> kGroupShift);
}

struct Table {
  static constexpr std::size_t kSlots = std::size_t{1} << 14;  // armed pages <= kSlots / 4
  std::atomic<std::uintptr_t> slot[kSlots];
  std::atomic<std::int64_t> fired_at[kSlots];      // CLOCK_MONOTONIC ns of the slot's fault
  std::atomic<std::uintptr_t> fired_page[kSlots];  // the page whose access faulted
  std::atomic<std::size_t> group_bytes{4096};      // bytes of a group (its alignment)
  struct sigaction prev;                           // written before our handler is installed
  std::atomic<bool> installed{false};
  std::atomic<bool> can_check{true};  // process_vm_readv works
  std::atomic<const void*> owner{nullptr};
  std::atomic<std::uint64_t> handler_ns{0}, fired{0}, forwarded{0}, app_changed{0};
  // Bumped after every change of protection this source makes (arm, fire,
  // harvest), before the slot shows it: see retry_late().
  std::atomic<std::uint64_t> generation{0};
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

// The slot armed for a fault at `addr`: its page's, or that of the armed
// 2 MiB unit it is in (keyed by its base), or of its armed group (keyed by
// the group's aligned base). nullptr if none.
inline std::atomic<std::uintptr_t>* slot_for(std::uintptr_t addr) noexcept {
  std::atomic<std::uintptr_t>* s = find(addr & kPageMask);
  if (s == nullptr || (s->load(std::memory_order_acquire) & kHuge) != 0) {
    std::atomic<std::uintptr_t>* h = find(addr & kHugeMask);
    if (h != nullptr && (h->load(std::memory_order_acquire) & kHuge) != 0) s = h;
  }
  if (s == nullptr) {
    const std::size_t g = g_table.group_bytes.load(std::memory_order_relaxed);
    std::atomic<std::uintptr_t>* h = find(addr & ~std::uintptr_t{g - 1});
    if (h != nullptr && (h->load(std::memory_order_acquire) & kGroupMask) != 0) s = h;
  }
  return s;
}

// The page-fault error code of the faulting access (x86-64: bit 1 = write
// access, bit 4 = instruction fetch), or -1 where it is not known.
inline std::int64_t fault_error_code(void* uctx) noexcept {
#if defined(__x86_64__)
  if (uctx != nullptr)
    return static_cast<std::int64_t>(static_cast<ucontext_t*>(uctx)->uc_mcontext.gregs[REG_ERR]);
#endif
  (void)uctx;
  return -1;
}

// This thread's last retried fault that was not on an armed unit: its
// address and the generation then. Initial-exec TLS is a fixed offset from
// the thread pointer, so the handler reads it without a call or an
// allocation (the default model in a shared library goes through
// __tls_get_addr, which may allocate on a thread's first access). Its cost:
// a shared library holding it, if dlopen()ed, takes these 16 bytes from
// glibc's static TLS reserve (dlopen fails, saying so, if that is full).
struct LastRetry {
  std::uintptr_t addr;
  std::uint64_t generation;
};
[[gnu::tls_model("initial-exec")]] inline constinit thread_local LastRetry t_last_retry{0, 0};

// True (retry the access) unless this thread already retried a fault at
// `addr` and the generation has not moved since: then the fault is the
// application's. A fault taken on a unit we protected and delivered after
// we restored it always sees a newer generation than any this thread
// recorded before taking it, since the restore bumps the generation before
// its slot shows it (call after reading the slot). Async-signal-safe.
inline bool retry_late(std::uintptr_t addr) noexcept {
  const std::uint64_t gen = g_table.generation.load(std::memory_order_acquire);
  LastRetry& r = t_last_retry;
  if (r.addr == addr && r.generation == gen) return false;
  r = {addr, gen};
  return true;
}

inline void handler(int sig, siginfo_t* info, void* uctx) noexcept {
  int saved_errno = errno;
  if (info != nullptr && info->si_code == SEGV_ACCERR) {
    std::int64_t t0 = mono_ns();
    auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
    std::uintptr_t page = addr & kPageMask;
    std::atomic<std::uintptr_t>* s = slot_for(addr);
    if (s != nullptr) {
      std::uintptr_t v = s->load(std::memory_order_acquire);
      std::uintptr_t state = v & kStateMask;
      // Being armed (inserted before its mprotect): a fault taken in an
      // earlier epoch can arrive while the page is still readable: retried.
      // Once it is PROT_NONE it fires without waiting for collect(), whose
      // thread may be waiting for this CPU. (Without process_vm_readv the
      // fault is retried until the slot is armed.)
      if (state == kArming && g_table.can_check.load(std::memory_order_relaxed) && readable(page)) {
        errno = saved_errno;
        return;
      }
      const bool arming = state == kArming && g_table.can_check.load(std::memory_order_relaxed);
      if (state == kArmed || arming) {
        const std::int64_t err = fault_error_code(uctx);
        const std::uintptr_t written = err >= 0 && (err & 2) != 0 ? std::uintptr_t{kWritten} : 0;
        // A plain read: the access cannot have been allowed by the app's prot.
        const bool plain_read = err >= 0 && (err & (2 | 16)) == 0;
        if (s->compare_exchange_strong(v, (v & ~kStateMask) | kFiring | written,
                                       std::memory_order_acq_rel)) {
          // A read that faulted proves the page unreadable, so the readable()
          // syscall (about half the handler's time here) is needed only for
          // writes and fetches, which a PROT_READ the app set also fails.
          if (!arming && !plain_read && readable(page)) {
            // The application changed the protection: not ours to restore.
            // The fault may still predate that change: retried once below.
            g_table.app_changed.fetch_add(1, std::memory_order_relaxed);
            s->store((v & ~kStateMask) | kDead, std::memory_order_release);
            state = kDead;
          } else {
            int prot = static_cast<int>((v & kProtMask) >> kProtShift);
            ::mprotect(reinterpret_cast<void*>(v & kPageMask), unit_size(v), prot);
            g_table.fired_at[static_cast<std::size_t>(s - g_table.slot)].store(
                t0, std::memory_order_relaxed);
            g_table.fired_page[static_cast<std::size_t>(s - g_table.slot)].store(
                page, std::memory_order_relaxed);
            g_table.generation.fetch_add(1, std::memory_order_release);
            s->store((v & ~kStateMask) | kFired | written, std::memory_order_release);
            g_table.fired.fetch_add(1, std::memory_order_relaxed);
            g_table.handler_ns.fetch_add(static_cast<std::uint64_t>(mono_ns() - t0),
                                         std::memory_order_relaxed);
            errno = saved_errno;
            return;
          }
        } else {  // another thread changed it meanwhile: try again
          errno = saved_errno;
          return;
        }
      }
      // Another thread is changing its protection: retry until it is done.
      // (kFired is not here: it lasts the epoch, and a write to a unit
      // restored to PROT_READ faults again; retry_late() tells them apart.)
      if (state == kFiring || state == kDisarming || state == kArming) {
        ::sched_yield();  // that thread may be waiting for this CPU
        errno = saved_errno;
        return;
      }
    }
    if (retry_late(addr)) {
      errno = saved_errno;
      return;
    }
  }
  errno = saved_errno;
  forward(sig, info, uctx);
}

}  // namespace fault_detail

// What one fault sample costs, ns of CPU, wherever it runs.
struct FaultSampleCosts {
  double arm_ns = 0;     // engine's thread: mprotect(PROT_NONE) + table insert
  double disarm_ns = 0;  // engine's thread: restore a sample that did not fire
  double fire_ns = 0;    // application's thread: fault, signal, handler, mprotect back
  double maps_ns = 0;    // engine's thread: one /proc/self/maps read per collect()
  // One sample's expected cost when a fraction `p_fire` of samples fire.
  double per_sample_ns(double p_fire = 1) const {
    return arm_ns + p_fire * fire_ns + (1 - p_fire) * disarm_ns;
  }
};

// FaultBudget
//
// Sizes each epoch's fault sample so that what the samples cost, all parts
// included, stays within SourceBudget::cpu_fraction of the time, as a token
// bucket does: each epoch adds fraction * epoch to a balance, each sample's
// actual cost (its maps read, arms, faults and disarms, once it is
// harvested) is taken from it, and the next sample spends at most what the
// balance holds at the expected cost per sample (the fired fraction a
// moving average of what fired). An overspent epoch is paid back by the
// next; unspent time carries over up to one epoch's allowance. So over any
// run, the cost is at most the allowance of its epochs plus the error of
// the last sample's expected fired fraction. Plain data; O(1).
struct FaultBudget {
  double balance_ns = 0;  // allowance not yet spent (negative: overspent)
  double p_fire = 0.5;    // fraction of samples that fire (moving average)
  double planned_ns = 0;  // the last sample's expected cost

  // The last sample, harvested: `sampled` samples of which `fired` fired,
  // and what it cost in all (`spent_ns`).
  void settle(std::uint64_t sampled, std::uint64_t fired, double spent_ns) {
    balance_ns -= spent_ns;
    if (sampled > 0)
      p_fire += 0.25 * (static_cast<double>(fired) / static_cast<double>(sampled) - p_fire);
  }
  // The samples the next epoch may take, for an allowance of `allowance_ns`
  // per epoch: the balance after adding it, less the maps read, at the
  // expected cost per sample (0 when nothing was measured).
  std::uint64_t plan(const FaultSampleCosts& c, double allowance_ns) {
    balance_ns = std::min(balance_ns + allowance_ns, allowance_ns);
    const double per = c.per_sample_ns(p_fire);
    const double avail = balance_ns - c.maps_ns;
    if (!(avail > 0) || !(per > 0)) return 0;
    const auto k = static_cast<std::uint64_t>(std::floor(avail / per));
    planned_ns = c.maps_ns + static_cast<double>(k) * per;
    return k;
  }
};

// draw_stratified()
//
// Draws k units of ranges holding units[0], units[1], ... units (laid end to
// end): one uniformly in each of k equal strata of the total, visited from
// the stratum at `start` (a fraction of the total, in [0, 1)) on, wrapping.
// Calls pick(range, unit) for each until it returns false. Returns where the
// next draw should start: `start` moved past the strata visited, so draws
// that a cap stops early take turns over the whole population instead of
// favouring the same ranges. below(n) must return a uniform integer in
// [0, n). Every unit's chance of being drawn is k / total. O(k log ranges).
template <class Below, class Pick>
double draw_stratified(absl::Span<const std::uint64_t> units, std::uint64_t k, double start,
                       Below&& below, Pick&& pick) {
  std::vector<std::uint64_t> end(units.size());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < units.size(); ++i) end[i] = total += units[i];
  k = std::min(k, total);
  if (k == 0) return start;
  const auto first = std::min(static_cast<std::uint64_t>(start * static_cast<double>(k)), k - 1);
  std::uint64_t visited = k;
  for (std::uint64_t n = 0; n < k; ++n) {
    const std::uint64_t j = (first + n) % k;
    const std::uint64_t lo = j * total / k, hi = (j + 1) * total / k;
    const std::uint64_t x = lo + below(hi - lo);
    const auto r =
        static_cast<std::size_t>(std::upper_bound(end.begin(), end.end(), x) - end.begin());
    if (!pick(r, x - (end[r] - units[r]))) {
      visited = n + 1;
      break;
    }
  }
  if (visited == k) return start;
  const double next = start + static_cast<double>(visited) / static_cast<double>(k);
  return next - std::floor(next);
}

// The pages of one fault sample for FaultSourceOptions::group_pages: a power
// of two in [1, 16].
inline std::uint32_t fault_group_pages(std::uint32_t asked) {
  std::uint32_t k = 1;
  while (k * 2 <= std::min<std::uint32_t>(asked, 16)) k *= 2;
  return k;
}

struct FaultSourceOptions {
  // Pages armed per epoch over all tracked ranges together; 0 (default) = as
  // many as SourceBudget::cpu_fraction of the epoch pays for (see above).
  std::uint32_t pages_per_epoch = 0;
  std::uint32_t max_armed = 1024;  // cap per epoch (VMA budget; <= 4096)
  // Pages per sample: each draw arms the aligned group of this many pages
  // (a power of two, at most 16) holding the page drawn, with one mprotect,
  // when the range holds it whole (else the page alone). The group's first
  // access fires it and is reported as the accessed page: the pages of a
  // group are found in proportion to their access rates, so a sample covers
  // group_pages pages. Arming costs more per page (each page's TLB entry is
  // invalidated: on the development host 16 pages cost 7x one page, a
  // sample about 5x a single page's) while the fault costs about the same;
  // the budget counts it. A sequential sweep always reaches a group's first
  // page first: it is the one reported.
  std::uint32_t group_pages = 16;
  std::uint32_t weight = 4;     // heat per fired page for a plain record() sink
  std::uint64_t seed = 0x7157;  // page choice

  // fixed()
  //
  // A fixed sample of `pages` single pages per epoch, whatever it costs
  // (make_source("fault:N"); tests that must know which pages are armed).
  static FaultSourceOptions fixed(std::uint32_t pages) {
    FaultSourceOptions o;
    o.pages_per_epoch = pages;
    o.group_pages = 1;
    return o;
  }
};

class FaultSamplingSource final : public HotnessSource {
 public:
  explicit FaultSamplingSource(FaultSourceOptions o = {}) : opt_(o), rng_(o.seed) {
    opt_.max_armed = std::min<std::uint32_t>(opt_.max_armed, fault_detail::Table::kSlots / 4);
    stats_.name = "fault";
  }
  FaultSamplingSource(const FaultSamplingSource&) = delete;
  FaultSamplingSource& operator=(const FaultSamplingSource&) = delete;
  // Disarms every page. The handler stays installed (see above): another
  // thread's fault on a page armed until now may not have been delivered yet.
  ~FaultSamplingSource() override {
    disarm();
    const void* self = this;
    fault_detail::g_table.owner.compare_exchange_strong(self, nullptr);
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
      calibrate();
      t0 = detail::thread_cpu_ns();  // the calibration is not this epoch's sample
    } else if (!handler_is_ours()) {
      return stop(absl::FailedPreconditionError(
          "fault sampling: another SIGSEGV handler was installed after ours; faults on armed "
          "pages would reach it first, so every page was disarmed and fault sampling stopped"));
    }
    std::uint64_t found = 0, written = 0, skipped = 0, errors = 0, sampled = 0, unfired = 0;
    std::string err;
    const std::size_t harvested = armed_.size();
    harvest(&sink, found, written, skipped, errors, err, &unfired);
    const std::int64_t t_harvest = detail::thread_cpu_ns();
    if (unfired > 0)
      learn(costs_.disarm_ns, static_cast<double>(t_harvest - t0) / static_cast<double>(unfired));
    learn_fire_cost();
    // What the harvested sample cost in all: its maps read and arming (last
    // collect), its faults (estimated), its harvest.
    budget_.settle(harvested, found,
                   last_arm_ns_ + static_cast<double>(found) * costs_.fire_ns +
                       static_cast<double>(t_harvest - t0));

    // Size the next sample: everything it costs within the budget's share
    // of the time (or the fixed count asked for).
    const std::int64_t now = fault_detail::mono_ns();
    const double epoch_ns = budget.epoch_ns > 0    ? static_cast<double>(budget.epoch_ns)
                            : last_collect_ns_ > 0 ? static_cast<double>(now - last_collect_ns_)
                                                   : 0.0;
    last_collect_ns_ = now;
    std::uint64_t want = opt_.max_armed;
    double allowance = 0;
    if (opt_.pages_per_epoch > 0) {
      want = opt_.pages_per_epoch;
    } else if (budget.cpu_fraction > 0 && epoch_ns > 0) {
      allowance = budget.cpu_fraction * epoch_ns;
      // Nothing measured yet (the calibration failed): a small sample to learn from.
      want = costs_.per_sample_ns() > 0 ? budget_.plan(costs_, allowance) : 8;
    }

    // Arm the next sample.
    const std::int64_t t_maps = detail::thread_cpu_ns();
    absl::Status maps_status = maps_.read();
    const std::int64_t t_arm = detail::thread_cpu_ns();
    if (maps_status.ok()) learn(costs_.maps_ns, static_cast<double>(t_arm - t_maps));
    if (!maps_status.ok()) {
      ++errors;
      err = std::string(maps_status.message());
    } else if (!ranges.empty() && want > 0) {
      long room = (max_maps_ - static_cast<long>(maps_.size()) - 1024) / 2;
      std::uint64_t cap = std::min<std::uint64_t>(
          {want, opt_.max_armed, budget.max_pages ? budget.max_pages : opt_.max_armed});
      cap = std::min<std::uint64_t>(cap, room > 0 ? static_cast<std::uint64_t>(room) : 0);
      std::vector<std::uint64_t> units(ranges.size(), 0);
      std::uint64_t total = 0;
      for (std::size_t i = 0; i < ranges.size(); ++i) {
        const TrackedRange& r = ranges[i];
        if ((r.granularity != kPageSize && r.granularity != kHugePageSize) || r.end <= r.begin) {
          ++skipped;
          continue;
        }
        total += units[i] = (r.end - r.begin) / r.granularity;
      }
      const std::uint32_t k = fault_group_pages(opt_.group_pages);
      const std::size_t group_bytes = std::size_t{k} * kPageSize;
      fault_detail::g_table.group_bytes.store(group_bytes, std::memory_order_relaxed);
      std::uint64_t armed_units = 0;  // for the inclusion probability, below
      auto below = [this](std::uint64_t n) {
        return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng_);
      };
      start_ = draw_stratified(units, cap, start_, below, [&](std::size_t ri, std::uint64_t u) {
        const TrackedRange& r = ranges[ri];
        const bool huge = r.granularity == kHugePageSize;
        std::size_t unit = huge ? kHugePageSize : kPageSize;
        std::uintptr_t page = r.begin + u * unit;
        const Vma* v = maps_.find(page);
        if (v == nullptr || v->prot == PROT_NONE || (v->prot & PROT_READ) == 0) {
          ++skipped;  // unmapped, or already inaccessible (the application's)
          return true;
        }
        if (huge && (v->begin > page || v->end < page + unit)) {
          ++skipped;  // the unit spans mappings: not one huge page
          return true;
        }
        // The page's aligned group, if the range and one mapping hold it whole.
        const std::uintptr_t g = page & ~std::uintptr_t{group_bytes - 1};
        if (!huge && k > 1 && g >= r.begin && g + group_bytes <= r.end && v->begin <= g &&
            v->end >= g + group_bytes) {
          page = g;
          unit = group_bytes;
        }
        if (fault_detail::find(page) != nullptr) return true;  // drawn twice
        if (!insert(page, v->prot, huge, unit == group_bytes && k > 1 ? k : 1)) return false;
        if (::mprotect(reinterpret_cast<void*>(page), unit, PROT_NONE) != 0) {
          ++errors;
          err = absl::StrCat("mprotect(PROT_NONE) of page 0x", absl::Hex(page), ": ",
                             std::strerror(errno));
          kill(page);
          return true;
        }
        mark_armed(page);
        armed_.push_back(page);
        ++sampled;
        armed_units += unit == group_bytes && k > 1 ? k : 1;
        return !(budget.max_ns > 0 && (sampled & 63) == 0 &&
                 detail::thread_cpu_ns() - t0 > budget.max_ns);
      });
      // The share of the units watched: what was armed, not what was drawn
      // (draws landing in a group already armed, or skipped, watch nothing).
      inclusion_ =
          total > 0 ? std::min(1.0, static_cast<double>(armed_units) / static_cast<double>(total))
                    : 0.0;
      if (sampled > 0)
        learn(costs_.arm_ns,
              static_cast<double>(detail::thread_cpu_ns() - t_arm) / static_cast<double>(sampled));
    }
    last_arm_ns_ = static_cast<double>(detail::thread_cpu_ns() - t_maps);
    armed_at_ns_ = fault_detail::mono_ns();
    std::int64_t dt = detail::thread_cpu_ns() - t0;
    absl::MutexLock l(&mu_);
    stats_.add_collect(dt,
                       {.sampled = sampled,
                        .found = found,
                        .written = written,
                        .skipped = skipped,
                        .errors = errors},
                       err);
    stats_.budget_ns = static_cast<std::uint64_t>(allowance);
    stats_.ns_per_sample = static_cast<std::uint64_t>(costs_.per_sample_ns(budget_.p_fire));
    stats_.last_sampled = sampled;
    stats_.app_ns += static_cast<std::uint64_t>(static_cast<double>(found) * costs_.fire_ns);
    return absl::OkStatus();
  }

  // What this source estimates one sample's parts cost here (its own
  // measurements; zero until measured). Collecting thread.
  const FaultSampleCosts& costs() const { return costs_; }

  // Restores every armed page that has not fired (unless the application
  // changed or unmapped it) and forgets the fired ones without reporting.
  void disarm() override {
    std::uint64_t found = 0, written = 0, skipped = 0, errors = 0;
    std::string err;
    harvest(nullptr, found, written, skipped, errors, err, nullptr);
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
    // Ours already (an earlier source's): keep it and the handler it chains to.
    if (!handler_is_ours()) {
      if (::sigaction(SIGSEGV, nullptr, &g.prev) != 0 || ::sigaction(SIGSEGV, &sa, nullptr) != 0)
        return absl::InternalError(
            absl::StrCat("fault sampling: sigaction(SIGSEGV): ", std::strerror(errno)));
      g.installed.store(true);
    }
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

  // Inserts unit `page` (a page, a 2 MiB unit, or the base of a group of
  // `pages` 4 KiB pages, a power of two <= 16) as being armed: mark_armed() once
  // it is PROT_NONE. Not armed before: a late fault from an earlier epoch
  // would take the page, still accessible, for one the application changed.
  bool insert(std::uintptr_t page, int prot, bool huge, std::uint32_t pages = 1) {
    const auto log2 = static_cast<std::uintptr_t>(std::countr_zero(pages));
    for (std::size_t i = fault_detail::hash(page), n = 0; n < fault_detail::Table::kSlots;
         i = (i + 1) & (fault_detail::Table::kSlots - 1), ++n) {
      auto& s = fault_detail::g_table.slot[i];
      if (s.load(std::memory_order_relaxed) == 0) {
        s.store(page | fault_detail::kArming |
                    (huge ? std::uintptr_t{fault_detail::kHuge} : std::uintptr_t{0}) |
                    (static_cast<std::uintptr_t>(prot & 7) << fault_detail::kProtShift) |
                    (log2 << fault_detail::kGroupShift),
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
  // Marks `page`'s slot armed, now that it is PROT_NONE (unless a handler
  // found it PROT_NONE and fired it already).
  void mark_armed(std::uintptr_t page) {
    fault_detail::g_table.generation.fetch_add(1, std::memory_order_release);
    if (auto* s = fault_detail::find(page)) {
      std::uintptr_t v = s->load(std::memory_order_relaxed);
      if ((v & fault_detail::kStateMask) == fault_detail::kArming)
        s->compare_exchange_strong(v, (v & ~fault_detail::kStateMask) | fault_detail::kArmed,
                                   std::memory_order_acq_rel);
    }
  }

  // Reports fired pages to `sink` (if any), disarms the rest, empties the
  // table. Only the collecting thread inserts, so emptying it is safe: a
  // handler that misses a slot retries its access once.
  void harvest(HotnessSink* sink, std::uint64_t& found, std::uint64_t& written,
               std::uint64_t& skipped, std::uint64_t& errors, std::string& err,
               std::uint64_t* unfired) {
    using namespace fault_detail;
    const std::int64_t now = mono_ns();
    SourceObservation o;
    o.weight = opt_.weight;
    o.inclusion = inclusion_;
    o.watched_ns = std::max<std::int64_t>(1, now - armed_at_ns_);
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
        const std::size_t pages = (v & kHuge) != 0 ? 1 : unit_size(v) / kPageSize;
        const std::size_t step = (v & kHuge) != 0 ? unit_size(v) : kPageSize;
        if (st == kFired) {
          ++found;
          if ((v & kWritten) != 0) ++written;
          if (sink != nullptr) {
            const auto slot = static_cast<std::size_t>(s - g_table.slot);
            const std::int64_t at = g_table.fired_at[slot].load(std::memory_order_relaxed);
            const std::uintptr_t hit =
                pages > 1 ? g_table.fired_page[slot].load(std::memory_order_relaxed) : page;
            const std::int64_t lat = std::clamp<std::int64_t>(at - armed_at_ns_, 0, o.watched_ns);
            SourceObservation q = o;
            for (std::size_t i = 0; i < pages; ++i) {
              // The page that faulted carries the group's latency; the others
              // were watched until then, untouched.
              q.page = page + i * step;
              q.accessed = q.page == hit;
              q.written = q.accessed && (v & kWritten) != 0;
              q.latency_ns = q.accessed ? lat : -1;
              q.watched_ns = q.accessed ? o.watched_ns : std::max<std::int64_t>(1, lat);
              q.watch_cut = !q.accessed;
              sink->observe(q);
            }
          }
          break;
        }
        if (st == kArmed) {
          if (!s->compare_exchange_weak(v, (v & ~kStateMask) | kDisarming,
                                        std::memory_order_acq_rel))
            continue;
          if (unfired != nullptr) ++*unfired;
          if (sink != nullptr) {
            o.accessed = o.written = false;
            o.latency_ns = -1;
            for (std::size_t i = 0; i < pages; ++i) {
              o.page = page + i * step;
              sink->observe(o);
            }
          }
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
    // Empty the table (dead slots too), the restores counted first.
    g_table.generation.fetch_add(1, std::memory_order_release);
    for (auto& s : g_table.slot) s.store(0, std::memory_order_release);
    armed_.clear();
  }

  // Moves a cost estimate a quarter of the way to a new measurement (the
  // first one replaces it).
  static void learn(double& estimate, double measured) {
    estimate = estimate <= 0 ? measured : estimate + 0.25 * (measured - estimate);
  }
  // The fault's cost on the application's thread: the kernel's part (fault
  // entry, signal delivery and return), measured once by calibrate(), plus
  // the handler's own time, which the handler measures at every fault.
  void learn_fire_cost() {
    auto& g = fault_detail::g_table;
    const std::uint64_t fired = g.fired.load(std::memory_order_relaxed);
    const std::uint64_t hns = g.handler_ns.load(std::memory_order_relaxed);
    if (fired > seen_fired_ && hns >= seen_handler_ns_)
      learn(costs_.fire_ns, fire_kernel_ns_ + static_cast<double>(hns - seen_handler_ns_) /
                                                  static_cast<double>(fired - seen_fired_));
    seen_fired_ = fired;
    seen_handler_ns_ = hns;
  }
  // Times a few faults on a scratch page (arm, touch, the handler restores
  // it) on this thread: the first estimates of arming and of a fault's whole
  // cost, before any sample was taken. Once, at install; ~0.2 ms.
  void calibrate() {
    auto& g = fault_detail::g_table;
    void* p =
        ::mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    auto* byte = static_cast<volatile char*>(p);
    *byte = 1;  // populate
    const auto page = reinterpret_cast<std::uintptr_t>(p);
    const std::uint64_t fired0 = g.fired.load(), handler0 = g.handler_ns.load();
    double arm = 0, fire = 0;
    int n = 0;
    for (int i = 0; i < 4; ++i) {
      if (!insert(page, PROT_READ | PROT_WRITE, false)) break;
      const std::int64_t a0 = detail::thread_cpu_ns();
      const bool ok = ::mprotect(p, kPageSize, PROT_NONE) == 0;
      if (ok) mark_armed(page);
      const std::int64_t a1 = detail::thread_cpu_ns();
      if (ok) (void)*byte;  // faults; the handler restores the page
      const std::int64_t a2 = detail::thread_cpu_ns();
      if (auto* s = fault_detail::find(page)) s->store(0, std::memory_order_release);
      if (!ok) break;
      arm += static_cast<double>(a1 - a0);
      fire += static_cast<double>(a2 - a1);
      ++n;
    }
    ::munmap(p, kPageSize);
    const std::uint64_t fired = g.fired.load() - fired0, handler = g.handler_ns.load() - handler0;
    g.fired.fetch_sub(fired);  // not the application's faults
    g.handler_ns.fetch_sub(handler);
    seen_fired_ = g.fired.load();
    seen_handler_ns_ = g.handler_ns.load();
    if (n == 0) return;
    costs_.arm_ns = costs_.disarm_ns = arm / n;
    costs_.fire_ns = fire / n;
    fire_kernel_ns_ = std::max(
        0.0, costs_.fire_ns -
                 (fired > 0 ? static_cast<double>(handler) / static_cast<double>(fired) : 0.0));
  }

  FaultSourceOptions opt_;
  FaultSampleCosts costs_;
  double fire_kernel_ns_ = 0;
  std::uint64_t seen_fired_ = 0, seen_handler_ns_ = 0;
  std::int64_t last_collect_ns_ = 0, armed_at_ns_ = 0;
  double inclusion_ = 0;
  FaultBudget budget_;
  double last_arm_ns_ = 0;  // CPU of the last maps read and arming
  std::mt19937_64 rng_;
  ProcMaps maps_;
  long max_maps_ = 65530;
  double start_ = 0;  // draw_stratified()'s next start
  std::vector<std::uintptr_t> armed_;
  bool installed_ = false;  // our handler was installed by this source
  bool stopped_ = false;
  absl::Status stopped_status_;
  mutable absl::Mutex mu_;
  HotnessSourceStats stats_;
};

}  // namespace tierkit::source
