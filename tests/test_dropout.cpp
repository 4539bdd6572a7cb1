#include "detr/ops/dropout.hpp"
#include "helpers.hpp"

using namespace detr;
using V = std::vector<Var<double>>;

TEST_CASE("dropout keeps about 1 - p, scales by 1 / (1 - p), and is seeded", "[dropout]") {
  Var<float> x(Tensor<float>::ones({100000}));
  Rng a(7), b(7), c(8);
  auto ya = dropout(x, 0.1, true, a).value(), yb = dropout(x, 0.1, true, b).value();
  auto yc = dropout(x, 0.1, true, c).value();
  REQUIRE(ya.to_vector() == yb.to_vector());
  REQUIRE(ya.to_vector() != yc.to_vector());
  int64_t zeros = 0;
  for (float v : ya.to_vector()) {
    if (v == 0.f) ++zeros;
    else REQUIRE(v == Approx(1.0f / 0.9f));
  }
  REQUIRE(zeros > 9500);
  REQUIRE(zeros < 10500);
  Rng r(1);
  REQUIRE(dropout(x, 0.1, false, r).value().shares_storage_with(x.value()));  // eval: identity
  REQUIRE_THROWS_WITH(dropout(x, 1.0, true, r), Catch::Contains("[0, 1)"));
}

TEST_CASE("dropout gradcheck", "[dropout][gradcheck]") {
  REQUIRE_GRADCHECK([](const V& v) { Rng r(3); return dropout(v[0], 0.3, true, r); },
                    {detr::test::randn({4, 5}, 1)});
}

TEST_CASE("vectorised dropout mask has the scalar hash's bits", "[dropout]") {
  // The keep-bits take the AVX-512 path (16 hashes at a time) where available, and applying them
  // too for float (double is scalar). Both must drop exactly the elements whose
  // splitmix64(base + i) falls below the threshold, including a tail that is not a multiple of
  // 16 and bases that wrap around 2^64.
  for (uint64_t base : {uint64_t(0), uint64_t(12345), ~uint64_t(0) - 20})
    for (double p : {0.1, 0.5, 0.9}) {
      const uint64_t threshold = uint64_t(p * 18446744073709551616.0);
      const int64_t n = 1000 + 7;
      std::vector<float> x(n), y(n);
      std::vector<double> xd(n), yd(n);
      for (int64_t i = 0; i < n; ++i) x[i] = float(i % 13) - 6.f, xd[i] = x[i];
      std::vector<uint16_t> bits((n + 15) / 16);
      detr::internal::dropout_keep_bits(base, threshold, n, bits.data());
      detr::internal::apply_keep_bits(bits.data(), 2.0f, x.data(), y.data(), n);
      detr::internal::apply_keep_bits(bits.data(), 2.0, xd.data(), yd.data(), n);
      int64_t mismatches = 0;
      for (int64_t i = 0; i < n; ++i) {
        const bool drop = detr::internal::splitmix64(base + uint64_t(i)) < threshold;
        mismatches += y[i] != (drop ? 0.f : 2.f * x[i]);
        mismatches += yd[i] != (drop ? 0.0 : 2.0 * xd[i]);
      }
      CHECK(mismatches == 0);
    }
}
