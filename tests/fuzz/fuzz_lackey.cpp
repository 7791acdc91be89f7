// Fuzzes the valgrind lackey trace line parser (sim::parse_lackey_line).
// Invariants: total (every input is a kind), data records have a size in
// 1..kMaxSize, and a record re-rendered in lackey's own format parses back to
// itself.
#include <cstdint>
#include <string>

#include "absl/strings/str_format.h"
#include "fuzz_check.hpp"
#include "tierkit/sim/lackey.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using tierkit::sim::LackeyRecord;
  std::string line(reinterpret_cast<const char*>(data), size);
  LackeyRecord r = tierkit::sim::parse_lackey_line(line);
  FUZZ_CHECK(r.kind <= LackeyRecord::kMalformed, "kind %d", static_cast<int>(r.kind));
  if (r.kind == LackeyRecord::kLoad || r.kind == LackeyRecord::kStore ||
      r.kind == LackeyRecord::kModify || r.kind == LackeyRecord::kInstruction) {
    FUZZ_CHECK(r.size >= 1 && r.size <= LackeyRecord::kMaxSize, "size %u", r.size);
    const char letter = "LSMI"[r.kind == LackeyRecord::kLoad     ? 0
                               : r.kind == LackeyRecord::kStore  ? 1
                               : r.kind == LackeyRecord::kModify ? 2
                                                                 : 3];
    std::string again = absl::StrFormat(" %c %08x,%u\n", letter, r.addr, r.size);
    LackeyRecord r2 = tierkit::sim::parse_lackey_line(again);
    FUZZ_CHECK(r2.kind == r.kind && r2.addr == r.addr && r2.size == r.size, "'%s'", again.c_str());
  }
  FUZZ_CHECK(r.is_data() == (r.kind == LackeyRecord::kLoad || r.kind == LackeyRecord::kStore ||
                             r.kind == LackeyRecord::kModify),
             "is_data");
  return 0;
}
