# tierkit-sim: the tiering simulator (included by tools/CMakeLists.txt).
find_package(ZLIB REQUIRED)
add_executable(tierkit-sim ${CMAKE_CURRENT_LIST_DIR}/tierkit_sim.cpp)
target_link_libraries(tierkit-sim PRIVATE tierkit::tierkit ZLIB::ZLIB absl::flags absl::flags_parse
                                          absl::flags_usage)
target_include_directories(tierkit-sim PRIVATE ${CMAKE_CURRENT_LIST_DIR})
tierkit_target_defaults(tierkit-sim)
install(TARGETS tierkit-sim RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
