// Tests for tierkit/topology.hpp: classification of every fixture in
// tests/fixtures (real hwloc 2.9 exports from QEMU, plus two hand-edited ones),
// the fake-sysfs kernel tiers, the tier override (API and TIERKIT_TIERS), the
// rule helpers on synthetic nodes, the text/JSON output and the live machine.
#include "tierkit/topology.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace tierkit {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

std::string fixture(const std::string& name) {
  return std::string(TIERKIT_FIXTURES_DIR) + "/" + name;
}

// Options for a fixture, ignoring any TIERKIT_TIERS in the test environment.
TopologyOptions xml(const std::string& name) {
  TopologyOptions o;
  o.xml_path = fixture(name);
  o.use_env = false;
  return o;
}

Topology load(const TopologyOptions& o) {
  absl::StatusOr<Topology> t = Topology::discover(o);
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return Topology::from_nodes({});
  return *std::move(t);
}

std::vector<int> ids(const NodeSet& s) { return s.to_vector(); }

// A temporary sysfs tree with memory_tiering nodelists (and anything else).
class FakeSysfs {
 public:
  FakeSysfs() {
    std::string templ = ::testing::TempDir() + "tierkit-sysfs-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    const char* dir = mkdtemp(buf.data());
    EXPECT_NE(dir, nullptr);
    root_ = dir != nullptr ? dir : "/nonexistent";
  }
  ~FakeSysfs() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  void write(const std::string& rel, const std::string& text) {
    const std::filesystem::path p = std::filesystem::path(root_) / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  void tier(int id, const std::string& nodelist) {
    write("devices/virtual/memory_tiering/memory_tier" + std::to_string(id) + "/nodelist",
          nodelist + "\n");
  }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

// Sets or clears TIERKIT_TIERS for one test and restores it afterwards.
class EnvGuard {
 public:
  explicit EnvGuard(const char* value) {
    if (const char* old = std::getenv("TIERKIT_TIERS")) old_ = old;
    if (value != nullptr)
      setenv("TIERKIT_TIERS", value, 1);
    else
      unsetenv("TIERKIT_TIERS");
  }
  ~EnvGuard() {
    if (old_)
      setenv("TIERKIT_TIERS", old_->c_str(), 1);
    else
      unsetenv("TIERKIT_TIERS");
  }

 private:
  std::optional<std::string> old_;
};

// ---------------------------------------------------------------- fixtures

TEST(TopologyFixture, LaptopHasOneTierAndSaysSo) {
  Topology t = load(xml("qemu-laptop-one-node.xml"));
  ASSERT_EQ(t.nodes().size(), 1u);
  EXPECT_EQ(t.tier_count(), 1);
  EXPECT_TRUE(t.single_tier());
  EXPECT_TRUE(t.slow_nodes().empty());
  EXPECT_THAT(ids(t.fast_nodes()), ElementsAre(0));
  EXPECT_EQ(t.nodes()[0].kind, NodeKind::kDram);
  EXPECT_THAT(t.nodes()[0].cpus, ElementsAre(0, 1));
  EXPECT_EQ(t.nodes()[0].capacity_bytes, 1005031424u);
  EXPECT_EQ(t.nodes()[0].free_bytes, 0u);  // Unknown for an XML.
  EXPECT_THAT(t.summary(), StartsWith("one memory tier (node 0): nothing to tier on this machine"));
  EXPECT_THAT(t.nodes()[0].reason, HasSubstr("only memory node"));
}

TEST(TopologyFixture, TwoSocketDramIsOneTier) {
  Topology t = load(xml("qemu-two-socket-dram.xml"));
  ASSERT_EQ(t.nodes().size(), 2u);
  EXPECT_TRUE(t.single_tier());
  EXPECT_THAT(ids(t.fast_nodes()), ElementsAre(0, 1));
  EXPECT_TRUE(t.slow_nodes().empty());
  EXPECT_THAT(t.nodes()[0].cpus, ElementsAre(0, 1));
  EXPECT_THAT(t.nodes()[1].cpus, ElementsAre(2, 3));
  EXPECT_EQ(t.nodes()[0].kind, NodeKind::kDram);
  EXPECT_EQ(t.nodes()[1].kind, NodeKind::kDram);
  EXPECT_FALSE(t.nodes()[1].latency_ns.has_value());
  EXPECT_THAT(t.summary(), StartsWith("one memory tier (nodes 0,1): nothing to tier"));
  EXPECT_THAT(t.summary(), HasSubstr("no evidence that any node is slower"));
  EXPECT_EQ(t.decided_by(), "no evidence");
}

TEST(TopologyFixture, CpulessHmatNodeIsSlowByLatency) {
  Topology t = load(xml("qemu-dram-plus-cpuless-hmat.xml"));
  ASSERT_EQ(t.nodes().size(), 2u);
  EXPECT_EQ(t.tier_count(), 2);
  EXPECT_THAT(ids(t.fast_nodes()), ElementsAre(0));
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(1));
  EXPECT_THAT(ids(t.tier_nodes(Tier::slow)), ElementsAre(1));
  EXPECT_EQ(t.tier_of(1), 1);
  const NodeInfo& dram = *t.node(0);
  const NodeInfo& cxl = *t.node(1);
  EXPECT_EQ(dram.kind, NodeKind::kDram);
  EXPECT_EQ(cxl.kind, NodeKind::kSlowMemory);
  // hwloc hangs the CPU-less node under the package (HMAT initiator), but its
  // CPUs belong to node 0.
  EXPECT_THAT(dram.cpus, ElementsAre(0, 1));
  EXPECT_THAT(cxl.cpus, IsEmpty());
  EXPECT_EQ(dram.latency_ns, 80u);
  EXPECT_EQ(cxl.latency_ns, 250u);
  EXPECT_EQ(cxl.read_latency_ns, 250u);
  EXPECT_EQ(cxl.write_latency_ns, 250u);
  EXPECT_EQ(dram.bandwidth_mibs, 102400u);
  EXPECT_EQ(cxl.bandwidth_mibs, 30720u);
  EXPECT_EQ(cxl.read_bandwidth_mibs, 30720u);
  EXPECT_EQ(cxl.write_bandwidth_mibs, 30720u);
  EXPECT_EQ(cxl.capacity_bytes, 1054535680u);
  EXPECT_FALSE(cxl.kernel_memory_tier.has_value());  // XML + default /sys: not read.
  EXPECT_EQ(t.decided_by(), "HMAT latency");
  EXPECT_THAT(cxl.reason, AllOf(HasSubstr("HMAT latency 250 ns"), HasSubstr("beyond 1.3x")));
  EXPECT_THAT(dram.reason, HasSubstr("within 1.3x"));
  EXPECT_EQ(t.summary(),
            "2 tiers: fast = node 0 (DRAM), slow = node 1 (CXL/slow); decided by HMAT latency");
  EXPECT_FALSE(t.from_override());
  EXPECT_FALSE(t.simulated());
}

TEST(TopologyFixture, HmatWinsOverOneSharedKernelTier) {
  FakeSysfs sys;
  sys.tier(4, "0-1");
  TopologyOptions o = xml("qemu-dram-plus-cpuless-hmat.xml");
  o.sysfs_root = sys.root();
  Topology t = load(o);
  ASSERT_EQ(t.nodes().size(), 2u);
  EXPECT_EQ(t.node(0)->kernel_memory_tier, 4);
  EXPECT_EQ(t.node(1)->kernel_memory_tier, 4);
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(1));
  EXPECT_EQ(t.decided_by(), "HMAT latency");
}

TEST(TopologyFixture, DaxKmemNodeIsSlowPmemFromHwlocInfos) {
  Topology t = load(xml("qemu-dram-plus-daxkmem.xml"));
  ASSERT_EQ(t.nodes().size(), 2u);
  EXPECT_EQ(t.tier_count(), 2);
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(1));
  const NodeInfo& pmem = *t.node(1);
  EXPECT_EQ(pmem.kind, NodeKind::kPmem);
  EXPECT_EQ(pmem.subtype, "NVM");
  EXPECT_EQ(pmem.dax_type, "NVM");
  EXPECT_EQ(pmem.dax_device, "dax0.0");
  EXPECT_EQ(pmem.dax_parent, "e820_pmem/ndbus0/region0");
  EXPECT_THAT(pmem.cpus, IsEmpty());
  EXPECT_FALSE(pmem.latency_ns.has_value());
  EXPECT_EQ(pmem.capacity_bytes, 939524096u);
  EXPECT_EQ(t.decided_by(), "node kinds");
  EXPECT_THAT(pmem.reason, AllOf(HasSubstr("subtype NVM"), HasSubstr("dax0.0")));
  EXPECT_THAT(t.node(0)->cpus, ElementsAre(0, 1));
  EXPECT_EQ(t.summary(),
            "2 tiers: fast = node 0 (DRAM), slow = node 1 (PMEM); decided by node kinds");
}

TEST(TopologyFixture, DaxKmemKernelTiersDecideBeforeKinds) {
  FakeSysfs sys;
  sys.tier(4, "0");
  sys.tier(22, "1");
  TopologyOptions o = xml("qemu-dram-plus-daxkmem.xml");
  o.sysfs_root = sys.root();
  Topology t = load(o);
  ASSERT_EQ(t.nodes().size(), 2u);
  EXPECT_EQ(t.node(0)->kernel_memory_tier, 4);
  EXPECT_EQ(t.node(1)->kernel_memory_tier, 22);
  EXPECT_EQ(t.decided_by(), "kernel memory tiers");
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(1));
  EXPECT_THAT(t.node(1)->reason, HasSubstr("memory_tier22"));
  EXPECT_THAT(t.to_table(), HasSubstr("memory_tier22"));
}

TEST(TopologyFixture, KernelTiersCanOverruleKinds) {
  // The kernel says the CPU-less node is the faster one: rule (b) beats (c).
  FakeSysfs sys;
  sys.tier(3, "1");
  sys.tier(4, "0");
  TopologyOptions o = xml("qemu-dram-plus-cpuless-nohmat.xml");
  o.sysfs_root = sys.root();
  Topology t = load(o);
  EXPECT_EQ(t.decided_by(), "kernel memory tiers");
  EXPECT_THAT(ids(t.fast_nodes()), ElementsAre(1));
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(0));
}

TEST(TopologyFixture, TwoSocketsTwoCxlNodesWithHmat) {
  Topology t = load(xml("qemu-two-socket-two-cxl-hmat.xml"));
  ASSERT_EQ(t.nodes().size(), 4u);
  EXPECT_EQ(t.tier_count(), 2);
  EXPECT_THAT(ids(t.fast_nodes()), ElementsAre(0, 1));
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(2, 3));
  EXPECT_THAT(t.node(0)->cpus, ElementsAre(0, 1));
  EXPECT_THAT(t.node(1)->cpus, ElementsAre(2, 3));
  EXPECT_THAT(t.node(2)->cpus, IsEmpty());
  EXPECT_THAT(t.node(3)->cpus, IsEmpty());
  for (int n : {0, 1}) {
    EXPECT_EQ(t.node(n)->latency_ns, 80u) << n;
    EXPECT_EQ(t.node(n)->bandwidth_mibs, 102400u) << n;
    EXPECT_EQ(t.node(n)->kind, NodeKind::kDram) << n;
  }
  for (int n : {2, 3}) {  // Each read from its own socket's CPUs.
    EXPECT_EQ(t.node(n)->latency_ns, 250u) << n;
    EXPECT_EQ(t.node(n)->bandwidth_mibs, 30720u) << n;
    EXPECT_EQ(t.node(n)->kind, NodeKind::kSlowMemory) << n;
  }
  EXPECT_EQ(t.summary(),
            "2 tiers: fast = nodes 0,1 (DRAM), slow = nodes 2,3 (CXL/slow); decided by HMAT "
            "latency");
}

TEST(TopologyFixture, CpulessNodeWithoutHmatIsSlowByKind) {
  Topology t = load(xml("qemu-dram-plus-cpuless-nohmat.xml"));
  ASSERT_EQ(t.nodes().size(), 2u);
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(1));
  EXPECT_EQ(t.node(1)->kind, NodeKind::kSlowMemory);
  EXPECT_FALSE(t.node(1)->latency_ns.has_value());
  EXPECT_FALSE(t.node(1)->bandwidth_mibs.has_value());
  EXPECT_EQ(t.decided_by(), "node kinds");
  EXPECT_THAT(t.node(1)->reason, HasSubstr("CPU-less"));
}

TEST(TopologyFixture, OneSharedKernelTierSaysNothing) {
  FakeSysfs sys;
  sys.tier(4, "0-1");
  TopologyOptions o = xml("qemu-dram-plus-cpuless-nohmat.xml");
  o.sysfs_root = sys.root();
  Topology t = load(o);
  EXPECT_EQ(t.node(1)->kernel_memory_tier, 4);
  EXPECT_EQ(t.decided_by(), "node kinds");
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(1));
}

TEST(TopologyFixture, HwlocMemoryTierAndCxlDramSubtypeAreReadAtRunTime) {
  Topology t = load(xml("handmade-cxl-dram-memorytier.xml"));
  ASSERT_EQ(t.nodes().size(), 2u);
  EXPECT_EQ(t.node(0)->subtype, "DRAM");
  EXPECT_EQ(t.node(1)->subtype, "CXL-DRAM");
  EXPECT_EQ(t.node(1)->kind, NodeKind::kSlowMemory);
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(1));
  EXPECT_THAT(t.node(1)->reason, AllOf(HasSubstr("hwloc MemoryTier 1"), HasSubstr("CXL-DRAM")));
}

TEST(TopologyFixture, HbmIsNeverSlow) {
  Topology t = load(xml("handmade-dram-plus-hbm.xml"));
  ASSERT_EQ(t.nodes().size(), 2u);
  EXPECT_EQ(t.node(1)->kind, NodeKind::kHbm);
  EXPECT_TRUE(t.single_tier());
  EXPECT_EQ(t.tier_of(1), 0);
  EXPECT_THAT(t.node(1)->reason, HasSubstr("HBM is never slow"));
  EXPECT_THAT(t.summary(), StartsWith("one memory tier (nodes 0,1)"));
}

TEST(TopologyFixture, XmlBufferGivesTheSameResultAsTheFile) {
  std::ifstream in(fixture("qemu-two-socket-two-cxl-hmat.xml"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(text.empty());
  TopologyOptions o;
  o.xml_buffer = text;
  o.use_env = false;
  Topology t = load(o);
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(2, 3));
  EXPECT_EQ(t.node(3)->latency_ns, 250u);
}

TEST(TopologyFixture, BadXmlIsAnErrorNotACrash) {
  TopologyOptions o;
  o.use_env = false;
  o.xml_buffer = "this is not <xml";
  EXPECT_FALSE(Topology::discover(o).ok());
  o.xml_buffer = "";
  EXPECT_FALSE(Topology::discover(o).ok());
  o.xml_buffer.reset();
  o.xml_path = fixture("does-not-exist.xml");
  absl::StatusOr<Topology> t = Topology::discover(o);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("does-not-exist.xml"));
}

// ---------------------------------------------------------------- rules on synthetic nodes

NodeInfo make(NodeId id, NodeKind kind, std::vector<int> cpus) {
  NodeInfo n;
  n.os_index = id;
  n.kind = kind;
  n.cpus = std::move(cpus);
  return n;
}

detail::topo::Evidence evidence(std::size_t n) {
  detail::topo::Evidence ev;
  ev.hwloc_memory_tier.resize(n);
  ev.kind_reason.assign(n, "kind");
  return ev;
}

std::vector<int> tiers(const std::vector<NodeInfo>& nodes) {
  std::vector<int> out;
  for (const auto& n : nodes) out.push_back(n.tier);
  return out;
}

TEST(TopologyRules, LatencyMakesThreeTiers) {
  std::vector<NodeInfo> nodes = {make(0, NodeKind::kDram, {0}), make(1, NodeKind::kDram, {1}),
                                 make(2, NodeKind::kSlowMemory, {}),
                                 make(3, NodeKind::kSlowMemory, {})};
  const std::uint64_t lat[] = {80, 100, 200, 600};  // 100 <= 1.3 * 80; 600 > 1.3 * 200.
  for (std::size_t i = 0; i < nodes.size(); ++i) nodes[i].latency_ns = lat[i];
  EXPECT_EQ(detail::topo::classify(nodes, evidence(4)), "HMAT latency");
  EXPECT_THAT(tiers(nodes), ElementsAre(0, 0, 1, 2));
  EXPECT_THAT(nodes[3].reason, HasSubstr("7.5x"));
}

TEST(TopologyRules, BandwidthDecidesWhenLatencyIsMissing) {
  std::vector<NodeInfo> nodes = {make(0, NodeKind::kDram, {0}), make(1, NodeKind::kDram, {1}),
                                 make(2, NodeKind::kDram, {2})};
  nodes[0].bandwidth_mibs = 100000;
  nodes[1].bandwidth_mibs = 80000;  // >= 100000 / 1.3
  nodes[2].bandwidth_mibs = 20000;
  nodes[0].latency_ns = 80;  // Latency on one node only: not used.
  EXPECT_EQ(detail::topo::classify(nodes, evidence(3)), "HMAT bandwidth");
  EXPECT_THAT(tiers(nodes), ElementsAre(0, 0, 1));
  EXPECT_THAT(nodes[2].reason, HasSubstr("HMAT bandwidth 20000 MiB/s"));
}

TEST(TopologyRules, EqualHmatMeansOneTierEvenForCpulessNodes) {
  std::vector<NodeInfo> nodes = {make(0, NodeKind::kDram, {0}), make(1, NodeKind::kSlowMemory, {})};
  nodes[0].latency_ns = 100;
  nodes[1].latency_ns = 110;
  EXPECT_EQ(detail::topo::classify(nodes, evidence(2)), "HMAT (all alike)");
  EXPECT_THAT(tiers(nodes), ElementsAre(0, 0));
}

TEST(TopologyRules, PartialHmatFallsThroughToKinds) {
  std::vector<NodeInfo> nodes = {make(0, NodeKind::kDram, {0}), make(1, NodeKind::kSlowMemory, {}),
                                 make(2, NodeKind::kPmem, {})};
  nodes[0].latency_ns = 80;
  EXPECT_EQ(detail::topo::classify(nodes, evidence(3)), "node kinds");
  EXPECT_THAT(tiers(nodes), ElementsAre(0, 1, 2));
}

TEST(TopologyRules, DistancesDecideWhenNothingElseDoes) {
  // CPU-less node that hwloc calls DRAM: kinds do not separate, distances do.
  std::vector<NodeInfo> nodes = {make(0, NodeKind::kDram, {0, 1}), make(1, NodeKind::kDram, {})};
  detail::topo::Evidence ev = evidence(2);
  ev.distance = {{{0, 0}, 10}, {{0, 1}, 30}, {{1, 0}, 30}, {{1, 1}, 10}};
  EXPECT_EQ(detail::topo::classify(nodes, ev), "NUMA distances");
  EXPECT_THAT(tiers(nodes), ElementsAre(0, 1));
  EXPECT_THAT(nodes[1].reason, HasSubstr("NUMA distance 30"));
  // Equal distances: one tier, "no evidence".
  ev.distance[{0, 1}] = 11;
  EXPECT_EQ(detail::topo::classify(nodes, ev), "no evidence");
  EXPECT_THAT(tiers(nodes), ElementsAre(0, 0));
}

TEST(TopologyRules, HbmWithWorseLatencyStaysFast) {
  std::vector<NodeInfo> nodes = {make(0, NodeKind::kDram, {0}), make(1, NodeKind::kHbm, {}),
                                 make(2, NodeKind::kSlowMemory, {})};
  nodes[0].latency_ns = 80;
  nodes[1].latency_ns = 120;
  nodes[2].latency_ns = 300;
  detail::topo::classify(nodes, evidence(3));
  EXPECT_THAT(tiers(nodes), ElementsAre(0, 0, 1));
}

TEST(TopologyRules, ClusterChainsFromEachTiersBest) {
  EXPECT_THAT(detail::topo::cluster({10, 12, 13, 17, 100}, true), ElementsAre(0, 0, 0, 1, 2));
  EXPECT_THAT(detail::topo::cluster({}, true), IsEmpty());
}

TEST(TopologyRules, KernelListParsing) {
  EXPECT_THAT(*detail::topo::parse_kernel_list("0-1,3\n"), ElementsAre(0, 1, 3));
  EXPECT_THAT(*detail::topo::parse_kernel_list("\n"), IsEmpty());
  EXPECT_FALSE(detail::topo::parse_kernel_list("x").ok());
  EXPECT_FALSE(detail::topo::parse_kernel_list("3-1").ok());
  EXPECT_FALSE(detail::topo::parse_kernel_list("-1").ok());
}

TEST(TopologyRules, KindNames) {
  EXPECT_EQ(kind_name(NodeKind::kDram), "DRAM");
  EXPECT_EQ(kind_name(NodeKind::kSlowMemory), "CXL/slow");
  EXPECT_EQ(kind_name(NodeKind::kPmem), "PMEM");
  EXPECT_EQ(kind_name(NodeKind::kHbm), "HBM");
  EXPECT_EQ(kind_name(NodeKind::kUnknown), "unknown");
}

// ---------------------------------------------------------------- override

TEST(TopologyOverride, ParsesGoodSpecs) {
  auto t = Topology::parse_override("0,1/2");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 2u);
  EXPECT_THAT(ids((*t)[0]), ElementsAre(0, 1));
  EXPECT_THAT(ids((*t)[1]), ElementsAre(2));

  t = Topology::parse_override(" 0 , 1 / 2-4 ");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(ids((*t)[1]), ElementsAre(2, 3, 4));

  t = Topology::parse_override("1023");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 1u);
  EXPECT_THAT(ids((*t)[0]), ElementsAre(1023));
}

TEST(TopologyOverride, RejectsMalformedSpecsWithAClearMessage) {
  const std::map<std::string, std::string> cases = {
      {"", "is empty"},
      {"   ", "is empty"},
      {"0//1", "tier 1 is empty"},
      {"0/", "tier 1 is empty"},
      {"/0", "tier 0 is empty"},
      {"0,,1", "empty node entry"},
      {"0,x", "'x' in tier 0 is not a node number"},
      {"0/1.5", "'1.5' in tier 1 is not a node number"},
      {"0/1-", "is not a node number"},
      {"-1", "is negative"},
      {"0/-3", "is negative"},
      {"1024", "node 1024 in tier 0 is out of range"},
      {"99999999999999999999", "out of range"},
      {"0/0", "node 0 appears twice (tier 0 and tier 1)"},
      {"0-2/1", "node 1 appears twice"},
      {"3-1", "is reversed"},
      {"x", "is not a node number"},
      {"0/1a", "is not a node number"},
      {"0-", "is not a node number"},
      {"0/1024", "out of range"},
      {"0,1/1", "appears twice"},
      {"0-3/2", "appears twice"},
  };
  for (const auto& [spec, want] : cases) {
    auto t = Topology::parse_override(spec);
    ASSERT_FALSE(t.ok()) << "spec '" << spec << "' parsed";
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << spec;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(want)) << "spec '" << spec << "'";
    EXPECT_THAT(std::string(t.status().message()), HasSubstr("tier override")) << spec;
  }
}

TEST(TopologyOverride, OverrideWinsOverHmat) {
  TopologyOptions o = xml("qemu-dram-plus-cpuless-hmat.xml");
  o.override_spec = "1/0";
  Topology t = load(o);
  EXPECT_TRUE(t.from_override());
  EXPECT_THAT(ids(t.fast_nodes()), ElementsAre(1));
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(0));
  EXPECT_EQ(t.node(1)->kind, NodeKind::kSlowMemory);  // Kinds are still detected.
  EXPECT_THAT(t.node(0)->reason, HasSubstr("override"));
  EXPECT_THAT(t.summary(), HasSubstr("set by override"));
}

TEST(TopologyOverride, OneTierOverride) {
  TopologyOptions o = xml("qemu-dram-plus-cpuless-hmat.xml");
  o.override_spec = "0,1";
  Topology t = load(o);
  EXPECT_TRUE(t.single_tier());
  EXPECT_THAT(t.summary(), StartsWith("one memory tier (nodes 0,1)"));
}

TEST(TopologyOverride, UnknownNodeIsNamed) {
  TopologyOptions o = xml("qemu-dram-plus-cpuless-hmat.xml");
  o.override_spec = "0/1,5";
  absl::StatusOr<Topology> t = Topology::discover(o);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()),
              AllOf(HasSubstr("node 5"), HasSubstr("not a memory node"), HasSubstr("nodes 0,1")));
}

TEST(TopologyOverride, LeftOutNodesAreNamed) {
  TopologyOptions o = xml("qemu-two-socket-two-cxl-hmat.xml");
  o.override_spec = "0/1";
  absl::StatusOr<Topology> t = Topology::discover(o);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("leaves out nodes 2,3"));
}

TEST(TopologyOverride, FromEnvironment) {
  EnvGuard env("1/0");
  TopologyOptions o = xml("qemu-dram-plus-cpuless-hmat.xml");
  o.use_env = true;
  Topology t = load(o);
  EXPECT_TRUE(t.from_override());
  EXPECT_THAT(ids(t.fast_nodes()), ElementsAre(1));
  EXPECT_THAT(t.node(1)->reason, HasSubstr("TIERKIT_TIERS"));

  o.use_env = false;  // Ignored when use_env is off.
  Topology ignored = load(o);
  EXPECT_FALSE(ignored.from_override());
  EXPECT_THAT(ids(ignored.fast_nodes()), ElementsAre(0));

  o.use_env = true;  // The API option wins over the environment.
  o.override_spec = "0/1";
  Topology api = load(o);
  EXPECT_THAT(ids(api.fast_nodes()), ElementsAre(0));
  EXPECT_THAT(api.node(0)->reason, Not(HasSubstr("TIERKIT_TIERS")));
}

TEST(TopologyOverride, MalformedEnvironmentNamesTheVariable) {
  TopologyOptions o = xml("qemu-dram-plus-cpuless-hmat.xml");
  o.use_env = true;
  {
    EnvGuard env("0/x");
    absl::StatusOr<Topology> t = Topology::discover(o);
    ASSERT_FALSE(t.ok());
    EXPECT_THAT(
        std::string(t.status().message()),
        AllOf(StartsWith("TIERKIT_TIERS"), HasSubstr("'x' in tier 1 is not a node number")));
  }
  {
    EnvGuard env("0/7");
    absl::StatusOr<Topology> t = Topology::discover(o);
    ASSERT_FALSE(t.ok());
    EXPECT_THAT(std::string(t.status().message()),
                AllOf(HasSubstr("TIERKIT_TIERS"), HasSubstr("node 7")));
  }
  {
    EnvGuard env("");  // Empty counts as unset.
    EXPECT_TRUE(Topology::discover(o).ok());
  }
}

// ---------------------------------------------------------------- output and constructors

TEST(TopologyOutput, TableListsEveryNodeAndColumn) {
  Topology t = load(xml("qemu-two-socket-two-cxl-hmat.xml"));
  const std::string table = t.to_table();
  EXPECT_THAT(table,
              AllOf(HasSubstr("node"), HasSubstr("tier"), HasSubstr("kind"), HasSubstr("capacity"),
                    HasSubstr("free"), HasSubstr("CPUs"), HasSubstr("latency"),
                    HasSubstr("bandwidth"), HasSubstr("kernel tier"), HasSubstr("reason")));
  EXPECT_THAT(table, AllOf(HasSubstr("250 ns"), HasSubstr("30720 MiB/s"), HasSubstr("CXL/slow"),
                           HasSubstr("502 MiB")));
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 5);  // Header + 4 nodes.
}

TEST(TopologyOutput, JsonHasEveryNodeAndEscapes) {
  Topology t = load(xml("qemu-dram-plus-daxkmem.xml"));
  const std::string json = t.to_json();
  EXPECT_THAT(json,
              AllOf(StartsWith("{\"tiers\":2,"), HasSubstr("\"node\":0,"), HasSubstr("\"node\":1,"),
                    HasSubstr("\"dax_device\":\"dax0.0\""), HasSubstr("\"kind\":\"PMEM\""),
                    HasSubstr("\"latency_ns\":null"), HasSubstr("\"cpus\":[0,1]")));
  EXPECT_EQ(std::count(json.begin(), json.end(), '{'), std::count(json.begin(), json.end(), '}'));

  NodeInfo odd = make(0, NodeKind::kDram, {});
  odd.reason = "say \"hi\"\\\n";
  EXPECT_THAT(Topology::from_nodes({odd}).to_json(), HasSubstr(R"("reason":"say \"hi\"\\\n")"));
}

TEST(TopologyOutput, Simulated) {
  Topology t = Topology::simulated(1ull << 30, 4ull << 30);
  EXPECT_TRUE(t.simulated());
  EXPECT_EQ(t.tier_count(), 2);
  EXPECT_THAT(ids(t.fast_nodes()), ElementsAre(0));
  EXPECT_THAT(ids(t.slow_nodes()), ElementsAre(1));
  EXPECT_EQ(t.node(0)->capacity_bytes, 1ull << 30);
  EXPECT_EQ(t.node(1)->capacity_bytes, 4ull << 30);
  EXPECT_EQ(t.node(1)->kind, NodeKind::kSlowMemory);
  EXPECT_FALSE(t.node(0)->cpus.empty());
  EXPECT_THAT(t.node(1)->cpus, IsEmpty());
  EXPECT_EQ(t.summary(), "2 tiers: fast = node 0 (DRAM), slow = node 1 (CXL/slow) (simulated)");
}

TEST(TopologyOutput, FromNodesSortsDedupsAndCompactsTiers) {
  NodeInfo a = make(3, NodeKind::kSlowMemory, {});
  a.tier = 5;
  NodeInfo b = make(1, NodeKind::kDram, {0});
  b.tier = 0;
  NodeInfo dup = make(1, NodeKind::kPmem, {});
  dup.tier = 9;
  Topology t = Topology::from_nodes({a, b, dup});
  ASSERT_EQ(t.nodes().size(), 2u);
  EXPECT_EQ(t.nodes()[0].os_index, 1);
  EXPECT_EQ(t.nodes()[0].kind, NodeKind::kDram);
  EXPECT_EQ(t.tier_count(), 2);
  EXPECT_EQ(t.tier_of(3), 1);
  EXPECT_EQ(t.tier_of(99), -1);
  EXPECT_EQ(t.node(99), nullptr);
  EXPECT_TRUE(t.tier_nodes(7).empty());
  EXPECT_TRUE(t.tier_nodes(-1).empty());

  Topology empty = Topology::from_nodes({});
  EXPECT_EQ(empty.tier_count(), 0);
  EXPECT_TRUE(empty.single_tier());
  EXPECT_THAT(empty.summary(), HasSubstr("no memory nodes"));
  EXPECT_THAT(empty.to_json(), HasSubstr("\"nodes\":[]"));
}

// ---------------------------------------------------------------- live machine

TEST(TopologyLive, DiscoversThisMachine) {
  TopologyOptions o;
  o.use_env = false;
  absl::StatusOr<Topology> t = Topology::discover(o);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_FALSE(t->nodes().empty());
  std::size_t cpus = 0;
  for (const auto& n : t->nodes()) {
    cpus += n.cpus.size();
    EXPECT_GT(n.capacity_bytes, 0u);
    EXPECT_FALSE(n.reason.empty());
  }
  EXPECT_GT(cpus, 0u);
  if (std::filesystem::exists("/sys/devices/system/node/node0/meminfo")) {
    EXPECT_GT(t->node(t->nodes()[0].os_index)->free_bytes, 0u);
  }
  if (t->nodes().size() == 1) {
    EXPECT_TRUE(t->single_tier());
    EXPECT_THAT(t->summary(), StartsWith("one memory tier (node "));
  }
}

TEST(TopologyLive, ReadsKernelTiersFromSysfsRoot) {
  TopologyOptions base;
  base.use_env = false;
  absl::StatusOr<Topology> live = Topology::discover(base);
  ASSERT_TRUE(live.ok()) << live.status();
  FakeSysfs sys;
  std::string all;
  for (const auto& n : live->nodes()) all += (all.empty() ? "" : ",") + std::to_string(n.os_index);
  sys.tier(7, all);
  TopologyOptions o = base;
  o.sysfs_root = sys.root();
  absl::StatusOr<Topology> t = Topology::discover(o);
  ASSERT_TRUE(t.ok()) << t.status();
  for (const auto& n : t->nodes()) EXPECT_EQ(n.kernel_memory_tier, 7) << n.os_index;
}

}  // namespace
}  // namespace tierkit
