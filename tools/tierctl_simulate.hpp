// tools/tierctl_simulate.hpp: `tierctl simulate ARGS...` runs the tiering
// simulator. It execs the tierkit-sim program that is installed or built next
// to tierctl, passing ARGS through unchanged, so both accept exactly the same
// options and print the same output.
#pragma once

#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace tierctl {

// The directory holding the running executable ("" if unknown).
inline std::string self_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "";
  std::string path(buf, static_cast<std::size_t>(n));
  return path.substr(0, path.rfind('/'));
}

// Replaces this process with tierkit-sim ARGS; returns an exit code only when
// that is impossible.
inline int run_simulate(int argc, char** argv) {
  std::string sim = self_dir() + "/tierkit-sim";
  if (::access(sim.c_str(), X_OK) != 0) {
    std::fprintf(stderr,
                 "tierctl simulate: %s not found (%s); build or install tierkit-sim next to "
                 "tierctl\n",
                 sim.c_str(), std::strerror(errno));
    return 1;
  }
  std::vector<char*> args = {sim.data()};
  for (int i = 0; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  std::fflush(nullptr);
  ::execv(sim.c_str(), args.data());
  std::fprintf(stderr, "tierctl simulate: cannot run %s: %s\n", sim.c_str(), std::strerror(errno));
  return 1;
}

}  // namespace tierctl
