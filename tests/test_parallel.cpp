// The thread pool (include/detr/core/parallel.hpp): coverage, fixed chunks, nesting,
// exceptions, and many loops with thread-count changes in between (ctest runs this file a
// second time with DETR_SPIN_US=0, so that every wait goes through the kernel).
#include "detr/core/parallel.hpp"

#include <atomic>
#include <stdexcept>
#include <vector>

#include "helpers.hpp"

using namespace detr;

TEST_CASE("parallel_for covers the range once, in chunks that do not depend on the thread count", "[parallel]") {
  for (int threads : {1, 2, 4}) {
    set_num_threads(threads);
    std::vector<std::atomic<int>> hits(1000);
    std::vector<std::pair<int64_t, int64_t>> ranges(64, {-1, -1});
    std::atomic<int> calls{0};
    parallel_for(1000, 10, [&](int64_t i0, int64_t i1) {
      ranges[size_t(calls++)] = {i0, i1};
      for (int64_t i = i0; i < i1; ++i) hits[size_t(i)]++;
    });
    for (auto& h : hits) REQUIRE(h == 1);
    REQUIRE(calls == 64);  // 1000 / 10 chunks, capped at 64
  }
  set_num_threads(2);
  // Nested loops run serially inside a chunk; an exception reaches the caller.
  std::atomic<int64_t> total{0};
  std::atomic<int> outside{0};  // (Catch's REQUIRE is not for other threads)
  parallel_chunks(8, [&](int64_t) {
    if (!in_parallel()) outside++;
    parallel_for(100, 1, [&](int64_t i0, int64_t i1) { total += i1 - i0; });
  });
  REQUIRE(total == 800);
  REQUIRE(outside == 0);
  REQUIRE_FALSE(in_parallel());
  REQUIRE_THROWS_WITH(parallel_chunks(16, [](int64_t c) { DETR_CHECK(c != 11, "chunk " << c << " failed"); }),
                      Catch::Contains("chunk 11 failed"));
  // The pool still works after an exception.
  std::atomic<int> after{0};
  parallel_chunks(16, [&](int64_t) { after++; });
  REQUIRE(after == 16);
}

TEST_CASE("many loops, thread-count changes and exceptions in between", "[parallel]") {
  const int before = num_threads();
  std::vector<int> data(100000, 0);
  int64_t total = 0, expect = 0;
  for (int it = 0; it < 600; ++it) {
    if (it % 100 == 0) set_num_threads(1 + it / 100 % 4);
    parallel_for(int64_t(data.size()), 1000, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) data[size_t(i)] += 1;
    });
    std::vector<int64_t> part(16, 0);
    parallel_chunks(16, [&](int64_t c) {
      for (int64_t i = c * 6250; i < (c + 1) * 6250; ++i) part[size_t(c)] += data[size_t(i)];
    });
    for (int64_t p : part) total += p;
    expect += int64_t(it + 1) * 100000;
    if (it % 7 == 0) {
      bool thrown = false;
      try {
        parallel_chunks(8, [](int64_t c) {
          if (c == 5) throw std::runtime_error("chunk 5");
        });
      } catch (const std::runtime_error&) {
        thrown = true;
      }
      REQUIRE(thrown);
    }
  }
  REQUIRE(total == expect);
  set_num_threads(before);
}
