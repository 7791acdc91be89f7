# Finds tierkit's dependencies (all Debian 12 packages) and sets
# TIERKIT_DEPENDENCY_TARGETS. Shared with the installed tierkitConfig.cmake.
include(CMakeFindDependencyMacro)
find_package(PkgConfig REQUIRED)
pkg_check_modules(TIERKIT_NUMA REQUIRED IMPORTED_TARGET numa)
pkg_check_modules(TIERKIT_HWLOC REQUIRED IMPORTED_TARGET hwloc)
find_package(Threads REQUIRED)
find_package(absl REQUIRED)
set(TIERKIT_DEPENDENCY_TARGETS
  PkgConfig::TIERKIT_NUMA PkgConfig::TIERKIT_HWLOC Threads::Threads
  absl::status absl::statusor absl::strings absl::str_format absl::synchronization
  absl::time absl::flat_hash_map absl::btree absl::span)
