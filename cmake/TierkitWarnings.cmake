# tierkit_target_defaults(target): warnings as errors and the sanitizer chosen
# with -DTIERKIT_SANITIZE. Applied to our own targets only, never to consumers.
function(tierkit_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
  # GCC 12 reports bogus -Wrestrict in libstdc++'s std::string at -O2/-O3
  # (GCC bug 105651, fixed in 13); it fires on plain string assignments.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${target} PRIVATE -Wno-restrict)
  endif()
  if(TIERKIT_SANITIZE STREQUAL "address")
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  elseif(TIERKIT_SANITIZE STREQUAL "thread")
    target_compile_options(${target} PRIVATE -fsanitize=thread -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=thread)
  elseif(NOT TIERKIT_SANITIZE STREQUAL "")
    message(FATAL_ERROR "TIERKIT_SANITIZE must be '', 'address' or 'thread', not '${TIERKIT_SANITIZE}'")
  endif()
endfunction()
