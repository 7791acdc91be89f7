# Installs the headers, a CMake package (tierkitConfig.cmake + version file) and
# a pkg-config file.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(DIRECTORY include/tierkit DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.hpp" PATTERN "*.md"
        PATTERN "sim" EXCLUDE)  # tierkit-sim's own headers (tools only)
install(TARGETS tierkit EXPORT tierkitTargets)
install(EXPORT tierkitTargets NAMESPACE tierkit::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tierkit)
configure_package_config_file(cmake/tierkitConfig.cmake.in
  ${PROJECT_BINARY_DIR}/tierkitConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tierkit)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tierkitConfigVersion.cmake
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/tierkitConfig.cmake
              ${PROJECT_BINARY_DIR}/tierkitConfigVersion.cmake
              cmake/TierkitDependencies.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tierkit)
# The .pc finds its prefix relative to itself, so the install is relocatable.
file(RELATIVE_PATH TIERKIT_PC_TO_PREFIX "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" TIERKIT_PC_TO_PREFIX "${TIERKIT_PC_TO_PREFIX}")
configure_file(cmake/tierkit.pc.in ${PROJECT_BINARY_DIR}/tierkit.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/tierkit.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
