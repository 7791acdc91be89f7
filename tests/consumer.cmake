# Packaging tests (ctest -R consumer): install tierkit into a scratch prefix,
# then build and run tests/consumer against it with find_package, check the
# pkg-config file, and build the same program with add_subdirectory(tierkit).
# Included from tests/CMakeLists.txt; needs the top build to be built first.
include(GNUInstallDirs)
set(_tk_consumer_src "${CMAKE_CURRENT_SOURCE_DIR}/consumer")
set(_tk_consumer_bin "${CMAKE_CURRENT_BINARY_DIR}/consumer")
set(_tk_prefix "${_tk_consumer_bin}/prefix")
set(_tk_pass "tierkit consumer OK: sum 500500")

# (a) Install into a fresh prefix; every other consumer test needs it.
add_test(NAME consumer.clean_prefix
         COMMAND ${CMAKE_COMMAND} -E rm -rf "${_tk_prefix}")
add_test(NAME consumer.install
         COMMAND ${CMAKE_COMMAND} --install "${PROJECT_BINARY_DIR}" --prefix "${_tk_prefix}")
set_tests_properties(consumer.clean_prefix PROPERTIES FIXTURES_SETUP tierkit_installed)
set_tests_properties(consumer.install PROPERTIES
  FIXTURES_SETUP tierkit_installed DEPENDS consumer.clean_prefix)

# (b) find_package(tierkit) against the prefix: configure, build, run.
add_test(NAME consumer.find_package
         COMMAND ${CMAKE_CTEST_COMMAND}
           --build-and-test "${_tk_consumer_src}" "${_tk_consumer_bin}/find_package"
           --build-generator "${CMAKE_GENERATOR}"
           --build-options "-DCMAKE_PREFIX_PATH=${_tk_prefix}"
                           "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}"
           --test-command "${_tk_consumer_bin}/find_package/consumer")
set_tests_properties(consumer.find_package PROPERTIES
  FIXTURES_REQUIRED tierkit_installed PASS_REGULAR_EXPRESSION "${_tk_pass}" TIMEOUT 300)

# (c) pkg-config --cflags tierkit against the prefix's pkgconfig directory:
# once as pkgconf users relocating on purpose would (--define-prefix), once
# strictly (the installed .pc must itself point at the prefix).
add_test(NAME consumer.pkgconfig
         COMMAND ${CMAKE_COMMAND} -DPREFIX=${_tk_prefix} -DLIBDIR=${CMAKE_INSTALL_LIBDIR}
                 -DDEFINE_PREFIX=ON -P "${_tk_consumer_src}/check_pkgconfig.cmake")
add_test(NAME consumer.pkgconfig_relocatable
         COMMAND ${CMAKE_COMMAND} -DPREFIX=${_tk_prefix} -DLIBDIR=${CMAKE_INSTALL_LIBDIR}
                 -P "${_tk_consumer_src}/check_pkgconfig.cmake")
set_tests_properties(consumer.pkgconfig consumer.pkgconfig_relocatable PROPERTIES
  FIXTURES_REQUIRED tierkit_installed)

# (d) add_subdirectory(<tierkit source>) from another project. Needs no install.
add_test(NAME consumer.add_subdirectory
         COMMAND ${CMAKE_CTEST_COMMAND}
           --build-and-test "${_tk_consumer_src}/subdir" "${_tk_consumer_bin}/add_subdirectory"
           --build-generator "${CMAKE_GENERATOR}"
           --build-options "-DTIERKIT_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
                           "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}"
           --test-command "${_tk_consumer_bin}/add_subdirectory/consumer")
set_tests_properties(consumer.add_subdirectory PROPERTIES
  PASS_REGULAR_EXPRESSION "${_tk_pass}" TIMEOUT 300)
