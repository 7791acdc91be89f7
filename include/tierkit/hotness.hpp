// tierkit/hotness.hpp: the page-hotness tracker. The application calls
// record_access() from its hot paths; the engine ages the counts every epoch
// and reads them to pick pages to move. Layer 2: includes common.hpp only.
//
// Layout: an address-indexed two-level table (1 GiB directory slots, then
// 2 MiB chunks of 512 page words). Each tracked 4 KiB page costs exactly one
// 16-bit word (2 bytes); chunk blocks are created when a range is first
// tracked and reused after it is untracked, so metadata is bounded by the peak
// tracked address span, and a reader racing with untrack() never touches freed
// memory. The directory itself is 1 MiB of lazily-zeroed virtual memory.
//
// Cost of record_access(ptr): two dependent loads, one relaxed load and one
// compare-exchange on the page word; no lock, no allocation, no syscall.
// Measured (tierkit-bench, BM_RecordAccess* vs BM_AtomicIncrementBaseline*,
// docs/performance.md): about 6 ns per call, 1.4x a relaxed atomic increment
// into a plain array, on a 2.6 GHz Xeon.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#include "tierkit/common.hpp"

namespace tierkit {

// The 16-bit word kept per tracked page.
//   bit 0      tracked (0 = not tracked: the whole word is 0)
//   bit 1      fast: the engine believes the page is in the fast tier
//   bits 2-5   epoch of the last recorded access, modulo 16
//   bits 6-15  heat: an exponentially decayed access count, 0..1023
struct PageWord {
  static constexpr std::uint16_t kTracked = 1u << 0;
  static constexpr std::uint16_t kFast = 1u << 1;
  static constexpr int kEpochShift = 2;
  static constexpr std::uint16_t kEpochMask = 0xFu << kEpochShift;
  static constexpr int kEpochModulo = 16;
  static constexpr int kHeatShift = 6;
  static constexpr std::uint32_t kMaxHeat = 1023;

  static constexpr bool tracked(std::uint16_t w) { return (w & kTracked) != 0; }
  static constexpr bool fast(std::uint16_t w) { return (w & kFast) != 0; }
  static constexpr std::uint32_t heat(std::uint16_t w) { return w >> kHeatShift; }
  static constexpr std::uint32_t epoch(std::uint16_t w) { return (w & kEpochMask) >> kEpochShift; }
  static constexpr std::uint16_t with_heat(std::uint16_t w, std::uint32_t h) {
    return static_cast<std::uint16_t>((w & ((1u << kHeatShift) - 1)) |
                                      ((h > kMaxHeat ? kMaxHeat : h) << kHeatShift));
  }
  static constexpr std::uint16_t with_epoch(std::uint16_t w, std::uint32_t e) {
    return static_cast<std::uint16_t>((w & ~kEpochMask) | ((e % kEpochModulo) << kEpochShift));
  }
  static constexpr std::uint16_t with_fast(std::uint16_t w, bool f) {
    return static_cast<std::uint16_t>(f ? (w | kFast) : (w & ~kFast));
  }
};

class HotnessTracker {
 public:
  static constexpr int kAddressBits = 47;  // x86-64 / arm64 user space
  static constexpr int kChunkShift = 21;   // 2 MiB
  static constexpr int kDirShift = 30;     // 1 GiB
  static constexpr std::size_t kPagesPerChunk = kHugePageSize / kPageSize;
  static constexpr std::size_t kChunksPerLeaf = std::size_t{1} << (kDirShift - kChunkShift);
  static constexpr std::size_t kDirSlots = std::size_t{1} << (kAddressBits - kDirShift);

  // Allocates the directory (1 MiB, zero pages until used). Cheap.
  HotnessTracker()
      : dir_(static_cast<std::atomic<Leaf*>*>(std::calloc(kDirSlots, sizeof(std::atomic<Leaf*>)))) {
    if (dir_ == nullptr) throw std::bad_alloc();
  }
  HotnessTracker(const HotnessTracker&) = delete;
  HotnessTracker& operator=(const HotnessTracker&) = delete;
  ~HotnessTracker() {
    for (std::size_t i = 0; i < kDirSlots; ++i) {
      Leaf* leaf = dir_[i].load(std::memory_order_relaxed);
      if (leaf == nullptr) continue;
      for (auto& c : leaf->chunks) delete c.load(std::memory_order_relaxed);
      delete leaf;
    }
    std::free(dir_);
  }

  // Records one access of weight 1 to the page holding `ptr`. Hot path:
  // constant time, lock-free, no allocation, no syscall. Accesses outside
  // tracked ranges only bump a counter (outside_accesses()).
  void record_access(const void* ptr) noexcept { record(reinterpret_cast<std::uintptr_t>(ptr), 1); }

  // Records an access to [ptr, ptr+bytes) with `weight` (e.g. a batch size):
  // one page-word update per tracked page touched, so O(bytes / 4 KiB) over
  // tracked memory. Untracked 2 MiB spans count all their pages as outside
  // accesses at once (unsampled), and the part beyond the 47-bit user address
  // space counts as one, so a bogus length costs at most O(2^17) steps.
  void record_access(const void* ptr, std::size_t bytes, std::uint32_t weight = 1) noexcept {
    auto a = reinterpret_cast<std::uintptr_t>(ptr);
    std::uintptr_t end = a + (bytes == 0 ? 1 : bytes);
    if (end < a) end = ~std::uintptr_t{0};
    for (std::uintptr_t p = align_down(a, kPageSize); p < end;) {
      if ((p >> kAddressBits) != 0) {
        outside_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      // The untracked span: the 1 GiB without a leaf, or the 2 MiB without a chunk.
      bool no_leaf = dir_[p >> kDirShift].load(std::memory_order_acquire) == nullptr;
      std::size_t span = no_leaf ? std::size_t{1} << kDirShift : kHugePageSize;
      std::uintptr_t span_end = std::min(align_down(p, span) + span, end);
      if (no_leaf || chunk_for(p, false) == nullptr) {
        outside_.fetch_add((span_end - p + kPageSize - 1) / kPageSize, std::memory_order_relaxed);
        p = align_up(span_end, kPageSize);
        continue;
      }
      for (; p < span_end; p += kPageSize) record(p, weight);
    }
  }

  // Samples 1 in `n` accesses per thread, each counted with weight n (n = 1:
  // every access). Takes effect immediately; any thread.
  void set_sampling(std::uint32_t n) noexcept {
    sample_every_.store(n == 0 ? 1 : n, std::memory_order_relaxed);
  }
  std::uint32_t sampling() const noexcept { return sample_every_.load(std::memory_order_relaxed); }

  // Accesses that fell outside every tracked range.
  std::uint64_t outside_accesses() const noexcept {
    return outside_.load(std::memory_order_relaxed);
  }

  // --- Writer side: called by the region registry and the engine, which
  // serialise calls on overlapping ranges. Readers may run concurrently.

  // Starts tracking pages [begin, end) (page aligned), each with `fast` as the
  // believed placement. With `huge`, the range must be 2 MiB aligned and each
  // 2 MiB chunk is one unit, counted in its first page word. Allocates chunk
  // blocks (1 KiB each) on first use; O(pages).
  void track(std::uintptr_t begin, std::uintptr_t end, bool huge, bool fast) {
    for (std::uintptr_t c = align_down(begin, kHugePageSize); c < end; c += kHugePageSize) {
      Chunk* chunk = chunk_for(c, /*create=*/true);
      chunk->huge.store(huge, std::memory_order_relaxed);
      std::uintptr_t lo = c < begin ? begin : c,
                     hi = c + kHugePageSize > end ? end : c + kHugePageSize;
      std::uint16_t w = PageWord::with_fast(PageWord::kTracked, fast);
      for (std::uintptr_t p = lo; p < hi; p += kPageSize)
        chunk->page[(p >> 12) & (kPagesPerChunk - 1)].store(w, std::memory_order_release);
    }
  }

  // Stops tracking [begin, end). O(pages). Concurrent record_access calls on
  // those pages become no-ops (their compare-exchange fails).
  void untrack(std::uintptr_t begin, std::uintptr_t end) {
    for (std::uintptr_t c = align_down(begin, kHugePageSize); c < end; c += kHugePageSize) {
      Chunk* chunk = chunk_for(c, /*create=*/false);
      if (chunk == nullptr) continue;
      std::uintptr_t lo = c < begin ? begin : c,
                     hi = c + kHugePageSize > end ? end : c + kHugePageSize;
      for (std::uintptr_t p = lo; p < hi; p += kPageSize)
        chunk->page[(p >> 12) & (kPagesPerChunk - 1)].store(0, std::memory_order_release);
    }
  }

  // The word of the unit holding `addr` (the chunk's first page for huge
  // chunks), or nullptr when never tracked. For the engine and tests.
  std::atomic<std::uint16_t>* word(std::uintptr_t addr) const noexcept {
    Chunk* chunk = chunk_for(addr, false);
    if (chunk == nullptr) return nullptr;
    std::size_t idx =
        chunk->huge.load(std::memory_order_relaxed) ? 0 : (addr >> 12) & (kPagesPerChunk - 1);
    return &chunk->page[idx];
  }

  // Sets the believed placement of the unit holding `addr`. Lock-free.
  void set_fast(std::uintptr_t addr, bool fast) noexcept {
    auto* w = word(addr);
    if (w == nullptr) return;
    std::uint16_t old = w->load(std::memory_order_relaxed);
    while (PageWord::tracked(old) && !w->compare_exchange_weak(old, PageWord::with_fast(old, fast),
                                                               std::memory_order_relaxed)) {
    }
  }

  // The current epoch (modulo 16 in page words). Set by the engine once per
  // epoch; record_access stamps it.
  std::uint32_t epoch() const noexcept { return epoch_.load(std::memory_order_relaxed); }
  void set_epoch(std::uint32_t e) noexcept { epoch_.store(e, std::memory_order_relaxed); }

  // Visits every tracked unit in [begin, end): calls visit(addr, word) with
  // the word as read, then stores decay(word) if it differs (a compare-
  // exchange, so a racing access is kept or lost, never corrupted). `decay`
  // maps heat -> aged heat. O(pages); about 1-2 ns per page when cold.
  template <class Visit, class Decay>
  void sweep(std::uintptr_t begin, std::uintptr_t end, Visit&& visit, Decay&& decay) const {
    for (std::uintptr_t c = align_down(begin, kHugePageSize); c < end; c += kHugePageSize) {
      Chunk* chunk = chunk_for(c, false);
      if (chunk == nullptr) continue;
      bool huge = chunk->huge.load(std::memory_order_relaxed);
      std::uintptr_t lo = c < begin ? begin : c,
                     hi = c + kHugePageSize > end ? end : c + kHugePageSize;
      if (huge) hi = lo + kPageSize;  // one unit per chunk
      for (std::uintptr_t p = lo; p < hi; p += kPageSize) {
        auto& w = chunk->page[(p >> 12) & (kPagesPerChunk - 1)];
        std::uint16_t old = w.load(std::memory_order_relaxed);
        if (!PageWord::tracked(old)) continue;
        visit(p, old);
        std::uint32_t h = PageWord::heat(old);
        if (h == 0) continue;
        std::uint16_t aged = PageWord::with_heat(old, decay(h));
        if (aged != old) w.compare_exchange_strong(old, aged, std::memory_order_relaxed);
      }
    }
  }

 private:
  struct Chunk {
    std::atomic<std::uint16_t> page[kPagesPerChunk] = {};
    std::atomic<bool> huge{false};
  };
  struct Leaf {
    std::atomic<Chunk*> chunks[kChunksPerLeaf] = {};
  };

  Chunk* chunk_for(std::uintptr_t addr, bool create) const {
    if ((addr >> kAddressBits) != 0) return nullptr;
    auto& slot = dir_[addr >> kDirShift];
    Leaf* leaf = slot.load(std::memory_order_acquire);
    if (leaf == nullptr) {
      if (!create) return nullptr;
      leaf = new Leaf();
      slot.store(leaf, std::memory_order_release);  // writers are serialised
    }
    auto& cslot = leaf->chunks[(addr >> kChunkShift) & (kChunksPerLeaf - 1)];
    Chunk* chunk = cslot.load(std::memory_order_acquire);
    if (chunk == nullptr && create) {
      chunk = new Chunk();
      cslot.store(chunk, std::memory_order_release);
    }
    return chunk;
  }

  void record(std::uintptr_t a, std::uint32_t weight) noexcept {
    std::uint32_t every = sample_every_.load(std::memory_order_relaxed);
    if (every > 1) {
      thread_local std::uint32_t countdown = 0;
      if (countdown > 1) {
        --countdown;
        return;
      }
      countdown = every;
      // Saturate rather than wrap: heat is capped at kMaxHeat anyway.
      weight = weight > PageWord::kMaxHeat / every ? PageWord::kMaxHeat + 1 : weight * every;
    }
    if ((a >> kAddressBits) == 0) {
      Leaf* leaf = dir_[a >> kDirShift].load(std::memory_order_acquire);
      if (leaf != nullptr) {
        Chunk* chunk =
            leaf->chunks[(a >> kChunkShift) & (kChunksPerLeaf - 1)].load(std::memory_order_acquire);
        if (chunk != nullptr) {
          auto& w = chunk->page[chunk->huge.load(std::memory_order_relaxed)
                                    ? 0
                                    : (a >> 12) & (kPagesPerChunk - 1)];
          std::uint16_t old = w.load(std::memory_order_relaxed);
          if (PageWord::tracked(old)) {
            std::uint32_t heat =
                weight > PageWord::kMaxHeat ? PageWord::kMaxHeat + 1 : PageWord::heat(old) + weight;
            std::uint16_t upd = PageWord::with_epoch(PageWord::with_heat(old, heat), epoch());
            if (upd != old) w.compare_exchange_strong(old, upd, std::memory_order_relaxed);
            return;
          }
        }
      }
    }
    outside_.fetch_add(1, std::memory_order_relaxed);
  }

  std::atomic<Leaf*>* dir_;
  std::atomic<std::uint32_t> sample_every_{1};
  std::atomic<std::uint32_t> epoch_{0};
  std::atomic<std::uint64_t> outside_{0};
};

}  // namespace tierkit
