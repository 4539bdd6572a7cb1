// Guards against toolchain bugs that silently corrupt values in this project's build flags.
#include <cstdint>
#include <vector>

#include "helpers.hpp"

namespace {
// Out of line so the initializer lists are built at run time, as in the library's code.
[[gnu::noinline]] std::vector<int64_t> four_int64() { return {1, 1, 1, 0}; }
[[gnu::noinline]] std::vector<double> four_double() { return {2.0, 2.0, 2.0, 0.0}; }
}  // namespace

TEST_CASE("initializer lists of 64-bit values survive vectorisation", "[toolchain]") {
  // GCC 12.2 -march=native on AVX-512 SLP-vectorises these into {1, 1, 1, 1}; CMakeLists.txt
  // passes -fno-tree-slp-vectorize for that compiler.
  REQUIRE(four_int64() == std::vector<int64_t>{1, 1, 1, 0});
  REQUIRE(four_int64()[3] == 0);
  REQUIRE(four_double()[3] == 0.0);
}
