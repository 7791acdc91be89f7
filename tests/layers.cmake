# ctest `layers`: every header in include/tierkit/ includes only the tierkit
# headers its row of include/tierkit/README.md's layer table allows.
add_test(NAME layers
         COMMAND ${CMAKE_COMMAND} -DROOT=${PROJECT_SOURCE_DIR}/include/tierkit
                 -P ${PROJECT_SOURCE_DIR}/cmake/check_layers.cmake)
set_tests_properties(layers PROPERTIES LABELS "unit")
