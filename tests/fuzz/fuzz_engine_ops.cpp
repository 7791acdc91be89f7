// Fuzzes random sequences of engine operations on a SimulatedBackend behind a
// FaultInjectionBackend, against a model of the live regions. Each input byte
// picks an operation; following bytes are its arguments. Invariants checked
// after every operation:
//   - a registration is accepted iff its widened range is valid and overlaps
//     no live region (then AlreadyExists naming the other region);
//   - tracked_bytes() and size() equal the model's sums;
//   - record_access on an address outside every live region adds exactly one
//     outside access per page, inside adds none;
//   - after every step(): for every tracked page the engine's belief (fast or
//     slow) matches the backend, and the stats account for every page moved.
// Past the 200th op, moves may also fail part way and queries fail
// (op_late_failure, op_fail_queries); beliefs are then checked after the
// steps whose queries all worked, and moves counted against moves made over
// those steps only (see op_step). Past the 400th, the simulated machine may
// also form transparent huge pages for regions registered after (op_thp)
// and split them, as the kernel does under pressure (op_split_huge).
#include <cerrno>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "fuzz_check.hpp"
#include "tierkit/backend/fault_injection.hpp"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/engine.hpp"

namespace {

using namespace tierkit;

constexpr std::uintptr_t kBase = 0x100000000000;  // synthetic, 1 GiB aligned
constexpr std::uintptr_t kWindow = 8 << 20;       // 4 chunks of 2 MiB

struct Live {
  std::uintptr_t begin, end;
  RegionHandle handle;
  // Its placement query failed (op_fail_queries): its placed pages keep the
  // registration's belief, wherever they are.
  bool placement_unknown = false;
};

class Harness {
 public:
  explicit Harness(fuzz::Bytes& in)
      : in_(in),
        sim_({{0, 64 * kPageSize}, {1, 1ull << 32}}),
        fi_(sim_, FaultInjectionOptions().with_seed(in.u8())) {
    EngineConfig c;
    c.policy = "threshold:1";
    c.fast_nodes = {0};
    c.slow_nodes = {1};
    c.rate_limit_mbps = 1e6;
    c.burst_bytes = 1ull << 40;
    auto e = Engine::create(c, &fi_, &clock_);
    FUZZ_CHECK(e.ok(), "create");
    engine_ = std::move(*e);
  }
  ~Harness() {
    live_.clear();  // handles unregister before the engine goes
  }

  // Each op byte picks an operation (u8 % 10), up to 200 of them. Every
  // byte value picks one and every argument byte counts, so no value was
  // free for the late-failure ops without changing what the saved inputs
  // do; they come after, in bytes that no input reached before (the loop
  // stopped at 200 ops and ignored the rest, and no saved input reaches 200
  // ops): from the 201st op on, an op byte picks among 12 (u8 % 12), 10 and
  // 11 being op_late_failure and op_fail_queries. The same way, from the
  // 401st op on, among 14: 12 and 13 are op_thp and op_split_huge.
  void run() {
    int ops = 0;
    while (!in_.empty() && ops++ < 200) op(in_.u8() % 10);
    while (!in_.empty() && ops++ < 400) op(in_.u8() % 12);
    while (!in_.empty() && ops++ < 600) op(in_.u8() % 14);
    op_step();
  }

 private:
  void op(int kind) {
    switch (kind) {
      case 0:
      case 1:
        op_register();
        break;
      case 2:
        op_unregister();
        break;
      case 3:
        op_record();
        break;
      case 4:
        op_record_range();
        break;
      case 5:
        op_step();
        break;
      case 6:
        op_set_tag();
        break;
      case 7:
        op_set_policy();
        break;
      case 8:
        op_faults();
        break;
      case 9:
        op_knobs();
        break;
      case 10:
        op_late_failure();
        break;
      case 11:
        op_fail_queries();
        break;
      case 12:
        op_thp();
        break;
      default:
        op_split_huge();
        break;
    }
    check_registry();
  }

  std::uintptr_t addr() { return kBase + (in_.u32() % (kWindow + 2 * kHugePageSize)); }
  bool in_model(std::uintptr_t a) const {
    for (const auto& [b, l] : live_)
      if (a >= l.begin && a < l.end) return true;
    return false;
  }

  void op_register() {
    std::uint8_t kind = in_.u8();
    std::uintptr_t a = addr();
    std::size_t bytes = 1 + in_.u16() % (96 * kPageSize);
    RegionOptions o = RegionOptions().with_name("r").with_tag(static_cast<RegionTag>(in_.u8() % 4));
    if (kind % 8 == 0) o.with_huge_pages();
    if (kind % 31 == 1) a = 0;                                // null
    if (kind % 31 == 2) bytes = 0;                            // empty
    if (kind % 31 == 3) a = std::uintptr_t{1} << 47;          // beyond user space
    if (kind % 31 == 4) bytes = ~std::size_t{0} - kPageSize;  // huge
    if (kind % 31 == 5) o.granularity = 8192;                 // unknown granularity
    std::uint8_t touch = in_.u8();
    bool valid = a != 0 && bytes != 0 &&
                 (o.granularity == kAutoGranularity || o.granularity == kPageSize ||
                  o.granularity == kHugePageSize) &&
                 a < (std::uintptr_t{1} << 47) && bytes <= (std::uintptr_t{1} << 47) - a;
    // Without THP (the simulated default) kAutoGranularity means 4 KiB.
    const std::size_t unit = o.granularity == kHugePageSize ? kHugePageSize : kPageSize;
    std::uintptr_t begin = valid ? align_down(a, unit) : 0;
    std::uintptr_t end = valid ? align_up(a + bytes, unit) : 0;
    bool overlap = false;
    for (const auto& [b, l] : live_) overlap |= valid && l.begin < end && begin < l.end;
    // Place some pages first, as the application's first touch would (only
    // for a registration that will succeed: placing pages of a live region
    // behind the engine's back would make its belief legitimately stale).
    if (valid && !overlap && touch != 0 && end - begin <= 4 * kHugePageSize)
      for (std::uintptr_t p = begin; p < end; p += kPageSize)
        if ((p / kPageSize + touch) % 3 != 0) sim_.touch(p, (p / kPageSize) % 2 ? 1 : 0);
    if (o.granularity == kHugePageSize) had_huge_ = true;
    // Memory tracked in 4 KiB units is not backed by huge pages here: a 4 KiB
    // move would carry the whole huge page, and the engine finds that by
    // asking about one page beside the moved one (account_carried), which on
    // Linux is always there (a huge page is all present), while a simulated
    // huge page may be placed in part. So a huge page an earlier region left
    // there is gone (HugePages tests in huge_pages_test.cpp check carries).
    if (valid && !overlap && unit == kPageSize)
      for (std::uintptr_t c = align_down(begin, kHugePageSize); c < end; c += kHugePageSize)
        sim_.split_huge(c);
    const std::uint64_t failed_queries = fi_.counts().failed_queries;
    auto h = engine_->register_region(reinterpret_cast<void*>(a), bytes, o, in_.u8() % 2);
    if (!valid) {
      FUZZ_CHECK(!h.ok() && h.status().code() == absl::StatusCode::kInvalidArgument, "%s",
                 h.status().ToString().c_str());
      return;
    }
    if (overlap) {
      FUZZ_CHECK(!h.ok() && h.status().code() == absl::StatusCode::kAlreadyExists &&
                     absl::StrContains(h.status().message(), "overlaps region 'r'"),
                 "overlap accepted or unclear: %s", h.status().ToString().c_str());
      return;
    }
    FUZZ_CHECK(h.ok(), "rejected [%lx, %lx): %s", begin, end, h.status().ToString().c_str());
    for (std::uintptr_t p = begin; p < end; p += unit) {
      auto* w = engine_->tracker().word(p);
      FUZZ_CHECK(w != nullptr && PageWord::tracked(w->load()), "page %lx not tracked", p);
    }
    live_.emplace(begin,
                  Live{begin, end, std::move(*h), fi_.counts().failed_queries != failed_queries});
  }

  void op_unregister() {
    if (live_.empty()) return;
    auto it = live_.begin();
    std::advance(it, in_.u8() % live_.size());
    std::uintptr_t b = it->second.begin, e = it->second.end;
    live_.erase(it);  // the handle unregisters
    for (std::uintptr_t p = b; p < e; p += kPageSize) {
      auto* w = engine_->tracker().word(p);
      FUZZ_CHECK(w == nullptr || !PageWord::tracked(w->load()), "page %lx still tracked", p);
    }
  }

  void op_record() {
    std::uintptr_t a = addr();
    std::uint64_t before = engine_->tracker().outside_accesses();
    engine_->record_access(reinterpret_cast<void*>(a));
    std::uint64_t after = engine_->tracker().outside_accesses();
    bool tracked = in_model(a) && !dropped(a);
    FUZZ_CHECK(after - before == (tracked ? 0u : 1u), "record %lx: outside %lu -> %lu", a, before,
               after);
  }

  void op_record_range() {
    std::uintptr_t a = addr();
    std::size_t bytes = in_.u16() % (64 * kPageSize);
    std::uint32_t weight = in_.u8();
    std::uint64_t expect = 0;
    std::uintptr_t end = a + (bytes == 0 ? 1 : bytes);
    for (std::uintptr_t p = align_down(a, kPageSize); weight != 0 && p < end; p += kPageSize)
      expect += !(in_model(p) && !dropped(p));  // weight 0 records nothing, outside or in
    std::uint64_t before = engine_->tracker().outside_accesses();
    engine_->record_access(reinterpret_cast<void*>(a), bytes, weight);
    std::uint64_t got = engine_->tracker().outside_accesses() - before;
    FUZZ_CHECK(got == expect, "range %lx+%zu: %lu outside, expected %lu", a, bytes, got, expect);
  }

  // A page in a live region dropped by the engine after -EFAULT (or the word
  // of a huge unit that was).
  bool dropped(std::uintptr_t a) const {
    auto* w = engine_->tracker().word(a);
    return w == nullptr || !PageWord::tracked(w->load());
  }

  void op_step() {
    clock_.advance_ns(100 * kNsPerMs);
    const std::uint64_t failed_queries = fi_.counts().failed_queries;
    FUZZ_CHECK(engine_->step().ok(), "step");
    EngineStats s = engine_->stats();
    FaultCounts f = fi_.counts();
    // A query failed: the units of a move() that failed with it are believed
    // where they were until the first epoch whose queries work (which finds
    // them at its start, relocate_unlocated), and for good once given up.
    // Moves planned on such a belief may count a page already on the target
    // as moved: exact only when every belief is known.
    stale_ |= s.placement_given_up > 0;
    const bool known = f.failed_queries == failed_queries && !stale_;
    // Units that waited at the last check are counted now, their moves made
    // before it: the moves are not this interval's.
    bool exact = known && !waited_;
    waited_ = s.unlocated_pages > 0;
    // Belief: for every tracked unit with a placed first page.
    for (const auto& [b, l] : live_) {
      auto r = engine_->regions().lookup(reinterpret_cast<void*>(l.begin));
      FUZZ_CHECK(r != nullptr && r->begin == l.begin, "region %lx lost", l.begin);
      exact &= !l.placement_unknown;
      std::size_t unit = r->options.granularity == kHugePageSize ? kHugePageSize : kPageSize;
      if (unit != kPageSize) continue;  // a 2 MiB unit may be split by partial moves
      if (!known || l.placement_unknown) continue;
      for (std::uintptr_t p = l.begin; p < l.end; p += unit) {
        auto* w = engine_->tracker().word(p);
        if (w == nullptr || !PageWord::tracked(w->load())) continue;
        NodeId n = sim_.node_of(p);
        if (n == kNoNode) continue;  // never placed: belief is the registration default
        FUZZ_CHECK(PageWord::fast(w->load()) == (n == 0), "page %lx: belief %d, node %d", p,
                   PageWord::fast(w->load()), n);
      }
    }
    // Accounting (see fault_injection_test.cpp). The per-page faults of a
    // call that fails part way are lost with its statuses.
    const bool late = f.late_failed_calls > 0;
    // A unit whose placement a failed move() and its failed query left
    // unknown waits (unlocated_pages) until a later query counts it.
    std::uint64_t accounted = s.promoted_pages + s.demoted_pages + s.busy_retries + s.failed_pages +
                              s.dropped_pages + s.absent_pages + s.unlocated_pages;
    // The backend counts move_pages entries and the engine pages: equal
    // only while every unit is 4 KiB (a 2 MiB unit is one entry, 512 pages).
    if (!had_huge_) {
      FUZZ_CHECK(accounted <= f.pages && accounted + f.partial >= f.pages,
                 "accounted %lu of %lu pages (%lu partial)", accounted, f.pages, f.partial);
      FUZZ_CHECK(late ? s.dropped_pages <= f.efault : s.dropped_pages == f.efault,
                 "dropped %lu vs %lu", s.dropped_pages, f.efault);
    } else {
      FUZZ_CHECK(accounted <= f.pages * HotnessTracker::kPagesPerChunk,
                 "accounted %lu for %lu entries", accounted, f.pages);
    }
    FUZZ_CHECK(late ? s.busy_retries <= f.ebusy : s.busy_retries == f.ebusy, "busy %lu vs %lu",
               s.busy_retries, f.ebusy);
    // Every move counted happened (a 2 MiB unit may have pages already on the
    // target, counted as moved: only for 4 KiB pages is this exact), since
    // the last step whose beliefs were not all known.
    if (!had_huge_) {
      const std::uint64_t moved = s.promoted_pages + s.demoted_pages, moves = sim_.moves();
      if (exact) {
        FUZZ_CHECK(moved - counted_base_ == moves - moves_base_, "moved %lu, counted %lu",
                   moves - moves_base_, moved - counted_base_);
      } else {
        counted_base_ = moved;
        moves_base_ = moves;
      }
    }
  }

  void op_set_tag() {
    if (live_.empty() || in_.u8() % 8 == 0) {
      FUZZ_CHECK(engine_->regions().set_tag(987654321, RegionTag::hot).code() ==
                     absl::StatusCode::kNotFound,
                 "set_tag on a bad id");
      return;
    }
    auto it = live_.begin();
    std::advance(it, in_.u8() % live_.size());
    FUZZ_CHECK(engine_->regions()
                   .set_tag(it->second.handle.id(), static_cast<RegionTag>(in_.u8() % 4))
                   .ok(),
               "set_tag");
  }

  void op_set_policy() {
    static const char* const kSpecs[] = {
        "threshold:1",   "threshold:0.25",           "automatic",    "kernel", "static",
        "kernel:rate=1", "automatic:reversals=0.04", "threshold:-1", "nope"};
    std::size_t i = in_.u8() % std::size(kSpecs);
    absl::Status s = engine_->set_policy(kSpecs[i]);
    FUZZ_CHECK(s.ok() == (i < 7), "set_policy(%s): %s", kSpecs[i], s.ToString().c_str());
  }

  void op_faults() {
    auto rate = [&] { return (in_.u8() % 5) / 10.0; };  // 0 .. 0.4
    FaultInjectionOptions o;
    o.seed = in_.u8();
    o.ebusy_rate = rate();
    o.enomem_rate = rate() / 2;
    o.efault_rate = rate() / 4;
    o.partial_rate = rate() / 2;
    o.call_failure_rate = rate() / 4;
    fi_.set_options(o);
  }

  // Calls fail part way (with_late_failure) at a rate of 0 to 1 in quarters,
  // with one of the codes LinuxBackend's move() returns then, on top of the
  // per-page faults (op_faults drops it).
  void op_late_failure() {
    static constexpr absl::StatusCode kCodes[] = {absl::StatusCode::kInvalidArgument,
                                                  absl::StatusCode::kPermissionDenied,
                                                  absl::StatusCode::kInternal};
    const std::uint8_t b = in_.u8();
    FaultInjectionOptions o = fi_.options();
    o.late_failure_rate = (b % 5) / 4.0;
    o.late_failure_code = kCodes[b / 5 % std::size(kCodes)];
    fi_.set_options(o);
  }

  // The next 0 to 3 queries fail, at once or from the next late failure on.
  void op_fail_queries() {
    const std::uint8_t b = in_.u8();
    fi_.fail_queries(b % 4, b / 4 % 2);
  }

  // Huge pages from now on: a 2 MiB unit of a region registered after this
  // (with_huge_pages) is one huge page, moved whole. Regions registered
  // before stay as they are, as on Linux.
  void op_thp() { sim_.set_thp_mode(ThpMode::kMadvise); }

  // The simulated machine splits the huge page at an address, if any: its
  // unit's pages then move one by one (check_huge_units, and
  // split_relocated for a unit a lost move left unknown).
  void op_split_huge() { sim_.split_huge(addr()); }

  void op_knobs() {
    switch (in_.u8() % 3) {
      case 0:
        FUZZ_CHECK(engine_->set_fast_budget_bytes((in_.u8() % 80) * kPageSize).ok(), "budget");
        break;
      case 1:
        FUZZ_CHECK(engine_->set_rate_limit_mbps(in_.u8() % 4).ok(), "rate");
        break;
      default:
        (void)engine_->set_promotion_threshold(in_.u8() / 16.0);
        break;
    }
  }

  void check_registry() {
    std::uint64_t bytes = 0;
    for (const auto& [b, l] : live_) bytes += l.end - l.begin;
    FUZZ_CHECK(engine_->regions().tracked_bytes() == bytes, "tracked_bytes %lu, model %lu",
               engine_->regions().tracked_bytes(), bytes);
    FUZZ_CHECK(engine_->regions().size() == live_.size(), "size");
  }

  fuzz::Bytes& in_;
  ManualClock clock_{1};
  SimulatedBackend sim_;
  FaultInjectionBackend fi_;
  std::unique_ptr<Engine> engine_;
  std::map<std::uintptr_t, Live> live_;
  bool had_huge_ = false;
  bool stale_ = false;   // a unit's placement was given up: its belief may stay wrong
  bool waited_ = false;  // units waited for a query at the last check
  // The moves counted and made before the last step whose beliefs were not
  // all known (op_step).
  std::uint64_t counted_base_ = 0, moves_base_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 2048) return 0;
  tierkit::fuzz::Bytes in(data, size);
  Harness h(in);
  h.run();
  return 0;
}
