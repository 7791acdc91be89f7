// In-VM: the emulated machine is what tests/vm/run promises, and
// Topology::discover() finds its two tiers, node 1 slow, from the evidence each
// topology is built to exercise (HMAT in "hmat", kernel memory tiers in
// "kernel-tier").
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tierkit/topology.hpp"
#include "vm_support.hpp"

namespace tierkit::vm {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

// The sysfs facts discovery relies on, checked without tierkit.
TEST(Machine, NodeOneIsCpuLessAndSlowerBySysfs) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  const std::string node = "/sys/devices/system/node/node";
  EXPECT_EQ(read_file(node + "0/cpulist"), "0-1");
  EXPECT_EQ(read_file(node + "1/cpulist"), "");
  const std::string topo = vm_topology();
  if (topo == "hmat") {
    // QEMU's hmat-lb values, as the kernel exposes them.
    EXPECT_EQ(read_file(node + "0/access0/initiators/read_latency"), "80");
    EXPECT_EQ(read_file(node + "1/access0/initiators/read_latency"), "250");
  } else if (topo == "kernel-tier") {
    // dax/kmem memory lands in a lower kernel memory tier than DRAM.
    std::string t0, t1;
    for (const auto& e :
         std::filesystem::directory_iterator("/sys/devices/virtual/memory_tiering")) {
      std::string name = e.path().filename().string();
      if (!absl::StartsWith(name, "memory_tier")) continue;
      std::string nodes = read_file(e.path().string() + "/nodelist");
      if (nodes == "0") t0 = name;
      if (nodes == "1") t1 = name;
    }
    EXPECT_EQ(t0, "memory_tier4");
    EXPECT_EQ(t1, "memory_tier22");
  }
}

TEST(Discovery, FindsTwoTiersWithNodeOneSlow) {
  TIERKIT_VM_REQUIRE_TWO_NODES();
  auto topo = discover_and_print();
  ASSERT_TRUE(topo.ok()) << topo.status();
  EXPECT_EQ(topo->tier_count(), 2);
  EXPECT_EQ(topo->fast_nodes(), NodeSet{kFastNode}) << topo->fast_nodes().to_string();
  EXPECT_EQ(topo->slow_nodes(), NodeSet{kSlowNode}) << topo->slow_nodes().to_string();
  EXPECT_EQ(topo->tier_of(kSlowNode), 1);
  EXPECT_FALSE(topo->single_tier());
  EXPECT_FALSE(topo->from_override());
  const NodeInfo* slow = topo->node(kSlowNode);
  const NodeInfo* fast = topo->node(kFastNode);
  ASSERT_NE(slow, nullptr);
  ASSERT_NE(fast, nullptr);
  EXPECT_TRUE(slow->cpus.empty());
  EXPECT_EQ(fast->cpus, (std::vector<int>{0, 1}));
  EXPECT_GT(slow->capacity_bytes, 512 * kMiB);
  EXPECT_GT(slow->free_bytes, 0u);
  if (vm_topology() == "hmat") {
    EXPECT_TRUE(absl::StartsWith(topo->decided_by(), "HMAT")) << topo->decided_by();
    ASSERT_TRUE(fast->latency_ns.has_value());
    ASSERT_TRUE(slow->latency_ns.has_value());
    EXPECT_LT(*fast->latency_ns, *slow->latency_ns);
  } else if (vm_topology() == "kernel-tier") {
    EXPECT_EQ(topo->decided_by(), "kernel memory tiers");
    EXPECT_EQ(fast->kernel_memory_tier, 4);
    EXPECT_EQ(slow->kernel_memory_tier, 22);
  }
}

}  // namespace
}  // namespace tierkit::vm
