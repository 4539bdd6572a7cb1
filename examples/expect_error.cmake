# Runs CMD (a ;-list) and requires exit status 1 with EXPECT (a regex) on a stderr line that
# starts with "error: ": a clear error, not a crash, a signal or an uncaught exception.
#   cmake "-DCMD=prog;arg;..." "-DEXPECT=regex" -P expect_error.cmake
execute_process(COMMAND ${CMD} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc STREQUAL "1")
  message(FATAL_ERROR "expected exit status 1, got '${rc}'\nstderr:\n${err}")
endif()
if(NOT err MATCHES "(^|\n)error: [^\n]*${EXPECT}")
  message(FATAL_ERROR "stderr has no 'error: ' line matching '${EXPECT}':\n${err}")
endif()
