// tierctl: inspect and control memory tiering on this machine.
//
//   tierctl topology [--json] [--xml FILE]   tiers, nodes and why each node got its tier
//   tierctl kernel [--set KEY=VALUE ...] [--apply]
//                                            the kernel's AutoNUMA tiering knobs and counters
//   tierctl numa-maps PID|self [--xml FILE]  a process's memory per node and per tier
//   tierctl simulate [tierkit-sim options]   run the tiering simulator
//   tierctl config                           the engine configuration this environment gives
//   tierctl help [SUBCOMMAND]                this help
//
// Exit status: 0 success, 1 the operation failed, 2 bad usage.
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "parse_flags.hpp"
#include "tierctl_kernel.hpp"
#include "tierctl_numa_maps.hpp"
#include "tierctl_simulate.hpp"
#include "tierkit/config.hpp"
#include "tierkit/topology.hpp"

ABSL_FLAG(bool, json, false, "topology: print JSON instead of a table");
ABSL_FLAG(std::string, xml, "",
          "topology, numa-maps: classify the nodes of this hwloc XML export instead of this "
          "machine (e.g. one saved with lstopo --of xml)");
ABSL_FLAG(bool, apply, false,
          "kernel --set: really write the values (default: only print what would be written)");
ABSL_FLAG(std::string, root, "/", "testing: root directory under which /proc and /sys are read");

namespace {

struct Subcommand {
  const char* name;
  const char* usage;
  const char* help;
  std::vector<std::string> flags;  // accepted flags (without "--")
};

const std::vector<Subcommand>& subcommands() {
  static const std::vector<Subcommand> s = {
      {"topology",
       "topology [--json] [--xml FILE]",
       "Discovers the NUMA nodes and groups them into memory tiers (tier 0 = fastest):\n"
       "capacity, free memory, CPUs, HMAT latency and bandwidth, the kernel's memory tier,\n"
       "and in plain words why each node got its tier. --json prints the same as JSON;\n"
       "--xml reads an hwloc XML export instead of this machine. TIERKIT_TIERS=\"0/1\"\n"
       "overrides the classification.",
       {"json", "xml"}},
      {"kernel",
       "kernel [--set KEY=VALUE ...] [--apply]",
       "Shows the kernel's own memory tiering (AutoNUMA) state: numa_balancing (decoded),\n"
       "numa_balancing_promote_rate_limit_MBps, numa_balancing_promote_throughput_MBps (only\n"
       "kernels with tests/vm/kernel/promote-throughput.patch), debugfs hot_threshold_ms,\n"
       "demotion_enabled,\n"
       "the kernel memory tiers and the /proc/vmstat promotion/demotion/migration counters.\n"
       "Files the kernel lacks are reported as \"not available (why)\".\n"
       "--set KEY=VALUE (repeatable) validates a new value and prints what it would write\n"
       "(and why --apply would fail); add --apply to write them all or none (needs root;\n"
       "hot_threshold_ms needs debugfs mounted): every file is opened first, and a value the\n"
       "kernel refuses puts back the ones already written.\n"
       "Keys: numa_balancing=0..3 (0 off, 1 locality, 2 tiering, 3 both),\n"
       "      promote_rate_limit_MBps=0..2147483647, promote_throughput_MBps=0..2147483647,\n"
       "      hot_threshold_ms=1..4294967295,\n"
       "      demotion_enabled=true|false.",
       {"apply", "root"}},
      {"numa-maps",
       "numa-maps PID|self [--xml FILE]",
       "Sums a process's resident memory per NUMA node from /proc/PID/numa_maps\n"
       "(N<node>=<pages> times kernelpagesize_kB) and per tier (tiers from topology).",
       {"xml", "root"}},
      {"simulate",
       "simulate [tierkit-sim options]",
       "Runs the tiering simulator: execs tierkit-sim (built and installed next to tierctl)\n"
       "with the same options, so the two behave identically; see 'tierctl simulate --help'.\n"
       "Example: tierctl simulate --workload zipf --policy static,automatic --footprint 64M\n"
       "         --format markdown",
       {}},
      {"config",
       "config",
       "Prints the engine configuration a program gets in this environment: every knob,\n"
       "its value, unit and where the value comes from (environment TIERKIT_X or default).\n"
       "Engine::create applies the TIERKIT_* variables over the program's own values unless\n"
       "the program opts out (EngineConfig::Environment::kIgnore). A malformed variable is\n"
       "an error (exit 1) naming the variable, the value and why.",
       {}},
      {"help", "help [SUBCOMMAND]", "Explains every subcommand, or one.", {}},
  };
  return s;
}

const Subcommand* find_subcommand(absl::string_view name) {
  for (const auto& s : subcommands())
    if (name == s.name) return &s;
  return nullptr;
}

std::string help_text(const Subcommand* only) {
  std::string out;
  if (only == nullptr)
    out =
        "tierctl: inspect and control memory tiering (fast tier = local DRAM, slow tier = CXL /\n"
        "CPU-less NUMA memory).\n\nUsage: tierctl SUBCOMMAND [options]\n\n";
  for (const auto& s : subcommands()) {
    if (only != nullptr && only != &s) continue;
    absl::StrAppend(&out, "tierctl ", s.usage, "\n");
    for (absl::string_view line : absl::StrSplit(s.help, '\n'))
      absl::StrAppend(&out, "    ", line, "\n");
    absl::StrAppend(&out, "\n");
  }
  absl::StrAppend(&out, "Exit status: 0 success, 1 the operation failed, 2 bad usage.\n");
  return out;
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "tierctl: %s\n", message.c_str());
  return 2;
}

absl::StatusOr<tierkit::Topology> discover() {
  tierkit::TopologyOptions o;
  if (std::string xml = absl::GetFlag(FLAGS_xml); !xml.empty()) o.xml_path = xml;
  return tierkit::Topology::discover(o);
}

int run_topology() {
  auto topo = discover();
  if (!topo.ok()) {
    std::fprintf(stderr, "tierctl topology: %s\n", std::string(topo.status().message()).c_str());
    return 1;
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", topo->to_json().c_str());
    return 0;
  }
  std::printf("%s\n\n%s", topo->summary().c_str(), topo->to_table().c_str());
  return 0;
}

// Writes back the values `undo` holds, newest first, saying what it did.
void restore(const std::string& root, const std::vector<tierctl::Setting>& undo) {
  for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
    absl::Status st = tierctl::apply_setting(root, *it);
    std::string path = tierctl::under_root(root, it->knob->path);
    if (st.ok())
      std::fprintf(stderr, "tierctl kernel: restored %s to %s\n", it->value.c_str(), path.c_str());
    else
      std::fprintf(stderr, "tierctl kernel: could not restore %s: %s\n", path.c_str(),
                   std::string(st.message()).c_str());
  }
}

// All or nothing: every file is opened for writing before any is written,
// and a value the kernel rejects puts the ones already written back.
int apply_settings(const std::string& root, const std::vector<tierctl::Setting>& settings) {
  int refused = 0;
  for (const auto& s : settings) {
    absl::Status st = tierctl::check_writable(root, s);
    if (!st.ok()) {
      std::fprintf(stderr, "tierctl kernel: %s\n", std::string(st.message()).c_str());
      ++refused;
    }
  }
  if (refused > 0) {
    std::fprintf(stderr, "tierctl kernel: nothing written (%d of %zu settings cannot be)\n",
                 refused, settings.size());
    return 1;
  }
  std::vector<tierctl::Setting> undo;  // the old values of what was written
  for (const auto& s : settings) {
    std::string path = tierctl::under_root(root, s.knob->path);
    tierctl::ReadResult before = tierctl::read_text(path);
    absl::Status st = tierctl::apply_setting(root, s);
    if (!st.ok()) {
      std::fprintf(stderr, "tierctl kernel: %s\n", std::string(st.message()).c_str());
      restore(root, undo);
      return 1;
    }
    std::printf("wrote %s to %s%s\n", s.value.c_str(), path.c_str(),
                before.text ? absl::StrCat(" (was ", *before.text, ")").c_str() : "");
    if (before.text) undo.push_back({s.knob, *before.text});
  }
  return 0;
}

int run_kernel(const std::vector<std::string>& sets) {
  const std::string root = absl::GetFlag(FLAGS_root);
  if (sets.empty()) {
    if (absl::GetFlag(FLAGS_apply)) return usage_error("kernel: --apply needs --set KEY=VALUE");
    std::printf("%s", tierctl::kernel_report(root).c_str());
    return 0;
  }
  // Validate everything before writing anything.
  std::vector<tierctl::Setting> settings;
  for (const auto& text : sets) {
    auto s = tierctl::parse_setting(text);
    if (!s.ok()) return usage_error(absl::StrCat("kernel: ", s.status().message()));
    settings.push_back(*s);
  }
  if (!absl::GetFlag(FLAGS_apply)) {
    for (const auto& s : settings) {
      std::string path = tierctl::under_root(root, s.knob->path);
      tierctl::ReadResult before = tierctl::read_text(path);
      absl::Status ok = tierctl::check_writable(root, s);
      std::printf("would write %s to %s%s%s\n", s.value.c_str(), path.c_str(),
                  before.text ? absl::StrCat(" (now ", *before.text, ")").c_str() : "",
                  ok.ok() ? "" : absl::StrCat("; --apply would fail: ", ok.message()).c_str());
    }
    std::printf("dry run: nothing written; add --apply to write (needs root)\n");
    return 0;
  }
  return apply_settings(root, settings);
}

int run_numa_maps(const std::vector<char*>& args) {
  if (args.size() != 1)
    return usage_error("numa-maps: expected exactly one PID (a number or 'self')");
  auto text = tierctl::read_numa_maps(absl::GetFlag(FLAGS_root), args[0]);
  if (!text.ok()) {
    std::fprintf(stderr, "tierctl numa-maps: %s\n", std::string(text.status().message()).c_str());
    return text.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  auto maps = tierctl::parse_numa_maps(*text);
  if (!maps.ok()) {
    std::fprintf(stderr, "tierctl numa-maps: %s\n", std::string(maps.status().message()).c_str());
    return 1;
  }
  auto topo = discover();
  if (!topo.ok())
    std::fprintf(stderr, "tierctl numa-maps: tiers unknown: %s\n",
                 std::string(topo.status().message()).c_str());
  std::printf("process %s: %llu mappings (/proc/%s/numa_maps)\n%s%s\n", args[0],
              static_cast<unsigned long long>(maps->mappings), args[0],
              topo.ok() ? absl::StrCat(topo->summary(), "\n\n").c_str() : "",
              tierctl::numa_maps_table(*maps, topo.ok() ? &*topo : nullptr).c_str());
  return 0;
}

// "--no-json=x" -> "json" style flag name of an argument, or "" for positionals.
std::string flag_name(absl::string_view arg) {
  if (!absl::ConsumePrefix(&arg, "-")) return "";
  absl::ConsumePrefix(&arg, "-");
  return std::string(arg.substr(0, arg.find('=')));
}

// The arguments after subcommand `cmd`: --set values (repeatable; absl flags
// would keep only the last) into *sets, the rest into *rest, each flag
// checked against the subcommand's. Returns main's exit status when it ends
// here: --help, or a usage error.
std::optional<int> split_arguments(const Subcommand& sub, const std::string& cmd, int argc,
                                   char** argv, std::vector<std::string>* sets,
                                   std::vector<char*>* rest) {
  for (int i = 2; i < argc; ++i) {
    absl::string_view a = argv[i];
    std::string name = flag_name(a);
    if (name == "help" || name == "h" || name == "helpfull") {
      std::printf("%s", help_text(&sub).c_str());
      return 0;
    }
    if (name == "set" && cmd == "kernel") {
      std::string v = a.find('=') != absl::string_view::npos
                          ? std::string(a.substr(a.find('=') + 1))
                      : i + 1 < argc ? argv[++i]
                                     : "";
      if (v.empty()) return usage_error("kernel: --set needs KEY=VALUE");
      for (absl::string_view part : absl::StrSplit(v, ',', absl::SkipEmpty()))
        sets->emplace_back(part);
      continue;
    }
    if (!name.empty() && name != "-") {
      bool ok = false;
      for (const auto& f : sub.flags)
        ok = ok || name == f || (absl::StartsWith(name, "no") && name.substr(2) == f);
      if (!ok) {
        std::string known;
        for (const auto& f : sub.flags) absl::StrAppend(&known, known.empty() ? "" : ", ", "--", f);
        if (cmd == "kernel") absl::StrAppend(&known, ", --set");
        return usage_error(absl::StrCat(cmd, ": unknown option '", a, "' (", cmd, " takes ",
                                        known.empty() ? "no options" : known, ")"));
      }
    }
    rest->push_back(argv[i]);
  }
  return std::nullopt;
}

}  // namespace

// tierctl config: EngineConfig::from_env() over the defaults, knob by knob.
int run_config() {
  auto c = tierkit::EngineConfig::from_env();
  if (!c.ok()) {
    std::fprintf(stderr, "tierctl config: %s\n", std::string(c.status().message()).c_str());
    return 1;
  }
  std::printf("%-32s %-14s %-28s %s\n%s", "knob", "value", "unit", "source", c->describe().c_str());
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "%s", help_text(nullptr).c_str());
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "help" || cmd == "--help" || cmd == "-h" || cmd == "-help") {
    const Subcommand* only = argc > 2 ? find_subcommand(argv[2]) : nullptr;
    if (argc > 2 && only == nullptr)
      return usage_error(absl::StrCat("help: unknown subcommand '", argv[2], "'"));
    std::printf("%s", help_text(only).c_str());
    return 0;
  }
  const Subcommand* sub = find_subcommand(cmd);
  if (sub == nullptr) {
    std::vector<std::string> names;
    for (const auto& s : subcommands()) names.push_back(s.name);
    return usage_error(absl::StrCat("unknown subcommand '", cmd, "' (known: ",
                                    absl::StrJoin(names, ", "), "; see 'tierctl help')"));
  }
  if (cmd == "simulate") return tierctl::run_simulate(argc - 2, argv + 2);

  // Collect --set, check that every other flag belongs to this subcommand,
  // then parse with absl.
  std::vector<std::string> sets;
  std::vector<char*> rest = {argv[0]};
  if (std::optional<int> rc = split_arguments(*sub, cmd, argc, argv, &sets, &rest)) return *rc;
  int n = static_cast<int>(rest.size());
  std::vector<char*> positional = tools::parse_flags(n, rest.data());
  positional.erase(positional.begin());  // program name

  if (cmd == "numa-maps") return run_numa_maps(positional);
  if (!positional.empty())
    return usage_error(absl::StrCat(cmd, ": unexpected argument '", positional[0], "'"));
  if (cmd == "topology") return run_topology();
  if (cmd == "config") return run_config();
  return run_kernel(sets);
}
