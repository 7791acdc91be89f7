# tierctl: the command-line tool (topology, kernel, numa-maps, simulate, help).
add_executable(tierctl ${CMAKE_CURRENT_LIST_DIR}/tierctl.cpp)
target_include_directories(tierctl PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(tierctl PRIVATE tierkit::tierkit absl::flags absl::flags_parse)
tierkit_target_defaults(tierctl)
install(TARGETS tierctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# `tierctl simulate` execs tierkit-sim from tierctl's own directory: build it
# with tierctl when its target exists (added by another tools/*.cmake, so
# checked once every file has been read).
function(_tierctl_needs_simulator)
  if(TARGET tierkit-sim)
    add_dependencies(tierctl tierkit-sim)
  endif()
endfunction()
cmake_language(DEFER CALL _tierctl_needs_simulator)
