# cmake -DPREFIX=<install prefix> -DLIBDIR=<lib dir, relative> [-DDEFINE_PREFIX=ON] -P check_pkgconfig.cmake
#
# Checks that `pkg-config --cflags tierkit` works against PREFIX/LIBDIR/pkgconfig
# (all Requires resolve, C++20 is asked for) and that its -I directory holds
# tierkit's headers. With DEFINE_PREFIX, pkg-config is told to derive the
# prefix from the .pc file's location (--define-prefix); without it the .pc
# file itself must point at PREFIX, i.e. be relocatable.
find_program(PKG_CONFIG_EXECUTABLE NAMES pkg-config pkgconf REQUIRED)
set(ENV{PKG_CONFIG_PATH} "${PREFIX}/${LIBDIR}/pkgconfig")
set(args --cflags tierkit)
if(DEFINE_PREFIX)
  list(PREPEND args --define-prefix)
endif()
execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} ${args}
                RESULT_VARIABLE rc OUTPUT_VARIABLE cflags ERROR_VARIABLE err
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config ${args} failed (${rc}): ${err}")
endif()
message(STATUS "pkg-config ${args}: ${cflags}")
if(NOT cflags MATCHES "-std=c\\+\\+20")
  message(FATAL_ERROR "tierkit's cflags do not ask for C++20: ${cflags}")
endif()
separate_arguments(flags UNIX_COMMAND "${cflags}")
set(found "")
foreach(f IN LISTS flags)
  if(f MATCHES "^-I(.+)$")
    set(dir "${CMAKE_MATCH_1}")
    if(EXISTS "${dir}/tierkit/allocator.hpp")
      set(found "${dir}")
    endif()
  endif()
endforeach()
if(NOT found)
  message(FATAL_ERROR "no -I directory in '${cflags}' holds tierkit/allocator.hpp "
                      "(expected ${PREFIX}/include): the installed tierkit.pc does not point "
                      "at the prefix it was installed to")
endif()
file(REAL_PATH "${found}" found)
file(REAL_PATH "${PREFIX}/include" expected)
if(NOT found STREQUAL expected)
  message(FATAL_ERROR "tierkit.pc points at ${found}, not at the install prefix's ${expected}")
endif()
message(STATUS "tierkit headers found in ${found}")
