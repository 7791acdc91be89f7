// tests/vm/vm_support.hpp: helpers shared by the in-VM tests (vm_*_test.cpp).
//
// These tests make real mbind/move_pages calls and need a machine with a DRAM
// node 0 (with the CPUs) and a CPU-less slow node 1 (TIERKIT_VM_REQUIRE_TWO_NODES)
// or tests/vm/run's two-socket machine (TIERKIT_VM_REQUIRE_MACHINE): the QEMU
// machines that tests/vm/run boots. tests/vm/run sets TIERKIT_VM=<topology> in
// the guest; there a missing node is a failure. Anywhere else (a one-node
// host) the tests GTEST_SKIP.
#pragma once

#include <numa.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "tierkit/backend/linux.hpp"
#include "tierkit/engine.hpp"
#include "tierkit/topology.hpp"

namespace tierkit::vm {

inline constexpr NodeId kFastNode = 0;
inline constexpr NodeId kSlowNode = 1;
inline constexpr std::size_t kMiB = std::size_t{1} << 20;

// An engine over `be` (the Linux backend in the VM), or nullptr with the
// test failed.
inline std::unique_ptr<Engine> make_engine(const EngineConfig& c, Backend& be) {
  auto e = Engine::create(c, &be);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

// The machine's tiers as Topology::discover() finds them without the
// environment, printed (summary and table) into the test's log.
inline absl::StatusOr<Topology> discover_and_print() {
  TopologyOptions opts;
  opts.use_env = false;
  auto topo = Topology::discover(opts);
  if (topo.ok()) std::printf("%s\n%s\n", topo->summary().c_str(), topo->to_table().c_str());
  return topo;
}

// The topology tests/vm/run booted ("hmat", "kernel-tier", "two-socket"), or
// "" outside it.
inline std::string vm_topology() {
  const char* t = std::getenv("TIERKIT_VM");
  return t ? std::string(t) : std::string();
}
inline bool in_vm() { return !vm_topology().empty(); }

// Why this machine cannot run the tests, or nullopt if it can.
inline std::optional<std::string> missing_two_nodes() {
  if (numa_available() < 0) return "NUMA is not available (numa_available() < 0)";
  if (numa_max_node() < kSlowNode)
    return absl::StrCat("needs NUMA nodes 0 and 1 (a DRAM node and a slow node), this machine has ",
                        numa_max_node() + 1,
                        " node(s); these tests run inside the emulated machine: tests/vm/run");
  long long free_bytes = 0;
  if (numa_node_size64(kSlowNode, &free_bytes) <= 0) return "node 1 has no memory";
  return std::nullopt;
}

// The start of the skip message of a test written for another of
// tests/vm/run's machines: there it counts as neither passed nor failed
// (any other skip inside the VM is a failure).
inline constexpr const char* kNotForThisMachine = "not for this machine: ";

// Why the VM's machine is not one these two-node tests are written for
// (DRAM node 0, slow node 1), or nullopt. On the two-socket machine node 1
// is the second socket's DRAM: "slow" there would be a lie.
inline std::optional<std::string> not_a_two_node_vm() {
  if (!in_vm() || numa_available() < 0 || numa_max_node() <= kSlowNode) return std::nullopt;
  return absl::StrCat(kNotForThisMachine,
                      "written for a DRAM node 0 and a slow node 1; TIERKIT_VM=", vm_topology(),
                      " has ", numa_max_node() + 1, " nodes");
}

// Skips the test on a machine without the two nodes; fails it inside the VM,
// except on a VM machine of more nodes, which it is not written for.
#define TIERKIT_VM_REQUIRE_TWO_NODES()                                       \
  do {                                                                       \
    if (auto na_ = ::tierkit::vm::not_a_two_node_vm()) GTEST_SKIP() << *na_; \
    if (auto why_ = ::tierkit::vm::missing_two_nodes()) {                    \
      if (::tierkit::vm::in_vm()) FAIL() << "inside the VM: " << *why_;      \
      GTEST_SKIP() << *why_;                                                 \
    }                                                                        \
  } while (0)

// Runs the test only on tests/vm/run's `machine` (TIERKIT_VM=machine); on
// the other machines it skips as not for them, outside the VM it skips.
#define TIERKIT_VM_REQUIRE_MACHINE(machine)                                                       \
  do {                                                                                            \
    if (!::tierkit::vm::in_vm())                                                                  \
      GTEST_SKIP() << "runs inside tests/vm/run's " << (machine) << " machine";                   \
    if (::tierkit::vm::vm_topology() != (machine))                                                \
      GTEST_SKIP() << ::tierkit::vm::kNotForThisMachine << "written for TIERKIT_VM=" << (machine) \
                   << ", this is " << ::tierkit::vm::vm_topology();                               \
  } while (0)

// Prints a "tierkit-vm: key=value" line that tests/vm/run collects from the
// serial log, and records it as a gtest property.
inline void report(const std::string& key, std::uint64_t value) {
  std::printf("tierkit-vm: %s=%llu\n", key.c_str(), static_cast<unsigned long long>(value));
  std::fflush(stdout);
  ::testing::Test::RecordProperty(key, std::to_string(value));
}

// The base-page addresses of [p, p + bytes).
inline std::vector<void*> pages_of(void* p, std::size_t bytes) {
  std::vector<void*> pages(bytes / kPageSize);
  for (std::size_t i = 0; i < pages.size(); ++i) pages[i] = static_cast<char*>(p) + i * kPageSize;
  return pages;
}

// Writes one byte per page so every page is faulted in.
inline void touch(void* p, std::size_t bytes, char value = 1) {
  auto* c = static_cast<volatile char*>(p);
  for (std::size_t off = 0; off < bytes; off += kPageSize) c[off] = value;
}

// The errno's name, for messages.
inline const char* strerrorname(int e) {
  switch (e) {
    case ENOENT:
      return "ENOENT";
    case EFAULT:
      return "EFAULT";
    case ENOMEM:
      return "ENOMEM";
    case EBUSY:
      return "EBUSY";
    case EAGAIN:
      return "EAGAIN";
    case EACCES:
      return "EACCES";
    case ENODEV:
      return "ENODEV";
    case EINVAL:
      return "EINVAL";
    case EIO:
      return "EIO";
    default:
      return "E?";
  }
}

// "node 1: 16384, -ENOENT: 2"-style histogram of query/move statuses.
inline std::string histogram(absl::Span<const int> status) {
  std::map<int, std::size_t> h;
  for (int s : status) ++h[s];
  std::string out;
  for (auto [s, n] : h)
    absl::StrAppend(&out, out.empty() ? "" : ", ",
                    s >= 0 ? absl::StrCat("node ", s) : absl::StrCat("-", strerrorname(-s)), ": ",
                    n);
  return out;
}

// The node of every page of [p, p + bytes) (negative errno where not present).
inline std::vector<int> nodes_of(Backend& be, void* p, std::size_t bytes) {
  std::vector<void*> pages = pages_of(p, bytes);
  std::vector<int> status(pages.size(), -1000);
  absl::Status s = be.query(pages, absl::MakeSpan(status));
  if (!s.ok()) ADD_FAILURE() << "query failed: " << s;
  return status;
}

// Success if every page of [p, p + bytes) is on `node`; else the histogram and
// the first page that is not.
inline ::testing::AssertionResult all_on(Backend& be, void* p, std::size_t bytes, NodeId node) {
  std::vector<int> status = nodes_of(be, p, bytes);
  for (std::size_t i = 0; i < status.size(); ++i) {
    if (status[i] != node)
      return ::testing::AssertionFailure()
             << "page " << i << " of " << status.size() << " is on " << status[i]
             << ", expected node " << node << " (" << histogram(status) << ")";
  }
  return ::testing::AssertionSuccess() << status.size() << " pages on node " << node;
}

// The first line of `path`, or "" when it is absent or unreadable.
inline std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

// Writes `value` to `path` (a sysfs, procfs or cgroup file); whether it took.
inline bool write_file(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  out << value << "\n";
  out.flush();
  return static_cast<bool>(out);
}

// The value of `key` in /proc/vmstat, or in a file of the same form (a
// cgroup's memory.stat), or 0.
inline std::uint64_t vmstat(const std::string& key, const std::string& path = "/proc/vmstat") {
  std::ifstream in(path);
  std::string k;
  std::uint64_t v = 0;
  while (in >> k >> v)
    if (k == key) return v;
  return 0;
}

// Sets each file to its value for the test's lifetime and restores it.
struct Knobs {
  std::vector<std::pair<std::string, std::string>> saved;
  void set(const std::string& path, const std::string& value) {
    std::string old = read_line(path);
    if (old.empty()) {
      std::printf("%s: absent, left at the kernel's default\n", path.c_str());
      return;
    }
    EXPECT_TRUE(write_file(path, value)) << path;
    saved.emplace_back(path, old);
  }
  Knobs() = default;
  Knobs(const Knobs&) = delete;
  Knobs& operator=(const Knobs&) = delete;
  ~Knobs() {
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) write_file(it->first, it->second);
  }
};

// This process in a child cgroup v2 `name` with `controller` enabled and
// each of `settings` (file, value) written there, the way a container
// runtime confines one; back in the root cgroup at the end. ok says whether
// all of it took (a failure is reported).
struct ChildCgroup {
  static constexpr const char* kRoot = "/sys/fs/cgroup";
  std::string dir;
  bool ok = false;
  ChildCgroup(const std::string& name, const std::string& controller,
              const std::vector<std::pair<std::string, std::string>>& settings = {})
      : dir(absl::StrCat(kRoot, "/", name)) {
    if (::mount("cgroup2", kRoot, "cgroup2", 0, nullptr) != 0 && errno != EBUSY) {
      ADD_FAILURE() << "mount cgroup2: " << std::strerror(errno);
      return;
    }
    ::mkdir(dir.c_str(), 0755);
    ok = write_file(absl::StrCat(kRoot, "/cgroup.subtree_control"), "+" + controller);
    for (const auto& [file, value] : settings) ok = ok && write_file(dir + "/" + file, value);
    ok = ok && write_file(dir + "/cgroup.procs", std::to_string(::getpid()));
    EXPECT_TRUE(ok) << "could not put the process in " << dir << " with " << controller;
  }
  ChildCgroup(const ChildCgroup&) = delete;
  ChildCgroup& operator=(const ChildCgroup&) = delete;
  ~ChildCgroup() {
    write_file(absl::StrCat(kRoot, "/cgroup.procs"), std::to_string(::getpid()));
    ::rmdir(dir.c_str());
  }
};

// Seconds since `start_ns` on the steady clock.
inline double seconds_since(std::int64_t start_ns) {
  return static_cast<double>(SteadyClock::instance().now_ns() - start_ns) / 1e9;
}

}  // namespace tierkit::vm
