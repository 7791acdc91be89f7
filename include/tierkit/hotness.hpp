// tierkit/hotness.hpp: the page-hotness tracker. The application calls
// record_access() from its hot paths; each epoch the engine collects what
// changed, ages it and reads it to pick pages to move. Layer 2: includes
// common.hpp and detail/mutex.hpp only.
//
// Layout: an address-indexed two-level table (1 GiB directory slots, then
// 2 MiB chunks of 512 page words). Each tracked 4 KiB page costs one 16-bit
// word, and each 2 MiB chunk a 64-byte header: 2.13 bytes per tracked page
// (metadata_bytes()). Chunk blocks are created when a range is first tracked
// and reused after it is untracked, so metadata is bounded by the peak tracked
// address span, and a reader racing with untrack() never touches freed
// memory. The directory itself is 1 MiB of lazily-zeroed virtual memory.
//
// Epoch cost follows what changed, not what is tracked. record_access()
// marks the page's 8-page group in its chunk's `touched` mask (one relaxed
// load when already marked, the common case) and, the first time a chunk is
// marked, the chunk's bit in its leaf. collect_warm() takes those marks
// (O(leaves + touched chunks)) into the set of warm groups, the groups that
// hold any heat, and visits and ages only them; a group leaves the set when
// all its heat has decayed to zero (after about 10 half-lives untouched). So
// an epoch costs O(pages touched in the last ~10 half-lives), whatever the
// tracked footprint. Cold pages of the fast tier (demotion candidates) are
// found by scan_fast_cold(), a bounded clock over the chunks holding fast
// pages only; per-tier page counts are kept as pages are tracked and moved,
// so the heat histogram's zero bucket needs no sweep.
//
// Cost of record_access(ptr): three dependent loads, one relaxed load and
// one compare-exchange on the page word (retried only when another thread
// changed the word in between), one relaxed load of the group mask;
// no lock, no allocation, no syscall (docs/performance.md has the figures).
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "tierkit/common.hpp"
#include "tierkit/detail/mutex.hpp"

namespace tierkit {

// The 16-bit word kept per tracked page.
//   bit 0      tracked (0 = not tracked: the whole word is 0)
//   bit 1      fast: the engine believes the page is in the fast tier
//   bits 2-5   epoch of the last recorded access, modulo 16; while the page
//              holds heat, the epoch's visit holds an older stamp at
//              kIdleCap epochs back, so idle() saturates (see held_idle)
//   bit 6      seasoned: the page still held heat after the last aging, so
//              heat gained since is not all from one epoch (a burst: an
//              initialising write, a scan); see Policy::judged_heat
//   bits 7-15  heat: an exponentially decayed access count, 0..511
struct PageWord {
  static constexpr std::uint16_t kTracked = 1u << 0;
  static constexpr std::uint16_t kFast = 1u << 1;
  static constexpr int kEpochShift = 2;
  static constexpr std::uint16_t kEpochMask = 0xFu << kEpochShift;
  static constexpr int kEpochModulo = 16;
  static constexpr std::uint16_t kSeasoned = 1u << 6;
  static constexpr int kHeatShift = 7;
  static constexpr std::uint32_t kMaxHeat = 511;

  static constexpr bool tracked(std::uint16_t w) { return (w & kTracked) != 0; }
  static constexpr bool fast(std::uint16_t w) { return (w & kFast) != 0; }
  static constexpr std::uint32_t heat(std::uint16_t w) { return w >> kHeatShift; }
  static constexpr std::uint32_t epoch(std::uint16_t w) { return (w & kEpochMask) >> kEpochShift; }
  static constexpr bool seasoned(std::uint16_t w) { return (w & kSeasoned) != 0; }
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

  // Whole epochs from the stamp to epoch `now`, modulo 16; at least 1 for a
  // unit without heat, which was not accessed this epoch (an access adds
  // heat) but whose stamp nobody holds (see held_idle).
  static constexpr std::uint32_t idle(std::uint16_t w, std::uint32_t now) {
    const std::uint32_t d = (now - epoch(w)) % kEpochModulo;
    return d == 0 && heat(w) == 0 ? 1 : d;
  }
  // The idle count the stamp is held at. 14, not 15: a stamp held at now - 15
  // would read 0 (just accessed) one epoch later, before the next visit.
  static constexpr std::uint32_t kIdleCap = kEpochModulo - 2;
  // `w` with a stamp idle for kIdleCap or more epochs moved up to kIdleCap
  // epochs before `now`. The tracker applies it each epoch to every unit
  // that holds heat (HotnessTracker::collect_warm, sweep), so idle() reads
  // 14 or 15 for any idleness from 14 on, where the bare modulo read a unit
  // idle 17 epochs as idle 1, and one idle 16 as touched now.
  // NOTE: a unit without heat is not visited, and its count still wraps (a
  // held stamp 2 epochs after the heat is gone), though never to 0: it is
  // at least 1 epoch idle, the rest of the count is not known.
  static constexpr std::uint16_t held_idle(std::uint16_t w, std::uint32_t now) {
    return idle(w, now) >= kIdleCap ? with_epoch(w, now - kIdleCap) : w;
  }
  // Whether the unit was accessed in epoch `now`. Exact until that epoch's
  // aging: an access adds heat, and a unit with heat has a held stamp.
  static constexpr bool touched(std::uint16_t w, std::uint32_t now) {
    return heat(w) > 0 && idle(w, now) == 0;
  }
};

// HotnessTracker
//
// Per-page heat for every tracked range, fed lock-free by record_access()
// from any thread, read and aged by one epoch thread (the engine's).
//
// Cost: record_access O(1), no lock, no allocation; collect_warm()
// O(leaves + touched chunks + pages in warm groups); scan_fast_cold() at most
// its budget; track()/untrack() O(pages). Metadata: 2 bytes per tracked
// 4 KiB page (2.13 with its chunk header).
//
// Thread safety: record_access(), word(), set_sampling() from any thread.
// track(), untrack(), set_fast(), collect_warm(), scan_fast_cold() and
// sweep() serialise on an internal mutex, so a region may be registered
// while an epoch runs. The engine's epoch is the only caller of the
// collect/scan functions.
//
// Example:
//   HotnessTracker t;
//   t.track(base, base + (64 << 20), /*huge=*/false, /*fast=*/false);
//   t.record_access(p);                    // hot path
//   t.collect_warm(visit, aged);           // once per epoch
class HotnessTracker {
 public:
  static constexpr int kAddressBits = 47;  // x86-64 / arm64 user space
  static constexpr int kChunkShift = 21;   // 2 MiB
  static constexpr int kDirShift = 30;     // 1 GiB
  static constexpr std::size_t kPagesPerChunk = kHugePageSize / kPageSize;
  static constexpr std::size_t kChunksPerLeaf = std::size_t{1} << (kDirShift - kChunkShift);
  static constexpr std::size_t kDirSlots = std::size_t{1} << (kAddressBits - kDirShift);
  static constexpr std::size_t kGroupPages = kPagesPerChunk / 64;  // 8 pages per mask bit

  // Allocates the directory (1 MiB, zero pages until used). Cheap.
  HotnessTracker()
      : dir_(static_cast<std::atomic<Leaf*>*>(std::calloc(kDirSlots, sizeof(std::atomic<Leaf*>)))) {
    if (dir_ == nullptr) throw std::bad_alloc();
  }
  HotnessTracker(const HotnessTracker&) = delete;
  HotnessTracker& operator=(const HotnessTracker&) = delete;
  ~HotnessTracker() {
    for (Leaf* leaf : leaves_) {
      for (auto& c : leaf->chunks) delete c.load(std::memory_order_relaxed);
      delete leaf;
    }
    std::free(dir_);
  }

  // record_access()
  //
  // Records one access of weight 1 to the page holding `ptr`. Hot path:
  // constant time, lock-free, no allocation, no syscall. Accesses outside
  // tracked ranges only bump a counter (outside_accesses()).
  void record_access(const void* ptr) noexcept { record(reinterpret_cast<std::uintptr_t>(ptr), 1); }

  // Records an access to [ptr, ptr+bytes) with `weight` (e.g. a batch size):
  // one page-word update per tracked page touched, so O(bytes / 4 KiB) over
  // tracked memory. Untracked 2 MiB spans count all their pages as outside
  // accesses at once (unsampled), and the part beyond the 47-bit user address
  // space counts as one, so a bogus length costs at most O(2^17) steps.
  // A weight of 0 (an empty batch) records nothing: no heat, no epoch stamp,
  // no mark, no outside access.
  void record_access(const void* ptr, std::size_t bytes, std::uint32_t weight = 1) noexcept {
    if (weight == 0) return;
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
      if (no_leaf || chunk_for(p) == nullptr) {
        outside_.fetch_add((span_end - p + kPageSize - 1) / kPageSize, std::memory_order_relaxed);
        p = align_up(span_end, kPageSize);
        continue;
      }
      for (; p < span_end; p += kPageSize) record(p, weight);
    }
  }

  // set_sampling()
  //
  // Samples 1 in `n` accesses per thread and tracker, each counted with
  // weight n (n = 1: every access). Takes effect immediately; any thread.
  void set_sampling(std::uint32_t n) noexcept {
    sample_every_.store(n == 0 ? 1 : n, std::memory_order_relaxed);
  }
  std::uint32_t sampling() const noexcept { return sample_every_.load(std::memory_order_relaxed); }

  // outside_accesses()
  //
  // Accesses that fell outside every tracked range.
  std::uint64_t outside_accesses() const noexcept {
    return outside_.load(std::memory_order_relaxed);
  }

  // metadata_bytes()
  //
  // Bytes of tracker metadata allocated: chunks, leaves and the warm and
  // fast lists (not the lazily-zeroed directory). Divide by tracked pages
  // for the per-page cost.
  std::uint64_t metadata_bytes() const {
    detail::MutexLock l(&mu_);
    return leaves_.size() * sizeof(Leaf) + chunk_count_ * sizeof(Chunk) +
           (warm_.capacity() + fast_chunks_.capacity()) * sizeof(Chunk*);
  }

  // fast_pages(), slow_pages()
  //
  // Tracked pages believed fast / slow (a 2 MiB unit counts 512). O(1).
  std::uint64_t fast_pages() const {
    detail::MutexLock l(&mu_);
    return fast_pages_;
  }
  std::uint64_t slow_pages() const {
    detail::MutexLock l(&mu_);
    return tracked_pages_ - fast_pages_;
  }
  // fast_units()
  //
  // Tracked units believed fast (a 2 MiB unit counts 1): what a lap of
  // scan_fast_cold() looks at. O(1).
  std::uint64_t fast_units() const {
    detail::MutexLock l(&mu_);
    return fast_units_;
  }

  // seen_pages()
  //
  // Tracked pages in groups (8 pages, or a 2 MiB unit) accessed at least
  // once since they were tracked: the memory the application has shown it
  // uses, however much more it registered. Counted when collect_warm()
  // first finds a group marked, so a group touched since the last collect
  // is not in it yet. O(1).
  // NOTE: a group counts every tracked page it holds, touched or not.
  std::uint64_t seen_pages() const {
    detail::MutexLock l(&mu_);
    return seen_pages_;
  }

  // --- Writer side: called by the region registry and the engine, which
  // serialise calls on overlapping ranges. Readers may run concurrently.

  // track()
  //
  // Starts tracking pages [begin, end) (page aligned), each with `fast` as the
  // believed placement and no heat. With `huge`, the range must be 2 MiB
  // aligned and each 2 MiB chunk is one unit, counted in its first page word.
  // Allocates chunk blocks (1 KiB each) on first use; O(pages). Tracking a
  // range again resets it. The part of a range at or past 2^47 (no user
  // address) is ignored, by untrack() and sweep() too.
  // NOTE: out of memory it throws std::bad_alloc with part of the range
  // tracked; untrack() of the range then undoes every count.
  void track(std::uintptr_t begin, std::uintptr_t end, bool huge, bool fast) {
    detail::MutexLock l(&mu_);
    for_each_chunk(begin, end, /*create=*/true, [&](Chunk& c, std::size_t lo, std::size_t hi) {
      forget_units(c, lo, hi);
      c.huge.store(huge, std::memory_order_relaxed);
      if (huge) lo = 0, hi = 1;
      std::uint16_t w = PageWord::with_fast(PageWord::kTracked, fast);
      for (std::size_t i = lo; i < hi; ++i) {
        c.page[i].store(w, std::memory_order_release);
        count_seen(c, i, +1);
        count_unit(c, fast, +1);  // last: it may throw after counting (see untrack)
      }
    });
  }

  // metadata_bytes_for()
  //
  // The most metadata tracking [begin, end) allocates: a chunk block per
  // 2 MiB and a leaf per 1 GiB it touches (less where they exist already),
  // none for the part at or past 2^47, which track() ignores.
  static std::uint64_t metadata_bytes_for(std::uintptr_t begin, std::uintptr_t end) {
    end = std::min(end, std::uintptr_t{1} << kAddressBits);  // and no wrap in align_up
    if (end <= begin) return 0;
    const std::uint64_t chunks =
        (align_up(end, kHugePageSize) - align_down(begin, kHugePageSize)) / kHugePageSize;
    const std::uint64_t leaves = ((end - 1) >> kDirShift) - (begin >> kDirShift) + 1;
    return chunks * sizeof(Chunk) + leaves * sizeof(Leaf);
  }

  // untrack()
  //
  // Stops tracking [begin, end). O(pages). Concurrent record_access calls on
  // those pages become no-ops (their compare-exchange fails).
  void untrack(std::uintptr_t begin, std::uintptr_t end) {
    detail::MutexLock l(&mu_);
    for_each_chunk(begin, end, /*create=*/false,
                   [&](Chunk& c, std::size_t lo, std::size_t hi) { forget_units(c, lo, hi); });
  }

  // word()
  //
  // The word of the unit holding `addr` (the chunk's first page for huge
  // chunks), or nullptr when never tracked. For the engine and tests.
  std::atomic<std::uint16_t>* word(std::uintptr_t addr) const noexcept {
    Chunk* chunk = chunk_for(addr);
    if (chunk == nullptr) return nullptr;
    return &chunk->page[unit_index(*chunk, addr)];
  }

  // unit_bytes()
  //
  // The size of the tracking unit holding `addr`: kHugePageSize for a chunk
  // tracked as one 2 MiB unit, else kPageSize. Constant time, any thread.
  std::size_t unit_bytes(std::uintptr_t addr) const noexcept {
    Chunk* chunk = chunk_for(addr);
    return chunk != nullptr && chunk->huge.load(std::memory_order_relaxed) ? kHugePageSize
                                                                           : kPageSize;
  }

  // split()
  //
  // Turns the 2 MiB unit holding `addr` into 512 page units, each with the
  // unit's word (heat, placement, epoch), so the histogram and the per-tier
  // page counts do not change. For memory that turned out not to be one
  // huge page (never formed, or split by the kernel). Returns false when the
  // chunk is not a tracked 2 MiB unit. O(512).
  // NOTE: an access racing with the split may land on the first page only.
  bool split(std::uintptr_t addr) {
    detail::MutexLock l(&mu_);
    Chunk* c = chunk_for(addr);
    if (c == nullptr || !c->huge.load(std::memory_order_relaxed)) return false;
    const std::uint16_t w = c->page[0].load(std::memory_order_acquire);
    if (!PageWord::tracked(w)) return false;
    count_unit(*c, PageWord::fast(w), -1);
    count_seen(*c, 0, -1);
    c->seen = (c->seen & 1) != 0 ? ~std::uint64_t{0} : 0;  // the unit's 512 pages, 64 groups
    c->huge.store(false, std::memory_order_release);
    for (std::size_t i = 0; i < kPagesPerChunk; ++i) {
      if (i > 0) c->page[i].store(w, std::memory_order_release);
      count_unit(*c, PageWord::fast(w), +1);
      count_seen(*c, i, +1);
    }
    if (PageWord::heat(w) != 0) {  // every group now holds the unit's heat
      c->warm = ~std::uint64_t{0};
      if (!c->in_warm) {
        c->in_warm = true;
        warm_.push_back(c);
      }
    }
    return true;
  }

  // merge()
  //
  // The inverse of split(): turns the 512 page units of the chunk holding
  // `addr` into one 2 MiB unit believed `fast`, for memory found to be one
  // huge page after all (a 4 KiB move carried the whole of it). The unit's
  // heat is the pages' heat summed (capped, as accesses to a 2 MiB unit
  // add up), its stamp the most recent, seasoned if any page was. Returns
  // false, changing nothing, unless all 512 pages are tracked 4 KiB units.
  // O(512).
  // NOTE: an access racing with the merge to a page other than the first
  // may be lost (counted outside).
  bool merge(std::uintptr_t addr, bool fast) {
    detail::MutexLock l(&mu_);
    Chunk* c = chunk_for(addr);
    if (c == nullptr || c->huge.load(std::memory_order_relaxed)) return false;
    const std::uint32_t now = epoch();
    std::uint32_t heat = 0, idle = PageWord::kEpochModulo;
    std::uint16_t unit = PageWord::kTracked;
    for (std::size_t i = 0; i < kPagesPerChunk; ++i) {
      const std::uint16_t w = c->page[i].load(std::memory_order_acquire);
      if (!PageWord::tracked(w)) return false;
      heat += PageWord::heat(w);
      if (PageWord::seasoned(w)) unit |= PageWord::kSeasoned;
      if (PageWord::idle(w, now) < idle) {
        idle = PageWord::idle(w, now);
        unit = PageWord::with_epoch(unit, PageWord::epoch(w));
      }
    }
    for (std::size_t i = 0; i < kPagesPerChunk; ++i) {
      count_unit(*c, PageWord::fast(c->page[i].load(std::memory_order_relaxed)), -1);
      count_seen(*c, i, -1);
    }
    c->seen = c->seen != 0 ? 1 : 0;  // the unit's one group
    c->warm = heat != 0 ? 1 : 0;
    c->clock = 0;
    c->huge.store(true, std::memory_order_release);
    c->page[0].store(PageWord::with_fast(PageWord::with_heat(unit, heat), fast),
                     std::memory_order_release);
    for (std::size_t i = 1; i < kPagesPerChunk; ++i) c->page[i].store(0, std::memory_order_release);
    count_unit(*c, fast, +1);
    count_seen(*c, 0, +1);
    if (heat != 0 && !c->in_warm) {
      c->in_warm = true;
      warm_.push_back(c);
    }
    return true;
  }

  // set_fast()
  //
  // Sets the believed placement of the unit holding `addr`; returns whether
  // the belief changed. Takes the writer mutex (uncontended: tens of ns).
  bool set_fast(std::uintptr_t addr, bool fast) {
    detail::MutexLock l(&mu_);
    Chunk* chunk = chunk_for(addr);
    if (chunk == nullptr) return false;
    std::size_t i = unit_index(*chunk, addr);
    auto& w = chunk->page[i];
    std::uint16_t old = w.load(std::memory_order_relaxed);
    while (
        PageWord::tracked(old) && PageWord::fast(old) != fast &&
        !w.compare_exchange_weak(old, PageWord::with_fast(old, fast), std::memory_order_relaxed)) {
    }
    if (!PageWord::tracked(old) || PageWord::fast(old) == fast) return false;
    count_unit(*chunk, PageWord::fast(old), -1);
    count_unit(*chunk, fast, +1);
    return true;
  }

  // epoch(), set_epoch()
  //
  // The current epoch (modulo 16 in page words). Set by the engine once per
  // epoch; record_access stamps it.
  std::uint32_t epoch() const noexcept { return epoch_.load(std::memory_order_relaxed); }
  void set_epoch(std::uint32_t e) noexcept { epoch_.store(e, std::memory_order_relaxed); }

  // collect_warm()
  //
  // The epoch's sweep over what changed: takes the touched marks, then for
  // every tracked unit of every warm group calls visit(addr, word, pages)
  // with the word as read (heat before aging, possibly 0; pages = 1 or 512)
  // and stores the word with decay(heat) (a compare-exchange: a racing
  // access is kept or lost, never corrupted); a two-argument decay(heat,
  // seasoned) also sees the seasoned bit, and the stored word is seasoned
  // exactly when heat is left. Groups whose heat all decayed
  // to zero leave the warm set. O(leaves + touched chunks + 8 * warm
  // groups); no allocation once the lists have grown. `visit` must not call
  // back into the tracker. scan_fast_cold() skips the groups visited here
  // until the next collect_warm().
  // NOTE: an access racing with the aging of its own group may stay unaged
  // until its page is touched again.
  template <class Visit, class Decay>
  void collect_warm(Visit&& visit, Decay&& decay) {
    detail::MutexLock l(&mu_);
    take_touched();
    ++generation_;
    for (std::size_t k = 0; k < warm_.size();) {
      Chunk& c = *warm_[k];
      std::uint64_t groups = c.warm | c.touched.exchange(0, std::memory_order_acq_rel);
      see_groups(c, groups);
      c.visited = groups;
      c.visited_generation = generation_;
      c.warm = age_groups(c, groups, visit, decay, epoch());
      if (c.warm != 0) {
        ++k;
        continue;
      }
      c.in_warm = false;
      warm_[k] = warm_.back();  // O(1) removal; order does not matter
      warm_.pop_back();
    }
  }

  // scan_fast_cold()
  //
  // A clock over the chunks holding fast units: calls take(addr, word,
  // pages) for the fast units that the last collect_warm() did not visit
  // (so their heat is 0) until take returns false or `budget_units` units
  // were looked at; the hand stays where it stopped, so successive calls go
  // round the fast tier. Chunks left with no fast unit drop out of the
  // clock. O(budget_units).
  template <class Take>
  void scan_fast_cold(std::uint64_t budget_units, Take&& take) {
    detail::MutexLock l(&mu_);
    std::uint64_t looked = 0;
    // One lap at most: the chunk the hand starts in is visited from its
    // clock to its end first, and from its start to that clock last.
    const std::uint64_t lap = ++scan_lap_;
    const Chunk* first = nullptr;
    std::size_t first_clock = 0, chunks = fast_chunks_.size() + 1;
    while (looked < budget_units && chunks-- > 0 && !fast_chunks_.empty()) {
      if (hand_ >= fast_chunks_.size()) hand_ = 0;
      Chunk& c = *fast_chunks_[hand_];
      if (c.fast_units == 0) {
        c.in_fast = false;
        fast_chunks_[hand_] = fast_chunks_.back();
        fast_chunks_.pop_back();
        continue;
      }
      // Moved here from the back by such a removal after this lap visited it.
      if (c.scan_lap == lap && &c != first) {
        ++hand_;
        continue;
      }
      c.scan_lap = lap;
      const bool huge = c.huge.load(std::memory_order_relaxed);
      const std::uint32_t pages = huge ? kPagesPerChunk : 1;
      std::size_t from = c.clock, to = huge ? 1 : kPagesPerChunk;
      if (first == nullptr) {
        first = &c;
        first_clock = from;
      } else if (first == &c) {
        from = 0, to = std::min(to, first_clock);
      }
      const std::uint64_t seen = c.visited_generation == generation_ ? c.visited : 0;
      for (std::size_t i = from; i < to; ++i, ++looked) {
        if (looked >= budget_units) {  // out of budget: resume here next time
          c.clock = static_cast<std::uint16_t>(i);
          return;
        }
        if ((seen >> (i / kGroupPages)) & 1) continue;  // offered by collect_warm
        std::uint16_t w = c.page[i].load(std::memory_order_relaxed);
        if (!PageWord::tracked(w) || !PageWord::fast(w)) continue;
        if (!take(c.base + i * kPageSize, w, pages)) {
          c.clock = static_cast<std::uint16_t>(i + 1);
          return;
        }
      }
      c.clock = 0;
      ++hand_;
    }
  }

  // sweep()
  //
  // Visits every tracked unit in [begin, end): calls visit(addr, word, pages)
  // with the word as read (pages = 1, or 512 for a 2 MiB unit), then stores
  // the aged word as collect_warm() does. O(pages): for policies that must
  // see every page (the kernel model's scanner), tagged regions and tests.
  // Pass HotnessTracker::kNoAging to visit without aging.
  static constexpr auto kNoAging = [](std::uint32_t h) { return h; };
  template <class Visit, class Decay>
  void sweep(std::uintptr_t begin, std::uintptr_t end, Visit&& visit, Decay&& decay) {
    detail::MutexLock l(&mu_);
    for_each_chunk(begin, end, /*create=*/false, [&](Chunk& c, std::size_t lo, std::size_t hi) {
      const bool huge = c.huge.load(std::memory_order_relaxed);
      if (huge) lo = 0, hi = 1;  // one unit per chunk
      const std::uint32_t pages = huge ? kPagesPerChunk : 1;
      for (std::size_t i = lo; i < hi; ++i) (void)visit_and_age(c, i, pages, visit, decay, epoch());
    });
  }

 private:
  struct Chunk {
    std::atomic<std::uint16_t> page[kPagesPerChunk] = {};
    std::atomic<std::uint64_t> touched{0};  // groups accessed since collect_warm took them
    std::uintptr_t base = 0;
    std::uint64_t warm = 0;                // groups that hold heat (writer side)
    std::uint64_t seen = 0;                // groups accessed since tracked (seen_pages)
    std::uint64_t visited = 0;             // groups the last collect_warm visited
    std::uint64_t visited_generation = 0;  // ... in this generation
    std::atomic<bool> huge{false};
    bool in_warm = false, in_fast = false;
    std::uint16_t fast_units = 0, clock = 0;
    std::uint64_t scan_lap = 0;  // the scan_fast_cold() call that last visited it
  };
  struct Leaf {
    std::atomic<Chunk*> chunks[kChunksPerLeaf] = {};
    std::atomic<std::uint64_t> touched[kChunksPerLeaf / 64] = {};  // chunks with marks
  };

  static std::size_t unit_index(const Chunk& c, std::uintptr_t addr) {
    return c.huge.load(std::memory_order_relaxed) ? 0 : (addr >> 12) & (kPagesPerChunk - 1);
  }

  Chunk* chunk_for(std::uintptr_t addr) const {
    if ((addr >> kAddressBits) != 0) return nullptr;
    Leaf* leaf = dir_[addr >> kDirShift].load(std::memory_order_acquire);
    if (leaf == nullptr) return nullptr;
    return leaf->chunks[(addr >> kChunkShift) & (kChunksPerLeaf - 1)].load(
        std::memory_order_acquire);
  }

  // Creates the chunk holding `addr` (and its leaf). Under mu_.
  Chunk* create_chunk(std::uintptr_t addr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto& slot = dir_[addr >> kDirShift];
    Leaf* leaf = slot.load(std::memory_order_acquire);
    if (leaf == nullptr) {
      // Room first: a failed allocation (std::bad_alloc) changes nothing.
      if (leaves_.size() == leaves_.capacity()) leaves_.reserve(2 * leaves_.size() + 1);
      leaf = new Leaf();
      leaves_.push_back(leaf);
      slot.store(leaf, std::memory_order_release);
    }
    auto& cslot = leaf->chunks[(addr >> kChunkShift) & (kChunksPerLeaf - 1)];
    Chunk* chunk = cslot.load(std::memory_order_acquire);
    if (chunk == nullptr) {
      chunk = new Chunk();
      chunk->base = align_down(addr, kHugePageSize);
      ++chunk_count_;
      cslot.store(chunk, std::memory_order_release);
    }
    return chunk;
  }

  // Calls fn(chunk, first, last) with unit indices [first, last) of each
  // chunk overlapping [begin, end), clipped to the 47-bit address space the
  // directory covers (so the walk never wraps either). Under mu_.
  template <class Fn>
  void for_each_chunk(std::uintptr_t begin, std::uintptr_t end, bool create, Fn&& fn)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    end = std::min(end, std::uintptr_t{1} << kAddressBits);
    for (std::uintptr_t c = align_down(begin, kHugePageSize); c < end; c += kHugePageSize) {
      Chunk* chunk = create ? create_chunk(c) : chunk_for(c);
      if (chunk == nullptr) continue;
      std::uintptr_t lo = c < begin ? begin : c,
                     hi = c + kHugePageSize > end ? end : c + kHugePageSize;
      fn(*chunk, (lo - c) / kPageSize, (hi - c + kPageSize - 1) / kPageSize);
    }
  }

  // Page counts and the fast clock, for one unit entering (+1) or leaving
  // (-1) a tier. Under mu_.
  void count_unit(Chunk& c, bool fast, int delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::uint64_t pages = c.huge.load(std::memory_order_relaxed) ? kPagesPerChunk : 1;
    tracked_pages_ += delta > 0 ? pages : -pages;
    if (!fast) return;
    fast_pages_ += delta > 0 ? pages : -pages;
    fast_units_ += delta > 0 ? 1 : -1;
    c.fast_units = static_cast<std::uint16_t>(c.fast_units + delta);
    if (c.fast_units > 0 && !c.in_fast) {
      fast_chunks_.push_back(&c);  // may throw: the counts above are undone by untrack()
      c.in_fast = true;
    }
  }

  // Clears the words of pages [lo, hi) of `c` (and of its one unit if it is
  // huge), uncounting the tracked ones. Under mu_.
  void forget_units(Chunk& c, std::size_t lo, std::size_t hi) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const bool huge = c.huge.load(std::memory_order_relaxed);
    if (huge) lo = 0;
    for (std::size_t i = lo; i < hi; ++i) {
      std::uint16_t old = c.page[i].exchange(0, std::memory_order_acq_rel);
      if (!PageWord::tracked(old)) continue;
      count_unit(c, PageWord::fast(old), -1);
      count_seen(c, i, -1);
    }
    // A group with no tracked unit left is unseen: what is tracked there
    // next has to be accessed again to count.
    for (std::size_t g = lo / kGroupPages; g * kGroupPages < hi; ++g) {
      const std::size_t first = g * kGroupPages, last = huge ? 1 : first + kGroupPages;
      bool any = false;
      for (std::size_t i = first; i < last && !any; ++i)
        any = PageWord::tracked(c.page[i].load(std::memory_order_relaxed));
      if (!any) c.seen &= ~(std::uint64_t{1} << g);
    }
  }

  // seen_pages_ for one unit of `c` (index i) entering (+1) or leaving (-1)
  // tracking, if its group was seen. Under mu_.
  void count_seen(const Chunk& c, std::size_t i, int delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (((c.seen >> (i / kGroupPages)) & 1) == 0) return;
    std::uint64_t pages = c.huge.load(std::memory_order_relaxed) ? kPagesPerChunk : 1;
    seen_pages_ += delta > 0 ? pages : -pages;
  }

  // Marks `groups` of `c` seen, counting the tracked units of those that
  // were not. A group with no tracked unit (untracked after its access
  // was marked) stays unseen. Under mu_.
  void see_groups(Chunk& c, std::uint64_t groups) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const bool huge = c.huge.load(std::memory_order_relaxed);
    for (groups &= (huge ? 1 : ~std::uint64_t{0}) & ~c.seen; groups; groups &= groups - 1) {
      const auto g = static_cast<std::size_t>(std::countr_zero(groups));
      const std::size_t first = g * kGroupPages, last = huge ? 1 : first + kGroupPages;
      for (std::size_t i = first; i < last; ++i) {
        if (!PageWord::tracked(c.page[i].load(std::memory_order_relaxed))) continue;
        c.seen |= std::uint64_t{1} << g;
        count_seen(c, i, +1);
      }
    }
  }

  // Moves every chunk marked since the last call into the warm list.
  void take_touched() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (Leaf* leaf : leaves_)
      for (std::size_t k = 0; k < kChunksPerLeaf / 64; ++k) {
        if (leaf->touched[k].load(std::memory_order_relaxed) == 0) continue;
        for (std::uint64_t bits = leaf->touched[k].exchange(0, std::memory_order_acq_rel); bits;
             bits &= bits - 1) {
          Chunk* c = leaf->chunks[k * 64 + static_cast<std::size_t>(std::countr_zero(bits))].load(
              std::memory_order_acquire);
          if (c != nullptr && !c->in_warm) {
            c->in_warm = true;
            warm_.push_back(c);
          }
        }
      }
  }

  // Visits and ages the units of `groups` in `c`; returns the groups that
  // still hold heat.
  // Calls visit(addr, word, pages) for tracked unit `i` of `c` with the word
  // as read, then stores decay(heat) (a compare-exchange: a racing access is
  // kept or lost, never corrupted); a unit with heat also has an old stamp
  // held at PageWord::kIdleCap epochs before `now` (PageWord::held_idle).
  // Only units with heat: they are the ones both collect_warm() and sweep()
  // visit, so both store the same words. Returns whether heat is left.
  template <class Visit, class Decay>
  static bool visit_and_age(Chunk& c, std::size_t i, std::uint32_t pages, Visit& visit,
                            Decay& decay, std::uint32_t now) {
    auto& w = c.page[i];
    std::uint16_t old = w.load(std::memory_order_relaxed);
    if (!PageWord::tracked(old)) return false;
    visit(c.base + i * kPageSize, old, pages);
    std::uint32_t h = PageWord::heat(old);
    if (h == 0) return false;
    std::uint16_t aged = PageWord::held_idle(old, now);
    if constexpr (std::is_invocable_v<Decay&, std::uint32_t, bool>) {
      // The word-aware form: it sees whether the heat is all from this
      // epoch, and the word remembers whether heat is left.
      const std::uint32_t left = decay(h, PageWord::seasoned(old));
      aged = PageWord::with_heat(aged, left);
      aged = static_cast<std::uint16_t>(left > 0 ? aged | PageWord::kSeasoned
                                                 : aged & ~PageWord::kSeasoned);
    } else {
      aged = PageWord::with_heat(aged, decay(h));
    }
    if (aged != old) w.compare_exchange_strong(old, aged, std::memory_order_relaxed);
    return PageWord::heat(aged) != 0;
  }

  template <class Visit, class Decay>
  std::uint64_t age_groups(Chunk& c, std::uint64_t groups, Visit& visit, Decay& decay,
                           std::uint32_t now) {
    const bool huge = c.huge.load(std::memory_order_relaxed);
    if (huge) groups &= 1;
    const std::uint32_t pages = huge ? kPagesPerChunk : 1;
    std::uint64_t still = 0;
    for (; groups; groups &= groups - 1) {
      const auto g = static_cast<std::size_t>(std::countr_zero(groups));
      const std::size_t first = g * kGroupPages, last = huge ? 1 : first + kGroupPages;
      bool warm = false;
      for (std::size_t i = first; i < last; ++i)
        warm = visit_and_age(c, i, pages, visit, decay, now) || warm;
      if (warm) still |= std::uint64_t{1} << g;
    }
    return still;
  }

  // Marks the group of page index `i` touched (and the chunk in its leaf).
  static void mark(Leaf* leaf, Chunk* chunk, std::uintptr_t a, std::size_t i) noexcept {
    std::uint64_t bit = std::uint64_t{1} << (i / kGroupPages);
    if ((chunk->touched.load(std::memory_order_relaxed) & bit) != 0) return;
    if (chunk->touched.fetch_or(bit, std::memory_order_release) != 0) return;
    std::size_t ci = (a >> kChunkShift) & (kChunksPerLeaf - 1);
    leaf->touched[ci / 64].fetch_or(std::uint64_t{1} << (ci % 64), std::memory_order_release);
  }

  void record(std::uintptr_t a, std::uint32_t weight) noexcept {
    std::uint32_t every = sample_every_.load(std::memory_order_relaxed);
    if (every > 1) {
      // This tracker's countdown on this thread: a slot per tracker id, so
      // a thread feeding several trackers (engines) samples each 1 in its n.
      // A slot taken over starts at a random point of its period: two
      // trackers whose ids share a slot (equal modulo kSampleSlots) then
      // restart each other's countdown, which adds noise but no bias (a
      // fixed start sampled every access, or none, of alternating ones).
      thread_local SampleSlot slots[kSampleSlots];
      SampleSlot& slot = slots[id_ % kSampleSlots];
      if (slot.owner != id_) slot = {id_, 1 + static_cast<std::uint32_t>(random_draw() % every)};
      std::uint32_t& countdown = slot.countdown;
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
          std::size_t i = unit_index(*chunk, a);
          auto& w = chunk->page[i];
          // Retried while the page stays tracked: a racing access (or aging,
          // or set_fast) changed the word, and this access must still count.
          for (std::uint16_t old = w.load(std::memory_order_relaxed); PageWord::tracked(old);) {
            std::uint32_t heat =
                weight > PageWord::kMaxHeat ? PageWord::kMaxHeat + 1 : PageWord::heat(old) + weight;
            std::uint16_t upd = PageWord::with_epoch(PageWord::with_heat(old, heat), epoch());
            if (upd == old || w.compare_exchange_weak(old, upd, std::memory_order_relaxed)) {
              mark(leaf, chunk, a, i);  // after the word: a racing collect sees one or the other
              return;
            }
          }
        }
      }
    }
    outside_.fetch_add(1, std::memory_order_relaxed);
  }

  struct SampleSlot {
    std::uint64_t owner = 0;  // the id of the tracker counting down here
    std::uint32_t countdown = 0;
  };
  static constexpr std::size_t kSampleSlots = 8;
  // A per-thread pseudo-random draw (splitmix64): cheap, no lock, and the
  // same sequence on every run, so a replay stays reproducible.
  static std::uint64_t random_draw() noexcept {
    thread_local std::uint64_t state = 0;
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  static std::uint64_t next_id() noexcept {
    static std::atomic<std::uint64_t> ids{0};
    return ids.fetch_add(1, std::memory_order_relaxed) + 1;  // never 0: a free slot's owner
  }

  std::atomic<Leaf*>* dir_;
  const std::uint64_t id_ = next_id();  // never reused, unlike an address
  std::atomic<std::uint32_t> sample_every_{1};
  std::atomic<std::uint32_t> epoch_{0};
  std::atomic<std::uint64_t> outside_{0};

  mutable detail::Mutex mu_;
  std::vector<Leaf*> leaves_ ABSL_GUARDED_BY(mu_);
  std::vector<Chunk*> warm_ ABSL_GUARDED_BY(mu_);         // chunks with warm groups
  std::vector<Chunk*> fast_chunks_ ABSL_GUARDED_BY(mu_);  // the fast clock
  std::size_t hand_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t scan_lap_ ABSL_GUARDED_BY(mu_) = 0;    // scan_fast_cold calls
  std::uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // collect_warm calls
  std::uint64_t chunk_count_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t tracked_pages_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t fast_pages_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t fast_units_ ABSL_GUARDED_BY(mu_) = 0;
  std::uint64_t seen_pages_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tierkit
