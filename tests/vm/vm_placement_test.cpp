// In-VM: LinuxBackend::bind places pages where asked, and bind(move=true)
// migrates a whole touched range between the DRAM node and the slow node.
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "gtest/gtest.h"
#include "tierkit/backend/linux.hpp"
#include "vm_support.hpp"

namespace tierkit::vm {
namespace {

constexpr std::size_t kBytes = 64 * kMiB;

class Placement : public ::testing::TestWithParam<NodeId> {};

TEST_P(Placement, BindThenTouchPlacesEveryPageOnTheNode) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  const NodeId node = GetParam();
  LinuxBackend be;
  auto mem = be.map(kBytes);
  ASSERT_TRUE(mem.ok()) << mem.status();
  ASSERT_TRUE(be.bind(*mem, kBytes, NodeSet{node}, BindMode::kBind, /*move=*/false).ok());
  // Nothing is present before the first touch. Kernel 6.1 reports -EFAULT
  // (not -ENOENT) for pages whose page table does not exist yet.
  std::vector<int> before = nodes_of(be, *mem, kBytes);
  EXPECT_EQ(static_cast<std::size_t>(std::count_if(
                before.begin(), before.end(), [](int s) { return s == -ENOENT || s == -EFAULT; })),
            before.size())
      << "pages present before the first touch: " << histogram(before);
  std::memset(*mem, 0x5a, kBytes);
  EXPECT_TRUE(all_on(be, *mem, kBytes, node));
  EXPECT_TRUE(be.unmap(*mem, kBytes).ok());
}

INSTANTIATE_TEST_SUITE_P(Nodes, Placement, ::testing::Values(kSlowNode, kFastNode),
                         [](const auto& info) { return absl::StrCat("node", info.param); });

TEST(PlacementInterleave, InterleaveSpreadsPagesOverBothNodes) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  LinuxBackend be;
  auto mem = be.map(kBytes);
  ASSERT_TRUE(mem.ok()) << mem.status();
  ASSERT_TRUE(
      be.bind(*mem, kBytes, NodeSet{kFastNode, kSlowNode}, BindMode::kInterleave, false).ok());
  std::memset(*mem, 1, kBytes);
  std::vector<int> status = nodes_of(be, *mem, kBytes);
  std::size_t on0 = static_cast<std::size_t>(std::count(status.begin(), status.end(), 0));
  std::size_t on1 = static_cast<std::size_t>(std::count(status.begin(), status.end(), 1));
  EXPECT_EQ(on0 + on1, status.size()) << histogram(status);
  // Interleaving is per page (or per huge page with THP): close to half each.
  EXPECT_GT(on0, status.size() * 4 / 10) << histogram(status);
  EXPECT_GT(on1, status.size() * 4 / 10) << histogram(status);
  EXPECT_TRUE(be.unmap(*mem, kBytes).ok());
}

// mbind(MPOL_MF_MOVE) of the whole touched range: 0 -> 1 -> 0, with THP on
// (the default here) and off, checking every page's node and the data.
class MbindMove : public ::testing::TestWithParam<bool> {};

TEST_P(MbindMove, WholeRangeMovesToSlowAndBack) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  const bool huge = GetParam();
  LinuxBackend be;
  auto mem = be.map(kBytes);
  ASSERT_TRUE(mem.ok()) << mem.status();
  auto* words = static_cast<std::uint64_t*>(*mem);
  const std::size_t n = kBytes / sizeof(std::uint64_t);
  ASSERT_EQ(::madvise(*mem, kBytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE), 0);
  ASSERT_TRUE(be.bind(*mem, kBytes, NodeSet{kFastNode}, BindMode::kBind, false).ok());
  for (std::size_t i = 0; i < n; ++i) words[i] = i * 0x9e3779b97f4a7c15ull;
  ASSERT_TRUE(all_on(be, *mem, kBytes, kFastNode));

  for (NodeId to : {kSlowNode, kFastNode, kSlowNode, kFastNode}) {
    std::int64_t t0 = SteadyClock::instance().now_ns();
    absl::Status s = be.bind(*mem, kBytes, NodeSet{to}, BindMode::kBind, /*move=*/true);
    double secs = seconds_since(t0);
    ASSERT_TRUE(s.ok()) << s;
    std::printf("mbind move of %zu MiB to node %d (%s pages): %.3f s, %.0f MiB/s\n", kBytes / kMiB,
                to, huge ? "huge" : "base", secs, static_cast<double>(kBytes / kMiB) / secs);
    ASSERT_TRUE(all_on(be, *mem, kBytes, to)) << "after mbind move to node " << to;
  }
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad += words[i] != i * 0x9e3779b97f4a7c15ull;
  EXPECT_EQ(bad, 0u) << "words changed by migration";
  report("bytes_verified", kBytes);
  EXPECT_TRUE(be.unmap(*mem, kBytes).ok());
}

INSTANTIATE_TEST_SUITE_P(Thp, MbindMove, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "huge" : "base"; });

}  // namespace
}  // namespace tierkit::vm
