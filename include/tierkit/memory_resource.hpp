// tierkit/memory_resource.hpp: std::pmr memory resources whose memory lives on
// a chosen memory tier. TierMemoryResource reserves large arenas through the
// Backend, binds each arena once to the tier's NUMA nodes and carves
// page-granular chunks out of them; an ArenaObserver (the tiering engine) is
// told about every arena so it can track and migrate it as a region. On top,
// tier_resource(Tier) gives process-wide, pooled resources per tier, which is
// what tiered_allocator (allocator.hpp) uses. Layer 2: includes backend.hpp.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/config.h"
#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tierkit/backend.hpp"
#include "tierkit/backend/linux.hpp"
#include "tierkit/common.hpp"
#include "tierkit/detail/mutex.hpp"
#include "tierkit/topology.hpp"

#ifdef ABSL_HAVE_ADDRESS_SANITIZER
#include <sanitizer/asan_interface.h>
#endif

namespace tierkit {

namespace detail {
// Under AddressSanitizer, free chunks are poisoned so use-after-free is
// caught, and reused chunks unpoisoned so poisoning left by a container
// (absl's raw_hash_set poisons empty slots) does not outlive the chunk.
// No-ops otherwise.
inline void asan_poison(const void* p, std::size_t n) {
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
  ASAN_POISON_MEMORY_REGION(p, n);
#else
  (void)p;
  (void)n;
#endif
}
inline void asan_unpoison(const void* p, std::size_t n) {
#ifdef ABSL_HAVE_ADDRESS_SANITIZER
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
  (void)p;
  (void)n;
#endif
}

// InvalidArgument unless `alignment` is a power of two, as std::pmr requires.
inline absl::Status check_alignment(std::size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("alignment ", alignment, " is not a power of two"));
  return absl::OkStatus();
}

// What the exception being handled says; call only inside a catch block.
inline std::string current_exception_text() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}
}  // namespace detail

// Receives arena lifetime events from a TierMemoryResource; the tiering engine
// implements it to register arenas as regions. Callbacks run on the thread
// that mapped or unmapped the arena, without the resource's state lock held,
// in the order the events happened; events of one resource never run
// concurrently. A callback may read the resource's counters and may allocate
// from the TierMemoryResource itself (a nested event is then delivered from
// inside it).
//
// NOTE: a callback must not allocate through a pool over the same resource,
// such as a TierPoolResource, or tier_resource(t) / tiered_allocator(t) when
// observing tier_arena(t): the event may fire while libstdc++'s pool holds
// its lock to refill from the resource, and the nested pool call then fails
// (std::system_error, EDEADLK).
//
// Exceptions: if on_arena_mapped() throws while allocate() maps an arena, the
// arena is unmapped again (with no on_arena_unmapped() call), last_error()
// records why, and the exception propagates out of allocate() or
// try_allocate(); the resource is as before the call. If it throws in
// set_observer(), the arenas already reported are reported unmapped, no
// observer is set and the exception propagates. An exception from
// on_arena_unmapped() is caught and recorded in last_error(), and the arena is
// unmapped all the same: deallocate() and the destructor cannot throw.
class ArenaObserver {
 public:
  virtual ~ArenaObserver() = default;
  // `bytes` at `base` were mapped and bound to `nodes`. Pages are not
  // necessarily faulted in yet.
  virtual void on_arena_mapped(void* base, std::size_t bytes, const NodeSet& nodes) = 0;
  // The arena at `base` is about to be unmapped: it is still mapped during
  // the call and will be unmapped right after it returns.
  virtual void on_arena_unmapped(void* base, std::size_t bytes) = 0;
};

// Options of TierMemoryResource::create().
enum class HugePages { kAuto, kOn, kOff };

struct TierResourceOptions {
  // Nodes every arena is bound to. Must be non-empty; each node must exist for
  // the backend.
  NodeSet nodes;
  // Memory policy of the arenas.
  BindMode mode = BindMode::kBind;
  // Size of a regular arena: a positive multiple of kHugePageSize. Requests
  // larger than half of it get a dedicated arena of their own.
  std::size_t arena_bytes = 64 << 20;
  // Transparent huge pages on every arena (madvise(MADV_HUGEPAGE)): kAuto
  // (default) when the system allows THP (Backend::thp_mode() is "madvise"
  // or "always"), kOn always, kOff never (arenas keep MADV_NOHUGEPAGE).
  // Failure to advise is not an error; see huge_pages_status().
  HugePages huge_pages = HugePages::kAuto;
  // Where memory comes from; null means LinuxBackend::instance(). Must
  // outlive the resource.
  Backend* backend = nullptr;
  // Told about every arena mapped and unmapped; may be null. Must outlive the
  // resource or be replaced with set_observer() first.
  ArenaObserver* observer = nullptr;
  // Cap on reserved (mapped) bytes; 0 means no limit. A request that would
  // need more fails with ResourceExhausted (std::bad_alloc from allocate()).
  std::uint64_t limit_bytes = 0;
};

// The std::bad_alloc thrown by tierkit's resources and allocators: what()
// carries the reason (the absl::Status message). Copying never throws.
class TierAllocError : public std::bad_alloc {
 public:
  explicit TierAllocError(const absl::Status& status)
      : code_(status.code()), message_(std::string(status.ToString())) {}
  const char* what() const noexcept override { return message_.what(); }
  // The status code of the failure (ResourceExhausted, InvalidArgument...).
  absl::StatusCode code() const noexcept { return code_; }

 private:
  absl::StatusCode code_;
  std::runtime_error message_;  // reference-counted string: nothrow copy
};

class TierPoolResource;

// A memory resource that hands out memory bound to a fixed set of NUMA nodes.
//
// Memory is reserved in arenas (one Backend::map + one Backend::bind each, no
// page migration), optionally advised for huge pages, and carved into
// kPageSize-granular, at least page-aligned chunks with first-fit over an
// address-ordered free list that coalesces neighbours. Small objects should
// go through a pool on top (tier_resource() does that). Regular arenas are
// kept for reuse until release_unused() or destruction; a request larger than
// half an arena gets a dedicated arena that is unmapped when it is freed.
//
// Thread-safe. allocate() costs O(free blocks) under one detail::Mutex when a
// chunk is free, plus three syscalls (map, bind, and advise with huge pages)
// outside the lock when a new arena is needed; deallocate() costs O(log
// blocks + bytes / 256 KiB), or one munmap for a dedicated arena. Syscalls
// and observer callbacks run outside the state lock. Each regular arena
// carries a bitmap of where live chunks start (one bit per page: 2 KiB of
// heap per 64 MiB arena).
//
// NOTE: a deallocate() that does not match one live chunk exactly (freed
// twice, wrong size, a pointer into a chunk) is refused: nothing is freed
// and last_error() says InvalidArgument and why. The memory stays allocated
// rather than being handed out twice.
class TierMemoryResource final : public std::pmr::memory_resource {
 public:
  // One mapped arena, as reported by arenas().
  struct ArenaSpan {
    void* base = nullptr;
    std::size_t bytes = 0;
    bool dedicated = false;  // holds exactly one large chunk
  };

  // Validates `options` and creates a resource; maps nothing yet. Errors are
  // InvalidArgument naming the option and why. Costs one
  // Backend::node_memory call per node.
  static absl::StatusOr<std::unique_ptr<TierMemoryResource>> create(TierResourceOptions options) {
    if (options.backend == nullptr) options.backend = &LinuxBackend::instance();
    if (absl::Status s = options.nodes.check("TierResourceOptions.nodes"); !s.ok()) return s;
    if (options.nodes.empty())
      return absl::InvalidArgumentError(
          "TierResourceOptions.nodes is empty: name the NUMA node(s) the arenas are bound to");
    if (options.arena_bytes == 0 || options.arena_bytes % kHugePageSize != 0)
      return absl::InvalidArgumentError(
          absl::StrCat("TierResourceOptions.arena_bytes is ", options.arena_bytes,
                       ", not a positive multiple of 2 MiB (", kHugePageSize,
                       "): arenas are bound and huge-page backed in whole 2 MiB units"));
    if (options.limit_bytes != 0 && options.limit_bytes < kPageSize)
      return absl::InvalidArgumentError(absl::StrCat("TierResourceOptions.limit_bytes is ",
                                                     options.limit_bytes, ", less than one page (",
                                                     kPageSize, "); use 0 for no limit"));
    for (NodeId n : options.nodes.to_vector()) {
      absl::StatusOr<NodeMemory> mem = options.backend->node_memory(n);
      if (!mem.ok())
        return absl::InvalidArgumentError(
            absl::StrCat("TierResourceOptions.nodes contains node ", n, ", which the ",
                         options.backend->name(), " backend cannot use: ", mem.status().message()));
    }
    return std::unique_ptr<TierMemoryResource>(new TierMemoryResource(std::move(options)));
  }

  // Reports every arena to the observer as unmapped, then unmaps it. Chunks
  // still allocated become invalid (as with std::pmr pool resources).
  ~TierMemoryResource() override {
    std::vector<ArenaSpan> spans;
    ArenaObserver* obs = nullptr;
    {
      NotifyGuard guard(this);
      {
        detail::MutexLock lock(&mu_);
        spans = arenas_locked();
        obs = observer_;
        arenas_.clear();
        free_.clear();
      }
      for (const ArenaSpan& s : spans) notify_unmapped(obs, s.base, s.bytes);
    }
    for (const ArenaSpan& s : spans) {
      detail::asan_unpoison(s.base, s.bytes);
      backend_->unmap(s.base, s.bytes).IgnoreError();
    }
  }

  TierMemoryResource(const TierMemoryResource&) = delete;
  TierMemoryResource& operator=(const TierMemoryResource&) = delete;

  // Like allocate(), but returns the reason on failure instead of throwing:
  // InvalidArgument (alignment not a power of two), ResourceExhausted (limit
  // reached, mmap failed, a kBind node is full) or the bind error. Failures
  // are also recorded as last_error(). Free with deallocate().
  absl::StatusOr<void*> try_allocate(std::size_t bytes,
                                     std::size_t alignment = alignof(std::max_align_t)) {
    if (absl::Status s = detail::check_alignment(alignment); !s.ok()) return record(std::move(s));
    if (bytes > kMaxRequest || alignment > kMaxRequest)
      return record(absl::ResourceExhaustedError(absl::StrCat(
          "request of ", bytes, " bytes aligned to ", alignment, " is too large", where())));
    const std::size_t size = chunk_size(bytes);
    const std::size_t align = alignment < kPageSize ? kPageSize : alignment;
    const std::size_t worst = size + (align - kPageSize);
    const bool dedicated = worst > arena_bytes_ / 2;
    if (!dedicated) {
      std::optional<std::uintptr_t> p;
      {
        detail::MutexLock lock(&mu_);
        p = carve_locked(size, align);
      }
      if (p.has_value()) {
        detail::asan_unpoison(reinterpret_cast<void*>(*p), size);
        return reinterpret_cast<void*>(*p);
      }
    }
    return grow(bytes, size, align, dedicated);
  }

  // The most recent failure of any thread (OkStatus if none): the reason
  // behind a std::bad_alloc, or why a deallocate() was refused. Takes the
  // lock.
  absl::Status last_error() const {
    detail::MutexLock lock(&mu_);
    return last_error_;
  }
  // Whether arenas are advised for transparent huge pages (and tracked as
  // 2 MiB units by ArenaRegions).
  bool huge_pages() const { return huge_; }
  // OkStatus, or the first madvise(MADV_HUGEPAGE) failure with huge_pages on.
  absl::Status huge_pages_status() const {
    detail::MutexLock lock(&mu_);
    return huge_status_;
  }

  // Bytes of all mapped arenas. Lock-free.
  std::uint64_t reserved_bytes() const { return reserved_.load(std::memory_order_relaxed); }
  // Bytes of chunks handed out and not yet freed (page-rounded). Lock-free.
  std::uint64_t used_bytes() const { return used_.load(std::memory_order_relaxed); }
  // Number of mapped arenas. Lock-free.
  std::size_t arena_count() const { return arena_count_.load(std::memory_order_relaxed); }
  // The mapped arenas, in address order. O(arenas) under the lock.
  std::vector<ArenaSpan> arenas() const {
    detail::MutexLock lock(&mu_);
    return arenas_locked();
  }
  // Whether `p` lies inside one of this resource's arenas. O(log arenas).
  bool owns(const void* p) const {
    detail::MutexLock lock(&mu_);
    return arena_of_locked(reinterpret_cast<std::uintptr_t>(p)) != arenas_.end();
  }

  // The options the resource was created with (constant; no lock).
  const NodeSet& nodes() const { return nodes_; }
  BindMode mode() const { return mode_; }
  Backend* backend() const { return backend_; }
  std::size_t arena_bytes() const { return arena_bytes_; }
  std::uint64_t limit_bytes() const { return limit_; }

  // Replaces the observer. Under the notification order, every mapped arena
  // is reported as unmapped to the old observer and as mapped to the new one,
  // so both see a consistent picture; after the call the old observer gets no
  // more events. O(arenas) callbacks. NOTE: if the new observer's
  // on_arena_mapped() throws, no observer is set and the exception propagates
  // (see ArenaObserver).
  void set_observer(ArenaObserver* observer) {
    NotifyGuard guard(this);
    std::vector<ArenaSpan> spans;
    ArenaObserver* old = nullptr;
    {
      detail::MutexLock lock(&mu_);
      old = observer_;
      if (old == observer) return;
      observer_ = observer;
      spans = arenas_locked();
    }
    for (const ArenaSpan& s : spans) notify_unmapped(old, s.base, s.bytes);
    if (observer == nullptr) return;
    std::size_t told = 0;
    try {
      for (; told < spans.size(); ++told)
        observer->on_arena_mapped(spans[told].base, spans[told].bytes, nodes_);
    } catch (...) {
      const std::string what = detail::current_exception_text();
      for (std::size_t i = 0; i < told; ++i)
        notify_unmapped(observer, spans[i].base, spans[i].bytes);
      detail::MutexLock lock(&mu_);
      observer_ = nullptr;
      last_error_ =
          absl::AbortedError(absl::StrCat("set_observer: ArenaObserver::on_arena_mapped threw (",
                                          what, "); no observer is set", where()));
      throw;
    }
  }
  // The current observer (may be null).
  ArenaObserver* observer() const {
    detail::MutexLock lock(&mu_);
    return observer_;
  }

  // Unmaps regular arenas that have no chunk in use; returns the bytes
  // released. O(arenas + free blocks) under the lock, one munmap per arena.
  std::uint64_t release_unused() {
    std::vector<ArenaSpan> spans;
    {
      NotifyGuard guard(this);
      ArenaObserver* obs = nullptr;
      {
        detail::MutexLock lock(&mu_);
        obs = observer_;
        for (auto it = arenas_.begin(); it != arenas_.end();) {
          if (it->second.dedicated || it->second.used != 0) {
            ++it;
            continue;
          }
          spans.push_back({reinterpret_cast<void*>(it->first), it->second.bytes, false});
          free_.erase(it->first);  // coalesced: one block covers the whole arena
          forget_arena_locked(it->second.bytes);
          it = arenas_.erase(it);
        }
      }
      for (const ArenaSpan& s : spans) notify_unmapped(obs, s.base, s.bytes);
    }
    std::uint64_t released = 0;
    for (const ArenaSpan& s : spans) {
      released += s.bytes;
      detail::asan_unpoison(s.base, s.bytes);
      absl::Status st = backend_->unmap(s.base, s.bytes);
      if (!st.ok()) record(st).IgnoreError();
    }
    return released;
  }

 private:
  // Requests beyond this are refused outright (no overflow in rounding).
  static constexpr std::size_t kMaxRequest = std::size_t{1} << 52;
  friend class TierPoolResource;  // records its errors in last_error()

  struct Arena {
    std::size_t bytes = 0;
    std::size_t used = 0;
    bool dedicated = false;
    std::uintptr_t chunk = 0;  // dedicated: its one chunk
    // Regular: one bit per page, set where a live chunk starts, so a double
    // or wrong-size deallocate is refused instead of corrupting the free list.
    std::vector<std::uint64_t> starts;
  };
  using ArenaMap = std::map<std::uintptr_t, Arena>;

  // Serialises arena events (state change + callback) without holding mu_
  // during callbacks; reentrant so a callback may trigger a nested event.
  class NotifyGuard {
   public:
    explicit NotifyGuard(TierMemoryResource* r) : r_(r) {
      if (r_->notify_owner_.load(std::memory_order_relaxed) == std::this_thread::get_id()) return;
      r_->notify_mu_.lock();
      r_->notify_owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
      owner_ = true;
    }
    ~NotifyGuard() {
      if (!owner_) return;
      r_->notify_owner_.store(std::thread::id(), std::memory_order_relaxed);
      r_->notify_mu_.unlock();
    }
    NotifyGuard(const NotifyGuard&) = delete;
    NotifyGuard& operator=(const NotifyGuard&) = delete;

   private:
    TierMemoryResource* r_;
    bool owner_ = false;
  };

  explicit TierMemoryResource(TierResourceOptions o)
      : nodes_(o.nodes),
        mode_(o.mode),
        arena_bytes_(o.arena_bytes),
        huge_(o.huge_pages == HugePages::kOn ||
              (o.huge_pages == HugePages::kAuto && o.backend->thp_mode() != ThpMode::kNever)),
        backend_(o.backend),
        limit_(o.limit_bytes),
        observer_(o.observer) {}

  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    absl::StatusOr<void*> p = try_allocate(bytes, alignment);
    if (!p.ok()) throw TierAllocError(p.status());
    return *p;
  }

  void do_deallocate(void* p, std::size_t bytes, std::size_t /*alignment*/) override {
    if (p == nullptr) return;
    const auto addr = reinterpret_cast<std::uintptr_t>(p);
    const std::size_t size = chunk_size(bytes);
    {
      detail::MutexLock lock(&mu_);
      auto it = arena_of_locked(addr);
      if (it == arenas_.end()) {
        last_error_ = absl::InvalidArgumentError(absl::StrCat(
            "deallocate of 0x", absl::Hex(addr), ", which is not in any arena", where()));
        return;
      }
      if (!it->second.dedicated) {
        absl::Status freed = free_locked(it, addr, size);
        if (!freed.ok())
          last_error_ = absl::InvalidArgumentError(
              absl::StrCat("deallocate of 0x", absl::Hex(addr), " (", bytes,
                           " bytes) ignored: ", freed.message(), where()));
        return;
      }
    }
    // A dedicated arena goes back to the backend: report, then unmap.
    void* base = nullptr;
    std::size_t arena = 0;
    {
      NotifyGuard guard(this);
      ArenaObserver* obs = nullptr;
      {
        detail::MutexLock lock(&mu_);
        auto it = arena_of_locked(addr);  // again: another thread may have freed it meanwhile
        if (it == arenas_.end() || addr != it->second.chunk || size != it->second.used) {
          last_error_ = absl::InvalidArgumentError(absl::StrCat(
              "deallocate of 0x", absl::Hex(addr), " (", bytes, " bytes) ignored: ",
              it == arenas_.end() ? std::string("its dedicated arena was already freed")
                                  : absl::StrCat("its dedicated arena holds one ", it->second.used,
                                                 "-byte chunk at 0x", absl::Hex(it->second.chunk),
                                                 " (wrong size or pointer)"),
              where()));
          return;
        }
        base = reinterpret_cast<void*>(it->first);
        arena = it->second.bytes;
        used_.fetch_sub(it->second.used, std::memory_order_relaxed);
        forget_arena_locked(arena);
        arenas_.erase(it);
        obs = observer_;
      }
      notify_unmapped(obs, base, arena);
    }
    detail::asan_unpoison(base, arena);
    absl::Status st = backend_->unmap(base, arena);
    if (!st.ok()) record(st).IgnoreError();
  }

  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  // Page-rounded; saturates past kMaxRequest so a bogus deallocate size
  // cannot wrap to a small one.
  static std::size_t chunk_size(std::size_t bytes) {
    if (bytes > kMaxRequest) return kMaxRequest + kPageSize;
    return static_cast<std::size_t>(align_up(bytes == 0 ? 1 : bytes, kPageSize));
  }

  // " (TierMemoryResource on nodes N)": context for error messages.
  std::string where() const {
    return absl::StrCat(" (TierMemoryResource on nodes ", nodes_.to_string(), ")");
  }

  absl::Status record(absl::Status s) {
    detail::MutexLock lock(&mu_);
    last_error_ = s;
    return s;
  }

  // Tells `obs` (may be null) that an arena goes away. An exception from it
  // is recorded, not propagated: the callers unmap regardless and most of
  // them cannot throw.
  void notify_unmapped(ArenaObserver* obs, void* base, std::size_t bytes) noexcept {
    if (obs == nullptr) return;
    try {
      obs->on_arena_unmapped(base, bytes);
    } catch (...) {
      try {
        record(absl::AbortedError(absl::StrCat(
                   "ArenaObserver::on_arena_unmapped threw (", detail::current_exception_text(),
                   ") for the arena at 0x", absl::Hex(reinterpret_cast<std::uintptr_t>(base)),
                   "; it was unmapped anyway", where())))
            .IgnoreError();
      } catch (...) {  // no memory for the message: the event is still done
      }
    }
  }

  // Maps, advises and binds a new arena holding a `size`-byte chunk aligned
  // to `align`, installs it and returns the chunk.
  absl::StatusOr<void*> grow(std::size_t requested, std::size_t size, std::size_t align,
                             bool dedicated) {
    const std::size_t worst = size + (align - kPageSize);
    const std::size_t unit = huge_ ? kHugePageSize : kPageSize;
    std::size_t bytes = dedicated ? static_cast<std::size_t>(align_up(worst, unit)) : arena_bytes_;
    {
      detail::MutexLock lock(&mu_);
      const std::uint64_t reserved = reserved_.load(std::memory_order_relaxed);
      if (limit_ != 0 && reserved + bytes > limit_) {
        // Shrink a regular arena to what the limit leaves, if the chunk fits.
        const std::uint64_t room =
            reserved >= limit_ ? 0
                               : align_down(static_cast<std::uintptr_t>(limit_ - reserved), unit);
        if (dedicated || room < worst) {
          last_error_ = absl::ResourceExhaustedError(
              absl::StrCat("cannot allocate ", requested, " bytes: a new ", bytes,
                           "-byte arena would take reserved bytes from ", reserved, " to ",
                           reserved + bytes, ", over limit_bytes ", limit_, " (",
                           used_.load(std::memory_order_relaxed), " bytes in use)", where()));
          return last_error_;
        }
        bytes = static_cast<std::size_t>(room);
      }
      reserved_.fetch_add(bytes, std::memory_order_relaxed);  // held while we map
    }
    auto unreserve = [&](absl::Status s) {
      detail::MutexLock lock(&mu_);
      reserved_.fetch_sub(bytes, std::memory_order_relaxed);
      last_error_ = std::move(s);
      return last_error_;
    };
    absl::StatusOr<void*> mapped = backend_->map(bytes);
    if (!mapped.ok())
      return unreserve(absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", requested, " bytes: mapping a ", bytes,
                       "-byte arena failed: ", mapped.status().message(), where())));
    void* base = *mapped;
    if (huge_) {
      absl::Status st = backend_->advise_huge(base, bytes);
      if (!st.ok()) {
        detail::MutexLock lock(&mu_);
        if (huge_status_.ok()) huge_status_ = st;
      }
    }
    absl::Status bound = backend_->bind(base, bytes, nodes_, mode_, /*move=*/false);
    if (!bound.ok()) {
      backend_->unmap(base, bytes).IgnoreError();
      return unreserve(absl::Status(
          bound.code(), absl::StrCat("cannot allocate ", requested, " bytes: binding a ", bytes,
                                     "-byte arena failed: ", bound.message(), where())));
    }
    const auto b = reinterpret_cast<std::uintptr_t>(base);
    const auto chunk = static_cast<std::uintptr_t>(align_up(b, align));
    Arena installed{bytes, size, dedicated, dedicated ? chunk : 0, {}};
    if (!dedicated) {
      installed.starts.resize((bytes / kPageSize + 63) / 64);
      set_start(installed, chunk - b, true);
    }
    {
      NotifyGuard guard(this);
      ArenaObserver* obs = nullptr;
      {
        detail::MutexLock lock(&mu_);
        arenas_.emplace(b, std::move(installed));
        arena_count_.fetch_add(1, std::memory_order_relaxed);
        used_.fetch_add(size, std::memory_order_relaxed);
        obs = observer_;
      }
      // The arena's free blocks are listed only after the callback, so until
      // then it holds just this chunk and a throwing callback can be undone.
      if (obs != nullptr) {
        try {
          obs->on_arena_mapped(base, bytes, nodes_);
        } catch (...) {
          const std::string what = detail::current_exception_text();
          {
            detail::MutexLock lock(&mu_);
            arenas_.erase(b);
            used_.fetch_sub(size, std::memory_order_relaxed);
            forget_arena_locked(bytes);
            last_error_ = absl::AbortedError(absl::StrCat(
                "cannot allocate ", requested, " bytes: ArenaObserver::on_arena_mapped threw (",
                what, "); the new arena was unmapped", where()));
          }
          backend_->unmap(base, bytes).IgnoreError();
          throw;
        }
      }
      if (!dedicated) {
        detail::MutexLock lock(&mu_);
        if (chunk > b) free_.emplace(b, chunk - b);
        if (chunk + size < b + bytes) free_.emplace(chunk + size, b + bytes - (chunk + size));
      }
    }
    detail::asan_unpoison(reinterpret_cast<void*>(chunk), size);
    return reinterpret_cast<void*>(chunk);
  }

  // First fit over the free list. O(free blocks).
  std::optional<std::uintptr_t> carve_locked(std::size_t size, std::size_t align)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      const std::uintptr_t start = it->first;
      const std::uintptr_t end = start + it->second;
      const auto chunk = static_cast<std::uintptr_t>(align_up(start, align));
      if (chunk >= end || end - chunk < size) continue;
      free_.erase(it);
      if (chunk > start) free_.emplace(start, chunk - start);
      if (chunk + size < end) free_.emplace(chunk + size, end - (chunk + size));
      auto arena = arena_of_locked(chunk);
      arena->second.used += size;
      set_start(arena->second, chunk - arena->first, true);
      used_.fetch_add(size, std::memory_order_relaxed);
      return chunk;
    }
    return std::nullopt;
  }

  // Returns the chunk [addr, addr + size) of regular arena `arena` to the
  // free list, merging it with free neighbours in the same arena. Refuses
  // (InvalidArgument saying why, nothing changed) a range that is not exactly
  // one live chunk: a double or wrong-size deallocate. The free list is
  // address-ordered and a live chunk is followed by the arena's end, a free
  // block or another live chunk, so the checks are O(log blocks + size / 256 KiB).
  absl::Status free_locked(ArenaMap::iterator arena, std::uintptr_t addr, std::size_t size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Arena& a = arena->second;
    const std::uintptr_t base = arena->first;
    const std::uintptr_t end = addr + size;
    if ((addr - base) % kPageSize != 0 || !start_at(a, addr - base))
      return absl::InvalidArgumentError(
          "not the start of a live chunk (freed twice, or not returned by allocate())");
    if (end > base + a.bytes || end < addr)
      return absl::InvalidArgumentError(absl::StrCat("runs past the end of its arena at 0x",
                                                     absl::Hex(base + a.bytes), " (wrong size)"));
    if (a.used < size)
      return absl::InvalidArgumentError(
          absl::StrCat("more than the ", a.used, " bytes in use in its arena (wrong size)"));
    auto next = free_.lower_bound(addr);
    if (next != free_.begin() && std::prev(next)->first + std::prev(next)->second > addr)
      return absl::InvalidArgumentError(absl::StrCat(
          "overlaps the free block at 0x", absl::Hex(std::prev(next)->first), " (wrong size)"));
    if (next != free_.end() && next->first < end)
      return absl::InvalidArgumentError(
          absl::StrCat("overlaps the free block at 0x", absl::Hex(next->first), " (wrong size)"));
    const std::size_t covered = find_start(a, addr - base + kPageSize, size - kPageSize);
    if (covered < size - kPageSize)
      return absl::InvalidArgumentError(absl::StrCat(
          "covers the live chunk at 0x", absl::Hex(addr + kPageSize + covered), " (wrong size)"));
    if (end != base + a.bytes && !(next != free_.end() && next->first == end) &&
        !start_at(a, end - base))
      return absl::InvalidArgumentError("smaller than its chunk (wrong size)");

    set_start(a, addr - base, false);
    a.used -= size;
    used_.fetch_sub(size, std::memory_order_relaxed);
    detail::asan_poison(reinterpret_cast<void*>(addr), size);
    std::uintptr_t start = addr;
    if (next != free_.begin() && !arenas_.contains(addr)) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == addr) {
        start = prev->first;
        size += prev->second;
        free_.erase(prev);
      }
    }
    if (next != free_.end() && end == next->first && !arenas_.contains(next->first)) {
      size += next->second;
      free_.erase(next);
    }
    free_.emplace(start, size);
    return absl::OkStatus();
  }

  // The chunk-start bits of a regular arena, by byte offset (page-aligned).
  static bool start_at(const Arena& a, std::size_t offset) {
    const std::size_t page = offset / kPageSize;
    return page / 64 < a.starts.size() && ((a.starts[page / 64] >> (page % 64)) & 1) != 0;
  }
  static void set_start(Arena& a, std::size_t offset, bool on) {
    const std::size_t page = offset / kPageSize;
    const std::uint64_t bit = std::uint64_t{1} << (page % 64);
    a.starts[page / 64] = on ? a.starts[page / 64] | bit : a.starts[page / 64] & ~bit;
  }
  // Bytes from `offset` to the first chunk start in [offset, offset + bytes),
  // or `bytes` if there is none. O(bytes / 256 KiB).
  static std::size_t find_start(const Arena& a, std::size_t offset, std::size_t bytes) {
    const std::size_t first = offset / kPageSize;
    const std::size_t last = first + bytes / kPageSize;  // exclusive
    for (std::size_t page = first; page < last;) {
      std::uint64_t word = a.starts[page / 64] >> (page % 64);
      if (word != 0) {
        const std::size_t hit = page + static_cast<std::size_t>(std::countr_zero(word));
        return hit < last ? (hit - first) * kPageSize : bytes;
      }
      page = (page / 64 + 1) * 64;
    }
    return bytes;
  }

  ArenaMap::iterator arena_of_locked(std::uintptr_t addr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = arenas_.upper_bound(addr);
    if (it == arenas_.begin()) return arenas_.end();
    --it;
    return addr < it->first + it->second.bytes ? it : arenas_.end();
  }
  ArenaMap::const_iterator arena_of_locked(std::uintptr_t addr) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return const_cast<TierMemoryResource*>(this)->arena_of_locked(addr);
  }

  void forget_arena_locked(std::size_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    reserved_.fetch_sub(bytes, std::memory_order_relaxed);
    arena_count_.fetch_sub(1, std::memory_order_relaxed);
  }

  std::vector<ArenaSpan> arenas_locked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<ArenaSpan> out;
    out.reserve(arenas_.size());
    for (const auto& [base, a] : arenas_)
      out.push_back({reinterpret_cast<void*>(base), a.bytes, a.dedicated});
    return out;
  }

  const NodeSet nodes_;
  const BindMode mode_;
  const std::size_t arena_bytes_;
  const bool huge_;
  Backend* const backend_;
  const std::uint64_t limit_;

  // Lock order: notify_mu_ before mu_.
  std::mutex notify_mu_;
  std::atomic<std::thread::id> notify_owner_{};
  mutable detail::Mutex mu_;
  ArenaMap arenas_ ABSL_GUARDED_BY(mu_);
  std::map<std::uintptr_t, std::size_t> free_ ABSL_GUARDED_BY(mu_);  // regular arenas only
  ArenaObserver* observer_ ABSL_GUARDED_BY(mu_);
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  absl::Status huge_status_ ABSL_GUARDED_BY(mu_);
  // Written under mu_, read without it.
  std::atomic<std::uint64_t> reserved_{0};
  std::atomic<std::uint64_t> used_{0};
  std::atomic<std::size_t> arena_count_{0};
};

// ---------------------------------------------------------------------------
// Process-wide per-tier resources.

// Tiers tier_resource() serves: indices 0 .. kMaxTierResources - 1.
inline constexpr int kMaxTierResources = 8;

namespace detail {

// SmallBlocks: per-thread free lists of small blocks in front of the
// process-wide tier pools (tier_resource()), so that a node-based container
// (std::unordered_map, std::list, std::map) allocates and frees a node
// without a lock. Without it, each request took synchronized_pool_resource's
// reader lock twice, 40% of an unordered_map insert's time. Only for pools
// that live as long as the process: blocks carved here never go back to the
// pool; a thread's lists beyond a bound, and all of them when the thread
// exits, go to a depot per tier and size, from which any thread refills.
// Memory stays on the tier. Blocks of 8 .. 256 bytes (multiples of 8)
// aligned to at most 16: others take the pool's path.
//
// Costs: a request a thread's list holds is a thread_local access and a
// pointer pop; a miss takes a depot mutex, or carves a 4 KiB slab from the
// pool (one pool request). A thread keeps up to kListBytes of free blocks
// per size and tier, and kThreadBytes in all, so that a container freed
// and rebuilt by one thread reuses its own blocks: blocks passed between
// threads through the depot share cache lines (in a benchmark with two
// threads, small lists made each map 6x slower than std::allocator's).
// NOTE: deallocate must name the size allocate() got (as std::pmr
// requires): a block freed as another size class joins that class's list.
class SmallBlocks {
 public:
  static constexpr std::size_t kGranule = 8;
  static constexpr std::size_t kMinBytes = 2 * sizeof(void*);  // the link and the key
  static constexpr std::size_t kMaxBytes = 256;
  static constexpr std::size_t kMaxAlignment = 16;
  static constexpr std::size_t kSlabBytes = 4096;
  static constexpr std::size_t kListBytes = 256 << 10;
  static constexpr std::size_t kThreadBytes = 1 << 20;

  // Whether a pool block of `block` bytes, aligned to `alignment`, is
  // served here.
  static bool serves(std::size_t block, std::size_t alignment) {
    return block >= kMinBytes && block <= kMaxBytes && block % kGranule == 0 &&
           alignment <= kMaxAlignment;
  }
  // A block of `block` bytes (serves() is true) of tier `tier`, carving a
  // slab from `pool` when neither the thread's list nor the depot has one.
  static void* allocate(int tier, std::size_t block, std::pmr::memory_resource& pool) {
    Lists* lists = thread_lists();
    if (lists == nullptr) {  // the thread is exiting: the depot's, or the pool's
      Depot& d = depot(tier, block);
      std::lock_guard<std::mutex> lock(d.mu);
      if (d.blocks.head != nullptr) return d.blocks.pop(block);
      return pool.allocate(block, kMaxAlignment);
    }
    FreeList& l = lists->of(tier, block);
    if (l.head == nullptr) lists->bytes += refill(tier, block, l, pool);
    lists->bytes -= block;
    return l.pop(block);
  }
  // Returns a block allocate() gave (a block the pool gave while the thread
  // was exiting joins the lists all the same: memory of the same size).
  // False, and nothing done, if `p` is already free (freed twice): a free
  // block carries a key in its second word, cleared when it is handed out.
  static bool deallocate(int tier, void* p, std::size_t block) {
    if (is_free(p)) return false;
    Lists* lists = thread_lists();
    if (lists == nullptr) {
      Depot& d = depot(tier, block);
      std::lock_guard<std::mutex> lock(d.mu);
      d.blocks.push(p, block);
      return true;
    }
    FreeList& l = lists->of(tier, block);
    l.push(p, block);
    lists->bytes += block;
    if (l.count * block > kListBytes || lists->bytes > kThreadBytes)
      lists->bytes -= spill(tier, block, l, l.count / 2 + 1);
    return true;
  }
  // Free blocks of `block` bytes of tier `tier` in the depot (for tests).
  static std::size_t depot_blocks(int tier, std::size_t block) {
    Depot& d = depot(tier, block);
    std::lock_guard<std::mutex> lock(d.mu);
    return d.blocks.count;
  }

 private:
  static std::size_t per_slab(std::size_t block) { return kSlabBytes / block; }
  static std::size_t index(std::size_t block) { return block / kGranule - 1; }
  static constexpr std::size_t kClasses = kMaxBytes / kGranule;

  // A free block's second word: an address of this process's (so a
  // value no program writes on purpose) mixed with a constant.
  static std::uintptr_t free_key() {
    static const char here = 0;
    return reinterpret_cast<std::uintptr_t>(&here) ^ 0x9e3779b97f4a7c15ULL;
  }
  // Whether `p` is a free block (its key is set). Under ASan, reads its
  // first two words whether it is free (poisoned) or live.
  static bool is_free(void* p) {
    asan_unpoison(p, kMinBytes);
    const bool free = static_cast<std::uintptr_t*>(p)[1] == free_key();
    if (free) asan_poison(p, kMinBytes);
    return free;
  }
  // An intrusive list: each free block holds the next one's address and
  // the key in its first two words. Under ASan free blocks are poisoned,
  // but for those words while they are read or written.
  struct FreeList {
    void* head = nullptr;
    std::size_t count = 0;
    void push(void* p, std::size_t block) {
      asan_unpoison(p, kMinBytes);
      auto* w = static_cast<std::uintptr_t*>(p);
      w[0] = reinterpret_cast<std::uintptr_t>(head);
      w[1] = free_key();
      asan_poison(p, block);
      head = p;
      ++count;
    }
    void* pop(std::size_t block) {
      void* p = head;
      asan_unpoison(p, block);
      auto* w = static_cast<std::uintptr_t*>(p);
      head = reinterpret_cast<void*>(w[0]);
      w[1] = 0;
      --count;
      return p;
    }
  };
  struct Lists {
    FreeList lists[kMaxTierResources][kClasses];
    std::size_t bytes = 0;  // in all the lists
    FreeList& of(int tier, std::size_t block) { return lists[tier][index(block)]; }
    ~Lists();
  };
  struct Depot {
    std::mutex mu;
    FreeList blocks;
  };

  static Depot& depot(int tier, std::size_t block) {
    static Depot* const depots = new Depot[kMaxTierResources * kClasses];  // never destroyed
    return depots[static_cast<std::size_t>(tier) * kClasses + index(block)];
  }
  // The calling thread's lists; null once its thread_local storage is
  // being destroyed (a later allocation, from another thread_local's
  // destructor, takes the pool's or the depot's path).
  static Lists* thread_lists() {
    if (thread_gone()) return nullptr;
    thread_local Lists lists;
    return &lists;
  }
  static bool& thread_gone() {
    thread_local bool gone = false;  // trivially destructible: valid to the end
    return gone;
  }
  // Moves up to `n` blocks from `from` to `to`; returns their bytes.
  static std::size_t move(FreeList& from, FreeList& to, std::size_t n, std::size_t block) {
    std::size_t moved = 0;
    for (; moved < n && from.head != nullptr; ++moved) to.push(from.pop(block), block);
    return moved * block;
  }
  // Moves `n` blocks of `l` to the depot; returns their bytes.
  static std::size_t spill(int tier, std::size_t block, FreeList& l, std::size_t n) {
    Depot& d = depot(tier, block);
    std::lock_guard<std::mutex> lock(d.mu);
    return move(l, d.blocks, n, block);
  }
  // Fills the empty `l`: a slab's worth from the depot, else a new slab
  // carved from `pool`. Returns the bytes added.
  static std::size_t refill(int tier, std::size_t block, FreeList& l,
                            std::pmr::memory_resource& pool) {
    const std::size_t n = per_slab(block);
    {
      Depot& d = depot(tier, block);
      std::lock_guard<std::mutex> lock(d.mu);
      if (std::size_t moved = move(d.blocks, l, n, block)) return moved;
    }
    auto* slab = static_cast<char*>(pool.allocate(n * block, kMaxAlignment));
    for (std::size_t i = n; i-- > 0;) l.push(slab + i * block, block);
    return n * block;
  }
};

inline SmallBlocks::Lists::~Lists() {
  thread_gone() = true;
  for (int t = 0; t < kMaxTierResources; ++t)
    for (std::size_t c = 0; c < kClasses; ++c)
      if (lists[t][c].head != nullptr) {
        const std::size_t block = (c + 1) * kGranule;
        spill(t, block, lists[t][c], lists[t][c].count);
      }
}

}  // namespace detail

inline absl::StatusOr<std::pmr::memory_resource*> tier_resource(Tier t);

// A pooled resource over one TierMemoryResource: requests of up to
// kMaxPooledBytes, once rounded up to a multiple of their alignment, and
// aligned to at most kMaxPooledAlignment go through a
// std::pmr::synchronized_pool_resource; the rest go straight to the arena
// resource, so big buffers do not sit in pool chunks. Thread-safe. An
// alignment that is not a power of two throws TierAllocError
// (InvalidArgument) on either path, as TierMemoryResource does. Note that
// libstdc++'s pool resources keep their own bookkeeping (pool vectors, the
// list of chunks) in the upstream resource, so it lands on the tier too; pool
// chunks are kept until the pool is destroyed. The process-wide pools of
// tier_resource() serve blocks of up to 256 bytes from per-thread lists
// first (detail::SmallBlocks); a pool you create does not.
//
// Costs: a pooled request is one synchronized_pool_resource call (a reader
// lock taken and released), or, for tier_resource()'s small blocks, a pop
// from the thread's list; a request that goes to the
// arena also takes a second mutex and a hash-map entry (about 32 bytes per
// live chunk), and a pooled deallocate of a page-aligned block one lookup
// under that mutex.
//
// NOTE: deallocate() must get the size and alignment allocate() got (as
// std::pmr requires). A mismatch that would send memory to the wrong side
// (pool vs arena) or free an arena chunk with another size is refused: it is
// recorded as InvalidArgument in arena()->last_error() and the memory stays
// allocated. A mismatch between two pooled sizes of different size classes
// is not detected: libstdc++'s pool ignores a block it does not own, so the
// block leaks; and a small block of tier_resource() joins the list of the
// size given, which hands it out as that size. Under AddressSanitizer a
// block freed as larger than it is poisons its neighbour, whose next use is
// reported. A small block freed twice is refused (recorded as above): a
// free one carries a key (detail::SmallBlocks).
class TierPoolResource final : public std::pmr::memory_resource {
 public:
  // Largest pooled request (after rounding up to the alignment).
  static constexpr std::size_t kMaxPooledBytes = 32 << 10;
  // Largest pooled alignment, so small over-aligned objects (alignas(32)
  // list nodes) do not take a page each.
  static constexpr std::size_t kMaxPooledAlignment = kPageSize;

  // `arena` must outlive the pool.
  explicit TierPoolResource(TierMemoryResource* arena)
      : arena_(arena), pool_(std::pmr::pool_options{0, kMaxPooledBytes}, arena) {}

  // The resource chunks come from (its counters describe the tier).
  TierMemoryResource* arena() const { return arena_; }

 private:
  friend absl::StatusOr<std::pmr::memory_resource*> tier_resource(Tier t);
  // tier_resource()'s pool of tier `tier`, never destroyed: small blocks
  // go through per-thread lists (detail::SmallBlocks).
  TierPoolResource(TierMemoryResource* arena, int tier) : TierPoolResource(arena) {
    small_tier_ = tier;
  }
  // The block size detail::SmallBlocks serves a request of `block` pool
  // bytes with, or 0: rounded up to its granule.
  std::size_t small_block(std::size_t block, std::size_t alignment) const {
    if (small_tier_ < 0 || block == 0) return 0;
    const auto b =
        std::max(detail::SmallBlocks::kMinBytes,
                 static_cast<std::size_t>(align_up(block, detail::SmallBlocks::kGranule)));
    return detail::SmallBlocks::serves(b, alignment) ? b : 0;
  }
  // The pool block size for a request: `bytes` rounded up to a multiple of
  // `alignment`, or 0 if the request goes to the arena. Why round:
  // libstdc++ 12's pool picks the pool by max(bytes, alignment) and packs
  // blocks back to back, so allocate(24, 16) lands in the 24-byte pool and
  // every other block is only 8-aligned. In libstdc++'s pool sizes (8 .. 3072
  // step by step, then powers of two), the smallest one that holds a multiple
  // of a power of two is itself a multiple of it, and pool chunks come from
  // the arena page-aligned: alignments up to a page hold (the tests sweep them).
  static std::size_t pool_block(std::size_t bytes, std::size_t alignment) {
    if (bytes > kMaxPooledBytes || alignment > kMaxPooledAlignment) return 0;
    const auto block =
        static_cast<std::size_t>(align_up(std::max<std::size_t>(bytes, 1), alignment));
    return block <= kMaxPooledBytes ? block : 0;
  }
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    // The pool would accept any alignment; refuse as the arena path does.
    if (absl::Status s = detail::check_alignment(alignment); !s.ok())
      throw TierAllocError(arena_->record(std::move(s)));
    const std::size_t block = pool_block(bytes, alignment);
    if (const std::size_t small = small_block(block, alignment))
      return detail::SmallBlocks::allocate(small_tier_, small, pool_);
    if (block == 0) {
      void* p = arena_->allocate(bytes, alignment);
      try {
        detail::MutexLock lock(&direct_mu_);
        direct_.emplace(p, Request{bytes, alignment});
      } catch (...) {
        arena_->deallocate(p, bytes, alignment);
        throw;
      }
      return p;
    }
    void* p = pool_.allocate(block, alignment);
    if (reinterpret_cast<std::uintptr_t>(p) % alignment != 0) {
      // Not with libstdc++ 12 (tested); another library's pool may pack differently.
      pool_.deallocate(p, block, alignment);
      throw TierAllocError(arena_->record(absl::InternalError(absl::StrCat(
          "the pool returned a block at 0x", absl::Hex(reinterpret_cast<std::uintptr_t>(p)),
          " that is not aligned to ", alignment, " for ", bytes, " bytes"))));
    }
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    if (p == nullptr) return;  // as free(nullptr)
    const std::size_t block = pool_block(bytes, alignment);
    std::optional<Request> direct;
    // Arena chunks are page-aligned: other pooled blocks need no lookup.
    if (block == 0 || reinterpret_cast<std::uintptr_t>(p) % kPageSize == 0) {
      detail::MutexLock lock(&direct_mu_);
      auto it = direct_.find(p);
      if (it != direct_.end()) {
        direct = it->second;
        if (block == 0 && direct->bytes == bytes && direct->alignment == alignment)
          direct_.erase(it);
      }
    }
    if (!direct.has_value()) {
      if (const std::size_t small = small_block(block, alignment)) {
        if (!detail::SmallBlocks::deallocate(small_tier_, p, small))
          refuse(p, bytes, alignment, "it is free already (freed twice)");
      } else if (block != 0)
        pool_.deallocate(p, block, alignment);
      else
        refuse(p, bytes, alignment,
               "the pool handed out no arena chunk there (freed twice, or a pooled block "
               "given a size or alignment that is not pooled)");
    } else if (block != 0 || direct->bytes != bytes || direct->alignment != alignment) {
      refuse(p, bytes, alignment,
             absl::StrCat("it was allocated from the arena as ", direct->bytes,
                          " bytes aligned to ", direct->alignment));
    } else {
      arena_->deallocate(p, bytes, alignment);
    }
  }
  // Records why a deallocate was ignored (the memory stays allocated).
  void refuse(void* p, std::size_t bytes, std::size_t alignment, absl::string_view why) {
    arena_
        ->record(absl::InvalidArgumentError(absl::StrCat(
            "TierPoolResource: deallocate of 0x", absl::Hex(reinterpret_cast<std::uintptr_t>(p)),
            " (", bytes, " bytes aligned to ", alignment, ") ignored: ", why)))
        .IgnoreError();
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  struct Request {
    std::size_t bytes;
    std::size_t alignment;
  };

  TierMemoryResource* arena_;
  std::pmr::synchronized_pool_resource pool_;
  int small_tier_ = -1;  // the tier whose small blocks SmallBlocks serves; -1: none
  // What each live chunk taken straight from the arena was allocated as, so a
  // deallocate with another size or alignment is caught, not misrouted.
  detail::Mutex direct_mu_;
  absl::flat_hash_map<void*, Request> direct_ ABSL_GUARDED_BY(direct_mu_);
};

namespace detail {

inline absl::Status check_tier(Tier t) {
  if (tier_index(t) < 0 || tier_index(t) >= kMaxTierResources)
    return absl::InvalidArgumentError(absl::StrCat(
        "tier ", tier_index(t), " is out of range: tiers are 0 .. ", kMaxTierResources - 1));
  return absl::OkStatus();
}

// Process-wide registry behind tier_resource(). Never destroyed, so memory
// from the tiers stays valid during static destruction.
struct TierRegistry {
  detail::Mutex mu;
  std::optional<NodeSet> nodes[kMaxTierResources] ABSL_GUARDED_BY(mu);
  std::atomic<TierMemoryResource*> arenas[kMaxTierResources] = {};
  std::atomic<TierPoolResource*> pools[kMaxTierResources] = {};
};
inline TierRegistry& tier_registry() {
  static TierRegistry* registry = new TierRegistry;
  return *registry;
}

// The nodes of tier `t` when set_tier_nodes() has not named them: from
// Topology::discover() (once per process; TIERKIT_TIERS overrides). A tier
// the machine does not have falls back to its slowest tier, so code written
// for DRAM + CXL still runs on a one-tier machine (everything on that tier).
inline absl::StatusOr<NodeSet> default_tier_nodes(Tier t) {
  if (absl::Status s = check_tier(t); !s.ok()) return s;
  static const absl::StatusOr<Topology> topology = Topology::discover();
  if (!topology.ok())
    return absl::Status(topology.status().code(),
                        absl::StrCat("tier discovery failed: ", topology.status().message()));
  int tier = std::min(tier_index(t), topology->tier_count() - 1);
  NodeSet nodes = topology->tier_nodes(tier);
  if (nodes.empty()) return NodeSet{0};
  return nodes;
}

}  // namespace detail

// Names the nodes of tier `t` for tier_resource(). Takes effect only for a
// tier whose resource has not been created yet (the first tier_resource(t) or
// tiered_allocator on it fixes its nodes for the life of the process); an
// empty set restores the default. Out-of-range tiers are ignored. A set
// holding an id NodeSet refused is kept, so the tier's first allocation
// fails with that error (as TierMemoryResource::create reports it) instead
// of running on the default nodes. Takes a process-wide lock.
inline void set_tier_nodes(Tier t, NodeSet nodes) {
  if (!detail::check_tier(t).ok()) return;
  detail::TierRegistry& reg = detail::tier_registry();
  detail::MutexLock lock(&reg.mu);
  auto& slot = reg.nodes[tier_index(t)];
  if (nodes.empty() && !nodes.refused())  // a refused id must reach create()'s error
    slot.reset();
  else
    slot = nodes;
}

// The nodes of tier `t`: those of its resource if created, else those set
// with set_tier_nodes(), else the default (detail::default_tier_nodes).
// InvalidArgument for an out-of-range tier. Takes a process-wide lock.
inline absl::StatusOr<NodeSet> tier_nodes_for(Tier t) {
  if (absl::Status s = detail::check_tier(t); !s.ok()) return s;
  detail::TierRegistry& reg = detail::tier_registry();
  if (TierMemoryResource* r = reg.arenas[tier_index(t)].load(std::memory_order_acquire))
    return r->nodes();
  {
    detail::MutexLock lock(&reg.mu);
    if (reg.nodes[tier_index(t)].has_value()) return *reg.nodes[tier_index(t)];
  }
  return detail::default_tier_nodes(t);
}

// The process-wide pooled resource of tier `t` (a TierPoolResource over a
// TierMemoryResource bound with kBind to tier_nodes_for(t), 64 MiB arenas,
// LinuxBackend). Created on first use and never destroyed. Errors: the tier
// is out of range, or its nodes are unusable. After creation one atomic load.
inline absl::StatusOr<std::pmr::memory_resource*> tier_resource(Tier t) {
  if (absl::Status s = detail::check_tier(t); !s.ok()) return s;
  detail::TierRegistry& reg = detail::tier_registry();
  const int i = tier_index(t);
  if (TierPoolResource* p = reg.pools[i].load(std::memory_order_acquire)) return p;
  absl::StatusOr<NodeSet> nodes = tier_nodes_for(t);
  if (!nodes.ok()) return nodes.status();
  detail::MutexLock lock(&reg.mu);
  if (TierPoolResource* p = reg.pools[i].load(std::memory_order_acquire)) return p;
  if (reg.nodes[i].has_value()) nodes = *reg.nodes[i];  // set while we were unlocked
  TierResourceOptions options;
  options.nodes = *nodes;
  absl::StatusOr<std::unique_ptr<TierMemoryResource>> arena =
      TierMemoryResource::create(std::move(options));
  if (!arena.ok())
    return absl::Status(
        arena.status().code(),
        absl::StrCat("tier ", i, " (nodes ", nodes->to_string(), "): ", arena.status().message()));
  TierMemoryResource* a = arena->release();  // intentionally leaked, like the pool
  auto* pool = new TierPoolResource(a, i);
  reg.arenas[i].store(a, std::memory_order_release);
  reg.pools[i].store(pool, std::memory_order_release);
  return pool;
}

// The TierMemoryResource under tier_resource(t), for its counters and
// set_observer(); creates it if needed. Null if tier_resource(t) fails.
inline TierMemoryResource* tier_arena(Tier t) {
  if (!tier_resource(t).ok()) return nullptr;
  return detail::tier_registry().arenas[tier_index(t)].load(std::memory_order_acquire);
}

}  // namespace tierkit
